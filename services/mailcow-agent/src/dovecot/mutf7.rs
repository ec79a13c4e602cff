//! IMAP's modified UTF-7 (RFC 3501 §5.1.3), which Dovecot uses for folder
//! names on disk unless `mail_utf8` is set: `Ünï` is `&ANw-n&AO8-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut wide: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut wide, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            wide.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut wide, &mut out);
    out
}

/// `&<base64 of UTF-16BE, no padding>-` for a run of non-ASCII characters.
fn flush(wide: &mut Vec<u16>, out: &mut String) {
    if wide.is_empty() {
        return;
    }
    let bytes: Vec<u8> = wide.drain(..).flat_map(u16::to_be_bytes).collect();
    out.push('&');
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        let digits = chunk.len() + 1;
        for i in 0..digits {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out.push('-');
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_like_dovecot_on_disk() {
        // Directory names Dovecot 2.3 made for these folders.
        assert_eq!(encode("Ünï"), "&ANw-n&AO8-");
        assert_eq!(encode("Ä/ö ß"), "&AMQ-/&APY- &AN8-");
        assert_eq!(encode("a&b"), "a&-b");
        assert_eq!(encode("Pro jects"), "Pro jects");
        // RFC 3501's example.
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
    }
}
