//! A Stalwart webhook batch (`{"events": [{"id", "type", "createdAt",
//! "data"}]}`, reference B5) onto audit rows. Parsing is defensive: the
//! sender is a trusted peer, but a version we have not seen may send shapes
//! we do not know, and one odd event must not lose the rest of its batch.

use std::net::IpAddr;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::IngestedEvent;

/// The `source` of every row this module makes.
pub const SOURCE: &str = "stalwart";

/// A batch split into rows and the number of events that could not be read.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<IngestedEvent>,
    pub skipped: u64,
}

/// The audit action and outcome of an event type; `None` for a type we do
/// not map (kept as `stalwart.other`, its type in `reason`).
pub fn action(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "auth.success" => ("stalwart.login", "success"),
        "auth.failed" => ("stalwart.login_failed", "failure"),
        "auth.too-many-attempts" => ("stalwart.too_many_attempts", "failure"),
        "security.authentication-ban"
        | "security.abuse-ban"
        | "security.scan-ban"
        | "security.loiter-ban" => ("stalwart.ban", "blocked"),
        "security.ip-blocked" => ("stalwart.ip_blocked", "blocked"),
        "security.unauthorized" => ("stalwart.unauthorized", "failure"),
        "message-ingest.spam" => ("stalwart.spam", "flagged"),
        "delivery.delivered" => ("stalwart.delivered", "success"),
        "delivery.failed" => ("stalwart.delivery_failed", "failure"),
        "delivery.dsn-perm-fail" => ("stalwart.bounced", "failure"),
        // Stalwart emits these on their own; the `dkim.fail`, `dmarc.fail`
        // and `spf.fail` events only ever appear nested in their `result`.
        "smtp.dkim-fail" => ("stalwart.dkim_fail", "failure"),
        "smtp.dmarc-fail" => ("stalwart.dmarc_fail", "failure"),
        "smtp.spf-from-fail" | "smtp.spf-ehlo-fail" => ("stalwart.spf_fail", "failure"),
        _ => return None,
    })
}

pub const OTHER: (&str, &str) = ("stalwart.other", "info");

/// Reads a raw body. Anything but `{"events": [...]}` is one skipped
/// "event" (the sender sent something, we could not read it); each element
/// of the list that is not a usable event is skipped on its own.
pub fn parse(body: &[u8], received_from: &str, now_ms: i64) -> Batch {
    let Ok(Value::Object(mut root)) = serde_json::from_slice::<Value>(body) else {
        return Batch {
            events: Vec::new(),
            skipped: 1,
        };
    };
    let Some(Value::Array(events)) = root.remove("events") else {
        return Batch {
            events: Vec::new(),
            skipped: 1,
        };
    };
    let mut batch = Batch::default();
    for event in events {
        match row(event, received_from, now_ms) {
            Some(row) => batch.events.push(row),
            None => batch.skipped += 1,
        }
    }
    batch
}

/// One event onto a row: `None` without a usable id or type, or with a
/// `data` that is not an object. A missing or unreadable `createdAt` is the
/// time we received it: the event is still worth keeping.
fn row(event: Value, received_from: &str, now_ms: i64) -> Option<IngestedEvent> {
    let object = event.as_object()?;
    let id = scalar(object.get("id")?).filter(|id| !id.is_empty())?;
    let kind = object.get("type")?.as_str()?.trim();
    if kind.is_empty() {
        return None;
    }
    let empty = serde_json::Map::new();
    let data = match object.get("data") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(data)) => data,
        Some(_) => return None,
    };
    let at = object
        .get("createdAt")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .map_or(now_ms, |t| (t.unix_timestamp_nanos() / 1_000_000) as i64);
    let (action, outcome) = action(kind).unwrap_or(OTHER);
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| data.get(*n).and_then(scalar).filter(|v| !v.is_empty()))
            .unwrap_or_default()
    };
    let remote_ip = data
        .get("remoteIp")
        .and_then(Value::as_str)
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    Some(IngestedEvent {
        source: SOURCE,
        external_id: id,
        at,
        action,
        outcome,
        actor: field(&["accountName", "accountId"]),
        remote_ip,
        received_from: received_from.to_owned(),
        // What the event is about: the recipient of a delivery, the account
        // of a login, the domain of a failed check, the address of a block.
        key: field(&[
            "to",
            "accountName",
            "accountId",
            "domain",
            "from",
            "remoteIp",
        ]),
        reason: kind.to_owned(),
        detail: field(&["reason", "details", "code", "hostname"]),
        metadata: event.to_string(),
    })
}

/// A JSON value as text for a column: strings as they are, numbers
/// printed, lists of scalars joined; objects and nulls are not text.
fn scalar(value: &Value) -> Option<String> {
    const MAX: usize = 1000;
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::Array(_) => None,
                other => scalar(other),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null | Value::Object(_) => return None,
    };
    // A column is for reading and filtering; the whole event is in metadata.
    Some(match text.char_indices().nth(MAX) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(event: Value) -> Batch {
        parse(
            &serde_json::to_vec(&json!({ "events": [event] })).unwrap(),
            "192.0.2.9",
            7,
        )
    }

    #[test]
    fn every_required_type_has_its_own_action() {
        let required = [
            "auth.success",
            "auth.failed",
            "auth.too-many-attempts",
            "security.authentication-ban",
            "security.abuse-ban",
            "security.ip-blocked",
            "message-ingest.spam",
            "delivery.delivered",
            "delivery.failed",
            "delivery.dsn-perm-fail",
            "smtp.dkim-fail",
            "smtp.dmarc-fail",
            "smtp.spf-from-fail",
            "smtp.spf-ehlo-fail",
        ];
        for kind in required {
            let (action, _) = action(kind).unwrap_or_else(|| panic!("{kind} is not mapped"));
            assert!(
                action.starts_with("stalwart.") && action != OTHER.0,
                "{kind}"
            );
        }
        // Only nested inside `result`, never sent alone: not mapped.
        assert_eq!(action("dkim.fail"), None);
    }

    #[test]
    fn a_failed_login_becomes_a_row() {
        let batch = one(json!({
            "id": "1733500000000123042",
            "type": "auth.failed",
            "createdAt": "2026-12-06T10:00:00Z",
            "data": {"accountName": "alice@example.com", "remoteIp": "203.0.113.5",
                     "reason": "Invalid password", "spanId": 7}
        }));
        assert_eq!(batch.skipped, 0);
        let row = &batch.events[0];
        assert_eq!(row.action, "stalwart.login_failed");
        assert_eq!(row.outcome, "failure");
        assert_eq!(row.actor, "alice@example.com");
        assert_eq!(row.key, "alice@example.com");
        assert_eq!(row.remote_ip, "203.0.113.5");
        assert_eq!(row.received_from, "192.0.2.9");
        assert_eq!(row.detail, "Invalid password");
        assert_eq!(row.reason, "auth.failed");
        assert_eq!(row.external_id, "1733500000000123042");
        assert_eq!(row.at, 1_796_551_200_000);
        let metadata: Value = serde_json::from_str(&row.metadata).unwrap();
        assert_eq!(metadata["data"]["spanId"], 7);
    }

    #[test]
    fn a_delivery_is_about_its_recipients() {
        let batch = one(json!({
            "id": 42, "type": "delivery.failed", "createdAt": "bad",
            "data": {"to": ["a@x.org", "b@x.org"], "reason": "expired"}
        }));
        let row = &batch.events[0];
        assert_eq!(row.external_id, "42");
        assert_eq!(row.key, "a@x.org, b@x.org");
        assert_eq!(row.actor, "");
        // An unreadable createdAt is the time it arrived.
        assert_eq!(row.at, 7);
    }

    #[test]
    fn an_unknown_type_is_kept_as_other_with_its_type() {
        let batch = one(json!({"id": "9", "type": "queue.message-queued", "data": {}}));
        assert_eq!(batch.events[0].action, "stalwart.other");
        assert_eq!(batch.events[0].reason, "queue.message-queued");
    }

    #[test]
    fn malformed_events_are_skipped_and_counted() {
        let body = json!({"events": [
            "not an object",
            {"type": "auth.success"},
            {"id": "", "type": "auth.success"},
            {"id": {"x": 1}, "type": "auth.success"},
            {"id": "1", "type": 5},
            {"id": "2", "type": "auth.success", "data": [1]},
            {"id": "3", "type": "auth.success", "data": {"remoteIp": "not-an-ip"}},
        ]});
        let batch = parse(&serde_json::to_vec(&body).unwrap(), "", 0);
        assert_eq!(batch.skipped, 6);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].remote_ip, "");
    }

    #[test]
    fn a_body_that_is_not_a_batch_is_one_skip() {
        for body in [&b"not json"[..], b"[]", br#"{"events": {}}"#, b"{}"] {
            let batch = parse(body, "", 0);
            assert_eq!((batch.events.len(), batch.skipped), (0, 1));
        }
    }
}
