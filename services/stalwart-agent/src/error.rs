//! The agent's one error type. Every failure of a whole Stalwart call is one
//! of three classes, because each asks for a different reaction:
//!
//! | class     | examples                                                        | reaction              |
//! |-----------|-----------------------------------------------------------------|-----------------------|
//! | transient | connection refused, timeout, 5xx, 429, `serverUnavailable`       | retry later           |
//! | permanent | a request Stalwart calls malformed (`invalidArguments`, 400)     | report; a bug to fix  |
//! | config    | 401/403 (API key refused or lacking permission), no 0.16 management, bad URL | an operator must act |
//!
//! A refused change of one object is not an error of the call: it is a
//! [`SetFailure`](crate::jmap::SetFailure) in that item's result.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Transient,
    Permanent,
    Config,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("Stalwart unavailable: {0}")]
    Transient(String),
    #[error("Stalwart refused the request: {0}")]
    Permanent(String),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::Config,
            Error::Transient(_) => ErrorClass::Transient,
            Error::Permanent(_) => ErrorClass::Permanent,
        }
    }
}
