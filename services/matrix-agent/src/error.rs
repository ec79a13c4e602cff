//! The agent's one error type. Every failure of a Synapse call is one of
//! three classes, because each asks for a different reaction:
//!
//! | class     | examples                                                    | reaction                    |
//! |-----------|-------------------------------------------------------------|-----------------------------|
//! | transient | connection refused, timeout, 5xx, a rate limit not waited out | retry later                 |
//! | permanent | unknown room or alias, too little power, a banned invitee   | report for that object      |
//! | config    | token unknown (401 `M_UNKNOWN_TOKEN`), bot not a server admin, bad URL | an operator must act |
//!
//! A 429 `M_LIMIT_EXCEEDED` is not an error at first: the client waits
//! `retry_after_ms` (bounded) and retries ([`crate::synapse::RateLimitPolicy`]).

use reconciler_proto::agent::Outcome;
use serde::Deserialize;

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
    #[error("Synapse unavailable: {0}")]
    Transient(String),
    /// Synapse refused the call for a reason retrying will not fix.
    #[error("Synapse refused {call}: {status} {errcode}: {reason}")]
    Permanent {
        call: &'static str,
        status: u16,
        errcode: String,
        reason: String,
    },
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Config(_) => ErrorClass::Config,
            Error::Transient(_) => ErrorClass::Transient,
            Error::Permanent { .. } => ErrorClass::Permanent,
        }
    }

    /// A request the agent refuses before asking Synapse (an empty room, a
    /// user ID without a server): permanent, like Synapse's own refusals.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Permanent {
            call: "request",
            status: 0,
            errcode: "M_INVALID_PARAM".into(),
            reason: reason.into(),
        }
    }

    /// The contract's outcome for this class.
    pub fn outcome(&self) -> Outcome {
        match self.class() {
            ErrorClass::Transient => Outcome::Transient,
            ErrorClass::Permanent => Outcome::Permanent,
            ErrorClass::Config => Outcome::Config,
        }
    }

    /// The Matrix error code of a refusal (`M_NOT_FOUND`, `M_FORBIDDEN`, …).
    pub fn errcode(&self) -> Option<&str> {
        match self {
            Error::Permanent { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// Synapse's own words for a refusal.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Error::Permanent { reason, .. } => Some(reason),
            _ => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Permanent { status: 404, .. })
    }
}

/// Whole calls that fail say their class the way every agent does
/// (`reconciler_runtime::outcome`).
impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        reconciler_runtime::outcome::status(e.outcome(), e.to_string())
    }
}

/// The standard Matrix error body; every field is optional because a proxy
/// in front of Synapse may answer with anything.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MatrixErrorBody {
    #[serde(default)]
    pub errcode: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl MatrixErrorBody {
    pub(crate) fn parse(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }
}

/// Classifies a failed response (429s that were not waited out included).
pub(crate) fn classify(call: &'static str, status: u16, body: &MatrixErrorBody) -> Error {
    let errcode = body.errcode.clone().unwrap_or_else(|| "M_UNKNOWN".into());
    let reason = body.error.clone().unwrap_or_default();
    let detail = format!("{call}: {status} {errcode}: {reason}");
    if status == 401 || matches!(errcode.as_str(), "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN") {
        return Error::Config(format!(
            "Synapse does not accept the access token (MATRIX_ACCESS_TOKEN): {detail}"
        ));
    }
    // Synapse's words for a caller without the admin flag on an admin API;
    // the bot has to be a server admin, so this is the operator's to fix.
    if status == 403 && reason.contains("not a server admin") {
        return Error::Config(format!("the bot is not a Synapse server admin: {detail}"));
    }
    if status == 429 || status == 408 || status >= 500 {
        return Error::Transient(detail);
    }
    Error::Permanent {
        call,
        status,
        errcode,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(status: u16, body: &str) -> ErrorClass {
        classify("test", status, &MatrixErrorBody::parse(body)).class()
    }

    #[test]
    fn statuses_and_errcodes_map_to_classes() {
        let token = r#"{"errcode":"M_UNKNOWN_TOKEN","error":"Invalid access token passed."}"#;
        assert_eq!(class_of(401, token), ErrorClass::Config);
        let not_admin = r#"{"errcode":"M_FORBIDDEN","error":"You are not a server admin"}"#;
        assert_eq!(class_of(403, not_admin), ErrorClass::Config);
        let power = r#"{"errcode":"M_FORBIDDEN","error":"You don't have permission to ban"}"#;
        assert_eq!(class_of(403, power), ErrorClass::Permanent);
        assert_eq!(
            class_of(404, r#"{"errcode":"M_NOT_FOUND"}"#),
            ErrorClass::Permanent
        );
        assert_eq!(
            class_of(502, "<html>bad gateway</html>"),
            ErrorClass::Transient
        );
        assert_eq!(
            class_of(
                429,
                r#"{"errcode":"M_LIMIT_EXCEEDED","retry_after_ms":500}"#
            ),
            ErrorClass::Transient
        );
    }

    #[test]
    fn a_refusal_keeps_synapse_s_reason() {
        let e = classify(
            "kick",
            403,
            &MatrixErrorBody::parse(
                r#"{"errcode":"M_FORBIDDEN","error":"You cannot kick user @a:b."}"#,
            ),
        );
        assert_eq!(e.errcode(), Some("M_FORBIDDEN"));
        assert_eq!(e.reason(), Some("You cannot kick user @a:b."));
        assert!(e.to_string().contains("kick"));
    }
}
