//! The agent's one error type, mapped onto the contract's outcomes and
//! gRPC status codes.

use reconciler_proto::agent::Outcome;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    /// MySQL unreachable, or lock conflicts that outlasted our retries.
    #[error("SOGo database unavailable: {0}")]
    Unavailable(String),
    /// A row's `c_settings` is not what SOGo writes; it is left untouched.
    #[error("c_settings of {uid} cannot be read, left unchanged: {detail}")]
    CorruptSettings { uid: String, detail: String },
    /// The database answered with an error retrying will not fix.
    #[error("SOGo database: {0}")]
    Database(String),
    /// The change is malformed.
    #[error("{0}")]
    Invalid(String),
    /// SOGo's cached settings could not be evicted (memcached down,
    /// stalled or refusing); the coordinator retries the eviction.
    #[error("memcached eviction failed: {0}")]
    Cache(String),
}

impl Error {
    pub fn outcome(&self) -> Outcome {
        match self {
            Error::Config(_) => Outcome::Config,
            Error::Unavailable(_) | Error::Cache(_) => Outcome::Transient,
            Error::CorruptSettings { .. } | Error::Database(_) | Error::Invalid(_) => {
                Outcome::Permanent
            }
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

/// MySQL server error codes we act on.
pub mod mysql_codes {
    pub const ACCESS_DENIED: u16 = 1045;
    pub const BAD_DB: u16 = 1049;
    pub const DUPLICATE_KEY: u16 = 1062;
    pub const NO_SUCH_TABLE: u16 = 1146;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const DEADLOCK: u16 = 1213;
}

/// Classifies a mysql_async error. `Ok(())` means "retry the transaction".
pub fn classify(e: mysql_async::Error) -> Result<(), Error> {
    use mysql_codes::*;
    match &e {
        mysql_async::Error::Server(server) => match server.code {
            DEADLOCK | LOCK_WAIT_TIMEOUT | DUPLICATE_KEY => Ok(()),
            ACCESS_DENIED | BAD_DB | NO_SUCH_TABLE => Err(Error::Config(e.to_string())),
            _ => Err(Error::Database(e.to_string())),
        },
        mysql_async::Error::Url(_) => Err(Error::Config(e.to_string())),
        _ => Err(Error::Unavailable(e.to_string())),
    }
}
