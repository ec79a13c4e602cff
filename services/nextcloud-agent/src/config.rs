//! Configuration from the environment. `NEXTCLOUD_DB_URL` holds a password
//! and may also be given as `NEXTCLOUD_DB_URL_FILE`.

use std::net::SocketAddr;

use reconciler_runtime::secrets::{Secret, read_secret};

use crate::error::{Error, Result};

/// Where the accounts it creates connect (the same for every account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    /// `ssl`, `tls` (STARTTLS) or `none`.
    pub security: String,
}

/// Nextcloud's own database, read (never written) to observe every user's
/// Mail accounts in one query instead of one `occ` process per user.
#[derive(Clone, Debug)]
pub struct Database {
    /// `mysql://…` (MariaDB or MySQL).
    pub url: Secret,
    /// Nextcloud's `dbtableprefix` (`oc_` unless changed at install).
    pub table_prefix: String,
}

impl Database {
    /// The Mail app's account table.
    pub fn accounts_table(&self) -> String {
        format!("{}mail_accounts", self.table_prefix)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// The Nextcloud container (`docker exec` target).
    pub container: String,
    /// The web server's uid in that container: 33 (Debian images) or 82 (Alpine).
    pub occ_user: String,
    /// Nextcloud's directory, where `occ` lives.
    pub workdir: String,
    /// How occ is invoked, word-split (default `php occ`).
    pub occ_command: Vec<String>,
    pub imap: Server,
    pub smtp: Server,
    /// When set, observe reads `oc_mail_accounts` directly; occ stays the
    /// fallback and the only writer.
    pub database: Option<Database>,
    /// Bearer token the coordinator presents (`AGENT_TOKEN`).
    pub agent_token: Secret,
    pub listen: SocketAddr,
}

impl Config {
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let required = |k: &str| lookup(k).ok_or_else(|| Error::Config(format!("{k} is required")));
        let server = |prefix: &str, port: &str, security: &str| -> Result<Server> {
            let host = required(&format!("{prefix}_HOST"))?;
            let port = lookup(&format!("{prefix}_PORT"))
                .unwrap_or_else(|| port.into())
                .parse()
                .map_err(|e| Error::Config(format!("{prefix}_PORT: {e}")))?;
            let security = lookup(&format!("{prefix}_SECURITY")).unwrap_or_else(|| security.into());
            if !["ssl", "tls", "none"].contains(&security.as_str()) {
                return Err(Error::Config(format!(
                    "{prefix}_SECURITY: expected ssl, tls or none, got `{security}`"
                )));
            }
            Ok(Server {
                host,
                port,
                security,
            })
        };
        let occ_command: Vec<String> = lookup("OCC_COMMAND")
            .unwrap_or_else(|| "php occ".into())
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if occ_command.is_empty() {
            return Err(Error::Config("OCC_COMMAND is empty".into()));
        }
        let database = database(&lookup)?;
        let agent_token = read_secret(&lookup, "AGENT_TOKEN")
            .map_err(|e| Error::Config(e.to_string()))?
            .ok_or_else(|| Error::Config("AGENT_TOKEN (or AGENT_TOKEN_FILE) is required".into()))?;
        Ok(Self {
            agent_token,
            container: required("NEXTCLOUD_CONTAINER")?,
            occ_user: lookup("OCC_USER").unwrap_or_else(|| "33".into()),
            workdir: lookup("OCC_WORKDIR").unwrap_or_else(|| "/var/www/html".into()),
            occ_command,
            imap: server("MAIL_IMAP", "993", "ssl")?,
            smtp: server("MAIL_SMTP", "587", "tls")?,
            database,
            listen: lookup("AGENT_LISTEN")
                .unwrap_or_else(|| "0.0.0.0:50053".into())
                .parse()
                .map_err(|e| Error::Config(format!("AGENT_LISTEN: {e}")))?,
        })
    }
}

fn database(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Database>> {
    let Some(url) =
        read_secret(lookup, "NEXTCLOUD_DB_URL").map_err(|e| Error::Config(e.to_string()))?
    else {
        return Ok(None);
    };
    // PostgreSQL and SQLite Nextclouds are observed through occ only.
    if !url.expose().starts_with("mysql://") {
        return Err(Error::Config(
            "NEXTCLOUD_DB_URL must start with mysql:// (MariaDB or MySQL)".into(),
        ));
    }
    let table_prefix = lookup("NEXTCLOUD_DB_TABLE_PREFIX").unwrap_or_else(|| "oc_".into());
    // Interpolated into SQL (identifiers cannot be bound), so only plain names pass.
    if !table_prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::Config(format!(
            "NEXTCLOUD_DB_TABLE_PREFIX `{table_prefix}`: letters, digits and _ only"
        )));
    }
    Ok(Some(Database { url, table_prefix }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_and_errors() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("NEXTCLOUD_CONTAINER", "nextcloud-app-1"),
            ("MAIL_IMAP_HOST", "mail.example.com"),
            ("MAIL_SMTP_HOST", "mail.example.com"),
            ("AGENT_TOKEN", "t"),
        ]);
        let c = Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(c.occ_user, "33");
        assert_eq!(c.occ_command, vec!["php", "occ"]);
        assert_eq!((c.imap.port, c.imap.security.as_str()), (993, "ssl"));
        assert_eq!((c.smtp.port, c.smtp.security.as_str()), (587, "tls"));
        let mut bad = env.clone();
        bad.insert("MAIL_IMAP_SECURITY", "starttls");
        assert!(Config::from_lookup(|k| bad.get(k).map(|v| v.to_string())).is_err());
        assert!(Config::from_lookup(|_| None).is_err());
        assert!(c.database.is_none(), "occ only unless asked");
    }

    #[test]
    fn database_url_prefix_and_redaction() {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("NEXTCLOUD_CONTAINER", "nextcloud-app-1"),
            ("MAIL_IMAP_HOST", "mail.example.com"),
            ("MAIL_SMTP_HOST", "mail.example.com"),
            ("AGENT_TOKEN", "t"),
            ("NEXTCLOUD_DB_URL", "mysql://nextcloud:s3cret@db/nextcloud"),
        ]);
        let parse =
            |env: &HashMap<&str, &str>| Config::from_lookup(|k| env.get(k).map(|v| v.to_string()));
        let c = parse(&env).unwrap();
        let db = c.database.clone().unwrap();
        assert_eq!(db.accounts_table(), "oc_mail_accounts");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the password never reaches a log line"
        );
        env.insert("NEXTCLOUD_DB_TABLE_PREFIX", "nc_");
        assert_eq!(
            parse(&env).unwrap().database.unwrap().accounts_table(),
            "nc_mail_accounts"
        );
        env.insert("NEXTCLOUD_DB_TABLE_PREFIX", "oc_`; DROP");
        assert!(parse(&env).is_err());
        env.remove("NEXTCLOUD_DB_TABLE_PREFIX");
        env.insert("NEXTCLOUD_DB_URL", "postgres://nextcloud@db/nextcloud");
        assert!(parse(&env).is_err(), "MariaDB/MySQL only");
    }
}
