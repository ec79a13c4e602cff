//! Path segments of Synapse URLs. Room IDs (`!a:b`), aliases (`#a:b`, where
//! an unencoded `#` would start a fragment), user IDs and external IDs (any
//! string at all) are percent-encoded: everything but the RFC 3986
//! unreserved characters.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, encoded when formatted.
pub(crate) fn seg(value: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(value, SEGMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_segment() {
        assert_eq!(seg("!abc:example.org").to_string(), "%21abc%3Aexample.org");
        assert_eq!(
            seg("#team:example.org").to_string(),
            "%23team%3Aexample.org"
        );
        assert_eq!(seg("../admin?x=1").to_string(), "..%2Fadmin%3Fx%3D1");
        assert_eq!(seg("@j=c3=b6rg:x").to_string(), "%40j%3Dc3%3Db6rg%3Ax");
    }
}
