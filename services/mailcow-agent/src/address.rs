//! Mail addresses as the agent accepts them: values that go into Mailcow
//! URL paths (`get/mailbox/{login}`, `get/app-passwd/all/{mailbox}`) and
//! into write bodies. A reverse proxy in front of Mailcow decodes and
//! normalises paths, so encoding alone is not enough: a value that is not a
//! plain address could still name another mailbox once decoded. Anything
//! but one local part and one domain is refused before a request is built.

use crate::error::{Error, Result};

/// Longest address SMTP allows (RFC 5321 path limit minus the brackets).
const MAX_LEN: usize = 254;

/// Characters no address we handle may contain: path and query syntax
/// (`/ \ % ? #`), and the separators Mailcow splits address lists on
/// (`, ;`). Whitespace and control characters are checked separately.
const FORBIDDEN: [char; 7] = ['/', '\\', '%', '?', '#', ',', ';'];

/// `value` when it is a plain address: exactly one `@` between a non-empty
/// local part and a domain of non-empty labels; no path or list syntax, no
/// whitespace or control characters, no leading `-`, no `..`. `what` names
/// the value in the error (`mailbox`, `login`, …).
pub fn plain<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    let refuse = |why: &str| Err(Error::Permanent(format!("invalid {what} {value:?}: {why}")));
    if value.is_empty() {
        return refuse("empty");
    }
    if value.len() > MAX_LEN {
        return refuse("longer than 254 bytes");
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || FORBIDDEN.contains(c))
    {
        return refuse(&format!("contains {c:?}"));
    }
    if value.starts_with('-') {
        return refuse("starts with '-'");
    }
    if value.contains("..") {
        return refuse("contains '..'");
    }
    let Some((local, domain)) = value.split_once('@') else {
        return refuse("no '@'");
    };
    if domain.contains('@') {
        return refuse("more than one '@'");
    }
    if local.is_empty() {
        return refuse("empty local part");
    }
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return refuse("not a domain after '@'");
    }
    if idna::domain_to_ascii(domain).is_err() {
        return refuse("the domain is not a valid (internationalised) domain name");
    }
    Ok(value)
}

/// A numeric Mailcow id, or a plain address (`get/alias/{id or address}`).
pub fn id_or_plain<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(value);
    }
    plain(what, value)
}

/// The form addresses are compared in: lower case, the domain in its
/// ASCII (IDNA) form, as Mailcow stores it.
pub fn comparable(address: &str) -> String {
    let address = address.trim();
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_lowercase());
            format!("{}@{domain}", local.to_lowercase())
        }
        None => address.to_lowercase(),
    }
}

/// Whether two addresses name the same mailbox (case-insensitive, IDN-normalised).
pub fn same(a: &str, b: &str) -> bool {
    comparable(a) == comparable(b)
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
