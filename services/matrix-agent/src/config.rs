//! Configuration from the environment. The access token is a secret:
//! `MATRIX_ACCESS_TOKEN` or `MATRIX_ACCESS_TOKEN_FILE`, never logged
//! ([`Secret`] redacts itself); so is `AGENT_TOKEN`, the bearer token the
//! coordinator presents.

use std::net::SocketAddr;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};
use crate::synapse::{ClientConfig, RateLimitPolicy};

#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
    /// `MATRIX_EXEMPT_RATELIMIT=true`: lift Synapse's rate limits for the
    /// bot at start (`override_ratelimit`); every membership event it sends
    /// otherwise counts against `rc_message`.
    pub exempt_ratelimit: bool,
    /// Bearer token the coordinator presents (`AGENT_TOKEN`).
    pub agent_token: Secret,
    /// `AGENT_LISTEN`, default `0.0.0.0:50054` (the agents count up from
    /// the mailcow-agent's 50051).
    pub listen: SocketAddr,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let homeserver = lookup("MATRIX_HOMESERVER_URL")
            .ok_or_else(|| Error::Config("MATRIX_HOMESERVER_URL is required".into()))?;
        let access_token = read_secret(&lookup, "MATRIX_ACCESS_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| {
                Error::Config(
                    "MATRIX_ACCESS_TOKEN (or MATRIX_ACCESS_TOKEN_FILE) is required".into(),
                )
            })?;
        let exempt_ratelimit = match lookup("MATRIX_EXEMPT_RATELIMIT").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "MATRIX_EXEMPT_RATELIMIT `{other}`: true or false"
                )));
            }
        };
        let agent_token = read_secret(&lookup, "AGENT_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("AGENT_TOKEN (or AGENT_TOKEN_FILE) is required".into()))?;
        let listen = lookup("AGENT_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:50054".into())
            .parse()
            .map_err(|e| Error::Config(format!("AGENT_LISTEN: {e}")))?;
        let client = ClientConfig::new(&homeserver, access_token, RateLimitPolicy::default())?;
        Ok(Self {
            client,
            exempt_ratelimit,
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

    #[test]
    fn url_and_token_are_required_and_the_token_never_prints() {
        let c = parse(&[
            ("MATRIX_HOMESERVER_URL", "http://synapse:8008/"),
            ("MATRIX_ACCESS_TOKEN", "syt_secret"),
            ("AGENT_TOKEN", "agent_secret"),
        ])
        .unwrap();
        assert_eq!(c.client.homeserver(), "http://synapse:8008");
        assert!(!c.exempt_ratelimit);
        assert_eq!(c.listen.port(), 50054);
        assert!(!format!("{c:?}").contains("syt_secret"));
        assert!(!format!("{c:?}").contains("agent_secret"));
        let agent = ("AGENT_TOKEN", "a");
        assert!(parse(&[("MATRIX_ACCESS_TOKEN", "t"), agent]).is_err());
        assert!(parse(&[("MATRIX_HOMESERVER_URL", "http://synapse:8008"), agent]).is_err());
        let without_agent_token = [
            ("MATRIX_HOMESERVER_URL", "http://synapse:8008"),
            ("MATRIX_ACCESS_TOKEN", "t"),
        ];
        assert!(parse(&without_agent_token).is_err());
    }

    #[test]
    fn bad_values_are_configuration_errors() {
        let token = ("MATRIX_ACCESS_TOKEN", "t");
        let agent = ("AGENT_TOKEN", "a");
        for url in ["synapse:8008", "ftp://synapse", "http://"] {
            let e = parse(&[("MATRIX_HOMESERVER_URL", url), token, agent]).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{url}: {e}");
        }
        let url = ("MATRIX_HOMESERVER_URL", "https://matrix.example.org");
        assert!(parse(&[url, token, agent, ("MATRIX_EXEMPT_RATELIMIT", "yes")]).is_err());
        assert!(
            parse(&[url, token, agent, ("MATRIX_EXEMPT_RATELIMIT", "true")])
                .unwrap()
                .exempt_ratelimit
        );
        assert!(parse(&[url, token, agent, ("AGENT_LISTEN", "nowhere")]).is_err());
    }
}
