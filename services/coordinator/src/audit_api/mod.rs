//! The audit log API (`GET /audit`, gRPC `Audit`): the reconciler's own
//! changes and ingested events together. This module is what both share:
//! reading the filters, the opaque cursor and the times.
//!
//! - `since` / `before`: RFC 3339 (`2026-12-06T10:00:00Z`) or unix
//!   milliseconds; `since` inclusive, `before` exclusive.
//! - `limit`: default 100, at most 1000.
//! - The cursor is opaque to callers: pass `next_cursor` back as `cursor`.

pub mod http;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::{AuditQuery, AuditRow};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// The filters as a caller writes them (query string or gRPC fields).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    pub source: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    pub since: Option<String>,
    pub before: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
    /// `csv` for CSV (HTTP only); JSON otherwise.
    pub format: Option<String>,
}

impl Filters {
    /// The store query; an error names the parameter that is wrong. One
    /// more row than the page is asked for: it says whether a next page is.
    pub fn query(&self) -> Result<AuditQuery, String> {
        let text = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let time = |name: &str, v: &Option<String>| {
            text(v)
                .map(|t| {
                    parse_time(&t).ok_or_else(|| {
                        format!("{name}: `{t}` is neither RFC 3339 nor unix milliseconds")
                    })
                })
                .transpose()
        };
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(format!("limit: {limit} is not between 1 and {MAX_LIMIT}"));
        }
        Ok(AuditQuery {
            source: text(&self.source),
            action: text(&self.action),
            outcome: text(&self.outcome),
            actor: text(&self.actor),
            since: time("since", &self.since)?,
            before: time("before", &self.before)?,
            q: text(&self.q),
            below_id: text(&self.cursor)
                .map(|c| {
                    decode_cursor(&c).ok_or_else(|| "cursor: not a cursor this API gave".to_owned())
                })
                .transpose()?,
            limit: limit + 1,
        })
    }
}

/// A page: at most `limit` rows, and the cursor of the next page if any.
pub fn page(mut rows: Vec<AuditRow>, query: &AuditQuery) -> (Vec<AuditRow>, Option<String>) {
    let limit = (query.limit - 1).max(0) as usize;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more
        .then(|| rows.last().map(|r| encode_cursor(r.id)))
        .flatten();
    (rows, next)
}

/// Unix ms from RFC 3339 or from digits (unix ms).
pub fn parse_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
}

/// RFC 3339 in UTC with milliseconds; empty for a time out of range.
pub fn format_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

// A version prefix lets the cursor's meaning change without old cursors
// being misread; base64 keeps callers from building them.
fn encode_cursor(id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{id}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("v1:")?
        .parse()
        .ok()
}

/// A row as the API shows it: `time` beside `at`, metadata as JSON.
#[derive(Debug, Serialize)]
pub struct View {
    pub id: i64,
    pub at: i64,
    pub time: String,
    pub source: String,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub remote_ip: String,
    pub resource: String,
    pub key: String,
    pub reason: String,
    pub detail: String,
    pub job_id: i64,
    pub trace_id: String,
    pub external_id: Option<String>,
    pub received_from: String,
    pub metadata: Value,
}

impl From<AuditRow> for View {
    fn from(r: AuditRow) -> Self {
        Self {
            time: format_time(r.at),
            // A row is written by us as JSON; text that is not stays text.
            metadata: serde_json::from_str(&r.metadata).unwrap_or(Value::String(r.metadata)),
            id: r.id,
            at: r.at,
            source: r.source,
            action: r.action,
            outcome: r.outcome,
            actor: r.actor,
            remote_ip: r.remote_ip,
            resource: r.resource,
            key: r.key,
            reason: r.reason,
            detail: r.detail,
            job_id: r.job_id,
            trace_id: r.trace_id,
            external_id: r.external_id,
            received_from: r.received_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time("1796551200000"), Some(1_796_551_200_000));
        assert_eq!(parse_time("2026-12-06T10:00:00Z"), Some(1_796_551_200_000));
        assert_eq!(
            parse_time("2026-12-06T11:00:00.5+01:00"),
            Some(1_796_551_200_500)
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(format_time(1_796_551_200_500), "2026-12-06T10:00:00.5Z");
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("42"), None);
        let bad = Filters {
            cursor: Some("42".into()),
            ..Filters::default()
        };
        assert!(bad.query().unwrap_err().starts_with("cursor"));
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(Filters::default().query().unwrap().limit, DEFAULT_LIMIT + 1);
        for limit in [0, MAX_LIMIT + 1] {
            let f = Filters {
                limit: Some(limit),
                ..Filters::default()
            };
            assert!(f.query().is_err());
        }
    }
}
