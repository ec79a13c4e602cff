//! Secrets from the environment: `NAME`, or the contents of the file named by
//! `NAME_FILE` (Docker and Kubernetes secrets). A [`Secret`] never prints its value.

use std::fmt;
use subtle::ConstantTimeEq;

/// A configuration secret. `Debug` and `Display` are redacted on purpose, so a
/// secret inside a config struct cannot reach a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value. Call sites are the only places a secret leaves this type.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison against a presented token.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Compares two byte strings without leaking where they differ. A length
/// mismatch is still revealed, which is unavoidable and harmless for tokens.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{name}_FILE points at {path}, which cannot be read: {source}")]
    File {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("set either {name} or {name}_FILE, not both")]
    Both { name: String },
}

/// Reads a secret from `name` or `name_FILE` through `lookup` (the process
/// environment in production, a map in tests). Trailing newlines of files are
/// trimmed because editors and `echo` add them.
pub fn read_secret(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
) -> Result<Option<Secret>, SecretError> {
    let file_var = format!("{name}_FILE");
    match (lookup(name), lookup(&file_var)) {
        (Some(_), Some(_)) => Err(SecretError::Both { name: name.into() }),
        (Some(value), None) => Ok(Some(Secret(value))),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|s| Some(Secret(s.trim_end_matches(['\n', '\r']).to_owned())))
            .map_err(|source| SecretError::File {
                name: name.into(),
                path,
                source,
            }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn matches_is_exact() {
        let s = Secret::new("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abd"));
        assert!(!s.matches("ab"));
        assert!(!s.matches(""));
    }

    #[test]
    fn reads_from_file_and_rejects_both() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::write(&dir, "from-file\n").unwrap();
        let env: HashMap<&str, String> = HashMap::from([("TOKEN_FILE", dir.display().to_string())]);
        let got = read_secret(|k| env.get(k).cloned(), "TOKEN")
            .unwrap()
            .unwrap();
        assert_eq!(got.expose(), "from-file");

        let env: HashMap<&str, String> = HashMap::from([
            ("TOKEN", "x".to_owned()),
            ("TOKEN_FILE", dir.display().to_string()),
        ]);
        assert!(read_secret(|k| env.get(k).cloned(), "TOKEN").is_err());
        std::fs::remove_file(dir).unwrap();
    }
}
