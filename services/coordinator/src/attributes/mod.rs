//! The group attribute schema (README, "Group attributes"), parsed and validated.
//!
//! ```yaml
//! reconciler:
//!   shared_mailbox: info@example.com
//!   access: readwrite          # read | readwrite | full | [lookup, read, ...]
//!   send_as: true
//!   sogo_delegate: true
//!   nextcloud_mail: true
//!   alias: team@example.com
//!   matrix: { rooms: ["#team:example.com"] }   # see [`matrix`]
//! ```
//!
//! Validation is strict on purpose: an unknown key is usually a typo
//! (`send-as`), and silently ignoring it would revoke access.

use std::collections::BTreeSet;

pub mod matrix;
pub mod stalwart;

pub use matrix::{JoinMethod, LeaveAction, MatrixSpec};
pub use stalwart::StalwartSpec;

use reconciler_proto::address;
use serde_json::Value;

/// The eleven Dovecot ACL rights, in Dovecot's sorted output order.
pub const DOVECOT_RIGHTS: [&str; 11] = [
    "admin",
    "create",
    "delete",
    "expunge",
    "insert",
    "lookup",
    "post",
    "read",
    "write",
    "write-deleted",
    "write-seen",
];

const KNOWN_KEYS: [&str; 8] = [
    "shared_mailbox",
    "access",
    "send_as",
    "sogo_delegate",
    "nextcloud_mail",
    "alias",
    "matrix",
    "stalwart",
];

/// What one group grants its effective members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GrantSpec {
    pub shared_mailbox: Option<String>,
    /// Dovecot rights on every folder of the shared mailbox; empty = no ACL.
    pub rights: BTreeSet<String>,
    pub send_as: bool,
    pub sogo_delegate: bool,
    pub nextcloud_mail: bool,
    pub alias: Option<String>,
    /// Rooms and spaces the members are kept in.
    pub matrix: Option<MatrixSpec>,
    /// Stalwart accounts and a list for the members.
    pub stalwart: Option<StalwartSpec>,
}

/// Reads `attributes[key]`. `Ok(None)` = the group grants nothing.
pub fn parse_group_attributes(attributes: &Value, key: &str) -> Result<Option<GrantSpec>, String> {
    let Some(raw) = attributes.get(key) else {
        return Ok(None);
    };
    let Value::Object(map) = raw else {
        return Err(format!("`{key}` must be a mapping, got {}", kind(raw)));
    };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{key}.{unknown}` (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let shared_mailbox = optional_address(map.get("shared_mailbox"), "shared_mailbox")?;
    let alias = optional_address(map.get("alias"), "alias")?;
    let send_as = flag(map.get("send_as"), "send_as")?;
    let sogo_delegate = flag(map.get("sogo_delegate"), "sogo_delegate")?;
    let nextcloud_mail = flag(map.get("nextcloud_mail"), "nextcloud_mail")?;
    let rights = match map.get("access") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(access) => parse_access(access)?,
    };
    let needs_mailbox = send_as || sogo_delegate || nextcloud_mail || !rights.is_empty();
    if needs_mailbox && shared_mailbox.is_none() {
        return Err(
            "`access`, `send_as`, `sogo_delegate` and `nextcloud_mail` need `shared_mailbox`"
                .into(),
        );
    }
    let matrix = match map.get("matrix") {
        None | Some(Value::Null) => None,
        Some(value) => Some(matrix::parse_matrix(value)?),
    };
    let stalwart = match map.get("stalwart") {
        None | Some(Value::Null) => None,
        Some(value) => Some(stalwart::parse_stalwart(value)?),
    };
    if shared_mailbox.is_none() && alias.is_none() && matrix.is_none() && stalwart.is_none() {
        return Err("set at least `shared_mailbox`, `alias`, `matrix` or `stalwart`".into());
    }
    Ok(Some(GrantSpec {
        shared_mailbox,
        rights,
        send_as,
        sogo_delegate,
        nextcloud_mail,
        alias,
        matrix,
        stalwart,
    }))
}

/// `read` = lookup read; `readwrite` = everything but admin; `full` = all;
/// or an explicit list of right names.
pub fn parse_access(value: &Value) -> Result<BTreeSet<String>, String> {
    let all = || DOVECOT_RIGHTS.iter().map(|r| r.to_string());
    match value {
        Value::String(preset) => match preset.trim() {
            "read" => Ok(["lookup", "read"].iter().map(|r| r.to_string()).collect()),
            "readwrite" => Ok(all().filter(|r| r != "admin").collect()),
            "full" => Ok(all().collect()),
            other => Err(format!(
                "`access: {other}` is not a preset (read, readwrite, full) or a list of rights"
            )),
        },
        Value::Array(items) => {
            let mut rights = BTreeSet::new();
            for item in items {
                let Some(name) = item.as_str().map(str::trim) else {
                    return Err(format!(
                        "`access` entries must be strings, got {}",
                        kind(item)
                    ));
                };
                if !DOVECOT_RIGHTS.contains(&name) {
                    return Err(format!(
                        "`access` right `{name}` is not one of: {}",
                        DOVECOT_RIGHTS.join(", ")
                    ));
                }
                rights.insert(name.to_owned());
            }
            if rights.is_empty() {
                return Err("`access` list is empty".into());
            }
            Ok(rights)
        }
        other => Err(format!(
            "`access` must be a string or a list, got {}",
            kind(other)
        )),
    }
}

fn optional_address(value: Option<&Value>, field: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        // Strict: the value ends up in Mailcow URLs, doveadm arguments and
        // ledger keys. A bad one is an error for this group only.
        Some(Value::String(s)) => address::normalize(s)
            .map(Some)
            .map_err(|e| format!("`{field}: {s:?}` is not an email address we can manage: {e}")),
        Some(other) => Err(format!("`{field}` must be a string, got {}", kind(other))),
    }
}

/// YAML gives real booleans; `"true"`/`"false"` strings are accepted because
/// people quote things.
fn flag(value: Option<&Value>, field: &str) -> Result<bool, String> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!("`{field}` must be true or false, got {other}")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Option<GrantSpec>, String> {
        parse_group_attributes(&v, "reconciler")
    }

    #[test]
    fn full_spec() {
        let spec = parse(json!({"reconciler": {
            "shared_mailbox": "Info@Example.com", "access": "read", "send_as": true,
            "sogo_delegate": "true", "nextcloud_mail": false, "alias": "team@example.com"
        }}))
        .unwrap()
        .unwrap();
        assert_eq!(spec.shared_mailbox.as_deref(), Some("info@example.com"));
        assert_eq!(
            spec.rights,
            BTreeSet::from(["lookup".into(), "read".into()])
        );
        assert!(spec.send_as && spec.sogo_delegate && !spec.nextcloud_mail);
    }

    #[test]
    fn no_key_grants_nothing() {
        assert_eq!(parse(json!({"other": 1})).unwrap(), None);
    }

    #[test]
    fn presets_expand() {
        assert_eq!(parse_access(&json!("readwrite")).unwrap().len(), 10);
        assert_eq!(parse_access(&json!("full")).unwrap().len(), 11);
        assert!(parse_access(&json!(["lookup", "read", "write-seen"])).is_ok());
    }

    #[test]
    fn invalid_inputs_are_clear_errors() {
        let cases = [
            (json!({"reconciler": "x"}), "must be a mapping"),
            (
                json!({"reconciler": {"shared_mailbox": "a@b.c", "send-as": true}}),
                "unknown key",
            ),
            (
                json!({"reconciler": {"shared_mailbox": "not-an-address"}}),
                "not an email",
            ),
            (
                json!({"reconciler": {"send_as": true}}),
                "need `shared_mailbox`",
            ),
            (
                json!({"reconciler": {"shared_mailbox": "a@b.c", "access": "rw"}}),
                "not a preset",
            ),
            (
                json!({"reconciler": {"shared_mailbox": "a@b.c", "access": ["lookup", "rede"]}}),
                "`rede` is not one of",
            ),
            (
                json!({"reconciler": {"shared_mailbox": "a@b.c", "send_as": "yes"}}),
                "true or false",
            ),
            (json!({"reconciler": {}}), "at least"),
        ];
        for (input, expected) in cases {
            let err = parse(input.clone()).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
