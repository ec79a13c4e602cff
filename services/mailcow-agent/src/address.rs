//! Mail addresses as the agent accepts them: values that go into Mailcow
//! URL paths (`get/mailbox/{login}`, `get/app-passwd/all/{mailbox}`) and
//! into write bodies. A reverse proxy in front of Mailcow decodes and
//! normalises paths, so encoding alone is not enough: a value that is not a
//! plain address could still name another mailbox once decoded. Anything
//! but one local part and one domain is refused before a request is built.

use reconciler_proto::address;

use crate::error::{Error, Result};

/// `value` when it is a plain address, by the same rules the coordinator
/// applies where attributes and emails enter
/// ([`reconciler_proto::address::normalize`]), and with nothing to trim:
/// the agent sends what it was given or nothing. `what` names the value in
/// the error (`mailbox`, `login`, …).
pub fn plain<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    let refuse =
        |why: &dyn std::fmt::Display| Error::Permanent(format!("invalid {what} {value:?}: {why}"));
    if value.trim() != value {
        return Err(refuse(&"leading or trailing whitespace"));
    }
    address::normalize(value).map_err(|e| refuse(&e))?;
    Ok(value)
}

/// A numeric Mailcow id, or a plain address (`get/alias/{id or address}`).
pub fn id_or_plain<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(value);
    }
    plain(what, value)
}

/// Whether two addresses name the same mailbox (case-insensitive, IDN-normalised).
pub fn same(a: &str, b: &str) -> bool {
    address::canonical(a) == address::canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_pass() {
        for ok in [
            "info@example.com",
            "o'neil+tag@example.com",
            "first.last@sub.example.org",
            "team@bücher.example",
        ] {
            assert_eq!(plain("mailbox", ok).unwrap(), ok);
        }
    }

    #[test]
    fn hostile_values_are_refused() {
        for bad in [
            "",
            "info@example.com/../bob@example.com",
            "info@example.com%2F..%2Fbob@example.com",
            "info@example.com?x=1",
            "info@example.com#frag",
            "info@example.com\n",
            " info@example.com",
            "info@exa mple.com",
            "info\u{7f}@example.com",
            "-info@example.com",
            "a..b@example.com",
            "info@example..com",
            "info@.example.com",
            "info@example.com.",
            "info",
            "@example.com",
            "info@",
            "a@b@example.com",
            "a\\b@example.com",
            "a,b@example.com",
            "a;b@example.com",
        ] {
            let err = plain("mailbox", bad).expect_err(bad);
            assert!(matches!(err, Error::Permanent(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn ids_or_addresses() {
        assert!(id_or_plain("alias", "17").is_ok());
        assert!(id_or_plain("alias", "team@example.com").is_ok());
        assert!(id_or_plain("alias", "17/../18").is_err());
    }

    #[test]
    fn comparison_folds_case_and_idn() {
        assert!(same("Info@Example.COM", "info@example.com"));
        assert!(same("team@bücher.example", "team@xn--bcher-kva.example"));
        assert!(!same("info@example.com", "bob@example.com"));
    }
}
