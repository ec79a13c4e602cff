//! Configuration from the environment. `MAILCOW_API_KEY` may also be given
//! as `MAILCOW_API_KEY_FILE`. Parsing takes a lookup function so it is tested
//! without touching the process environment.

use std::net::SocketAddr;
use std::time::Duration;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL of Mailcow, without `/api/v1`.
    pub mailcow_url: String,
    /// A read-write Mailcow API key. Only this process holds it.
    pub api_key: Secret,
    /// Bearer token the coordinator presents (`AGENT_TOKEN`).
    pub agent_token: Secret,
    pub listen: SocketAddr,
    pub timeout: Duration,
    /// Accept a self-signed Mailcow certificate (lab setups only).
    pub tls_insecure: bool,
    /// How doveadm is reached; `None` disables mailbox ACLs.
    pub doveadm: Option<Doveadm>,
    /// Mailcow writes in flight at once within one Apply call
    /// (`MAILCOW_CONCURRENCY`); one object still gets one change at a time.
    pub concurrency: usize,
}

/// `MAILCOW_CONCURRENCY` when unset. Mailcow's API runs in its php-fpm
/// `web-worker` pool (`pm.max_children = 50`), shared with its UI: one
/// Apply call's 8 writes take a sixth of it (another run's observe reads,
/// 8 at a time too, may come beside them). At 4 a cold batch
/// cannot be 4× faster than a sequential script making the same requests
/// (docs/BENCHMARKS.md, "Alias job").
pub const DEFAULT_CONCURRENCY: usize = 8;

/// Where doveadm runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Doveadm {
    /// `docker exec` into this container over the Docker API (`DOCKER_HOST`).
    Docker {
        container: String,
        user: Option<String>,
    },
    /// On this host (Dovecot installed without containers), running
    /// `command` (default `doveadm`; e.g. `sudo -u vmail doveadm`).
    Local { command: String },
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mailcow_url = lookup("MAILCOW_URL")
            .ok_or_else(|| Error::Config("MAILCOW_URL is required".into()))?
            .trim_end_matches('/')
            .to_owned();
        if !(mailcow_url.starts_with("http://") || mailcow_url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "MAILCOW_URL `{mailcow_url}` must start with http:// or https://"
            )));
        }
        let api_key = read_secret(&lookup, "MAILCOW_API_KEY")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| {
                Error::Config("MAILCOW_API_KEY (or MAILCOW_API_KEY_FILE) is required".into())
            })?;
        let listen = lookup("AGENT_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:50051".into())
            .parse()
            .map_err(|e| Error::Config(format!("AGENT_LISTEN: {e}")))?;
        let timeout_secs: u64 = lookup("MAILCOW_TIMEOUT_SECONDS")
            .unwrap_or_else(|| "30".into())
            .parse()
            .map_err(|e| Error::Config(format!("MAILCOW_TIMEOUT_SECONDS: {e}")))?;
        let tls_insecure = match lookup("MAILCOW_TLS_INSECURE").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(Error::Config(format!(
                    "MAILCOW_TLS_INSECURE: expected true or false, got `{other}`"
                )));
            }
        };
        let agent_token = read_secret(&lookup, "AGENT_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("AGENT_TOKEN (or AGENT_TOKEN_FILE) is required".into()))?;
        let doveadm = match (
            lookup("DOVEADM_MODE").as_deref().unwrap_or("docker"),
            lookup("DOVECOT_CONTAINER"),
        ) {
            ("local", _) => Some(Doveadm::Local {
                command: lookup("DOVEADM_COMMAND").unwrap_or_else(|| "doveadm".into()),
            }),
            ("docker", Some(container)) => Some(Doveadm::Docker {
                container,
                user: lookup("DOVEADM_EXEC_USER"),
            }),
            ("docker", None) => None,
            (other, _) => {
                return Err(Error::Config(format!(
                    "DOVEADM_MODE: expected docker or local, got `{other}`"
                )));
            }
        };
        let concurrency = match lookup("MAILCOW_CONCURRENCY") {
            None => DEFAULT_CONCURRENCY,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(Error::Config(format!(
                        "MAILCOW_CONCURRENCY: expected a whole number of at least 1, got `{raw}`"
                    )));
                }
            },
        };
        Ok(Self {
            agent_token,
            concurrency,
            doveadm,
            mailcow_url,
            api_key,
            listen,
            timeout: Duration::from_secs(timeout_secs.max(1)),
            tls_insecure,
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
    fn defaults_and_trailing_slash() {
        let c = parse(&[
            ("MAILCOW_URL", "https://mail.example/"),
            ("MAILCOW_API_KEY", "k"),
            ("AGENT_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(c.mailcow_url, "https://mail.example");
        assert_eq!(c.listen.port(), 50051);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(!c.tls_insecure);
        assert_eq!(c.doveadm, None);
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert!(!format!("{c:?}").contains("\"k\""));
    }

    #[test]
    fn doveadm_modes() {
        let base = [
            ("MAILCOW_URL", "https://m"),
            ("MAILCOW_API_KEY", "k"),
            ("AGENT_TOKEN", "t"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            parse(&all)
        };
        assert_eq!(
            with(&[("DOVECOT_CONTAINER", "mailcowdockerized-dovecot-mailcow-1")])
                .unwrap()
                .doveadm,
            Some(Doveadm::Docker {
                container: "mailcowdockerized-dovecot-mailcow-1".into(),
                user: None
            })
        );
        assert_eq!(
            with(&[("DOVEADM_MODE", "local")]).unwrap().doveadm,
            Some(Doveadm::Local {
                command: "doveadm".into()
            })
        );
        assert!(with(&[("DOVEADM_MODE", "ssh")]).is_err());
    }

    #[test]
    fn concurrency_is_a_positive_number() {
        let with = |value: &'static str| {
            parse(&[
                ("MAILCOW_URL", "https://m"),
                ("MAILCOW_API_KEY", "k"),
                ("AGENT_TOKEN", "t"),
                ("MAILCOW_CONCURRENCY", value),
            ])
        };
        assert_eq!(with("16").unwrap().concurrency, 16);
        assert_eq!(with("1").unwrap().concurrency, 1);
        for bad in ["0", "-2", "many"] {
            assert!(with(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn missing_key_and_bad_values_are_errors() {
        assert!(parse(&[("MAILCOW_URL", "https://m")]).is_err());
        assert!(
            parse(&[
                ("MAILCOW_URL", "m.example"),
                ("MAILCOW_API_KEY", "k"),
                ("AGENT_TOKEN", "t")
            ])
            .is_err()
        );
        assert!(
            parse(&[
                ("MAILCOW_URL", "https://m"),
                ("MAILCOW_API_KEY", "k"),
                ("MAILCOW_TLS_INSECURE", "yes please"),
            ])
            .is_err()
        );
    }
}
