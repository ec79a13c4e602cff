//! Configuration from the environment. The API key is a secret:
//! `STALWART_API_KEY` or `STALWART_API_KEY_FILE`, never logged ([`Secret`]
//! redacts itself); so is `AGENT_TOKEN`, the bearer token the coordinator
//! presents.

use std::net::SocketAddr;
use std::time::Duration;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
    /// Bearer token the coordinator presents (`AGENT_TOKEN` or `_FILE`).
    pub agent_token: Secret,
    /// `AGENT_LISTEN`, default `0.0.0.0:50055` (the agents count up from
    /// the mailcow-agent's 50051; the matrix-agent has 50054).
    pub listen: SocketAddr,
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
        let agent_token = read_secret(&lookup, "AGENT_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("AGENT_TOKEN (or AGENT_TOKEN_FILE) is required".into()))?;
        let listen = lookup("AGENT_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:50055".into())
            .parse()
            .map_err(|e| Error::Config(format!("AGENT_LISTEN: {e}")))?;
        Ok(Self {
            client: ClientConfig::new(&url, api_key)?,
            agent_token,
            listen,
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

    const AGENT: (&str, &str) = ("AGENT_TOKEN", "agent_secret");

    #[test]
    fn url_key_and_token_are_required_and_no_secret_prints() {
        let c = parse(&[
            ("STALWART_URL", "https://mail.example.com/"),
            ("STALWART_API_KEY", "api_secret"),
            AGENT,
        ])
        .unwrap();
        assert_eq!(c.client.url, "https://mail.example.com");
        assert_eq!(c.listen.port(), 50055);
        assert!(!format!("{c:?}").contains("api_secret"));
        assert!(!format!("{c:?}").contains("agent_secret"));
        assert!(parse(&[("STALWART_API_KEY", "k"), AGENT]).is_err());
        assert!(parse(&[("STALWART_URL", "https://mail.example.com"), AGENT]).is_err());
        let without_token = [
            ("STALWART_URL", "https://mail.example.com"),
            ("STALWART_API_KEY", "k"),
        ];
        assert!(matches!(parse(&without_token), Err(Error::Config(_))));
        for url in ["mail.example.com", "ftp://x", "http://"] {
            let e = parse(&[("STALWART_URL", url), ("STALWART_API_KEY", "k"), AGENT]).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{url}: {e}");
        }
        let listen = ("AGENT_LISTEN", "127.0.0.1:0");
        let url = ("STALWART_URL", "http://stalwart:8080");
        let c = parse(&[url, ("STALWART_API_KEY", "k"), AGENT, listen]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:0");
        let bad = ("AGENT_LISTEN", "nowhere");
        assert!(parse(&[url, ("STALWART_API_KEY", "k"), AGENT, bad]).is_err());
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
            AGENT,
        ])
        .unwrap();
        assert_eq!(c.client.api_key.expose(), "from-file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
