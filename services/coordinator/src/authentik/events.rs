//! Authentik's audit log (`GET /api/v3/events/events/`), read by the
//! catch-up for directory changes whose webhook never arrived.

use serde::Deserialize;
use serde_json::Value;

use super::client::AuthentikClient;
use super::model::Page;
use crate::error::Result;

/// The actions the audit middleware records for a created, saved
/// (including membership changes, on the side they came from) or deleted
/// user or group (reference: "Which events fire for our cases").
pub const MODEL_ACTIONS: [&str; 3] = ["model_created", "model_updated", "model_deleted"];

/// The parts of an `Event` the catch-up reads; unknown fields are ignored.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Event {
    /// UUID; the same value the shipped body mapping sends as `event_pk`.
    pub pk: String,
    pub action: String,
    /// `{"model": {"app", "model_name", "pk", "name"}, ...}` for model events.
    #[serde(default)]
    pub context: Value,
    /// ISO 8601 with an offset (`Z` in UTC); microseconds may be omitted.
    pub created: String,
}

/// Where events come from. A trait so the catch-up can be tested without
/// HTTP.
#[async_trait::async_trait]
pub trait EventSource: Send + Sync {
    /// Page `page` (1-based) of user and group model events, newest first.
    async fn model_events(&self, page: u64) -> Result<Page<Event>>;
}

#[async_trait::async_trait]
impl EventSource for AuthentikClient {
    async fn model_events(&self, page: u64) -> Result<Page<Event>> {
        let mut query: Vec<(&str, &str)> = MODEL_ACTIONS.iter().map(|a| ("actions", *a)).collect();
        // Newest first: events created while we page shift older ones onto
        // later pages (read twice, deduplicated), never past us.
        query.extend([
            ("context_model_app", "authentik_core"),
            ("ordering", "-created"),
        ]);
        self.get_page("/api/v3/events/events/", page, &query).await
    }
}
