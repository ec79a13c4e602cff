//! Authentik usernames as Matrix IDs (shared by the coordinator, which maps
//! users, and the matrix-agent, which creates accounts), by the rule Synapse's SSO login uses
//! (`map_username_to_mxid_localpart` in `synapse/types/__init__.py`), so the
//! ID we compute is the one the user's first login would get:
//!
//! 1. ASCII letters are lowercased (other characters are not case-mapped);
//! 2. every UTF-8 byte outside `a-z 0-9 . _ - / +` (so `=` too) becomes
//!    `=xx`, its lowercase hex;
//! 3. a leading `_` becomes `=5f`.

/// The localpart Synapse maps `username` to.
pub fn localpart(username: &str) -> String {
    let mut out = String::with_capacity(username.len());
    for byte in username.bytes().map(|b| b.to_ascii_lowercase()) {
        if is_allowed(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("={byte:02x}"));
        }
    }
    match out.strip_prefix('_') {
        Some(rest) => format!("=5f{rest}"),
        None => out,
    }
}

/// `@<localpart>:<server_name>` for `username`.
pub fn user_id(username: &str, server_name: &str) -> String {
    format!("@{}:{server_name}", localpart(username))
}

/// The characters a localpart may hold unescaped (`=` is allowed in a
/// localpart but is the escape character, so it is escaped itself).
fn is_allowed(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-/+".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs printed by Synapse 1.163.2's own `map_username_to_mxid_localpart`.
    #[test]
    fn matches_synapse() {
        for (username, expected) in [
            ("Alice", "alice"),
            ("bob.smith", "bob.smith"),
            ("_x", "=5fx"),
            ("Jörg", "j=c3=b6rg"),
            ("a b", "a=20b"),
            ("a=b", "a=3db"),
            ("A_B", "a_b"),
            ("ü/+", "=c3=bc/+"),
            ("x@y.z", "x=40y.z"),
        ] {
            assert_eq!(localpart(username), expected, "{username}");
        }
        assert_eq!(user_id("Alice", "example.org"), "@alice:example.org");
    }
}
