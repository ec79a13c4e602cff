//! MariaDB 10.11 semantics of the queries Mailcow runs: PDO binds every
//! value as a string, VARCHAR comparisons are case-insensitive, and strict
//! mode turns out-of-range values into PDOExceptions.

use super::php::{Php, Uncaught, Val, numeric_prefix};

/// What PDO binds for a value (`execute()` binds everything as a string;
/// `None` is SQL NULL).
pub(crate) fn sql_text(v: &Val) -> Option<String> {
    match v {
        Val::Null => None,
        Val::Arr(_) => Some("Array".into()),
        other => other.to_php_string(),
    }
}

/// A VARCHAR comparison under utf8mb4_general_ci: case-insensitive and,
/// with PAD SPACE, blind to trailing spaces.
pub(crate) fn sql_eq(column: &str, param: &str) -> bool {
    let (a, b) = (column.trim_end_matches(' '), param.trim_end_matches(' '));
    // Called in every table scan; the ASCII path allocates nothing.
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// A VARCHAR as a hash key under [`sql_eq`]'s rules (case-insensitive,
/// trailing spaces ignored), hashed without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caseless<'a>(pub &'a str);

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        sql_eq(self.0, other.0)
    }
}

impl Eq for Caseless<'_> {}

impl std::hash::Hash for Caseless<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Per lowercased char, ASCII or not: "K" (the Kelvin sign) equals "k".
        for c in self
            .0
            .trim_end_matches(' ')
            .chars()
            .flat_map(char::to_lowercase)
        {
            state.write_u32(c as u32);
        }
    }
}

/// An INT column against a string parameter: MariaDB converts the string to
/// a number (its numeric prefix, else 0), so `'12abc'` matches 12.
pub(crate) fn sql_int_eq(column: i64, param: &str) -> bool {
    let value = numeric_prefix(param).map_or(0.0, |(n, _)| n.as_f64());
    column as f64 == value
}

/// `(id = :x OR address = :x)` style lookups take any request value.
pub(crate) fn sql_id_matches(column: i64, v: &Val) -> bool {
    sql_text(v).is_some_and(|text| sql_int_eq(column, &text))
}

pub(crate) fn sql_str_matches(column: &str, v: &Val) -> bool {
    sql_text(v).is_some_and(|text| sql_eq(column, &text))
}

/// `TINYINT(1)` under strict mode: out-of-range values make the statement
/// fail with a PDOException.
pub(crate) fn tinyint(n: i64) -> Php<i64> {
    if (-128..=127).contains(&n) {
        Ok(n)
    } else {
        Err(Uncaught(format!(
            "SQLSTATE[22003]: Numeric value out of range: {n} for TINYINT"
        )))
    }
}

/// `VARCHAR(255)` under strict mode (MariaDB counts characters).
pub(crate) fn varchar255(s: &str) -> Php<&str> {
    if s.chars().count() <= 255 {
        Ok(s)
    } else {
        Err(Uncaught("SQLSTATE[22001]: Data too long for column".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caseless_keys_hash_alike_when_sql_eq_says_equal() {
        use std::collections::HashSet;
        let pairs = [
            ("Alice@Example.org", "alice@example.org"),
            ("bob@x.org  ", "BOB@x.org"),
            ("\u{212A}ay@x.org", "kay@x.org"),
            ("Ünal@x.org", "ünal@X.ORG"),
        ];
        for (a, b) in pairs {
            assert!(sql_eq(a, b), "{a} {b}");
            let set: HashSet<Caseless<'_>> = [Caseless(a)].into();
            assert!(set.contains(&Caseless(b)), "{a} {b}");
        }
        let set: HashSet<Caseless<'_>> = [Caseless("alice@x.org")].into();
        assert!(!set.contains(&Caseless("alicea@x.org")));
    }

    #[test]
    fn mariadb_comparisons() {
        assert!(sql_eq("Team@Example.com", "team@example.com "));
        assert!(sql_int_eq(12, "12abc"));
        assert!(!sql_int_eq(12, "team@example.com"));
    }
}
