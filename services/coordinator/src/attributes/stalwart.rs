//! The `stalwart` part of a group's attributes (README, "Stalwart"):
//!
//! ```yaml
//! reconciler:
//!   stalwart:
//!     mailbox: true            # members get a Stalwart account for their email
//!     quota: 5G                # optional (K, M, G, T are powers of 1024)
//!     list: team@example.com   # optional: a list of the effective members
//! ```
//!
//! And on a user, `reconciler.mail_aliases: [a@example.com, …]`: the
//! aliases of their account.

use reconciler_proto::address;
use serde_json::Value;

use super::{flag, kind, optional_address};

const KNOWN_KEYS: [&str; 3] = ["mailbox", "quota", "list"];

/// What one group provisions in Stalwart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StalwartSpec {
    pub mailbox: bool,
    /// Bytes.
    pub quota: Option<u64>,
    pub list: Option<String>,
}

pub fn parse_stalwart(value: &Value) -> Result<StalwartSpec, String> {
    let Value::Object(map) = value else {
        return Err(format!("`stalwart` must be a mapping, got {}", kind(value)));
    };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `stalwart.{unknown}` (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let mailbox = flag(map.get("mailbox"), "stalwart.mailbox")?;
    let quota = match map.get("quota") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_quota(value).map_err(|e| format!("`stalwart.quota`: {e}"))?),
    };
    let list = optional_address(map.get("list"), "stalwart.list")?;
    if quota.is_some() && !mailbox {
        return Err("`stalwart.quota` needs `stalwart.mailbox: true`".into());
    }
    if !mailbox && list.is_none() {
        return Err("`stalwart` needs `mailbox: true` or a `list`".into());
    }
    Ok(StalwartSpec {
        mailbox,
        quota,
        list,
    })
}

/// `5G`, `500M`, `1T`, `1024K` (powers of 1024), or a number of bytes.
pub fn parse_quota(value: &Value) -> Result<u64, String> {
    let text = match value {
        Value::Number(n) => {
            return n
                .as_u64()
                .ok_or_else(|| format!("{n} is not a number of bytes"));
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("must be a size like 5G, got {}", kind(other))),
    };
    let bad = || format!("`{text}` is not a size like 5G, 500M or a number of bytes");
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    number.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// A user's `mail_aliases` (under the attribute key): the aliases of their
/// Stalwart account. Each must be an address we can manage.
pub fn parse_mail_aliases(attributes: &Value, key: &str) -> Result<Vec<String>, String> {
    let Some(raw) = attributes.get(key).and_then(|v| v.get("mail_aliases")) else {
        return Ok(Vec::new());
    };
    let items = match raw {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "`{key}.mail_aliases` must be a list, got {}",
                kind(other)
            ));
        }
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => address::normalize(s)
                .map_err(|e| format!("`{key}.mail_aliases`: `{s}` is not an address: {e}")),
            other => Err(format!(
                "`{key}.mail_aliases` entries must be strings, got {}",
                kind(other)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_spec() {
        let spec =
            parse_stalwart(&json!({"mailbox": true, "quota": "5G", "list": "Team@Example.com"}))
                .unwrap();
        assert!(spec.mailbox);
        assert_eq!(spec.quota, Some(5 << 30));
        assert_eq!(spec.list.as_deref(), Some("team@example.com"));
    }

    #[test]
    fn sizes() {
        for (input, bytes) in [
            (json!("500M"), 500u64 << 20),
            (json!("1T"), 1 << 40),
            (json!("2 GiB"), 2 << 30),
            (json!("1024K"), 1 << 20),
            (json!(4096), 4096),
            (json!("4096"), 4096),
        ] {
            assert_eq!(parse_quota(&input).unwrap(), bytes, "{input}");
        }
        assert!(parse_quota(&json!("5X")).is_err());
        assert!(parse_quota(&json!("-1")).is_err());
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for (input, expected) in [
            (
                json!({"mailbox": true, "quotas": "5G"}),
                "unknown key `stalwart.quotas`",
            ),
            (json!({"mailbox": "yes"}), "true or false"),
            (json!({"quota": "5G"}), "needs `stalwart.mailbox: true`"),
            (json!({}), "needs `mailbox: true` or a `list`"),
            (json!({"list": "not-an-address"}), "not an email address"),
        ] {
            let err = parse_stalwart(&input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }

    #[test]
    fn mail_aliases() {
        let attrs = json!({"reconciler": {"mail_aliases": ["A@example.com", "b@example.com"]}});
        assert_eq!(
            parse_mail_aliases(&attrs, "reconciler").unwrap(),
            ["a@example.com", "b@example.com"]
        );
        assert!(
            parse_mail_aliases(&json!({}), "reconciler")
                .unwrap()
                .is_empty()
        );
        let bad = json!({"reconciler": {"mail_aliases": "a@example.com"}});
        assert!(parse_mail_aliases(&bad, "reconciler").is_err());
    }
}
