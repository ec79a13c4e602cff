//! The agent's one error type, mapped onto outcomes and gRPC codes.

use reconciler_proto::agent::Outcome;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Our configuration, or the container's (wrong uid for occ).
    #[error("configuration: {0}")]
    Config(String),
    /// Maintenance mode, Mail app disabled, upgrade pending, container down:
    /// retried later.
    #[error("Nextcloud unavailable: {0}")]
    Unavailable(String),
    /// Retrying will not help: unknown Nextcloud user, account gone.
    #[error("{0}")]
    Permanent(String),
    /// The account is not one we made (provisioned, or for another
    /// address); we never touch it.
    #[error("refused: {0}")]
    Refused(String),
    /// occ answered something we do not understand.
    #[error("unexpected occ output: {0}")]
    Protocol(String),
    /// Nextcloud's database could not be read (`NEXTCLOUD_DB_URL`); observe
    /// falls back to occ.
    #[error("Nextcloud database: {0}")]
    Database(String),
}

impl Error {
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Config(_) => Outcome::Config,
            Error::Unavailable(_) | Error::Database(_) => Outcome::Transient,
            Error::Permanent(_) | Error::Protocol(_) => Outcome::Permanent,
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
