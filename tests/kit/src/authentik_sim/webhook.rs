//! Notification emulation: Authentik's audit middleware turns saves, deletes
//! and m2m changes made during an API request into `model_*` events, and a
//! Generic Webhook transport with our shipped body mapping
//! (`deploy/authentik/webhook-body-mapping.py`) POSTs them.

use super::events::StoredEvent;
use super::model::{Group, User, now_isoformat_python};
use serde_json::{Value, json};

/// Where and how to deliver notifications.
#[derive(Clone, Debug, Default)]
pub struct WebhookConfig {
    pub url: String,
    /// What a header mapping would return, e.g. the shared webhook secret.
    pub headers: Vec<(String, String)>,
}

/// One audit event's `context.model`.
#[derive(Clone, Debug)]
pub(crate) struct ModelEvent {
    pub action: &'static str,
    pub model: Value,
}

impl ModelEvent {
    /// `model_to_dict(user)`: the pk is the int, the name the display name.
    pub fn user(action: &'static str, user: &User) -> Self {
        Self {
            action,
            model: json!({
                "app": "authentik_core",
                "model_name": "user",
                "pk": user.pk,
                "name": user.name,
            }),
        }
    }

    /// `model_to_dict(group)`: `sanitize_item` renders the UUID pk as
    /// undashed hex, unlike the API.
    pub fn group(action: &'static str, group: &Group) -> Self {
        Self {
            action,
            model: json!({
                "app": "authentik_core",
                "model_name": "group",
                "pk": group.uuid.simple().to_string(),
                "name": group.name,
            }),
        }
    }
}

/// What the shipped body mapping returns for a recorded event: the same pk
/// the events API lists, so a receiver can deduplicate the two.
fn body(event: &StoredEvent) -> Value {
    json!({
        "event_pk": event.pk.to_string(),
        "action": event.action,
        "model": event.model,
        "created": now_isoformat_python(),
    })
}

/// What Authentik's worker sends as User-Agent.
const USER_AGENT: &str = "authentik@2026.8.5";

/// Posts each event from its own task, so the API response never waits on
/// the receiver and deliveries may arrive out of order, as with Authentik's
/// task queue. Failed deliveries are dropped: retries are not simulated.
pub(crate) fn dispatch(client: &reqwest::Client, config: &WebhookConfig, events: &[StoredEvent]) {
    for event in events {
        let mut request = client
            .post(&config.url)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .json(&body(event));
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        tokio::spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => tracing::warn!(
                    status = %response.status(),
                    "authentik-sim: webhook receiver refused the notification"
                ),
                Err(error) => {
                    tracing::warn!(%error, "authentik-sim: webhook delivery failed")
                }
            }
        });
    }
}
