//! Mailcow's response envelopes (reference mailcow.md §1.3, §1.4).
//!
//! Writes answer HTTP 200 for success *and* for most failures, with either an
//! array of `{type, msg, log}` messages or one generic object. A call failed
//! iff any message is `danger` or `error`; an empty body is a failure too.
//! Reads answer `{}` for "nothing" (empty list and not-found alike).

use serde::Deserialize;
use serde_json::Value;

/// One message of a write response. `msg` is an i18n key or `[key, args…]`.
#[derive(Clone, Debug, Deserialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub msg: Value,
}

impl Message {
    /// The i18n key: `"alias_added"` for both `"alias_added"` and `["alias_added", …]`.
    pub fn key(&self) -> &str {
        match &self.msg {
            Value::String(s) => s,
            Value::Array(parts) => parts.first().and_then(Value::as_str).unwrap_or(""),
            _ => "",
        }
    }

    /// The arguments after the key, as strings.
    pub fn args(&self) -> Vec<String> {
        match &self.msg {
            Value::Array(parts) => parts
                .iter()
                .skip(1)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self.kind.as_str(), "danger" | "error")
    }

    /// `key` or `key(arg, arg)`, for error messages. Never includes `log`,
    /// which echoes the request.
    pub fn describe(&self) -> String {
        let args = self.args();
        if args.is_empty() {
            self.key().to_owned()
        } else {
            format!("{}({})", self.key(), args.join(", "))
        }
    }
}

/// A parsed write response.
#[derive(Clone, Debug)]
pub struct WriteResponse {
    pub messages: Vec<Message>,
}

impl WriteResponse {
    /// Parses a write body. `None` for an empty body, `Err` for anything that
    /// is neither a message array nor a message object.
    pub fn parse(body: &str) -> Result<Option<Self>, String> {
        if body.trim().is_empty() {
            return Ok(None);
        }
        let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
        let messages = match value {
            Value::Array(items) => items
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<Vec<Message>, _>>()
                .map_err(|e| format!("unexpected message shape: {e}"))?,
            Value::Object(_) => {
                vec![serde_json::from_value(value).map_err(|e| format!("unexpected shape: {e}"))?]
            }
            other => return Err(format!("unexpected JSON {other}")),
        };
        Ok(Some(Self { messages }))
    }

    pub fn failures(&self) -> Vec<&Message> {
        self.messages.iter().filter(|m| m.is_failure()).collect()
    }

    pub fn find(&self, key: &str) -> Option<&Message> {
        self.messages.iter().find(|m| m.key() == key)
    }

    /// True for the generic `{"type":"success","msg":"Task completed"}`,
    /// which Mailcow sends when the function queued no message at all.
    pub fn is_generic_success(&self) -> bool {
        self.messages.len() == 1
            && self.messages[0].kind == "success"
            && self.messages[0].key() == "Task completed"
    }

    pub fn describe_failures(&self) -> String {
        self.failures()
            .iter()
            .map(|m| m.describe())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Reads a GET body: `None` for Mailcow's `{}` ("nothing"), else the value.
pub fn read_body(body: &str) -> Result<Option<Value>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    Ok(match &value {
        Value::Object(map) if map.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        _ => Some(value),
    })
}

/// Mailcow flags arrive as numbers, numeric strings or booleans depending on
/// version and column type; anything but a clear "on" is off.
pub fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => s.trim().parse::<i64>().is_ok_and(|n| n != 0),
        _ => false,
    }
}

/// Ids arrive as numbers or numeric strings.
pub fn id(value: Option<&Value>) -> Option<i64> {
    match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn partial_failure_is_failure() {
        let body = r#"[{"type":"danger","log":["x"],"msg":["sender_acl_invalid","a@b"]},
                       {"type":"success","log":[],"msg":["mailbox_modified","u@d"]}]"#;
        let r = WriteResponse::parse(body).unwrap().unwrap();
        assert_eq!(r.failures().len(), 1);
        assert_eq!(r.describe_failures(), "sender_acl_invalid(a@b)");
        assert!(r.find("mailbox_modified").is_some());
    }

    #[test]
    fn generic_objects_and_empty_body() {
        let r = WriteResponse::parse(r#"{"type":"success","msg":"Task completed"}"#)
            .unwrap()
            .unwrap();
        assert!(r.is_generic_success());
        let r = WriteResponse::parse(r#"{"type":"error","msg":"Cannot add item"}"#)
            .unwrap()
            .unwrap();
        assert_eq!(r.describe_failures(), "Cannot add item");
        assert!(WriteResponse::parse("").unwrap().is_none());
        assert!(WriteResponse::parse("<html>").is_err());
    }

    #[test]
    fn alias_added_id_is_a_string_argument() {
        let r = WriteResponse::parse(r#"[{"type":"success","msg":["alias_added","t@d","17"]}]"#)
            .unwrap()
            .unwrap();
        let m = r.find("alias_added").unwrap();
        assert_eq!(m.args(), vec!["t@d", "17"]);
    }

    #[test]
    fn reads_treat_empty_object_as_nothing() {
        assert!(read_body("{}").unwrap().is_none());
        assert!(read_body("[]").unwrap().is_none());
        assert!(read_body(r#"{"username":"u@d"}"#).unwrap().is_some());
    }

    #[test]
    fn lenient_flags_and_ids() {
        assert!(flag(Some(&json!(1))));
        assert!(flag(Some(&json!("1"))));
        assert!(flag(Some(&json!(true))));
        assert!(!flag(Some(&json!("0"))));
        assert!(!flag(Some(&json!("true"))));
        assert!(!flag(None));
        assert_eq!(id(Some(&json!("17"))), Some(17));
        assert_eq!(id(Some(&json!(17))), Some(17));
    }
}
