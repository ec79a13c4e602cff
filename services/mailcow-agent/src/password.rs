//! App password secrets: 32 characters from the OS random source.

use rand::seq::IndexedRandom;
use rand::{TryRngCore, rngs::OsRng};
use reconciler_runtime::secrets::Secret;

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
/// No quotes, backslashes, spaces or `{`: the secret passes through JSON,
/// command lines and config files, and Mailcow stores a password that
/// starts with `{SCHEME}` as a pre-hashed value (reference mailcow.md §3.2).
const SPECIAL: &[u8] = b"!#%+-.=_~";
pub const LENGTH: usize = 32;

/// A fresh secret that satisfies any Mailcow password policy (length,
/// letters, mixed case, digits, special characters) and starts with a letter.
pub fn generate() -> Secret {
    let mut rng = OsRng.unwrap_err();
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SPECIAL].concat();
    loop {
        let mut out = Vec::with_capacity(LENGTH);
        out.push(*[LOWER, UPPER].concat().choose(&mut rng).expect("non-empty"));
        while out.len() < LENGTH {
            out.push(*all.choose(&mut rng).expect("non-empty"));
        }
        let has = |class: &[u8]| out.iter().any(|c| class.contains(c));
        if has(LOWER) && has(UPPER) && has(DIGITS) && has(SPECIAL) {
            return Secret::new(String::from_utf8(out).expect("ASCII"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_meet_every_policy_class_and_never_start_with_a_brace() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let s = generate();
            let v = s.expose();
            assert_eq!(v.len(), LENGTH);
            assert!(v.as_bytes()[0].is_ascii_alphabetic());
            assert!(!v.contains('{'));
            assert!(v.bytes().any(|c| c.is_ascii_lowercase()));
            assert!(v.bytes().any(|c| c.is_ascii_uppercase()));
            assert!(v.bytes().any(|c| c.is_ascii_digit()));
            assert!(v.bytes().any(|c| SPECIAL.contains(&c)));
            assert!(seen.insert(v.to_owned()), "secrets repeat");
        }
    }
}
