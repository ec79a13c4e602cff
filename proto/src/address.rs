//! Mail addresses as every part of the system compares and sends them.
//!
//! An address that reaches a Mailcow URL, a `doveadm` argument or a ledger
//! key must be one local part and one domain, nothing else: a `/` or `%`
//! survives path-segment encoding only until a reverse proxy decodes and
//! normalises the path, and then `x@example.com/../other@example.com` reads
//! another mailbox. So values are validated strictly where they enter
//! (group attributes, Authentik emails) and compared in one canonical form:
//! lower case, the domain in the ASCII (IDNA) form Mailcow stores.

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Why a value is not an address we will send anywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// Not exactly one `@` with something on both sides.
    Shape,
    /// A character no address we manage may contain (shown escaped).
    Character(String),
    /// The local part is longer than 64 bytes, starts with `-` or `.`,
    /// ends with `.` or contains `..`.
    LocalPart,
    /// The domain is not a valid (internationalised) domain name.
    Domain,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shape => f.write_str("needs exactly one `@` between a local part and a domain"),
            Self::Character(c) => write!(f, "contains {c}, which no managed address may contain"),
            Self::LocalPart => f.write_str(
                "its local part is empty, longer than 64 characters, starts with `-` or `.`, \
                 ends with `.` or contains `..`",
            ),
            Self::Domain => f.write_str("its domain is not a valid domain name"),
        }
    }
}

impl std::error::Error for AddressError {}

/// Characters allowed in a local part besides ASCII letters and digits.
/// Deliberately narrower than RFC 5322: nothing that means something in a
/// URL path or query (`/ % ? #`), in our ledger keys (`|`), in a shell, or
/// in Mailcow's address lists (`, ;` and whitespace).
const LOCAL_PUNCTUATION: &str = ".!$&'*+=^_~-";

/// The canonical form of `raw`, or why it is not a manageable address.
pub fn normalize(raw: &str) -> Result<String, AddressError> {
    let trimmed = raw.trim();
    if let Some(bad) = trimmed
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "/%?#|,;\\\"<>()[]{}:`".contains(*c))
    {
        return Err(AddressError::Character(format!("{:?}", bad)));
    }
    let (local, domain) = trimmed.split_once('@').ok_or(AddressError::Shape)?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err(AddressError::Shape);
    }
    let local = local.to_ascii_lowercase();
    if let Some(bad) = local
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !LOCAL_PUNCTUATION.contains(*c))
    {
        return Err(AddressError::Character(format!("{:?}", bad)));
    }
    if local.len() > 64
        || local.starts_with('-')
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(AddressError::LocalPart);
    }
    Ok(format!("{local}@{}", normalize_domain(domain)?))
}

/// A domain in the ASCII form Mailcow stores: PHP's
/// `idn_to_ascii($d, 0, INTL_IDNA_VARIANT_UTS46)`, which applies the
/// transitional mappings (`ß` → `ss`), lower-cased.
pub fn normalize_domain(raw: &str) -> Result<String, AddressError> {
    let transitional: String = raw
        .trim()
        .chars()
        .flat_map(|c| match c {
            'ß' | 'ẞ' => "ss".chars().collect::<Vec<_>>(),
            'ς' => vec!['σ'],
            '\u{200c}' | '\u{200d}' => vec![],
            c => vec![c],
        })
        .collect();
    let ascii = Uts46::new()
        .to_ascii(
            transitional.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Check,
            DnsLength::Verify,
        )
        .map_err(|_| AddressError::Domain)?
        .to_ascii_lowercase();
    let labels: Vec<&str> = ascii.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if labels.len() < 2 || !labels.iter().all(label_ok) || !tld_ok || ascii.len() > 253 {
        return Err(AddressError::Domain);
    }
    Ok(ascii)
}

/// For values read back from a target: the canonical form when it is an
/// address, else the trimmed, lower-cased value (so it never equals a
/// canonical address by accident, and is still shown as it was).
pub fn canonical(raw: &str) -> String {
    normalize(raw).unwrap_or_else(|_| raw.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_are_lower_cased() {
        assert_eq!(normalize(" Info@Example.COM ").unwrap(), "info@example.com");
        assert_eq!(
            normalize("o'neil+x@example.com").unwrap(),
            "o'neil+x@example.com"
        );
    }

    #[test]
    fn international_domains_take_mailcow_s_ascii_form() {
        assert_eq!(
            normalize("team@bücher.example").unwrap(),
            "team@xn--bcher-kva.example"
        );
        assert_eq!(
            normalize("team@XN--BCHER-KVA.example").unwrap(),
            "team@xn--bcher-kva.example"
        );
        // Transitional processing, as PHP's idn_to_ascii(…, 0, UTS46).
        assert_eq!(normalize("a@straße.example").unwrap(), "a@strasse.example");
    }

    #[test]
    fn hostile_values_are_rejected() {
        for raw in [
            "x@example.com/../y@example.com",
            "x@example.com%2F..%2Fy@example.com",
            "x%40example.com@example.com",
            "x@example.com?a=b",
            "x@example.com#frag",
            "x@exa mple.com",
            "x@example.com\nBcc: y@example.com",
            "-x@example.com",
            "x..y@example.com",
            ".x@example.com",
            "x.@example.com",
            "x@-example.com",
            "x@example",
            "x@example.123",
            "x@@example.com",
            "x@y@example.com",
            "@example.com",
            "x@",
            "x|y@example.com",
            "x;y@example.com",
            "x,y@example.com",
            "x\u{0}@example.com",
            "x@exa_mple.com",
            "ü@example.com",
            "",
        ] {
            assert!(normalize(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn canonical_keeps_non_addresses_recognisable() {
        assert_eq!(
            canonical("Team@Bücher.Example"),
            "team@xn--bcher-kva.example"
        );
        assert_eq!(canonical("Not An Address"), "not an address");
    }
}
