//! Understanding what Authentik (or an operator) posts to `/reconcile`.
//!
//! Accepted bodies:
//! 1. the mapping shipped in `deploy/authentik/` —
//!    `{"event_pk", "action", "model": {"app", "model_name", "pk", "name"}}`;
//! 2. Authentik's default notification body — `{"body", "severity", ...}`,
//!    which does not say what changed, so it triggers a sweep (unless the
//!    Python-repr `body` names a user or group model, which we then use);
//! 3. `{"user": "<username|email|pk>"}` or `{"group": "<uuid|name>"}`.
//!
//! The body is only a hint about *what* to reconcile; state is always
//! re-read from the Authentik API.

use serde_json::Value;

use crate::subject::Subject;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Reconcile this subject. `event_pk` dedupes repeated deliveries.
    Reconcile {
        subject: Subject,
        event_pk: Option<String>,
    },
    /// A valid notification about something we do not manage (e.g. an
    /// application); acknowledged so Authentik does not retry it.
    Ignore { reason: String },
}

/// Parses a request body. `Err` is a 400 reason for the caller.
pub fn parse(body: &[u8]) -> Result<Trigger, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    let Value::Object(map) = &value else {
        return Err("body must be a JSON object".into());
    };
    if let Some(model) = map.get("model") {
        return from_mapping(map, model);
    }
    if let Some(user) = map.get("user") {
        return Ok(Trigger::Reconcile {
            subject: Subject::User(identifier(user, "user")?),
            event_pk: None,
        });
    }
    if let Some(group) = map.get("group") {
        return Ok(Trigger::Reconcile {
            subject: Subject::Group(identifier(group, "group")?),
            event_pk: None,
        });
    }
    if let Some(body) = map.get("body") {
        let Value::String(text) = body else {
            return Err("`body` must be a string".into());
        };
        return Ok(Trigger::Reconcile {
            subject: subject_from_summary(text).unwrap_or(Subject::All),
            event_pk: None,
        });
    }
    Err(
        "expected the shipped mapping (`model`), Authentik's default body (`body`), \
         `{\"user\": ...}` or `{\"group\": ...}`"
            .into(),
    )
}

fn from_mapping(map: &serde_json::Map<String, Value>, model: &Value) -> Result<Trigger, String> {
    let event_pk = match map.get("event_pk") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(other) => {
            return Err(format!(
                "`event_pk` must be a non-empty string, got {other}"
            ));
        }
    };
    if model.is_null() {
        // Events without a model (logins, config changes) reach us when a
        // rule's policy is broad; nothing to do.
        return Ok(Trigger::Ignore {
            reason: "event has no model".into(),
        });
    }
    let Value::Object(model) = model else {
        return Err("`model` must be an object".into());
    };
    let app = model.get("app").and_then(Value::as_str).unwrap_or_default();
    let name = model
        .get("model_name")
        .and_then(Value::as_str)
        .ok_or("`model.model_name` is missing")?;
    let pk = model.get("pk").ok_or("`model.pk` is missing")?;
    let pk = identifier(pk, "model.pk")?;
    if app != "authentik_core" {
        return Ok(Trigger::Ignore {
            reason: format!("model {app}.{name} is not managed"),
        });
    }
    let subject = match name {
        "user" => Subject::User(pk),
        "group" => Subject::Group(pk),
        other => {
            return Ok(Trigger::Ignore {
                reason: format!("model authentik_core.{other} is not managed"),
            });
        }
    };
    Ok(Trigger::Reconcile { subject, event_pk })
}

fn identifier(value: &Value, field: &str) -> Result<String, String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Value::Number(n) if n.is_i64() => Ok(n.to_string()),
        other => Err(format!(
            "`{field}` must be a non-empty string or an integer, got {other}"
        )),
    }
}

/// Authentik's default `body` is `"<action>: <python repr of context>"`, e.g.
/// `model_updated: {'model': {'app': 'authentik_core', 'model_name': 'user', 'pk': 42, ...}}`.
/// Pulls the model out when it is plainly there; otherwise `None` (sweep).
fn subject_from_summary(text: &str) -> Option<Subject> {
    if !text.contains("'app': 'authentik_core'") {
        return None;
    }
    let model_name = between(text, "'model_name': '", "'")?;
    let after = text.split_once("'model_name':")?.1;
    let pk_start = after.split_once("'pk': ")?.1;
    let pk: String = pk_start
        .trim_start_matches('\'')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if pk.is_empty() {
        return None;
    }
    match model_name {
        "user" => Some(Subject::User(pk)),
        "group" => Some(Subject::Group(pk)),
        _ => None,
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = text.split_once(start)?.1;
    Some(rest.split_once(end)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconcile(subject: Subject, pk: Option<&str>) -> Trigger {
        Trigger::Reconcile {
            subject,
            event_pk: pk.map(str::to_owned),
        }
    }

    #[test]
    fn shipped_mapping() {
        let body = br#"{"event_pk":"e1","action":"model_updated","model":{"app":"authentik_core","model_name":"group","pk":"3f2a0c1e111122223333444455556666","name":"support"}}"#;
        assert_eq!(
            parse(body).unwrap(),
            reconcile(
                Subject::Group("3f2a0c1e111122223333444455556666".into()),
                Some("e1")
            )
        );
        let body = br#"{"event_pk":"e2","action":"model_deleted","model":{"app":"authentik_core","model_name":"user","pk":42,"name":"Alice"}}"#;
        assert_eq!(
            parse(body).unwrap(),
            reconcile(Subject::User("42".into()), Some("e2"))
        );
    }

    #[test]
    fn other_models_are_acknowledged_and_ignored() {
        let body = br#"{"event_pk":"e3","model":{"app":"authentik_core","model_name":"application","pk":"x"}}"#;
        assert!(matches!(parse(body).unwrap(), Trigger::Ignore { .. }));
        let body = br#"{"event_pk":"e4","model":null}"#;
        assert!(matches!(parse(body).unwrap(), Trigger::Ignore { .. }));
    }

    #[test]
    fn default_body_sweeps_or_extracts() {
        let body = br#"{"body":"login: {'auth_method': 'password'}","severity":"notice","user_email":"a@b.c","user_username":"akadmin"}"#;
        assert_eq!(parse(body).unwrap(), reconcile(Subject::All, None));
        let body = br#"{"body":"model_updated: {'model': {'app': 'authentik_core', 'model_name': 'user', 'pk': 42, 'name': 'Alice'}}","severity":"notice"}"#;
        assert_eq!(
            parse(body).unwrap(),
            reconcile(Subject::User("42".into()), None)
        );
    }

    #[test]
    fn plain_user_and_group() {
        assert_eq!(
            parse(br#"{"user":"alice"}"#).unwrap(),
            reconcile(Subject::User("alice".into()), None)
        );
        assert_eq!(
            parse(br#"{"user":7}"#).unwrap(),
            reconcile(Subject::User("7".into()), None)
        );
        assert_eq!(
            parse(br#"{"group":"support"}"#).unwrap(),
            reconcile(Subject::Group("support".into()), None)
        );
    }

    #[test]
    fn malformed_bodies_have_reasons() {
        for (body, reason) in [
            (&b"{not json"[..], "not valid JSON"),
            (b"[1,2]", "JSON object"),
            (b"{}", "expected"),
            (br#"{"user":""}"#, "non-empty"),
            (br#"{"user":{"a":1}}"#, "non-empty"),
            (
                br#"{"model":{"app":"authentik_core","pk":1}}"#,
                "model_name",
            ),
            (
                br#"{"event_pk":5,"model":{"app":"authentik_core","model_name":"user","pk":1}}"#,
                "event_pk",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(
                err.contains(reason),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
