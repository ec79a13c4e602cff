//! Stalwart signs a webhook body with `X-Signature`: the standard base64
//! (padded) of HMAC-SHA256 over the raw body bytes, keyed with the UTF-8
//! bytes of `signatureKey` (common/src/telemetry/webhooks/mod.rs). The raw
//! bytes are what is verified: re-serialised JSON would not match.

use base64::Engine;
use reconciler_runtime::secrets::Secret;

/// Whether `presented` is the signature of `body` under `key`. `ring`
/// compares the tags in constant time; a header that is not base64 fails
/// before any comparison, which tells an attacker nothing about the key.
pub fn verify(key: &Secret, body: &[u8], presented: Option<&str>) -> bool {
    let Some(presented) = presented.map(str::trim) else {
        return false;
    };
    let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(presented) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose().as_bytes());
    ring::hmac::verify(&key, body, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(key: &str, body: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, body).as_ref())
    }

    #[test]
    fn accepts_the_signature_of_the_exact_body() {
        let key = Secret::new("k3y");
        let body = br#"{"events":[]}"#;
        assert!(verify(&key, body, Some(&sign("k3y", body))));
    }

    #[test]
    fn a_known_vector() {
        // python3: base64.b64encode(hmac.new(b"key", b"The quick brown fox jumps
        // over the lazy dog", hashlib.sha256).digest())
        let key = Secret::new("key");
        assert!(verify(
            &key,
            b"The quick brown fox jumps over the lazy dog",
            Some("97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=")
        ));
    }

    #[test]
    fn refuses_missing_wrong_or_garbled_signatures() {
        let key = Secret::new("k3y");
        let body = br#"{"events":[]}"#;
        assert!(!verify(&key, body, None));
        assert!(!verify(&key, body, Some("")));
        assert!(!verify(&key, body, Some("not base64!")));
        assert!(!verify(&key, body, Some(&sign("other", body))));
        // The signature of another body, or of the same JSON re-serialised.
        assert!(!verify(
            &key,
            body,
            Some(&sign("k3y", br#"{"events": []}"#))
        ));
        // A truncated tag.
        let short = &sign("k3y", body)[..20];
        assert!(!verify(&key, body, Some(short)));
    }
}
