//! `POST /ingest/stalwart`: Stalwart's signed webhook batches into the
//! audit log.
//!
//! - Not configured (`STALWART_WEBHOOK_SECRET` unset): 404, saying so.
//!   Unsigned events are never accepted, so there is no "open" mode.
//! - Missing or wrong `X-Signature`: 401, nothing read or written.
//! - Body over [`super::MAX_BODY_BYTES`]: 413 (the route's body limit).
//! - Otherwise 200 `{"received", "duplicates", "skipped"}`; a storage error
//!   is 503 with nothing written, and Stalwart sends the batch again.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{info, warn};

use super::{signature, stalwart};
use crate::http::{HttpState, error};
use crate::store::now_millis;

pub async fn ingest_stalwart(
    State(state): State<HttpState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = state.stalwart_webhook_secret.as_ref() else {
        return error(
            StatusCode::NOT_FOUND,
            "Stalwart webhook ingest is not configured (set STALWART_WEBHOOK_SECRET)",
        );
    };
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let from = peer
        .map(|axum::Extension(ConnectInfo(addr))| {
            state
                .trusted_proxies
                .client(addr.ip(), &forwarded)
                .to_string()
        })
        .unwrap_or_default();
    let presented = headers.get("x-signature").and_then(|v| v.to_str().ok());
    if !signature::verify(secret, &body, presented) {
        warn!(
            from,
            signed = presented.is_some(),
            "rejected /ingest/stalwart: missing or wrong signature"
        );
        return error(StatusCode::UNAUTHORIZED, "missing or wrong X-Signature");
    }
    let batch = stalwart::parse(&body, &from, now_millis());
    match state.engine.store().ingest(&batch.events).await {
        Ok(done) => {
            info!(
                from,
                received = done.new,
                duplicates = done.duplicates,
                skipped = batch.skipped,
                "Stalwart events ingested"
            );
            Json(json!({
                "received": done.new,
                "duplicates": done.duplicates,
                "skipped": batch.skipped,
            }))
            .into_response()
        }
        Err(e) => {
            warn!(from, error = %e, "Stalwart events not stored; the sender will retry");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("events not stored: {e}"),
            )
        }
    }
}
