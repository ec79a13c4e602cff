//! One table from an outcome class to a gRPC status code and back, shared by
//! every agent (sending) and the coordinator (reading).
//!
//! A change's class travels in its `ChangeResult.outcome`. When a whole call
//! fails, the class travels in the status instead: agents build every error
//! status with [`status`], and the coordinator reads it back with
//! [`of_status`]. Each class means one thing to the coordinator:
//!
//! | class     | sent as               | the coordinator                                    |
//! |-----------|-----------------------|----------------------------------------------------|
//! | applied   | `OK`                  | records it                                         |
//! | transient | `UNAVAILABLE`         | retries later                                      |
//! | permanent | `INVALID_ARGUMENT`    | backs off until the input changes                  |
//! | refused   | `PERMISSION_DENIED`   | never retries as transient: the object is not ours |
//! | config    | `FAILED_PRECONDITION` | reports the target misconfigured; an operator acts |
//!
//! Refused and config both mean "no" to a client, so no code alone tells
//! them apart. Every status an agent sends therefore also names its class
//! in the [`OUTCOME_KEY`] metadata entry (`OUTCOME_REFUSED`, …); the code is
//! for clients that do not know the key, such as grpcurl. A status without
//! the key did not come from an agent's own error mapping (the transport,
//! the token check, a proxy) and is classed by its code alone:
//!
//! - transient: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
//!   `ABORTED`, `CANCELLED`, `UNKNOWN`, `INTERNAL` (the call may not have
//!   arrived, or failed in a way that can pass);
//! - permanent: `INVALID_ARGUMENT`, `OUT_OF_RANGE`, `NOT_FOUND`,
//!   `ALREADY_EXISTS`, `DATA_LOSS`;
//! - config: `FAILED_PRECONDITION`, `UNAUTHENTICATED` (wrong `AGENT_TOKEN`),
//!   `PERMISSION_DENIED`, `UNIMPLEMENTED` (the agent does not serve the call:
//!   versions differ);
//! - refused: never from a code alone; only an agent can say an object is not ours.

use reconciler_proto::agent::Outcome;
use tonic::Code;
use tonic::metadata::MetadataValue;

/// The metadata key that carries a status's class, as the proto enum's name.
pub const OUTCOME_KEY: &str = "reconciler-outcome";

/// The code an outcome is sent with.
pub fn code(outcome: Outcome) -> Code {
    match outcome {
        Outcome::Applied | Outcome::DryRun | Outcome::Unchanged => Code::Ok,
        Outcome::Transient => Code::Unavailable,
        Outcome::Permanent => Code::InvalidArgument,
        Outcome::Refused => Code::PermissionDenied,
        Outcome::Config => Code::FailedPrecondition,
        Outcome::Unspecified => Code::Unknown,
    }
}

/// The class of a status that does not name one (see the module docs).
pub fn class_of_code(code: Code) -> Outcome {
    match code {
        Code::Ok => Outcome::Applied,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal => Outcome::Transient,
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::NotFound
        | Code::AlreadyExists
        | Code::DataLoss => Outcome::Permanent,
        Code::FailedPrecondition
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::Unimplemented => Outcome::Config,
    }
}

/// The status an agent sends for a whole call that failed with `outcome`.
pub fn status(outcome: Outcome, message: impl Into<String>) -> tonic::Status {
    let mut status = tonic::Status::new(code(outcome), message);
    status.metadata_mut().insert(
        OUTCOME_KEY,
        MetadataValue::from_static(outcome.as_str_name()),
    );
    status
}

/// The class of a status: the one it names, else its code's.
pub fn of_status(status: &tonic::Status) -> Outcome {
    status
        .metadata()
        .get(OUTCOME_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(Outcome::from_str_name)
        .filter(|named| *named != Outcome::Unspecified)
        .unwrap_or_else(|| class_of_code(status.code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILURES: [Outcome; 4] = [
        Outcome::Transient,
        Outcome::Permanent,
        Outcome::Refused,
        Outcome::Config,
    ];

    #[test]
    fn every_failure_class_survives_the_trip_through_a_status() {
        for outcome in FAILURES {
            let sent = status(outcome, "why");
            assert_eq!(of_status(&sent), outcome, "{sent:?}");
            assert_eq!(sent.message(), "why");
        }
    }

    #[test]
    fn the_code_alone_never_reads_as_refused() {
        for outcome in FAILURES {
            let unnamed = tonic::Status::new(code(outcome), "from a proxy");
            let read = of_status(&unnamed);
            assert_ne!(read, Outcome::Refused, "{unnamed:?}");
            if outcome != Outcome::Refused {
                assert_eq!(read, outcome, "{unnamed:?}");
            }
        }
        let denied = tonic::Status::permission_denied("RBAC: access denied");
        assert_eq!(of_status(&denied), Outcome::Config);
    }

    #[test]
    fn statuses_no_agent_wrote_are_classed_by_code() {
        let cases = [
            (Code::Unauthenticated, Outcome::Config),
            (Code::Unimplemented, Outcome::Config),
            (Code::DeadlineExceeded, Outcome::Transient),
            (Code::Internal, Outcome::Transient),
            (Code::Cancelled, Outcome::Transient),
            (Code::OutOfRange, Outcome::Permanent),
        ];
        for (code, class) in cases {
            assert_eq!(of_status(&tonic::Status::new(code, "")), class, "{code:?}");
        }
    }

    #[test]
    fn a_class_name_that_is_not_one_falls_back_to_the_code() {
        let mut garbled = tonic::Status::unavailable("down");
        garbled
            .metadata_mut()
            .insert(OUTCOME_KEY, MetadataValue::from_static("OUTCOME_MAYBE"));
        assert_eq!(of_status(&garbled), Outcome::Transient);
    }
}
