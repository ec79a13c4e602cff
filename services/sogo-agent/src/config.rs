//! Configuration from the environment. `SOGO_DB_URL` holds a password and
//! may also be given as `SOGO_DB_URL_FILE`.

use std::net::SocketAddr;
use std::time::Duration;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    /// `mysql://user:pass@host:port/db` (Mailcow: database `mailcow`).
    pub db_url: Secret,
    /// The profile table; Mailcow's is `sogo_user_profile`.
    pub profile_table: String,
    /// memcached `host:port` that SOGo uses (Mailcow: `memcached:11211`).
    pub memcached_addr: String,
    /// How long one eviction may take (`MEMCACHED_TIMEOUT_MILLIS`, default
    /// 2000): a stalled memcached must not hold a worker, and an eviction
    /// that times out is owed and retried by the coordinator.
    pub memcached_timeout: Duration,
    /// Bearer token the coordinator presents (`AGENT_TOKEN`).
    pub agent_token: Secret,
    pub listen: SocketAddr,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let db_url = read_secret(&lookup, "SOGO_DB_URL")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("SOGO_DB_URL (or SOGO_DB_URL_FILE) is required".into()))?;
        if !db_url.expose().starts_with("mysql://") {
            return Err(Error::Config("SOGO_DB_URL must start with mysql://".into()));
        }
        let profile_table =
            lookup("SOGO_PROFILE_TABLE").unwrap_or_else(|| "sogo_user_profile".into());
        // Interpolated into SQL (identifiers cannot be bound), so only plain names pass.
        if profile_table.is_empty()
            || !profile_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::Config(format!(
                "SOGO_PROFILE_TABLE `{profile_table}`: letters, digits and _ only"
            )));
        }
        let agent_token = read_secret(&lookup, "AGENT_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("AGENT_TOKEN (or AGENT_TOKEN_FILE) is required".into()))?;
        let memcached_addr = lookup("MEMCACHED_ADDR").unwrap_or_else(|| "127.0.0.1:11211".into());
        let memcached_timeout = match lookup("MEMCACHED_TIMEOUT_MILLIS") {
            None => Duration::from_millis(2000),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    return Err(Error::Config(format!(
                        "MEMCACHED_TIMEOUT_MILLIS `{v}`: a positive number of milliseconds"
                    )));
                }
            },
        };
        let listen = lookup("AGENT_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:50052".into())
            .parse()
            .map_err(|e| Error::Config(format!("AGENT_LISTEN: {e}")))?;
        Ok(Self {
            agent_token,
            db_url,
            profile_table,
            memcached_addr,
            memcached_timeout,
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
    fn defaults_and_validation() {
        let c = parse(&[
            ("SOGO_DB_URL", "mysql://mailcow:secret@mysql/mailcow"),
            ("AGENT_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(c.profile_table, "sogo_user_profile");
        assert_eq!(c.listen.port(), 50052);
        assert_eq!(c.memcached_timeout, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("secret"));
        assert!(parse(&[]).is_err());
        assert!(parse(&[("SOGO_DB_URL", "postgres://x")]).is_err());
        assert!(
            parse(&[
                ("SOGO_DB_URL", "mysql://x@y/z"),
                ("SOGO_PROFILE_TABLE", "t; DROP TABLE x")
            ])
            .is_err()
        );
        let ok = [("SOGO_DB_URL", "mysql://x@y/z"), ("AGENT_TOKEN", "t")];
        let with = |v| parse(&[ok[0], ok[1], ("MEMCACHED_TIMEOUT_MILLIS", v)]);
        assert_eq!(
            with("250").unwrap().memcached_timeout,
            Duration::from_millis(250)
        );
        assert!(with("0").is_err());
        assert!(with("2s").is_err());
    }
}
