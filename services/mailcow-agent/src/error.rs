//! The agent's one error type, and how it maps onto the contract's
//! [`Outcome`]s and onto gRPC status codes.

use reconciler_proto::agent::Outcome;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent's own configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// Mailcow rejected the API key (401) or its access level (403).
    /// Retrying cannot help; an operator must fix the key or `API_ALLOW_FROM`.
    #[error("Mailcow refused the API key (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Network failure, 5xx: worth retrying.
    #[error("Mailcow unreachable: {0}")]
    Unavailable(String),
    /// No answer within the timeout: worth retrying, but a write may
    /// still have been (or still be being) carried out by Mailcow.
    #[error("Mailcow did not answer in time: {0}")]
    TimedOut(String),
    /// Dovecot cannot be reached: Docker error, container down, doveadm
    /// temporary failure. Worth retrying.
    #[error("Dovecot unavailable: {0}")]
    DovecotUnavailable(String),
    /// HTTP 200 with an empty body: Mailcow hit a PHP exception and said
    /// nothing. Nothing can be assumed about what happened.
    #[error("Mailcow answered {call} with an empty body (a server-side exception)")]
    EmptyBody { call: String },
    /// Mailcow answered, but with a `danger`/`error` message.
    #[error("Mailcow rejected {call}: {messages}")]
    Rejected { call: String, messages: String },
    /// Mailcow answered something this agent does not understand.
    #[error("unexpected Mailcow response to {call}: {detail}")]
    Protocol { call: String, detail: String },
    /// The change is well-formed but cannot be carried out as asked.
    #[error("{0}")]
    Permanent(String),
    /// The object does not carry our marker; we never touch it.
    #[error("refused: {0}")]
    Refused(String),
}

impl Error {
    /// A write that failed this way may still have happened: the request
    /// left, but no (readable) answer came back.
    pub fn write_may_have_happened(&self) -> bool {
        matches!(
            self,
            Error::TimedOut(_) | Error::Unavailable(_) | Error::EmptyBody { .. }
        )
    }

    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Config(_) | Error::Unauthorized { .. } => Outcome::Config,
            Error::Unavailable(_)
            | Error::TimedOut(_)
            | Error::DovecotUnavailable(_)
            | Error::EmptyBody { .. } => Outcome::Transient,
            Error::Rejected { .. } | Error::Protocol { .. } | Error::Permanent(_) => {
                Outcome::Permanent
            }
            Error::Refused(_) => Outcome::Refused,
        }
    }
}

/// Whole calls that fail say their class the way every agent does
/// (`reconciler_runtime::outcome`).
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        reconciler_runtime::outcome::status(e.outcome(), e.to_string())
    }
}
