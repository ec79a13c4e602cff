//! The validators Mailcow leans on: `filter_var(FILTER_VALIDATE_EMAIL)`,
//! `idn_to_ascii(..., 0, INTL_IDNA_VARIANT_UTS46)`, `is_valid_domain_name()`
//! and the API key's `ip_acl()`. They decide which sender_acl entries, goto
//! targets and client IPs are accepted, so they are reproduced closely.

use std::net::IpAddr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use super::php::str_intval;

// === FILTER_VALIDATE_EMAIL ===

/// PHP's email regex (no FILTER_FLAG_EMAIL_UNICODE), written out by hand
/// because it relies on look-aheads.
pub(crate) fn filter_email(s: &str) -> bool {
    let bytes = s.as_bytes();
    // The filter's own length limit, then the regex's two look-aheads: fewer
    // than 255 "units" overall and fewer than 65 before the `@`.
    if bytes.len() > 320 || !s.is_ascii() || units(bytes) >= 255 {
        return false;
    }
    let Some(at) = local_part_end(bytes) else {
        return false;
    };
    units(&bytes[..at]) < 65 && domain_part(&bytes[at + 1..])
}

/// Characters, counting `\x` as one and ignoring the quotes the look-ahead
/// lets each unit swallow.
fn units(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {}
            b'\\' => {
                count += 1;
                i += 1;
            }
            _ => count += 1,
        }
        i += 1;
    }
    count
}

fn is_atext(c: u8) -> bool {
    matches!(c,
        0x21 | 0x23..=0x27 | 0x2a | 0x2b | 0x2d | 0x2f..=0x39 | 0x3d | 0x3f | 0x5e..=0x7e)
        || c.is_ascii_uppercase()
}

fn is_qtext(c: u8) -> bool {
    matches!(c, 0x01..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x21 | 0x23..=0x5b | 0x5d..=0x7f)
}

/// Dot-separated atoms or quoted strings; returns the index of the `@`.
fn local_part_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i += 1;
                        break;
                    }
                    b'\\' => {
                        if *b.get(i + 1)? > 0x7f {
                            return None;
                        }
                        i += 2;
                    }
                    c if is_qtext(c) => i += 1,
                    _ => return None,
                }
            }
        } else {
            let start = i;
            while b.get(i).is_some_and(|&c| is_atext(c)) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        match b.get(i) {
            Some(b'.') => i += 1,
            Some(b'@') => return Some(i),
            _ => return None,
        }
    }
}

fn domain_part(d: &[u8]) -> bool {
    if d.first() == Some(&b'[') {
        return d.len() >= 2 && d[d.len() - 1] == b']' && domain_literal(&d[1..d.len() - 1]);
    }
    // `(?!.*[^.]{64,})`: no label of 64 or more characters.
    if d.split(|&c| c == b'.').any(|label| label.len() >= 64) {
        return false;
    }
    let labels: Vec<&[u8]> = d.split(|&c| c == b'.').collect();
    let Some((last, rest)) = labels.split_last() else {
        return false;
    };
    !rest.is_empty()
        && rest.iter().all(|label| ldh_label(label))
        && ldh_label(last)
        && last[0].is_ascii_alphabetic()
}

/// `[a-z0-9]+(-+[a-z0-9]+)*`, case-insensitively.
fn ldh_label(label: &[u8]) -> bool {
    !label.is_empty()
        && label[0].is_ascii_alphanumeric()
        && label[label.len() - 1].is_ascii_alphanumeric()
        && label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn domain_literal(inner: &[u8]) -> bool {
    let Ok(inner) = std::str::from_utf8(inner) else {
        return false;
    };
    let v6 = inner
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &inner[5..]);
    match v6 {
        None => literal_ipv4(inner),
        Some(addr) => match addr.rfind(':') {
            Some(i) if addr[i + 1..].contains('.') => {
                literal_ipv4(&addr[i + 1..]) && literal_ipv6_groups(&addr[..=i], true)
            }
            _ => literal_ipv6_groups(addr, false),
        },
    }
}

fn literal_ipv4(s: &str) -> bool {
    let octets: Vec<&str> = s.split('.').collect();
    octets.len() == 4
        && octets.iter().all(|o| {
            !o.is_empty()
                && o.len() <= 3
                && o.bytes().all(|c| c.is_ascii_digit())
                && (o.len() == 1 || !o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

fn hex_group(g: &str) -> bool {
    (1..=4).contains(&g.len()) && g.bytes().all(|c| c.is_ascii_hexdigit())
}

/// The IPv6 forms of the regex. With `ipv4_tail`, `s` is what precedes the
/// dotted quad and ends with `:`.
fn literal_ipv6_groups(s: &str, ipv4_tail: bool) -> bool {
    let groups = |part: &str| -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let parts: Vec<&str> = part.split(':').collect();
        parts.iter().all(|g| hex_group(g)).then_some(parts.len())
    };
    let (full, compressed_max) = if ipv4_tail { (6, 4) } else { (8, 6) };
    match s.split_once("::") {
        None => {
            let body = if ipv4_tail {
                match s.strip_suffix(':') {
                    Some(body) => body,
                    None => return false,
                }
            } else {
                s
            };
            groups(body) == Some(full) && !body.is_empty()
        }
        Some((left, right)) => {
            let right = if ipv4_tail {
                if right.is_empty() {
                    right
                } else {
                    match right.strip_suffix(':') {
                        Some(r) => r,
                        None => return false,
                    }
                }
            } else {
                right
            };
            match (groups(left), groups(right)) {
                (Some(l), Some(r)) => l + r <= compressed_max,
                _ => false,
            }
        }
    }
}

// === IDN ===

/// `idn_to_ascii($s, 0, INTL_IDNA_VARIANT_UTS46)`; `None` is PHP's
/// `false` (also for an empty string, which PHP 8.2 does not reject with
/// a ValueError yet).
pub(crate) fn idn_to_ascii(s: &str) -> Option<String> {
    if s.is_empty() {
        return None;
    }
    let converted = if s.is_ascii() && !s.contains("xn--") {
        ascii_uts46(s)
    } else {
        // Flags 0 mean transitional processing, which the idna crate no
        // longer offers: map the deviation characters first.
        let transitional: String = s
            .chars()
            .flat_map(|c| match c {
                'ß' | 'ẞ' => vec!['s', 's'],
                'ς' => vec!['σ'],
                '\u{200c}' | '\u{200d}' => vec![],
                c => vec![c],
            })
            .collect();
        Uts46::new()
            .to_ascii(
                transitional.as_bytes(),
                AsciiDenyList::EMPTY,
                Hyphens::Check,
                DnsLength::VerifyAllowRootDot,
            )
            .ok()
            .map(|c| c.into_owned())
    };
    // ICU writes into a 255-byte buffer.
    converted.filter(|a| a.len() < 255)
}

/// ICU's ASCII fast path: lower-case, and reject empty labels (a trailing
/// root dot is fine), leading/trailing hyphens, `??--` and over-long names.
fn ascii_uts46(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let labels: Vec<&str> = lower.split('.').collect();
    let last = labels.len() - 1;
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            if i == last && i > 0 {
                continue;
            }
            return None;
        }
        if label.starts_with('-') || label.ends_with('-') || label.len() > 63 {
            return None;
        }
        if label.len() >= 4 && &label[2..4] == "--" {
            return None;
        }
    }
    let n = lower.len();
    if n >= 254 && (n > 254 || !lower.ends_with('.')) {
        return None;
    }
    Some(lower)
}

/// `idn_to_utf8()` for `domain_h_name`.
pub(crate) fn idn_to_utf8(s: &str) -> String {
    idna::domain_to_unicode(s).0
}

/// `is_valid_domain_name()` from `functions.inc.php`.
pub(crate) fn is_valid_domain_name(s: &str) -> bool {
    if s.is_empty() || s == "0" {
        return false;
    }
    let Some(ascii) = idn_to_ascii(s) else {
        return false;
    };
    (1..=253).contains(&ascii.len())
        && ascii
            .split('.')
            .all(|label| label.len() <= 63 && ldh_label(label.as_bytes()))
}

// === IPs ===

/// `filter_var($s, FILTER_VALIDATE_IP)`.
fn filter_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `inet_pton()`: `None` for `false`.
fn inet_pton(s: &str) -> Option<Vec<u8>> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.octets().to_vec()),
        IpAddr::V6(v6) => Some(v6.octets().to_vec()),
    }
}

/// `ip_acl($ip, $networks)` from `functions.inc.php`, bugs included: a
/// plain IP is compared as text, and a CIDR suffix that is not a number
/// casts to 0, which matches every address of that family.
pub(crate) fn ip_acl(ip: &str, networks: &[String]) -> bool {
    for network in networks {
        if filter_ip(network) {
            if ip == network {
                return true;
            }
            continue;
        }
        let Some(ipb) = inet_pton(ip) else {
            continue;
        };
        let parts: Vec<&str> = network.split('/').collect();
        let Some(ip1b) = inet_pton(parts[0]) else {
            continue;
        };
        if ip1b.len() != ipb.len() {
            continue;
        }
        let mut bits = match parts.get(1) {
            Some(suffix) => str_intval(suffix),
            None => ipb.len() as i64 * 8,
        };
        let mut matched = true;
        let mut c = 0;
        // Bytes past the end read as "" (ord 0) on both sides, so stop there.
        while bits > 0 && c < ipb.len() {
            let mask: u8 = if bits < 8 {
                0xff ^ ((1u8 << (8 - bits)) - 1)
            } else {
                0xff
            };
            if (ipb[c] ^ ip1b[c]) & mask != 0 {
                matched = false;
                break;
            }
            bits -= 8;
            c += 1;
        }
        if matched {
            return true;
        }
    }
    false
}

/// `REMOTE_ADDR` after nginx `real_ip` (`set_real_ip_from` the private
/// ranges, `real_ip_header X-Forwarded-For`, `real_ip_recursive on`).
pub(crate) fn real_ip(peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
    let peer = peer.to_canonical();
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut addr = peer;
    for entry in xff.rsplit(',') {
        if !trusted_proxy(addr) {
            break;
        }
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match entry.parse::<IpAddr>() {
            Ok(ip) => addr = ip.to_canonical(),
            Err(_) => break,
        }
    }
    addr
}

fn trusted_proxy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168)
        }
        IpAddr::V6(v6) => v6.segments()[0] & 0xfe00 == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values produced by PHP 8.2.36 (`filter_var`).
    const EMAILS: &[(&str, bool)] = &[
        ("a@example.com", true),
        ("First.Last+tag@Sub.Example.COM", true),
        ("\"quoted\"@example.com", true),
        ("\"a b\"@example.com", false),
        ("\"a\\\"b\"@example.com", true),
        ("x@[127.0.0.1]", true),
        ("x@[IPv6:::1]", true),
        ("x@[IPv6:1:2:3:4:5:6:7:8]", true),
        ("x@[IPv6:1:2:3:4:5:6:7]", false),
        ("x@[IPv6::ffff:1.2.3.4]", false),
        ("x@[IPv6:1:2:3:4:5:6:1.2.3.4]", true),
        ("x@[256.1.1.1]", false),
        ("x@[01.1.1.1]", false),
        ("null@localhost", false),
        ("a@b", false),
        ("@example.com", false),
        ("a..b@example.com", false),
        (".a@example.com", false),
        ("a.@example.com", false),
        ("a@-example.com", false),
        ("a@example-.com", false),
        ("a@ex--ample.com", true),
        ("a@example.c0m-", false),
        ("a@example.1com", false),
        ("a@example.c1", true),
        ("a@1example.com", true),
        ("a b@example.com", false),
        ("ä@example.com", false),
        ("a@bücher.de", false),
        ("a@example.com\n", false),
        ("", false),
        ("a@example..com", false),
        ("a@example.com.", false),
        ("a@xn--bcher-kva.de", true),
        ("a@localhost.localdomain", true),
        ("a_b@example.com", true),
        ("a@ex_ample.com", false),
        ("a@@example.com", false),
        ("a\"b@example.com", false),
        ("a@e.x", true),
        ("a@e.x-y", true),
        ("a@e.x-", false),
        ("a@e.-x", false),
        ("(a)@example.com", false),
        ("a!#$%&'*+/=?^_`{|}~@example.com", true),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
            true,
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
            false,
        ),
        (
            "a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.com",
            true,
        ),
        (
            "a@bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.com",
            false,
        ),
    ];

    /// PHP 8.2.36 with ICU: `is_valid_domain_name()` and `idn_to_ascii()`.
    const DOMAINS: &[(&str, bool, Option<&str>)] = &[
        ("example.com", true, Some("example.com")),
        ("localhost", true, Some("localhost")),
        ("a@example.com", false, Some("a@example.com")),
        ("*", false, Some("*")),
        ("example.com.", false, Some("example.com.")),
        ("Example.COM", true, Some("example.com")),
        ("bücher.de", true, Some("xn--bcher-kva.de")),
        ("a_b.com", false, Some("a_b.com")),
        ("ab--c.com", false, None),
        ("xn--bcher-kva.de", true, Some("xn--bcher-kva.de")),
        ("-a.com", false, None),
        ("a-.com", false, None),
        ("0", false, Some("0")),
        ("1", true, Some("1")),
        ("123", true, Some("123")),
        ("a..b", false, None),
        ("", false, None),
        ("a b.com", false, Some("a b.com")),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
            true,
            Some("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com"),
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com",
            false,
            None,
        ),
        ("straße.de", true, Some("strasse.de")),
    ];

    /// PHP 8.2.36 running Mailcow's `ip_acl()`.
    const NETS: &[(&str, &str, bool)] = &[
        ("127.0.0.1", "127.0.0.1", true),
        ("10.1.2.3", "10.0.0.0/8", true),
        ("11.1.2.3", "10.0.0.0/8", false),
        ("fd00::5", "fd00::/8", true),
        ("::1", "0:0:0:0:0:0:0:1", false),
        ("8.8.8.8", "1.2.3.4/abc", true),
        ("::1", "1.2.3.4/0", false),
        ("10.0.0.1", "10.0.0.0/40", false),
        ("10.0.0.1", "10.0.0.0/-3", true),
        ("10.0.0.1", "", false),
        ("10.0.0.1", "bogus/8", false),
        ("192.168.1.7", "192.168.1.0/24", true),
        ("192.168.2.7", "192.168.1.0/24", false),
        ("192.168.1.7", "192.168.1.0/24abc", true),
        ("127.0.0.1", " 127.0.0.1", false),
    ];

    #[test]
    fn email_filter_matches_php() {
        for (email, valid) in EMAILS {
            assert_eq!(filter_email(email), *valid, "{email:?}");
        }
    }

    #[test]
    fn domain_checks_match_php() {
        for (domain, valid, ascii) in DOMAINS {
            assert_eq!(is_valid_domain_name(domain), *valid, "{domain:?}");
            assert_eq!(idn_to_ascii(domain).as_deref(), *ascii, "{domain:?}");
        }
    }

    #[test]
    fn ip_acl_matches_php() {
        for (ip, network, allowed) in NETS {
            assert_eq!(
                ip_acl(ip, &[network.to_string()]),
                *allowed,
                "{ip} in {network}"
            );
        }
    }

    #[test]
    fn real_ip_trusts_private_proxies_only() {
        let docker: IpAddr = "172.22.1.1".parse().unwrap();
        let public: IpAddr = "203.0.113.9".parse().unwrap();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        assert_eq!(real_ip(docker, Some("198.51.100.7, 10.0.0.2")), client);
        assert_eq!(real_ip(public, Some("198.51.100.7")), public);
    }
}
