//! The agent's one error type, and the one place where failures become the
//! contract's outcomes and gRPC statuses. Every failure of a whole Stalwart
//! call is one of three classes, because each asks for a different reaction:
//!
//! | class     | examples                                                        | reaction              |
//! |-----------|-----------------------------------------------------------------|-----------------------|
//! | transient | connection refused, timeout, 5xx, 429, `serverUnavailable`       | retry later           |
//! | permanent | a request Stalwart calls malformed (`invalidArguments`, 400), a change the agent refuses before asking (an address without `@`) | report; a bug to fix  |
//! | config    | 401/403 (API key refused or lacking permission), no 0.16 management, bad URL | an operator must act |
//!
//! Two more outcomes belong to one change only:
//! - a refused change of one object is not an error of the call: it is a
//!   [`SetFailure`] in that item's result, PERMANENT with Stalwart's type
//!   and description ([`set_failure_outcome`]);
//! - a change naming an object by the id the coordinator recorded, where
//!   the address now holds another object, is REFUSED ([`Error::NotOurs`]).

use reconciler_proto::agent::Outcome;

use crate::jmap::SetFailure;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Transient,
    Permanent,
    Config,
    /// The object is not the one the coordinator created.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("Stalwart unavailable: {0}")]
    Transient(String),
    #[error("Stalwart refused the request: {0}")]
    Permanent(String),
    /// A change the agent refuses before asking Stalwart.
    #[error("invalid change: {0}")]
    Invalid(String),
    #[error("not ours: {0}")]
    NotOurs(String),
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::Config,
            Error::Transient(_) => ErrorClass::Transient,
            Error::Permanent(_) | Error::Invalid(_) => ErrorClass::Permanent,
            Error::NotOurs(_) => ErrorClass::Refused,
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }

    /// The contract's outcome for this class.
    pub fn outcome(&self) -> Outcome {
        match self.class() {
            ErrorClass::Transient => Outcome::Transient,
            ErrorClass::Permanent => Outcome::Permanent,
            ErrorClass::Config => Outcome::Config,
            ErrorClass::Refused => Outcome::Refused,
        }
    }
}

/// Stalwart refused one object's change: retrying the same change cannot
/// help (a duplicate address, a bad value, an object still linked), so it
/// is permanent, whatever the SetError's type.
pub fn set_failure_outcome(_failure: &SetFailure) -> Outcome {
    Outcome::Permanent
}

/// Whole calls that fail say their class the way every agent does
/// (`reconciler_runtime::outcome`).
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        reconciler_runtime::outcome::status(e.outcome(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconciler_runtime::outcome::of_status;

    #[test]
    fn every_class_travels_as_its_outcome() {
        let cases = [
            (Error::Config("key".into()), Outcome::Config),
            (Error::Transient("down".into()), Outcome::Transient),
            (Error::Permanent("bad".into()), Outcome::Permanent),
            (Error::invalid("no @"), Outcome::Permanent),
            (Error::NotOurs("other id".into()), Outcome::Refused),
        ];
        for (error, outcome) in cases {
            assert_eq!(error.outcome(), outcome, "{error}");
            let status = tonic::Status::from(error);
            assert_eq!(of_status(&status), outcome, "{status:?}");
        }
        let failure = SetFailure {
            kind: "primaryKeyViolation".into(),
            description: "Primary key violation".into(),
            properties: vec!["email".into()],
        };
        assert_eq!(set_failure_outcome(&failure), Outcome::Permanent);
    }
}
