//! The HTTP interface (README, "Operating it"): health, webhook intake, full-sweep
//! trigger, job lookup, metrics, Stalwart event ingest (`ingest`) and the
//! audit log (`audit_api`).
//!
//! A trigger answers 202 only after its job is committed to the state DB.
//! Bad auth → 401 and bad bodies → 400; neither enqueues anything.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use reconciler_runtime::secrets::Secret;
use serde_json::json;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::engine::Engine;
use crate::health;
use crate::ingest::{self, proxy::TrustedProxies};
use crate::subject::Subject;
use crate::webhook::{self, Trigger};

#[derive(Clone)]
pub struct HttpState {
    pub engine: Arc<Engine>,
    pub wake: Arc<Notify>,
    pub webhook_token: Secret,
    pub admin_token: Secret,
    /// `STATUS_TOKEN`: reads `/status` only.
    pub status_token: Option<Secret>,
    /// `None`: `/ingest/stalwart` answers that it is not configured.
    pub stalwart_webhook_secret: Option<Secret>,
    pub trusted_proxies: TrustedProxies,
    /// How agents are reached (`mtls` or `insecure`), shown in `/healthz`.
    pub agent_transport: &'static str,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/reconcile", post(reconcile))
        .route("/reconcile-all", post(reconcile_all))
        .route("/jobs/{id}", get(job))
        .route("/metrics", get(metrics))
        .route("/status", get(crate::status_page::status))
        .route("/audit", get(crate::audit_api::http::audit))
        .route(
            "/ingest/stalwart",
            post(ingest::handler::ingest_stalwart)
                .layer(DefaultBodyLimit::max(ingest::MAX_BODY_BYTES)),
        )
        .with_state(state)
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The webhook token from `X-Authentik-Webhook-Token` or `Authorization: Bearer`.
fn presented_webhook_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-authentik-webhook-token") {
        return v.to_str().ok();
    }
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

async fn reconcile(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    if !presented_webhook_token(&headers).is_some_and(|t| state.webhook_token.matches(t)) {
        warn!("rejected /reconcile: missing or wrong token");
        return error(StatusCode::UNAUTHORIZED, "missing or wrong webhook token");
    }
    let trigger = match webhook::parse(&body) {
        Ok(t) => t,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    match trigger {
        Trigger::Ignore { reason } => (
            StatusCode::OK,
            Json(json!({ "status": "ignored", "reason": reason })),
        )
            .into_response(),
        Trigger::Reconcile { subject, event_pk } => {
            enqueue(&state, &subject, false, "webhook", event_pk.as_deref()).await
        }
    }
}

/// Whether `X-Reconciler-Admin-Token` carries the admin token (constant-time).
pub(crate) fn admin_authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    headers
        .get("x-reconciler-admin-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| state.admin_token.matches(t))
}

async fn reconcile_all(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !admin_authorized(&state, &headers) {
        warn!("rejected /reconcile-all: missing or wrong token");
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let force = headers
        .get("x-reconciler-force")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "true" || v == "1");
    enqueue(&state, &Subject::All, force, "reconcile-all", None).await
}

async fn enqueue(
    state: &HttpState,
    subject: &Subject,
    force: bool,
    trigger: &str,
    event_pk: Option<&str>,
) -> Response {
    match state
        .engine
        .store()
        .enqueue(subject, force, trigger, event_pk)
        .await
    {
        Ok(job) => {
            info!(
                job_id = job.job_id,
                %subject,
                deduplicated = job.deduplicated,
                "job accepted"
            );
            state.wake.notify_one();
            (
                StatusCode::ACCEPTED,
                Json(json!({ "job_id": job.job_id, "deduplicated": job.deduplicated })),
            )
                .into_response()
        }
        // Not durable, so not accepted: Authentik will retry.
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("job not stored: {e}"),
        ),
    }
}

/// A job's state, errors and summary name users and mailboxes: operators only.
async fn job(State(state): State<HttpState>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    if !admin_authorized(&state, &headers) {
        warn!("rejected /jobs: missing or wrong token");
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    match state.engine.store().job(id).await {
        Ok(Some(job)) => Json(job).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let mut report = health::check(&state.engine).await;
    report.agent_transport = Some(state.agent_transport);
    let status = if report.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match crate::metrics::render(&state.engine).await {
        Ok(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
