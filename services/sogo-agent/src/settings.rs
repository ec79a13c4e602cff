//! `c_settings` edits, as SOGo itself makes them (reference
//! sogo-nextcloud.md A2): delegation lives in `Mail.DelegateTo` on the
//! owner's row and `Mail.DelegateFrom` on the delegate's. `Mail` and the
//! list are created when missing, entries are never duplicated, and emptied
//! lists stay as `[]`.
//!
//! Everything else in the row belongs to SOGo (or to a person), so an edit
//! never re-serialises the document: it splices new text into the raw value
//! at the spans a JSON parser reports, and every byte outside the list
//! (numbers too large for a float, `1e2`, duplicate keys, key order,
//! whitespace, escapes) stays exactly as it was written. Where a key is
//! duplicated, the last one counts, as it does for SOGo's own parser and
//! for serde_json, which reads the lists ([`list`]).

use jsonc_parser::ast::{Array, Object, ObjectProp, Value as Node};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions, parse_to_ast};
use serde_json::{Map, Value};

pub const DELEGATE_TO: &str = "DelegateTo";
pub const DELEGATE_FROM: &str = "DelegateFrom";

/// A row's `c_settings` that is not a JSON object (or whose `Mail` or list
/// has the wrong type). We never overwrite such a row.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corrupt(pub String);

/// Parsed `c_settings`, for reading; NULL and empty mean "no settings yet".
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

/// Adds (`add`) or removes `uid` in `Mail.<list>` of the raw `c_settings`.
/// Returns the new text, or `None` when the row already says so (nothing to
/// write). A row that is not what SOGo writes is an error and is never
/// rewritten.
pub fn edit(
    raw: Option<&str>,
    list: &str,
    uid: &str,
    add: bool,
) -> Result<Option<String>, Corrupt> {
    // The strict reading decides validity and the current list, so the
    // editor below acts on exactly what SOGo and `delegations` see.
    let present = self::list(&parse(raw)?, list)?.iter().any(|d| d == uid);
    if present == add {
        // Adding what is there, or removing what is not.
        return Ok(None);
    }
    let quoted = json_string(uid);
    let text = match raw {
        Some(text) if !text.trim().is_empty() => text,
        // No settings yet: the row gets only what we write, as SOGo does.
        _ => {
            return Ok(Some(format!(
                "{{\"Mail\":{{{}:[{quoted}]}}}}",
                json_string(list)
            )));
        }
    };
    let root = parse_spans(text)?;
    let Some(Node::Object(root)) = &root else {
        return Err(Corrupt("expected a JSON object".into()));
    };
    let splice = match last_prop(root, "Mail") {
        None => insert_prop(
            root,
            &format!("\"Mail\":{{{}:[{quoted}]}}", json_string(list)),
        ),
        Some(mail) => match &mail.value {
            Node::NullKeyword(null) => Splice::replace(
                null.range(),
                format!("{{{}:[{quoted}]}}", json_string(list)),
            ),
            Node::Object(mail) => match last_prop(mail, list) {
                None => insert_prop(mail, &format!("{}:[{quoted}]", json_string(list))),
                Some(prop) => match &prop.value {
                    Node::NullKeyword(null) => Splice::replace(null.range(), format!("[{quoted}]")),
                    Node::Array(items) if add => append_item(text, items, &quoted),
                    Node::Array(items) => remove_item(text, items, uid),
                    _ => return Err(Corrupt(format!("Mail.{list} is not a list"))),
                },
            },
            _ => return Err(Corrupt("Mail is not an object".into())),
        },
    };
    Ok(Some(splice.apply(text)))
}

/// One replacement of `range` in the raw text.
struct Splice {
    start: usize,
    end: usize,
    with: String,
}

impl Splice {
    fn replace(range: jsonc_parser::common::Range, with: String) -> Self {
        Self {
            start: range.start,
            end: range.end,
            with,
        }
    }

    fn insert(at: usize, with: String) -> Self {
        Self {
            start: at,
            end: at,
            with,
        }
    }

    fn apply(self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + self.with.len());
        out.push_str(&text[..self.start]);
        out.push_str(&self.with);
        out.push_str(&text[self.end..]);
        out
    }
}

/// The document's spans. Strict JSON only: the JSONC extensions (comments,
/// trailing commas, single quotes, hex numbers…) are all refused.
fn parse_spans(text: &str) -> Result<Option<Node<'_>>, Corrupt> {
    let strict = ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    parse_to_ast(text, &CollectOptions::default(), &strict)
        .map(|parsed| parsed.value)
        .map_err(|e| Corrupt(format!("not valid JSON: {e}")))
}

/// The last property named `name` (decoded, so escapes in keys match).
fn last_prop<'a, 'b>(object: &'b Object<'a>, name: &str) -> Option<&'b ObjectProp<'a>> {
    object
        .properties
        .iter()
        .rev()
        .find(|p| p.name.as_str() == name)
}

/// Adds `"key":value` text as the object's last property.
fn insert_prop(object: &Object<'_>, prop: &str) -> Splice {
    match object.properties.last() {
        Some(last) => Splice::insert(last.end(), format!(",{prop}")),
        // Right after `{`: whatever whitespace the empty object had stays.
        None => Splice::insert(object.start() + 1, prop.to_owned()),
    }
}

/// What separates the list's items (`", "` as SOGo writes it, unless the
/// list shows otherwise).
fn separator<'t>(text: &'t str, items: &Array<'_>) -> &'t str {
    match items.elements.as_slice() {
        [first, second, ..] => &text[first.end()..second.start()],
        _ => ", ",
    }
}

fn append_item(text: &str, items: &Array<'_>, quoted: &str) -> Splice {
    match items.elements.last() {
        Some(last) => Splice::insert(last.end(), format!("{}{quoted}", separator(text, items))),
        None => Splice::insert(items.start() + 1, quoted.to_owned()),
    }
}

/// Rewrites the list without `uid`, keeping every other item's text.
fn remove_item(text: &str, items: &Array<'_>, uid: &str) -> Splice {
    let kept: Vec<&str> = items
        .elements
        .iter()
        .filter(|item| !matches!(item, Node::StringLit(s) if s.value == uid))
        .map(|item| item.text(text))
        .collect();
    let with = match (items.elements.first(), items.elements.last()) {
        (Some(first), Some(last)) if !kept.is_empty() => format!(
            "[{}{}{}]",
            &text[items.start() + 1..first.start()],
            kept.join(separator(text, items)),
            &text[last.end()..items.end() - 1],
        ),
        // Emptied: `[]`, as SOGo leaves it.
        _ => "[]".to_owned(),
    };
    Splice::replace(items.range(), with)
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(raw: &str, list: &str, uid: &str) -> Option<String> {
        edit(Some(raw), list, uid, true).unwrap()
    }

    fn remove(raw: &str, list: &str, uid: &str) -> Option<String> {
        edit(Some(raw), list, uid, false).unwrap()
    }

    #[test]
    fn add_creates_mail_and_list_in_missing_or_empty_settings() {
        let expected = r#"{"Mail":{"DelegateFrom":["alice@x.org"]}}"#;
        for raw in [None, Some(""), Some("  ")] {
            assert_eq!(
                edit(raw, DELEGATE_FROM, "alice@x.org", true)
                    .unwrap()
                    .as_deref(),
                Some(expected),
                "{raw:?}"
            );
        }
        assert_eq!(
            add("{}", DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Mail":{"DelegateTo":["bob@x.org"]}}"#
        );
        assert_eq!(
            add("{ \n }", DELEGATE_TO, "bob@x.org").unwrap(),
            "{\"Mail\":{\"DelegateTo\":[\"bob@x.org\"]} \n }"
        );
    }

    #[test]
    fn add_inserts_mail_without_touching_other_keys() {
        let raw = r#"{"Calendar": {"View": "week"}, "n": 12345678901234567890123, "e": 1e2, "d": 1, "d": 2}"#;
        assert_eq!(
            add(raw, DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Calendar": {"View": "week"}, "n": 12345678901234567890123, "e": 1e2, "d": 1, "d": 2,"Mail":{"DelegateTo":["bob@x.org"]}}"#
        );
    }

    #[test]
    fn add_inserts_the_list_into_an_existing_or_empty_mail() {
        assert_eq!(
            add(
                r#"{"Mail":{"SortingState":["arrival","0"]},"x":1.50}"#,
                DELEGATE_TO,
                "bob@x.org"
            )
            .unwrap(),
            r#"{"Mail":{"SortingState":["arrival","0"],"DelegateTo":["bob@x.org"]},"x":1.50}"#
        );
        assert_eq!(
            add(r#"{"Mail":{}}"#, DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Mail":{"DelegateTo":["bob@x.org"]}}"#
        );
        assert_eq!(
            add(r#"{"Mail":null,"y":[]}"#, DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Mail":{"DelegateTo":["bob@x.org"]},"y":[]}"#
        );
        assert_eq!(
            add(r#"{"Mail":{"DelegateTo":null}}"#, DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Mail":{"DelegateTo":["bob@x.org"]}}"#
        );
    }

    #[test]
    fn add_appends_to_an_existing_list_in_its_own_style() {
        assert_eq!(
            add(r#"{"Mail":{"DelegateTo":[]}}"#, DELEGATE_TO, "bob@x.org").unwrap(),
            r#"{"Mail":{"DelegateTo":["bob@x.org"]}}"#
        );
        assert_eq!(
            add(
                r#"{"Mail": {"DelegateTo": ["a@x.org"]}}"#,
                DELEGATE_TO,
                "b@x.org"
            )
            .unwrap(),
            r#"{"Mail": {"DelegateTo": ["a@x.org", "b@x.org"]}}"#
        );
        assert_eq!(
            add(
                "{\n  \"Mail\": {\n    \"DelegateTo\": [\n      \"a\",\n      \"b\"\n    ]\n  }\n}",
                DELEGATE_TO,
                "c"
            )
            .unwrap(),
            "{\n  \"Mail\": {\n    \"DelegateTo\": [\n      \"a\",\n      \"b\",\n      \"c\"\n    ]\n  }\n}"
        );
        assert_eq!(
            add(r#"{"Mail":{"DelegateTo":["a","b"]}}"#, DELEGATE_TO, "c").unwrap(),
            r#"{"Mail":{"DelegateTo":["a","b","c"]}}"#
        );
        assert_eq!(
            add(r#"{"Mail":{"DelegateTo":["a"]}}"#, DELEGATE_TO, "a"),
            None,
            "no duplicates"
        );
    }

    #[test]
    fn the_last_of_duplicate_keys_is_the_one_edited() {
        assert_eq!(
            add(
                r#"{"Mail":{"DelegateTo":["old"]},"Mail":{"DelegateTo":["a"],"DelegateTo":["b"]}}"#,
                DELEGATE_TO,
                "c"
            )
            .unwrap(),
            r#"{"Mail":{"DelegateTo":["old"]},"Mail":{"DelegateTo":["a"],"DelegateTo":["b", "c"]}}"#
        );
        // Present in the last one: nothing to add.
        assert_eq!(
            add(
                r#"{"Mail":{"DelegateTo":["old"]},"Mail":{"DelegateTo":["c"]}}"#,
                DELEGATE_TO,
                "c"
            ),
            None
        );
    }

    #[test]
    fn remove_keeps_the_others_and_leaves_an_empty_list_like_sogo() {
        let raw = r#"{"Mail":{"DelegateTo":["bob@x.org", "carol@x.org", 7]},"big":99999999999999999999999}"#;
        let once = remove(raw, DELEGATE_TO, "bob@x.org").unwrap();
        assert_eq!(
            once,
            r#"{"Mail":{"DelegateTo":["carol@x.org", 7]},"big":99999999999999999999999}"#
        );
        let twice = remove(&once, DELEGATE_TO, "carol@x.org").unwrap();
        assert_eq!(
            twice,
            r#"{"Mail":{"DelegateTo":[7]},"big":99999999999999999999999}"#
        );
        assert_eq!(
            remove(
                r#"{"Mail":{"DelegateTo":["last"]},"z":1}"#,
                DELEGATE_TO,
                "last"
            )
            .unwrap(),
            r#"{"Mail":{"DelegateTo":[]},"z":1}"#
        );
        assert_eq!(
            remove(r#"{"Mail":{"DelegateTo":["a","b","a"]}}"#, DELEGATE_TO, "a").unwrap(),
            r#"{"Mail":{"DelegateTo":["b"]}}"#,
            "every copy goes"
        );
        assert_eq!(
            remove(
                "{\"Mail\":{\"DelegateTo\":[\n  \"a\",\n  \"b\"\n]}}",
                DELEGATE_TO,
                "b"
            )
            .unwrap(),
            "{\"Mail\":{\"DelegateTo\":[\n  \"a\"\n]}}"
        );
    }

    #[test]
    fn a_no_op_remove_writes_nothing() {
        for raw in [
            "{}",
            r#"{"Mail":null}"#,
            r#"{"Mail":{}}"#,
            r#"{"Mail":{"DelegateTo":["bob"]}}"#,
        ] {
            assert_eq!(remove(raw, DELEGATE_TO, "carol"), None, "{raw}");
        }
        assert_eq!(edit(None, DELEGATE_TO, "carol", false).unwrap(), None);
    }

    #[test]
    fn escapes_and_unicode_are_matched_decoded_and_kept_raw() {
        // A uid SOGo wrote with escapes is the same uid.
        let raw =
            r#"{"M\u0061il":{"DelegateTo":["b\u006fb@x.org","\u00e9\/x"]},"s":"caf\u00e9 \"q\""}"#;
        assert_eq!(add(raw, DELEGATE_TO, "bob@x.org"), None);
        let out = remove(raw, DELEGATE_TO, "bob@x.org").unwrap();
        assert_eq!(
            out,
            r#"{"M\u0061il":{"DelegateTo":["\u00e9\/x"]},"s":"caf\u00e9 \"q\""}"#
        );
        // Byte offsets, not characters: multi-byte text before the edit.
        let raw = r#"{"名前":"ü","Mail":{"DelegateTo":["a"]}}"#;
        assert_eq!(
            add(raw, DELEGATE_TO, "o'neil\"x@x.org").unwrap(),
            r#"{"名前":"ü","Mail":{"DelegateTo":["a", "o'neil\"x@x.org"]}}"#
        );
    }

    #[test]
    fn surrounding_whitespace_survives() {
        assert_eq!(
            add("  {\"a\":1}\n", DELEGATE_TO, "b").unwrap(),
            "  {\"a\":1,\"Mail\":{\"DelegateTo\":[\"b\"]}}\n"
        );
    }

    #[test]
    fn corrupt_rows_are_errors() {
        for raw in [
            "{not json",
            "[1,2]",
            r#"{"Mail":["bob"]}"#,
            r#"{"Mail":{"DelegateTo":"bob"}}"#,
            // JSONC, which SOGo does not read.
            r#"{"a":1,}"#,
            "{\"a\":1 /* c */}",
        ] {
            assert!(edit(Some(raw), DELEGATE_TO, "x", true).is_err(), "{raw}");
        }
        let s = parse(Some(r#"{"Mail":{"DelegateTo":"bob"}}"#)).unwrap();
        assert!(list(&s, DELEGATE_TO).is_err());
    }
}
