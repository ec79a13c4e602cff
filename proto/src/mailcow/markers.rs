//! How objects we create in Mailcow are recognised as ours. Both sides of
//! the Mailcow contract need these: the coordinator names objects, the
//! mailcow-agent refuses to touch objects without them.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Prefix of every app password name we create: `authentik-sync:<user>:<target>`.
pub const APP_PASSWORD_PREFIX: &str = "authentik-sync:";

/// Start of the `private_comment` of every alias we create.
pub const ALIAS_MARKER: &str = "[authentik-reconciler]";

/// The full `private_comment` written on our aliases (Mailcow allows 160 chars).
pub const ALIAS_COMMENT: &str =
    "[authentik-reconciler] managed from Authentik group attributes; manual edits are overwritten";

/// Characters that stay as they are in app password names: ones
/// Mailcow's `htmlspecialchars` never rewrites, that cannot be mistaken
/// for our `:` separator, and that Mailcow does not trim. Everything
/// else (`' & < > "`, `:`, `%`, spaces, non-ASCII) is percent-encoded.
const NAME_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'@')
    .remove(b'+')
    .remove(b'-');

/// The app password name for `user` on `target`:
/// `authentik-sync:<user>:<target>`, both percent-encoded outside
/// `[A-Za-z0-9._@+-]` so that Mailcow stores and returns it unchanged
/// (it HTML-escapes names, and re-escapes them on every edit that does
/// not resend the name: reference mailcow.md §3.2–3.4).
pub fn app_password_name(user: &str, target: &str) -> String {
    format!(
        "{APP_PASSWORD_PREFIX}{}:{}",
        utf8_percent_encode(user, NAME_KEEPS),
        utf8_percent_encode(target, NAME_KEEPS)
    )
}

/// `(user, target)` of an app password name we made, in either form:
/// - the current one, [`app_password_name`];
/// - the form used before, `authentik-sync:<user>:<target>` with both
///   raw, as given, or as Mailcow made of it: HTML-escaped once or
///   several times (`o&amp;#039;neil` for `o'neil`).
///
/// A name that reads as the current form is taken as such. The only
/// names both forms could have produced are those of users whose name
/// itself is percent-encoded text (`a%27b`); they read as the current
/// form. `None` for names without our prefix.
pub fn parse_app_password_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix(APP_PASSWORD_PREFIX)?;
    if let Some(parsed) = parse_current(rest) {
        return Some(parsed);
    }
    let raw = htmlspecialchars_decode_fully(rest);
    // The target is an address and has no `:`; the user may.
    let (user, target) = raw.rsplit_once(':')?;
    (!user.is_empty() && !target.is_empty()).then(|| (user.to_owned(), target.to_owned()))
}

/// The current-form name of an app password name we made in any form
/// ([`parse_app_password_name`]): what the name would be if we created
/// it today. Names of the same user and target compare equal this way.
pub fn canonical_app_password_name(name: &str) -> Option<String> {
    parse_app_password_name(name).map(|(user, target)| app_password_name(&user, &target))
}

/// `<user>:<target>` exactly as [`app_password_name`] writes them.
fn parse_current(rest: &str) -> Option<(String, String)> {
    let (user, target) = rest.split_once(':')?;
    let decode = |part: &str| -> Option<String> {
        let decoded = percent_decode_str(part).decode_utf8().ok()?.into_owned();
        // Only the exact encoding we produce: anything else is raw text
        // of the old form that happens to contain `%`.
        (!decoded.is_empty() && utf8_percent_encode(&decoded, NAME_KEEPS).to_string() == part)
            .then_some(decoded)
    };
    Some((decode(user)?, decode(target)?))
}

/// Undoes PHP's `htmlspecialchars` (default flags: `& < > " '` as
/// `&amp; &lt; &gt; &quot; &#039;`) until nothing changes: Mailcow may
/// have escaped a name any number of times.
fn htmlspecialchars_decode_fully(text: &str) -> String {
    let mut current = text.to_owned();
    // Each round removes at least one `&amp;` level; names are short.
    for _ in 0..64 {
        let next = htmlspecialchars_decode(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// One round of PHP's `htmlspecialchars_decode` (ENT_QUOTES).
fn htmlspecialchars_decode(text: &str) -> String {
    const ENTITIES: [(&str, char); 6] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#039;", '\''),
        ("&#39;", '\''),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match ENTITIES.iter().find(|(e, _)| rest.starts_with(e)) {
            Some((entity, c)) => {
                out.push(*c);
                rest = &rest[entity.len()..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when an alias `private_comment` says we created the alias.
pub fn is_managed_alias_comment(comment: &str) -> bool {
    comment.trim_start().starts_with(ALIAS_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: &str = "info@example.com";

    #[test]
    fn plain_usernames_keep_the_name_they_always_had() {
        assert_eq!(
            app_password_name("alice", TARGET),
            "authentik-sync:alice:info@example.com"
        );
        assert_eq!(
            app_password_name("first.last+x_y-z@corp", TARGET),
            "authentik-sync:first.last+x_y-z@corp:info@example.com"
        );
    }

    #[test]
    fn names_hold_nothing_mailcow_rewrites() {
        let name = app_password_name("o'neil & <co> \"q\" 50%: ü", TARGET);
        assert_eq!(
            name,
            "authentik-sync:o%27neil%20%26%20%3Cco%3E%20%22q%22%2050%25%3A%20%C3%BC:info@example.com"
        );
        assert!(!name.contains(['&', '<', '>', '"', '\'', ' ']));
        assert_eq!(
            parse_app_password_name(&name),
            Some(("o'neil & <co> \"q\" 50%: ü".into(), TARGET.into()))
        );
    }

    #[test]
    fn old_names_and_their_escaped_variants_are_recognised() {
        let canonical = app_password_name("o'neil", TARGET);
        for old in [
            "authentik-sync:o'neil:info@example.com",
            "authentik-sync:o&#039;neil:info@example.com",
            "authentik-sync:o&amp;#039;neil:info@example.com",
            "authentik-sync:o&amp;amp;amp;#039;neil:info@example.com",
        ] {
            assert_eq!(
                canonical_app_password_name(old).as_deref(),
                Some(canonical.as_str()),
                "{old}"
            );
        }
        assert_eq!(
            canonical_app_password_name(&canonical).as_deref(),
            Some(canonical.as_str())
        );
        // A user with `:` in the old form: the target has none.
        assert_eq!(
            parse_app_password_name("authentik-sync:a:b:info@example.com"),
            Some(("a:b".into(), TARGET.into()))
        );
        // Old raw `%` that is not our encoding stays raw.
        assert_eq!(
            parse_app_password_name("authentik-sync:50%off:info@example.com"),
            Some(("50%off".into(), TARGET.into()))
        );
        assert_eq!(
            parse_app_password_name("authentik-sync:a%41:info@example.com"),
            Some(("a%41".into(), TARGET.into()))
        );
    }

    #[test]
    fn other_names_are_not_ours() {
        for name in [
            "Thunderbird",
            "authentik-sync:",
            "authentik-sync:alice",
            "authentik-sync::info@example.com",
            "authentik-sync:alice:",
        ] {
            assert_eq!(parse_app_password_name(name), None, "{name}");
        }
    }
}
