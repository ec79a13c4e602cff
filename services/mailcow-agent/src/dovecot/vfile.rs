//! Dovecot's `dovecot-acl` file format (the vfile ACL backend), read and
//! edited the way Dovecot 2.3 does (src/plugins/acl: acl_rights_parse_line,
//! acl_right_names_parse, acl_identifier_parse).
//!
//! A line is `<id> [<letters>] [:<name> <name>…]`; `#` comments and empty
//! lines are skipped; an id holding a space is written `"…"` with `\`
//! escapes; a leading `-` on the id makes the rights negative. Several lines
//! for one id are merged, as Dovecot sorts and merges them.
//!
//! Edits replace only the lines of the identifiers they name: every other
//! line (comments included) stays byte-for-byte where it was.

use std::collections::{BTreeMap, BTreeSet};

/// Dovecot's letters for the standard rights, in its own order.
const LETTERS: [(char, &str); 11] = [
    ('l', "lookup"),
    ('r', "read"),
    ('w', "write"),
    ('s', "write-seen"),
    ('t', "write-deleted"),
    ('i', "insert"),
    ('p', "post"),
    ('e', "expunge"),
    ('k', "create"),
    ('x', "delete"),
    ('a', "admin"),
];

/// One parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// As `doveadm acl get` prints it: `user=x`, `owner`, `anyone`, …
    pub id: String,
    pub negative: bool,
    pub rights: BTreeSet<String>,
}

/// Parses one line; `Ok(None)` for comments and empty lines. An error is a
/// line Dovecot refuses too (it then fails to read the whole file).
pub fn parse_line(raw: &str) -> Result<Option<Line>, String> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (id, rest) = if let Some(quoted) = line.strip_prefix('"') {
        let (id, after) = unescape_quoted(quoted).ok_or("invalid quoted ID")?;
        match after.strip_prefix(' ') {
            Some(rest) => (id, rest),
            None if after.is_empty() => (id, after),
            None => return Err("invalid quoted ID".into()),
        }
    } else {
        match line.split_once(' ') {
            Some((id, rest)) => (id.to_owned(), rest),
            None => (line.to_owned(), ""),
        }
    };
    let rights = parse_rights(rest)?;
    let (negative, id) = match id.strip_prefix('-') {
        Some(id) => (true, id),
        None => (false, id.as_str()),
    };
    let id = canonical_id(id).ok_or_else(|| format!("unknown ID '{id}'"))?;
    Ok(Some(Line {
        id,
        negative,
        rights,
    }))
}

/// `"…"` body up to the closing quote, `\x` meaning `x`; returns the id
/// and what follows the quote.
fn unescape_quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

fn parse_rights(s: &str) -> Result<BTreeSet<String>, String> {
    let is_blank = |c: char| c == ' ' || c == '\t';
    let s = s.trim_start_matches(is_blank);
    let end = s.find([' ', '\t', ':']).unwrap_or(s.len());
    let mut rights = BTreeSet::new();
    for letter in s[..end].chars() {
        let name = LETTERS
            .iter()
            .find(|(l, _)| *l == letter)
            .map(|(_, name)| *name)
            .ok_or_else(|| format!("unknown ACL '{letter}'"))?;
        rights.insert(name.to_owned());
    }
    let rest = s[end..].trim_start_matches(is_blank);
    if !rest.is_empty() {
        let names = rest
            .strip_prefix(':')
            .ok_or("missing ':' prefix in ACL extensions")?;
        rights.extend(
            names
                .split([',', ' ', '\t'])
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(rights)
}

/// The identifier as Dovecot names it back (`anonymous` is `anyone`).
fn canonical_id(id: &str) -> Option<String> {
    let known_prefix = ["user=", "group=", "group-override="]
        .iter()
        .any(|p| id.starts_with(p));
    match id {
        "owner" | "authenticated" | "anyone" => Some(id.to_owned()),
        "anonymous" => Some("anyone".to_owned()),
        _ if known_prefix => Some(id.to_owned()),
        _ => None,
    }
}

/// Every entry of a file, merged per identifier the way Dovecot merges
/// them, rights as `doveadm acl get` names them (negative ones `-name`).
pub fn entries(content: &str) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (n, raw) in content.split('\n').enumerate() {
        let Some(line) = parse_line(raw).map_err(|e| format!("line {}: {e}", n + 1))? else {
            continue;
        };
        let rights = out.entry(line.id).or_default();
        if line.negative {
            rights.extend(line.rights.iter().map(|r| format!("-{r}")));
        } else {
            rights.extend(line.rights);
        }
    }
    Ok(out)
}

/// The line Dovecot would write for `id` with these standard rights.
fn format_line(id: &str, rights: &BTreeSet<String>) -> String {
    let letters: String = LETTERS
        .iter()
        .filter(|(_, name)| rights.contains(*name))
        .map(|(letter, _)| *letter)
        .collect();
    let named: Vec<&str> = rights
        .iter()
        .map(String::as_str)
        .filter(|r| !LETTERS.iter().any(|(_, name)| name == r))
        .collect();
    let id = if id.contains(' ') || id.starts_with('"') {
        format!("\"{}\"", id.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        id.to_owned()
    };
    if named.is_empty() {
        format!("{id} {letters}\n")
    } else {
        format!("{id} {letters}:{}\n", named.join(" "))
    }
}

/// Identifier → its new rights (`None`: remove the entry).
pub type Edits = BTreeMap<String, Option<BTreeSet<String>>>;

/// Sets (`Some`) or removes (`None`) whole entries, like `doveadm acl set`
/// and `acl delete` (both drop the id's negative rights too). The first
/// line of an id is replaced in place, its other lines dropped; an id not
/// present is appended. Every other line is kept byte-for-byte.
pub fn edit(content: &str, edits: &Edits) -> Result<String, String> {
    if let Some(bad) = edits.keys().find(|id| id.contains(['\n', '\r', '\0'])) {
        return Err(format!("identifier {bad:?} holds a line break"));
    }
    let mut out = String::with_capacity(content.len() + 64 * edits.len());
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for raw in content.split_inclusive('\n') {
        let id = parse_line(raw.strip_suffix('\n').unwrap_or(raw))
            .ok()
            .flatten()
            .map(|l| l.id);
        match id.as_deref().and_then(|id| edits.get_key_value(id)) {
            None => out.push_str(raw),
            Some((id, want)) => {
                if placed.insert(id.as_str())
                    && let Some(rights) = want
                {
                    out.push_str(&format_line(id, rights));
                }
            }
        }
    }
    for (id, want) in edits {
        if let (false, Some(rights)) = (placed.contains(id.as_str()), want) {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format_line(id, rights));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rights: &[&str]) -> BTreeSet<String> {
        rights.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn parses_letters_names_negatives_quotes_and_comments() {
        let file = "# a comment\n\
                    owner lrwstipekxa\n\
                    user=alice@x.org lr\n\
                    -user=alice@x.org w\n\
                    \"user=odd \\\"name\\\"\" l :my-right\n\
                    group=staff  lr :write-seen, post\n\
                    anonymous l\n\
                    authenticated\n\
                    \n";
        let e = entries(file).unwrap();
        assert_eq!(e["owner"].len(), 11);
        assert_eq!(e["user=alice@x.org"], set(&["lookup", "read", "-write"]));
        assert_eq!(e["user=odd \"name\""], set(&["lookup", "my-right"]));
        assert_eq!(
            e["group=staff"],
            set(&["lookup", "read", "write-seen", "post"])
        );
        assert_eq!(e["anyone"], set(&["lookup"]));
        assert!(e["authenticated"].is_empty());
    }

    #[test]
    fn refuses_what_dovecot_refuses() {
        for bad in [
            "user=a lq",
            "nobody lr",
            "\"user=a lr",
            "\"user=a\"x lr",
            "user=a lr write",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edits_keep_every_other_line_byte_for_byte() {
        let file = "# kept\r\nuser=bob@x.org  lr\nuser=alice@x.org lrw\n-user=alice@x.org s\nowner lrwstipekxa";
        let edits = BTreeMap::from([
            (
                "user=alice@x.org".to_owned(),
                Some(set(&["lookup", "read"])),
            ),
            ("user=carol@x.org".to_owned(), Some(set(&["lookup"]))),
        ]);
        assert_eq!(
            edit(file, &edits).unwrap(),
            "# kept\r\nuser=bob@x.org  lr\nuser=alice@x.org lr\nowner lrwstipekxa\nuser=carol@x.org l\n"
        );
        let removal = BTreeMap::from([("user=alice@x.org".to_owned(), None)]);
        assert_eq!(
            edit(file, &removal).unwrap(),
            "# kept\r\nuser=bob@x.org  lr\nowner lrwstipekxa"
        );
        assert_eq!(
            edit("", &removal).unwrap(),
            "",
            "removing from no file writes nothing"
        );
    }

    #[test]
    fn written_lines_read_back_as_written() {
        let all = set(&[
            "lookup",
            "read",
            "write",
            "write-seen",
            "write-deleted",
            "insert",
            "post",
            "expunge",
            "create",
            "delete",
            "admin",
        ]);
        let edits = BTreeMap::from([("user=a b@x.org".to_owned(), Some(all.clone()))]);
        let out = edit("", &edits).unwrap();
        assert_eq!(out, "\"user=a b@x.org\" lrwstipekxa\n");
        assert_eq!(entries(&out).unwrap()["user=a b@x.org"], all);
    }
}
