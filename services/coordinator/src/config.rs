//! Configuration from the environment (12-factor). Every secret may also be
//! given as `<NAME>_FILE`. Parsing takes a lookup function so it is tested
//! without touching the process environment.

use std::net::SocketAddr;
use std::time::Duration;

use reconciler_runtime::listen::ConnectionLimits;
use reconciler_runtime::secrets::{Secret, read_secret};
use reconciler_runtime::tls::{ClientTransport, ServerTransport};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    pub http_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// `HTTP_MAX_CONNECTIONS`, `HTTP_HEADER_TIMEOUT_SECONDS`.
    pub http_limits: ConnectionLimits,
    /// `GRPC_MAX_CONNECTIONS`, `GRPC_HANDSHAKE_TIMEOUT_SECONDS`, `GRPC_KEEPALIVE_*`.
    pub grpc_limits: ConnectionLimits,
    /// `GRPC_TLS_CERT_FILE` and `GRPC_TLS_KEY_FILE`: TLS on the operator
    /// port; plaintext without them.
    pub grpc_transport: ServerTransport,
    /// `sqlite://<file>` (the default, one coordinator) or
    /// `postgres://…` (one or more coordinators, one leads). A secret: a
    /// PostgreSQL URL carries the password (`STATE_DB_URL_FILE` reads it
    /// from a file).
    pub state_db_url: Secret,
    /// `COORDINATOR_INSTANCE`: this coordinator's name in the job attempt
    /// record and the leader lock; by default `<hostname>:<pid>`.
    pub instance: String,
    /// How long finished jobs and audit rows are kept.
    pub retention: crate::store::Retention,
    /// Snapshots of the state DB kept before runs that remove anything.
    pub state_backups: crate::store::BackupPolicy,
    pub authentik_url: String,
    pub authentik_token: Secret,
    pub authentik_timeout: Duration,
    pub webhook_token: Secret,
    pub admin_token: Secret,
    /// `STATUS_TOKEN`: a read-only token for the status page.
    pub status_token: Option<Secret>,
    /// `STALWART_WEBHOOK_SECRET`: the WebHook's `signatureKey`; `None`
    /// turns `/ingest/stalwart` off.
    pub stalwart_webhook_secret: Option<Secret>,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::ingest::proxy::TrustedProxies,
    pub mailcow_agent_url: String,
    /// `None`: SOGo delegation is not reconciled (and reported so).
    pub sogo_agent_url: Option<String>,
    /// `None`: Nextcloud Mail accounts are not reconciled (and reported so).
    pub nextcloud_agent_url: Option<String>,
    /// `None`: Matrix rooms are not reconciled (and reported so).
    pub matrix_agent_url: Option<String>,
    /// `MATRIX_JOIN_METHOD`, `MATRIX_REMOVE_ACTION`, `MATRIX_GRACE_PERIOD`,
    /// `MATRIX_MAPPINGS`.
    pub matrix: crate::desired::MatrixDefaults,
    /// `MATRIX_SERVER_NAME`, `MATRIX_OIDC_PROVIDER`, `MATRIX_CREATE_USERS`.
    pub matrix_identities: crate::targets::matrix::MatrixIdentities,
    /// `None`: Stalwart is not provisioned (and reported so).
    pub stalwart_agent_url: Option<String>,
    /// `STALWART_DOMAINS`, `STALWART_DELETE_AFTER`, `STALWART_ADOPT_EXISTING`.
    pub stalwart: crate::desired::StalwartSettings,
    pub agent_timeout: Duration,
    /// Bearer token every agent requires (`AGENT_TOKEN` on both sides).
    pub agent_token: Secret,
    /// Mutual TLS to every agent (`AGENT_TLS_CA_FILE`,
    /// `COORDINATOR_TLS_CERT_FILE`, `COORDINATOR_TLS_KEY_FILE`), or
    /// plaintext with `AGENT_INSECURE=true`.
    pub agent_transport: ClientTransport,
    /// `None` disables the periodic sweep.
    pub sweep_interval: Option<Duration>,
    /// How long webhooks may patch the last whole directory read (`None`:
    /// every run reads the whole directory).
    pub directory_max_age: Option<Duration>,
    /// `GRACE_POLL_SECONDS`: how often pending removals are checked for
    /// one that fell due.
    pub grace_poll: Duration,
    /// How often Authentik's events API is read for lost webhooks; `None`
    /// (`EVENTS_CATCHUP_SECONDS=0`) turns the catch-up off.
    pub events_catchup: Option<Duration>,
    /// 0 accepts and stores jobs but runs none (maintenance).
    pub worker_concurrency: usize,
    pub job_max_attempts: i64,
    pub retry_base: Duration,
    pub attribute_key: String,
    pub app_password_protocols: Vec<String>,
    pub max_user_drop: f64,
    pub max_removal_share: f64,
    pub removal_guard_min: usize,
    /// The first wait after a change failed permanently; it doubles on
    /// every further failure of the same change, up to a day.
    pub failure_backoff_base: Duration,
}

/// `HTTP_LISTEN` when unset; `coordinator healthcheck` probes the same.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:5000";

const PROTOCOLS: [&str; 6] = [
    "imap_access",
    "smtp_access",
    "dav_access",
    "eas_access",
    "pop3_access",
    "sieve_access",
];

/// The state DB URL, if it names a backend we have.
fn state_db_url(url: Secret) -> Result<Secret> {
    if crate::store::Backend::of_url(url.expose()).is_none() {
        return Err(Error::Config(
            "STATE_DB_URL: expected sqlite://<file> or postgres://<user>@<host>/<database>".into(),
        ));
    }
    Ok(url)
}

/// `<hostname>:<pid>`: unique among live processes, and says where to look.
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "coordinator".into()
    } else {
        host
    };
    format!("{host}:{}", std::process::id())
}

impl Config {
    /// The operator port is plaintext and reachable beyond this host: the
    /// admin token would cross the network in the clear.
    pub fn operator_token_in_the_clear(&self) -> bool {
        matches!(self.grpc_transport, ServerTransport::Insecure)
            && !self.grpc_listen.ip().is_loopback()
    }

    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str, default: &str| lookup(k).unwrap_or_else(|| default.to_owned());
        let secret = |k: &str| -> Result<Secret> {
            read_secret(&lookup, k)
                .map_err(|e| Error::Config(e.to_string()))?
                .ok_or_else(|| Error::Config(format!("{k} (or {k}_FILE) is required")))
        };
        let required = |k: &str| lookup(k).ok_or_else(|| Error::Config(format!("{k} is required")));
        let addr = |k: &str, default: &str| -> Result<SocketAddr> {
            get(k, default)
                .parse()
                .map_err(|e| Error::Config(format!("{k}: {e}")))
        };
        let number = |k: &str, default: &str| -> Result<u64> {
            get(k, default)
                .parse()
                .map_err(|e| Error::Config(format!("{k}: {e}")))
        };
        let percent = |k: &str, default: &str| -> Result<f64> {
            let v = number(k, default)?;
            if v > 100 {
                return Err(Error::Config(format!("{k}: {v} is not a percentage")));
            }
            Ok(v as f64 / 100.0)
        };
        let protocols: Vec<String> = get("APP_PASSWORD_PROTOCOLS", "imap_access,smtp_access")
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if let Some(bad) = protocols.iter().find(|p| !PROTOCOLS.contains(&p.as_str())) {
            return Err(Error::Config(format!(
                "APP_PASSWORD_PROTOCOLS: `{bad}` is not one of {}",
                PROTOCOLS.join(", ")
            )));
        }
        let sweep = number("SWEEP_INTERVAL_SECONDS", "900")?;
        // A webhook patches the last whole read while it is younger than
        // this; by default the sweep interval (a sweep reads it whole).
        let directory_max_age = number(
            "DIRECTORY_MAX_AGE_SECONDS",
            &if sweep > 0 { sweep } else { 900 }.to_string(),
        )?;
        let (matrix, matrix_identities) = matrix_settings(&lookup)?;
        let catchup = number("EVENTS_CATCHUP_SECONDS", "60")?;
        let agent_transport =
            ClientTransport::from_lookup(&lookup).map_err(|e| Error::Config(e.to_string()))?;
        let agent_url = |k: &str| -> Result<Option<String>> {
            let url = lookup(k);
            if let Some(url) = &url {
                agent_transport
                    .check_url(k, url)
                    .map_err(|e| Error::Config(e.to_string()))?;
            }
            Ok(url)
        };
        // 0 keeps forever.
        let days = |name: &str, default: &str| -> Result<Option<Duration>> {
            let n = number(name, default)?;
            Ok((n > 0).then(|| Duration::from_secs(n * 86_400)))
        };
        Ok(Self {
            http_listen: addr("HTTP_LISTEN", DEFAULT_HTTP_LISTEN)?,
            grpc_listen: addr("GRPC_LISTEN", "0.0.0.0:50050")?,
            http_limits: ConnectionLimits::http_from_lookup(&lookup).map_err(Error::Config)?,
            grpc_limits: ConnectionLimits::grpc_from_lookup(&lookup).map_err(Error::Config)?,
            grpc_transport: ServerTransport::operator_from_lookup(&lookup)
                .map_err(|e| Error::Config(e.to_string()))?,
            state_db_url: state_db_url(
                read_secret(&lookup, "STATE_DB_URL")
                    .map_err(|e| Error::Config(e.to_string()))?
                    .unwrap_or_else(|| Secret::new("sqlite://state.db")),
            )?,
            instance: lookup("COORDINATOR_INSTANCE").unwrap_or_else(default_instance),
            retention: crate::store::Retention {
                jobs: days("JOB_RETENTION_DAYS", "30")?,
                audit: days("AUDIT_RETENTION_DAYS", "90")?,
            },
            state_backups: crate::store::BackupPolicy {
                keep: number("STATE_BACKUP_RETENTION", "3")? as usize,
                dir: lookup("STATE_BACKUP_DIR").map(std::path::PathBuf::from),
            },
            authentik_url: required("AUTHENTIK_URL")?,
            authentik_token: secret("AUTHENTIK_TOKEN")?,
            authentik_timeout: Duration::from_secs(number("AUTHENTIK_TIMEOUT_SECONDS", "30")?),
            webhook_token: secret("WEBHOOK_TOKEN")?,
            admin_token: secret("ADMIN_TOKEN")?,
            status_token: read_secret(&lookup, "STATUS_TOKEN")
                .map_err(|e| Error::Config(e.to_string()))?
                .filter(|s| !s.expose().is_empty()),
            stalwart_webhook_secret: read_secret(&lookup, "STALWART_WEBHOOK_SECRET")
                .map_err(|e| Error::Config(e.to_string()))?
                .filter(|s| !s.expose().is_empty()),
            trusted_proxies: crate::ingest::proxy::TrustedProxies::parse(&get(
                "TRUSTED_PROXIES",
                "",
            ))
            .map_err(|e| Error::Config(format!("TRUSTED_PROXIES: {e}")))?,
            mailcow_agent_url: agent_url("MAILCOW_AGENT_URL")?
                .ok_or_else(|| Error::Config("MAILCOW_AGENT_URL is required".into()))?,
            sogo_agent_url: agent_url("SOGO_AGENT_URL")?,
            nextcloud_agent_url: agent_url("NEXTCLOUD_AGENT_URL")?,
            matrix_agent_url: agent_url("MATRIX_AGENT_URL")?,
            matrix,
            matrix_identities,
            stalwart_agent_url: agent_url("STALWART_AGENT_URL")?,
            stalwart: stalwart_settings(&lookup)?,
            agent_timeout: Duration::from_secs(number("AGENT_TIMEOUT_SECONDS", "300")?),
            agent_token: secret("AGENT_TOKEN")?,
            agent_transport,
            sweep_interval: (sweep > 0).then(|| Duration::from_secs(sweep)),
            directory_max_age: (directory_max_age > 0)
                .then(|| Duration::from_secs(directory_max_age)),
            grace_poll: Duration::from_secs(number("GRACE_POLL_SECONDS", "30")?.max(1)),
            events_catchup: (catchup > 0).then(|| Duration::from_secs(catchup)),
            worker_concurrency: number("WORKER_CONCURRENCY", "4")? as usize,
            job_max_attempts: number("JOB_MAX_ATTEMPTS", "8")?.max(1) as i64,
            retry_base: Duration::from_millis(number("RETRY_BASE_MILLIS", "2000")?),
            attribute_key: get("RECONCILER_ATTRIBUTE_KEY", "reconciler"),
            app_password_protocols: protocols,
            max_user_drop: percent("MAX_USER_DROP_PERCENT", "50")?,
            max_removal_share: percent("REMOVAL_GUARD_PERCENT", "50")?,
            removal_guard_min: number("REMOVAL_GUARD_MIN", "10")? as usize,
            failure_backoff_base: Duration::from_secs(number("FAILURE_BACKOFF_SECONDS", "900")?),
        })
    }
}

/// The Stalwart provisioning settings, each checked.
fn stalwart_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<crate::desired::StalwartSettings> {
    let mut domains = std::collections::BTreeSet::new();
    for raw in lookup("STALWART_DOMAINS").unwrap_or_default().split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        // A domain is an address's domain part: checked the same way.
        let domain = reconciler_proto::address::normalize(&format!("x@{raw}"))
            .map_err(|e| Error::Config(format!("STALWART_DOMAINS: `{raw}`: {e}")))?;
        domains.insert(domain.trim_start_matches("x@").to_owned());
    }
    let delete_after = match lookup("STALWART_DELETE_AFTER") {
        None => None,
        Some(v) => Some(
            crate::attributes::matrix::parse_grace(&serde_json::Value::String(v))
                .map_err(|e| Error::Config(format!("STALWART_DELETE_AFTER: {e}")))?,
        ),
    };
    let adopt_existing = match lookup("STALWART_ADOPT_EXISTING").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::Config(format!(
                "STALWART_ADOPT_EXISTING: `{other}` is not true or false"
            )));
        }
    };
    Ok(crate::desired::StalwartSettings {
        domains,
        delete_after,
        adopt_existing,
    })
}

/// The Matrix settings, each checked.
fn matrix_settings(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(
    crate::desired::MatrixDefaults,
    crate::targets::matrix::MatrixIdentities,
)> {
    use crate::attributes::{JoinMethod, LeaveAction, matrix::parse_grace};
    let bad = |name: &str, e: String| Error::Config(format!("{name}: {e}"));
    let mut defaults = crate::desired::MatrixDefaults::default();
    if let Some(v) = lookup("MATRIX_JOIN_METHOD") {
        defaults.join = JoinMethod::parse(&v).map_err(|e| bad("MATRIX_JOIN_METHOD", e))?;
    }
    if let Some(v) = lookup("MATRIX_REMOVE_ACTION") {
        defaults.on_leave = LeaveAction::parse(&v).map_err(|e| bad("MATRIX_REMOVE_ACTION", e))?;
    }
    if let Some(v) = lookup("MATRIX_GRACE_PERIOD") {
        defaults.grace_period = parse_grace(&serde_json::Value::String(v))
            .map_err(|e| bad("MATRIX_GRACE_PERIOD", e))?;
    }
    if let Some(v) = lookup("MATRIX_MAPPINGS") {
        defaults.mappings =
            crate::desired::matrix::parse_mappings(&v).map_err(|e| bad("MATRIX_MAPPINGS", e))?;
    }
    let create_users = match lookup("MATRIX_CREATE_USERS").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(
                "MATRIX_CREATE_USERS",
                format!("`{other}` is not true or false"),
            ));
        }
    };
    let oidc_provider = lookup("MATRIX_OIDC_PROVIDER");
    if create_users && oidc_provider.is_none() {
        return Err(Error::Config(
            "MATRIX_CREATE_USERS=true needs MATRIX_OIDC_PROVIDER (e.g. oidc-authentik): \
             accounts are created linked to the user's SSO id"
                .into(),
        ));
    }
    Ok((
        defaults,
        crate::targets::matrix::MatrixIdentities {
            server_name: lookup("MATRIX_SERVER_NAME"),
            oidc_provider,
            create_users,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("AUTHENTIK_URL", "http://authentik".to_owned()),
            ("AUTHENTIK_TOKEN", "t".to_owned()),
            ("WEBHOOK_TOKEN", "w".to_owned()),
            ("ADMIN_TOKEN", "a".to_owned()),
            ("AGENT_TOKEN", "g".to_owned()),
            ("MAILCOW_AGENT_URL", "http://127.0.0.1:50051".to_owned()),
            ("AGENT_INSECURE", "true".to_owned()),
        ])
    }

    #[test]
    fn a_plaintext_operator_port_beyond_loopback_is_called_out() {
        let mut env = base();
        let config = |env: &HashMap<&str, String>| Config::from_lookup(|k| env.get(k).cloned());
        assert!(config(&env).unwrap().operator_token_in_the_clear());
        env.insert("GRPC_LISTEN", "127.0.0.1:50050".into());
        assert!(!config(&env).unwrap().operator_token_in_the_clear());
        env.insert("GRPC_LISTEN", "[::1]:50050".into());
        assert!(!config(&env).unwrap().operator_token_in_the_clear());

        let mut env = base();
        env.insert("GRPC_TLS_CERT_FILE", "/nonexistent/grpc.pem".into());
        let err = config(&env).unwrap_err().to_string();
        assert!(err.contains("GRPC_TLS_KEY_FILE is not"), "{err}");
    }

    #[test]
    fn agents_are_reached_over_mutual_tls_unless_insecure_is_explicit() {
        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.agent_transport.mode(), "insecure");

        let mut env = base();
        env.remove("AGENT_INSECURE");
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        for var in [
            "AGENT_TLS_CA_FILE",
            "COORDINATOR_TLS_CERT_FILE",
            "COORDINATOR_TLS_KEY_FILE",
            "AGENT_INSECURE",
        ] {
            assert!(err.to_string().contains(var), "{err}");
        }

        let mut env = base();
        env.insert("SOGO_AGENT_URL", "https://sogo:50052".into());
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("SOGO_AGENT_URL"), "{err}");
    }

    #[test]
    fn defaults() {
        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.http_listen.port(), 5000);
        assert_eq!(c.sweep_interval, Some(Duration::from_secs(900)));
        assert_eq!(c.events_catchup, Some(Duration::from_secs(60)));
        assert_eq!(c.app_password_protocols, vec!["imap_access", "smtp_access"]);
        assert_eq!(c.state_backups.keep, 3);
        assert_eq!(c.retention.jobs, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.retention.audit, Some(Duration::from_secs(90 * 86_400)));
    }

    #[test]
    fn the_state_db_url_names_a_backend_and_stays_secret() {
        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.state_db_url.expose(), "sqlite://state.db");
        assert!(c.instance.ends_with(&format!(":{}", std::process::id())));

        let mut env = base();
        let url = "postgres://reconciler:pg-Secret-9@db:5432/reconciler";
        env.insert("STATE_DB_URL", url.into());
        env.insert("COORDINATOR_INSTANCE", "coordinator-a".into());
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.state_db_url.expose(), url);
        assert_eq!(c.instance, "coordinator-a");
        assert!(!format!("{c:?}").contains("pg-Secret-9"));

        env.insert("STATE_DB_URL", "mysql://u:pw-Secret@db/x".into());
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("STATE_DB_URL"), "{err}");
        assert!(!err.to_string().contains("pw-Secret"), "{err}");
    }

    #[test]
    fn the_state_db_url_may_come_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state_db_url");
        std::fs::write(&file, "sqlite:///var/lib/authentik-reconciler/state.db\n").unwrap();
        let mut env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.state_db_url.expose(), "sqlite://state.db");
        env.insert("STATE_DB_URL_FILE", file.display().to_string());
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(
            c.state_db_url.expose(),
            "sqlite:///var/lib/authentik-reconciler/state.db"
        );
        env.insert("STATE_DB_URL", "sqlite://other.db".into());
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("STATE_DB_URL"), "{err}");
    }

    #[test]
    fn errors_name_the_variable_and_not_the_secret() {
        let mut env = base();
        env.remove("WEBHOOK_TOKEN");
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("WEBHOOK_TOKEN"));

        let mut env = base();
        env.insert("APP_PASSWORD_PROTOCOLS", "imap".into());
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("APP_PASSWORD_PROTOCOLS"));

        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert!(!format!("{c:?}").contains("\"w\""));
    }

    #[test]
    fn matrix_settings_are_checked() {
        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert!(c.matrix_agent_url.is_none());
        assert_eq!(c.matrix.grace_period, Duration::ZERO);

        let mut env = base();
        env.insert("MATRIX_GRACE_PERIOD", "2h".into());
        env.insert("MATRIX_REMOVE_ACTION", "ban".into());
        env.insert(
            "MATRIX_MAPPINGS",
            r##"[{"group": "staff", "space": "#staff:example.com", "method": "force"}]"##.into(),
        );
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(c.matrix.grace_period, Duration::from_secs(7200));
        assert_eq!(c.matrix.mappings.len(), 1);

        for (name, value) in [
            ("MATRIX_JOIN_METHOD", "knock"),
            ("MATRIX_GRACE_PERIOD", "soon"),
            ("MATRIX_MAPPINGS", "[{\"group\": 1}]"),
            ("MATRIX_CREATE_USERS", "true"),
        ] {
            let mut env = base();
            env.insert(name, value.into());
            let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn stalwart_provisioning_settings_are_checked() {
        let mut env = base();
        env.insert("STALWART_DOMAINS", "Example.com, bücher.example".into());
        env.insert("STALWART_DELETE_AFTER", "30d".into());
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert!(c.stalwart.domains.contains("example.com"));
        assert!(c.stalwart.domains.contains("xn--bcher-kva.example"));
        assert_eq!(
            c.stalwart.delete_after,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert!(!c.stalwart.adopt_existing);
        for (name, value) in [
            ("STALWART_DOMAINS", "not a domain"),
            ("STALWART_DELETE_AFTER", "later"),
            ("STALWART_ADOPT_EXISTING", "yes"),
        ] {
            let mut env = base();
            env.insert(name, value.into());
            let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn stalwart_ingest_is_optional_and_its_settings_are_checked() {
        let env = base();
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert!(c.stalwart_webhook_secret.is_none());
        assert!(!c.trusted_proxies.trusts("127.0.0.1".parse().unwrap()));

        let mut env = base();
        env.insert("STALWART_WEBHOOK_SECRET", "s3cr3t-value".into());
        env.insert("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1".into());
        let c = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert!(
            c.stalwart_webhook_secret
                .as_ref()
                .unwrap()
                .matches("s3cr3t-value")
        );
        assert!(c.trusted_proxies.trusts("10.9.8.7".parse().unwrap()));
        assert!(!format!("{c:?}").contains("s3cr3t-value"));

        let mut env = base();
        env.insert("TRUSTED_PROXIES", "proxy.internal".into());
        let err = Config::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert!(err.to_string().contains("TRUSTED_PROXIES"));
    }
}
