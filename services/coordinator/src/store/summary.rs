//! A job's summary across its attempts.
//!
//! Each attempt produces a report (the engine's `RunReport`, as JSON). A
//! retried job must show what *every* attempt changed, not only the last
//! one, or changes made by a failed attempt vanish from the record. The
//! stored summary is therefore:
//!
//! - at the top level, the reports of all attempts combined: every count
//!   (e.g. `outcomes["sender_acl.add.applied"]`, `transient_failures`) is the
//!   sum over attempts, lists (`warnings`) hold each distinct entry once, and
//!   any other value is the latest attempt's;
//! - `attempts_reported`: how many attempt reports were combined (an attempt
//!   that failed before it could report, e.g. Authentik down, adds none);
//! - `last_attempt`: the latest attempt's report, unchanged.
//!
//! Combining is generic over the JSON, so a count added to the report later
//! is summed without changes here.

use serde_json::{Map, Value};

const ATTEMPTS: &str = "attempts_reported";
const LAST: &str = "last_attempt";

/// The stored summary after an attempt that reported `attempt` (empty: the
/// attempt produced no report), given the stored `previous` one.
pub fn combine(previous: &str, attempt: &str) -> String {
    let Ok(Value::Object(attempt)) = serde_json::from_str::<Value>(attempt) else {
        return previous.to_owned();
    };
    let (mut total, reported) = match serde_json::from_str::<Value>(previous) {
        Ok(Value::Object(mut previous)) => {
            let reported = previous
                .remove(ATTEMPTS)
                .and_then(|v| v.as_u64())
                .unwrap_or(1);
            previous.remove(LAST);
            (Value::Object(previous), reported)
        }
        _ => (Value::Object(Map::new()), 0),
    };
    add(&mut total, Value::Object(attempt.clone()));
    if let Value::Object(total) = &mut total {
        total.insert(ATTEMPTS.into(), Value::from(reported + 1));
        total.insert(LAST.into(), Value::Object(attempt));
    }
    total.to_string()
}

/// Serializes a stored summary as the JSON object it holds (`GET
/// /jobs/<id>`), not as a string of JSON; `null` until an attempt has
/// reported. A stored summary that does not parse is an error, never shown
/// as something else.
pub fn serialize_stored<S: serde::Serializer>(
    stored: &str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    if stored.is_empty() {
        return serializer.serialize_none();
    }
    serde_json::from_str::<Value>(stored)
        .map_err(|e| serde::ser::Error::custom(format!("stored job summary: {e}")))?
        .serialize(serializer)
}

/// Adds `more` into `total`: numbers sum, objects merge key by key, lists
/// gain the entries they lack, anything else takes the newer value.
fn add(total: &mut Value, more: Value) {
    match (total, more) {
        (Value::Number(a), Value::Number(b)) => {
            let sum = match (a.as_u64(), b.as_u64(), a.as_i64(), b.as_i64()) {
                (Some(x), Some(y), _, _) => Value::from(x.saturating_add(y)),
                (_, _, Some(x), Some(y)) => Value::from(x.saturating_add(y)),
                _ => Value::from(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
            };
            if let Value::Number(n) = sum {
                *a = n;
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                match a.get_mut(&key) {
                    Some(existing) => add(existing, value),
                    None => {
                        a.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for item in b {
                if !a.contains(&item) {
                    a.push(item);
                }
            }
        }
        (total, more) => *total = more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn counts_of_every_attempt_are_summed_and_the_last_is_kept() {
        let first = json!({"planned": 2, "outcomes": {"sender_acl.add.applied": 1, "app_password.add.transient": 1},
                           "transient_failures": 1, "warnings": ["w1"]});
        let second = json!({"planned": 1, "outcomes": {"app_password.add.applied": 1},
                            "transient_failures": 0, "warnings": ["w1", "w2"]});
        let stored = combine("", &first.to_string());
        let stored = combine(&stored, &second.to_string());
        let summary = parse(&stored);
        assert_eq!(summary["outcomes"]["sender_acl.add.applied"], 1);
        assert_eq!(summary["outcomes"]["app_password.add.applied"], 1);
        assert_eq!(summary["outcomes"]["app_password.add.transient"], 1);
        assert_eq!(summary["transient_failures"], 1);
        assert_eq!(summary["planned"], 3);
        assert_eq!(summary["warnings"], json!(["w1", "w2"]));
        assert_eq!(summary["attempts_reported"], 2);
        assert_eq!(summary["last_attempt"], second);
    }

    #[derive(serde::Serialize)]
    struct Row<'a> {
        #[serde(serialize_with = "serialize_stored")]
        summary: &'a str,
    }

    #[test]
    fn a_stored_summary_is_served_as_an_object_and_none_as_null() {
        let stored = combine("", &json!({"warnings": ["w1"]}).to_string());
        let row = serde_json::to_value(Row { summary: &stored }).unwrap();
        assert_eq!(row["summary"]["warnings"], json!(["w1"]));
        assert_eq!(row["summary"]["attempts_reported"], 1);
        let row = serde_json::to_value(Row { summary: "" }).unwrap();
        assert_eq!(row, json!({"summary": null}));
        assert!(
            serde_json::to_value(Row {
                summary: "{not json"
            })
            .is_err()
        );
    }

    #[test]
    fn an_attempt_without_a_report_keeps_what_earlier_attempts_did() {
        let first = json!({"outcomes": {"alias.add.applied": 1}});
        let stored = combine("", &first.to_string());
        assert_eq!(combine(&stored, ""), stored);
        assert_eq!(combine("", ""), "");
    }
}
