//! The coordinator's one error type, mapped to gRPC codes and HTTP statuses.

use reconciler_proto::agent::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Wrong or missing configuration; an operator must act.
    #[error("configuration error: {0}")]
    Config(String),
    /// Authentik failed or answered something unusable; retried later.
    #[error("Authentik: {0}")]
    Authentik(String),
    /// An agent could not be reached or failed as a whole. `outcome` is
    /// the class it gave (`reconciler_runtime::outcome`; never config,
    /// which is [`Error::Config`]): only a transient failure is retried.
    #[error("agent {agent}: {message}")]
    Agent {
        agent: String,
        outcome: Outcome,
        message: String,
    },
    /// The state DB failed.
    #[error("state DB: {0}")]
    Db(#[from] sqlx::Error),
    /// The state DB holds something this version cannot read (a corrupt
    /// or hand-edited row); an operator must look. Never guessed around.
    #[error("state DB content: {0}")]
    Corrupt(String),
    #[error("state DB migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The caller asked for something malformed.
    #[error("invalid request: {0}")]
    InvalidInput(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// What a run read kept changing under it; retried later.
    #[error("overtaken: {0}")]
    Overtaken(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether running the same job again later can succeed.
    pub fn is_transient(&self) -> bool {
        self.outcome() == Outcome::Transient
    }

    /// The failure's class, in the terms agents report theirs.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Authentik(_) | Self::Db(_) | Self::Overtaken(_) => Outcome::Transient,
            Self::Agent { outcome, .. } => *outcome,
            Self::Config(_) | Self::Migrate(_) | Self::Corrupt(_) => Outcome::Config,
            Self::InvalidInput(_) | Self::NotFound(_) => Outcome::Permanent,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Config(_) => tonic::Status::failed_precondition(message),
            Error::Authentik(_) => tonic::Status::unavailable(message),
            Error::Overtaken(_) => tonic::Status::aborted(message),
            // An agent's failure keeps its class for the operator too.
            Error::Agent { outcome, .. } => reconciler_runtime::outcome::status(outcome, message),
            Error::Db(_) | Error::Migrate(_) | Error::Corrupt(_) => {
                tonic::Status::internal(message)
            }
            Error::InvalidInput(_) => tonic::Status::invalid_argument(message),
            Error::NotFound(_) => tonic::Status::not_found(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overtaken_run_is_retried_and_reads_as_aborted() {
        let e = Error::Overtaken("alice".into());
        assert!(e.is_transient());
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::Aborted);
    }
}
