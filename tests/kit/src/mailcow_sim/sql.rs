//! MariaDB 10.11 semantics of the queries Mailcow runs: PDO binds every
//! value as a string, VARCHAR comparisons are case-insensitive, and strict
//! mode turns out-of-range values into PDOExceptions.

use std::borrow::Cow;

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

/// A VARCHAR as [`sql_eq`] compares it: two values are equal exactly when
/// their keys are (case folded, trailing spaces dropped). What an index
/// on the column is keyed by.
pub(crate) fn sql_key(s: &str) -> Cow<'_, str> {
    let s = s.trim_end_matches(' ');
    // Every index lookup builds one: a value that already is its own key
    // (lowercase ASCII, as stored addresses mostly are) is not copied.
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().flat_map(char::to_lowercase).collect())
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
    fn keys_are_equal_exactly_when_sql_eq_says_so() {
        let pairs = [
            ("Alice@Example.org", "alice@example.org", true),
            ("bob@x.org  ", "BOB@x.org", true),
            ("\u{212A}ay@x.org", "kay@x.org", true),
            ("Ünal@x.org", "ünal@X.ORG", true),
            ("alice@x.org", "alicea@x.org", false),
            (" alice@x.org", "alice@x.org", false),
        ];
        for (a, b, equal) in pairs {
            assert_eq!(sql_eq(a, b), equal, "{a} {b}");
            assert_eq!(sql_key(a) == sql_key(b), equal, "{a} {b}");
        }
    }

    #[test]
    fn mariadb_comparisons() {
        assert!(sql_eq("Team@Example.com", "team@example.com "));
        assert!(sql_int_eq(12, "12abc"));
        assert!(!sql_int_eq(12, "team@example.com"));
    }
}
