//! Configuration from the environment. The API key is a secret:
//! `STALWART_API_KEY` or `STALWART_API_KEY_FILE`, never logged ([`Secret`]
//! redacts itself).

use std::time::Duration;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
}

/// Where Stalwart is and how to reach it.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `STALWART_URL`, without a trailing slash.
    pub url: String,
    /// Sent as `Authorization: Bearer` (a 0.16 API key).
    pub api_key: Secret,
    /// One request, connection included.
    pub request_timeout: Duration,
}

impl ClientConfig {
    pub fn new(url: &str, api_key: Secret) -> Result<Self> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::Config(format!("STALWART_URL `{url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::Config(format!(
                "STALWART_URL `{url}`: an http:// or https:// URL"
            )));
        }
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            api_key,
            request_timeout: Duration::from_secs(30),
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup("STALWART_URL")
            .ok_or_else(|| Error::Config("STALWART_URL is required".into()))?;
        let api_key = read_secret(&lookup, "STALWART_API_KEY")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| {
                Error::Config("STALWART_API_KEY (or STALWART_API_KEY_FILE) is required".into())
            })?;
        Ok(Self {
            client: ClientConfig::new(&url, api_key)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| env.get(k).cloned())
    }

    #[test]
    fn url_and_key_are_required_and_the_key_never_prints() {
        let c = parse(&[
            ("STALWART_URL", "https://mail.example.com/"),
            ("STALWART_API_KEY", "api_secret"),
        ])
        .unwrap();
        assert_eq!(c.client.url, "https://mail.example.com");
        assert!(!format!("{c:?}").contains("api_secret"));
        assert!(parse(&[("STALWART_API_KEY", "k")]).is_err());
        assert!(parse(&[("STALWART_URL", "https://mail.example.com")]).is_err());
        for url in ["mail.example.com", "ftp://x", "http://"] {
            let e = parse(&[("STALWART_URL", url), ("STALWART_API_KEY", "k")]).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{url}: {e}");
        }
    }

    #[test]
    fn the_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("stalwart-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "from-file\n").unwrap();
        let c = parse(&[
            ("STALWART_URL", "http://stalwart:8080"),
            ("STALWART_API_KEY_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(c.client.api_key.expose(), "from-file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
