//! `c_settings` edits, as SOGo itself makes them (reference
//! sogo-nextcloud.md A2): delegation lives in `Mail.DelegateTo` on the
//! owner's row and `Mail.DelegateFrom` on the delegate's. `Mail` and the
//! list are created when missing, entries are never duplicated, emptied
//! lists stay as `[]`, and every other key is kept.

use serde_json::{Map, Value};

pub const DELEGATE_TO: &str = "DelegateTo";
pub const DELEGATE_FROM: &str = "DelegateFrom";

/// A row's `c_settings` that is not a JSON object (or whose `Mail` or list
/// has the wrong type). We never overwrite such a row.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corrupt(pub String);

/// Parsed `c_settings`; NULL and empty mean "no settings yet".
pub fn parse(raw: Option<&str>) -> Result<Map<String, Value>, Corrupt> {
    match raw.map(str::trim) {
        None | Some("") => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(Corrupt(format!("expected a JSON object, found {other}"))),
            Err(e) => Err(Corrupt(format!("not valid JSON: {e}"))),
        },
    }
}

/// The uids in `Mail.<list>`.
pub fn list(settings: &Map<String, Value>, list: &str) -> Result<Vec<String>, Corrupt> {
    match settings.get("Mail") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(mail)) => match mail.get(list) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()),
            Some(other) => Err(Corrupt(format!("Mail.{list} is {other}, not a list"))),
        },
        Some(other) => Err(Corrupt(format!("Mail is {other}, not an object"))),
    }
}

fn list_mut<'a>(
    settings: &'a mut Map<String, Value>,
    list: &str,
) -> Result<&'a mut Vec<Value>, Corrupt> {
    let mail = settings
        .entry("Mail")
        .or_insert_with(|| Value::Object(Map::new()));
    if mail.is_null() {
        *mail = Value::Object(Map::new());
    }
    let Value::Object(mail) = mail else {
        return Err(Corrupt("Mail is not an object".into()));
    };
    let entries = mail.entry(list).or_insert_with(|| Value::Array(Vec::new()));
    if entries.is_null() {
        *entries = Value::Array(Vec::new());
    }
    match entries {
        Value::Array(items) => Ok(items),
        _ => Err(Corrupt(format!("Mail.{list} is not a list"))),
    }
}

/// Adds `uid` to `Mail.<list>`; true when something changed.
pub fn add(settings: &mut Map<String, Value>, list: &str, uid: &str) -> Result<bool, Corrupt> {
    let items = list_mut(settings, list)?;
    if items.iter().any(|v| v.as_str() == Some(uid)) {
        return Ok(false);
    }
    items.push(Value::String(uid.to_owned()));
    Ok(true)
}

/// Removes `uid` from `Mail.<list>` (leaving `[]`); true when something changed.
pub fn remove(settings: &mut Map<String, Value>, list: &str, uid: &str) -> Result<bool, Corrupt> {
    if self::list(settings, list)?.iter().all(|v| v != uid) {
        return Ok(false);
    }
    let items = list_mut(settings, list)?;
    items.retain(|v| v.as_str() != Some(uid));
    Ok(true)
}

pub fn to_text(settings: &Map<String, Value>) -> String {
    Value::Object(settings.clone()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_creates_mail_and_list_and_keeps_other_keys() {
        let mut s = parse(Some(
            r#"{"Calendar":{"View":"week"},"Mail":{"SortingState":["arrival","0"]}}"#,
        ))
        .unwrap();
        assert!(add(&mut s, DELEGATE_TO, "bob@x.org").unwrap());
        assert!(
            !add(&mut s, DELEGATE_TO, "bob@x.org").unwrap(),
            "no duplicates"
        );
        assert_eq!(
            Value::Object(s),
            json!({"Calendar":{"View":"week"},"Mail":{"SortingState":["arrival","0"],"DelegateTo":["bob@x.org"]}})
        );
        let mut empty = parse(None).unwrap();
        assert!(add(&mut empty, DELEGATE_FROM, "alice@x.org").unwrap());
        assert_eq!(
            to_text(&empty),
            r#"{"Mail":{"DelegateFrom":["alice@x.org"]}}"#
        );
    }

    #[test]
    fn remove_leaves_an_empty_list_like_sogo() {
        let mut s = parse(Some(
            r#"{"Mail":{"DelegateTo":["bob@x.org","carol@x.org"]}}"#,
        ))
        .unwrap();
        assert!(remove(&mut s, DELEGATE_TO, "bob@x.org").unwrap());
        assert!(remove(&mut s, DELEGATE_TO, "carol@x.org").unwrap());
        assert!(!remove(&mut s, DELEGATE_TO, "carol@x.org").unwrap());
        assert_eq!(to_text(&s), r#"{"Mail":{"DelegateTo":[]}}"#);
        let mut none = parse(Some("{}")).unwrap();
        assert!(!remove(&mut none, DELEGATE_TO, "bob@x.org").unwrap());
        assert_eq!(to_text(&none), "{}", "nothing created by a no-op remove");
    }

    #[test]
    fn corrupt_rows_are_errors() {
        assert!(parse(Some("{not json")).is_err());
        assert!(parse(Some("[1,2]")).is_err());
        let mut s = parse(Some(r#"{"Mail":["bob"]}"#)).unwrap();
        assert!(add(&mut s, DELEGATE_TO, "x").is_err());
        let s = parse(Some(r#"{"Mail":{"DelegateTo":"bob"}}"#)).unwrap();
        assert!(list(&s, DELEGATE_TO).is_err());
    }
}
