//! Which subject an audit event asks us to reconcile. The event is read
//! exactly as a webhook with the shipped body mapping would carry it, so a
//! caught-up event and its delivered webhook mean the same job.

use serde_json::{Value, json};

use crate::authentik::Event;
use crate::authentik::events::MODEL_ACTIONS;
use crate::subject::Subject;
use crate::webhook::{self, Trigger};

/// The user or group the event changed, or `None` for anything we do not
/// manage (other models, other actions, events without a model).
pub fn subject_of(event: &Event) -> Option<Subject> {
    if !MODEL_ACTIONS.contains(&event.action.as_str()) {
        return None;
    }
    let body = json!({
        "event_pk": event.pk,
        "action": event.action,
        "model": event.context.get("model").cloned().unwrap_or(Value::Null),
    });
    match webhook::parse(body.to_string().as_bytes()) {
        Ok(Trigger::Reconcile { subject, .. }) => Some(subject),
        Ok(Trigger::Ignore { .. }) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: &str, model: Value) -> Event {
        Event {
            pk: "0b9f7c3e-0000-4000-8000-000000000001".into(),
            action: action.into(),
            context: json!({"model": model, "http_request": {"method": "PATCH"}}),
            created: "2026-08-05T12:34:56.123456Z".into(),
        }
    }

    #[test]
    fn user_and_group_model_events_name_their_subject() {
        let user =
            json!({"app": "authentik_core", "model_name": "user", "pk": 42, "name": "Jane Doe"});
        let group = json!({"app": "authentik_core", "model_name": "group", "pk": "3f2a0c1e111122223333444455556666", "name": "support"});
        for action in MODEL_ACTIONS {
            assert_eq!(
                subject_of(&event(action, user.clone())),
                Some(Subject::User("42".into()))
            );
            // A membership change is a `model_updated` of the group.
            assert_eq!(
                subject_of(&event(action, group.clone())),
                Some(Subject::Group("3f2a0c1e111122223333444455556666".into()))
            );
        }
    }

    #[test]
    fn everything_else_is_skipped() {
        let application =
            json!({"app": "authentik_core", "model_name": "application", "pk": "x", "name": "a"});
        let flow = json!({"app": "authentik_flows", "model_name": "flow", "pk": "x", "name": "f"});
        let user = json!({"app": "authentik_core", "model_name": "user", "pk": 42, "name": "J"});
        assert_eq!(subject_of(&event("model_updated", application)), None);
        assert_eq!(subject_of(&event("model_updated", flow)), None);
        assert_eq!(subject_of(&event("login", user)), None);
        assert_eq!(subject_of(&event("model_updated", Value::Null)), None);
        let mut no_context = event("model_updated", Value::Null);
        no_context.context = Value::Null;
        assert_eq!(subject_of(&no_context), None);
    }
}
