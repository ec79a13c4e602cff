//! `GET /api/v3/events/events/`: the audit log Authentik keeps of every
//! `model_*` event (`authentik/events/api/events.py` `EventViewSet`), so a
//! receiver that missed a webhook can catch up. Every event a write through
//! the HTTP API emits is recorded here, whether or not a webhook is sent.

use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use uuid::Uuid;

use super::api::{St, invalid_choice};
use super::drf::{ApiError, Params, SortKey, envelope, ordering, paginate, sort_by};
use super::model::now_iso;
use super::webhook::ModelEvent;

/// One row of Authentik's `Event` table.
#[derive(Clone, Debug)]
pub(crate) struct StoredEvent {
    /// Insertion order: the tiebreak for events created in the same instant.
    pub seq: i64,
    pub pk: Uuid,
    pub action: &'static str,
    pub model: Value,
    /// DRF renders `created` as ISO 8601 in UTC with a `Z`.
    pub created: String,
}

impl StoredEvent {
    pub fn new(seq: i64, event: &ModelEvent) -> Self {
        Self {
            seq,
            pk: Uuid::new_v4(),
            action: event.action,
            model: event.model.clone(),
            created: now_iso(),
        }
    }

    fn model_field(&self, field: &str) -> Option<String> {
        match self.model.get(field)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// `EventSerializer`. The actor is the API token's user; the audit
    /// middleware is the emitting `app`, not `authentik_core`.
    pub fn json(&self) -> Value {
        json!({
            "pk": self.pk.to_string(),
            "user": {"pk": 1, "username": "akadmin", "email": "root@localhost"},
            "action": self.action,
            "app": "authentik.events.middleware",
            "context": {
                "model": self.model,
                "http_request": {"method": "PATCH", "path": "/api/v3/", "args": {}},
            },
            "client_ip": "127.0.0.1",
            "created": self.created,
            "expires": Value::Null,
            "brand": {"app": "authentik_brands", "model_name": "brand", "name": "Default brand"},
        })
    }
}

/// The `EventAction` choices the `actions` filter validates against (the
/// ones a directory change can produce, plus common others).
const ACTIONS: &[&str] = &[
    "login",
    "login_failed",
    "logout",
    "user_write",
    "user_offboarded",
    "model_created",
    "model_updated",
    "model_deleted",
    "email_sent",
    "configuration_error",
    "custom_",
];

const EVENT_ORDERING: &[&str] = &["created", "action", "app", "client_ip", "user"];

fn sort_key<'a>(event: &'a StoredEvent, field: &str) -> SortKey<'a> {
    match field {
        "created" => SortKey::Text(&event.created),
        "action" => SortKey::Text(event.action),
        "app" | "client_ip" | "user" => SortKey::Null,
        _ => SortKey::Null,
    }
}

/// `EventsFilter`: `actions` (multiple choice), `action` (icontains),
/// `context_model_app` / `_name` / `_pk`, `username`; default order
/// `-created`; Authentik's pagination envelope.
pub(crate) async fn list_events(
    State(shared): St,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(query);
    let all = shared.events();
    let mut events: Vec<&StoredEvent> = all.iter().collect();
    let actions = params.all("actions");
    if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(a)) {
        return Err(invalid_choice("actions", bad));
    }
    if !actions.is_empty() {
        events.retain(|e| actions.contains(&e.action));
    }
    if let Some(part) = params.filter("action") {
        let part = part.to_lowercase();
        events.retain(|e| e.action.contains(&part));
    }
    for (key, field) in [
        ("context_model_app", "app"),
        ("context_model_name", "model_name"),
    ] {
        if let Some(wanted) = params.filter(key) {
            events.retain(|e| e.model_field(field).as_deref() == Some(wanted));
        }
    }
    if let Some(raw) = params.filter("context_model_pk") {
        // Dashed or undashed UUIDs, and ints: compared as undashed text.
        let wanted = raw.replace('-', "").to_lowercase();
        events
            .retain(|e| e.model_field("pk").map(|pk| pk.replace('-', "")) == Some(wanted.clone()));
    }
    if let Some(username) = params.filter("username") {
        events.retain(|_| username == "akadmin");
    }
    let terms = ordering(&params, EVENT_ORDERING, "-created");
    sort_by(&mut events, &terms, sort_key, |e| SortKey::Int(e.seq));
    let page = paginate(events.len(), &params, shared.page_sizes())?;
    let results = events[page.range].iter().map(|e| e.json()).collect();
    Ok(Json(envelope(page.pagination, results)))
}
