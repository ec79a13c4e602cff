//! `json_decode($body, true)` and `json_encode()` as PHP 8.2 does them:
//! ordered arrays with numeric-string keys turned into integers on the way
//! in; `\/` and `\uXXXX` escapes, `1.0` floats and 4-space pretty printing
//! on the way out.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::php::{Arr, Key, Val, php_gcvt};

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Val, D::Error> {
        deserializer.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_none<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Val, E> {
        Ok(Val::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Val, E> {
        Ok(Val::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Val, E> {
        // json_decode turns integers beyond PHP_INT_MAX into floats.
        Ok(i64::try_from(n).map_or(Val::Float(n as f64), Val::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Val, E> {
        Ok(Val::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Val, E> {
        Ok(Val::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Val, E> {
        Ok(Val::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut arr = Arr::new();
        while let Some(value) = seq.next_element::<Val>()? {
            arr.push(value);
        }
        Ok(Val::Arr(arr))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut arr = Arr::new();
        while let Some((key, value)) = map.next_entry::<String, Val>()? {
            // A repeated key keeps its first position and the last value.
            arr.set(Key::from_string(key), value);
        }
        Ok(Val::Arr(arr))
    }
}

/// `json_decode($body, true)`; `None` where PHP returns null (invalid JSON
/// or the literal `null`).
pub(crate) fn json_decode(body: &[u8]) -> Option<Val> {
    match serde_json::from_slice::<Val>(body) {
        Ok(Val::Null) | Err(_) => None,
        Ok(v) => Some(v),
    }
}

// === json_encode ===

/// `json_encode($v)`: compact, `\/` and `\uXXXX` escapes.
pub(crate) fn json_encode(v: &Val) -> String {
    let mut out = String::new();
    encode(v, &mut out, None, false);
    out
}

/// `json_encode($v, JSON_UNESCAPED_UNICODE | JSON_PRETTY_PRINT)`, as every
/// GET answer is printed.
pub(crate) fn json_pretty(v: &Val) -> String {
    let mut out = String::new();
    encode(v, &mut out, Some(0), true);
    out
}

fn encode(v: &Val, out: &mut String, indent: Option<usize>, raw_unicode: bool) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(n) => out.push_str(&n.to_string()),
        Val::Float(f) => out.push_str(&json_float(*f)),
        Val::Str(s) => encode_str(s, out, raw_unicode),
        Val::Arr(arr) => {
            let list = arr.is_list();
            let (open, close) = if list { ('[', ']') } else { ('{', '}') };
            out.push(open);
            if arr.is_empty() {
                out.push(close);
                return;
            }
            let inner = indent.map(|n| n + 1);
            for (i, (key, value)) in arr.entries().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, inner);
                if !list {
                    encode_str(&key.text(), out, raw_unicode);
                    out.push(':');
                    if indent.is_some() {
                        out.push(' ');
                    }
                }
                encode(value, out, inner, raw_unicode);
            }
            newline(out, indent);
            out.push(close);
        }
    }
}

fn newline(out: &mut String, indent: Option<usize>) {
    if let Some(level) = indent {
        out.push('\n');
        out.push_str(&"    ".repeat(level));
    }
}

/// `serialize_precision = -1`: the shortest round-trip digits; integral
/// floats print without a fraction (no JSON_PRESERVE_ZERO_FRACTION).
fn json_float(f: f64) -> String {
    if f.is_finite() {
        php_gcvt(f, None, 'e')
    } else {
        // json_encode fails on INF/NAN; Mailcow never produces them.
        "0".into()
    }
}

fn encode_str(s: &str, out: &mut String, raw_unicode: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // Escaped even with JSON_UNESCAPED_UNICODE (no
            // JSON_UNESCAPED_LINE_TERMINATORS).
            '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_ascii() || raw_unicode => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Val {
        json_decode(s.as_bytes()).expect("valid JSON")
    }

    #[test]
    fn decode_keeps_order_and_integer_keys() {
        let v = decode(r#"{"b":1,"0":2,"a":[1,2]}"#);
        assert_eq!(json_encode(&v), r#"{"b":1,"0":2,"a":[1,2]}"#);
        let list = decode(r#"{"0":"x","1":"y"}"#);
        assert_eq!(json_encode(&list), r#"["x","y"]"#);
        assert!(json_decode(b"null").is_none());
        assert!(json_decode(b"{").is_none());
    }

    #[test]
    fn encode_escapes_like_php() {
        let v = Val::list([Val::str("a/b é"), Val::Float(1.0), Val::Float(0.5)]);
        assert_eq!(json_encode(&v), r#"["a\/b \u00e9",1,0.5]"#);
        let pretty = Val::Arr(Arr::assoc([
            ("k", Val::str("é/")),
            ("e", Val::Arr(Arr::new())),
        ]));
        assert_eq!(
            json_pretty(&pretty),
            "{\n    \"k\": \"é\\/\",\n    \"e\": []\n}"
        );
    }
}
