//! `GET /audit` (admin token): a JSON page, or with `format=csv` every
//! matching row as RFC 4180 CSV, streamed page by page so an export of the
//! whole log never sits in memory.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::warn;

use super::{Filters, MAX_LIMIT, View, format_time, page};
use crate::http::{HttpState, admin_authorized, error};
use crate::store::{AuditQuery, AuditRow, Store};

/// The CSV columns, in order; the JSON keys of [`View`].
pub const CSV_HEADER: [&str; 17] = [
    "id",
    "at",
    "time",
    "source",
    "action",
    "outcome",
    "actor",
    "remote_ip",
    "resource",
    "key",
    "reason",
    "detail",
    "job_id",
    "trace_id",
    "external_id",
    "received_from",
    "metadata",
];

pub async fn audit(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    if !admin_authorized(&state, &headers) {
        warn!("rejected /audit: missing or wrong token");
        return error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let query = match filters.query() {
        Ok(q) => q,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let store = state.engine.store().clone();
    match filters.format.as_deref() {
        None | Some("json") => match store.audit_page(&query).await {
            Ok(rows) => {
                let (rows, next) = page(rows, &query);
                let entries: Vec<View> = rows.into_iter().map(View::from).collect();
                Json(json!({ "entries": entries, "next_cursor": next })).into_response()
            }
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        Some("csv") => csv_response(store, query),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("format: `{other}` is not json or csv"),
        ),
    }
}

/// Every row the filters match, from the cursor on (`limit` is the page
/// size of the walk, not a cap). A storage error mid-stream ends the body
/// early, which the client sees as a broken transfer, not a short file.
fn csv_response(store: Store, mut query: AuditQuery) -> Response {
    query.limit = MAX_LIMIT;
    let header = record(&CSV_HEADER.map(str::to_owned));
    let first = futures::stream::once(async move { header });
    let rows = futures::stream::try_unfold(Some((store, query)), |walk| async move {
        let Some((store, mut query)) = walk else {
            return Ok(None);
        };
        let rows = store.audit_page(&query).await?;
        let Some(last) = rows.last().map(|r| r.id) else {
            return Ok(None);
        };
        let more = rows.len() as i64 == query.limit;
        query.below_id = Some(last);
        let chunk: Vec<u8> = rows.into_iter().flat_map(csv_row).collect();
        Ok::<_, crate::Error>(Some((Bytes::from(chunk), more.then_some((store, query)))))
    });
    let body = futures::StreamExt::chain(first, rows);
    (
        [
            (
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            ),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn csv_row(r: AuditRow) -> Vec<u8> {
    let fields = [
        r.id.to_string(),
        r.at.to_string(),
        format_time(r.at),
        r.source,
        r.action,
        r.outcome,
        r.actor,
        r.remote_ip,
        r.resource,
        r.key,
        r.reason,
        r.detail,
        r.job_id.to_string(),
        r.trace_id,
        r.external_id.unwrap_or_default(),
        r.received_from,
        r.metadata,
    ];
    record(&fields).unwrap_or_default().to_vec()
}

/// One CSV record (RFC 4180: quoted when needed, CRLF line ends).
fn record(fields: &[String]) -> Result<Bytes, crate::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(fields)
        .and_then(|()| writer.flush().map_err(csv::Error::from))
        .map_err(|e| crate::Error::InvalidInput(format!("CSV: {e}")))?;
    writer
        .into_inner()
        .map(Bytes::from)
        .map_err(|e| crate::Error::InvalidInput(format!("CSV: {e}")))
}
