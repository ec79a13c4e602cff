//! `occ mail:account:*` (reference sogo-nextcloud.md B6/B7): argument
//! lists, output parsing and the error classes. Passwords are arguments by
//! necessity (occ has no other way); they never appear in our errors.

use std::sync::Arc;

use reconciler_runtime::exec::{CommandRunner, ExecError, ExecOutput};
use serde::Deserialize;

use crate::config::Server;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub imap_user: String,
    pub imap_host: String,
    pub provisioned: bool,
}

#[derive(Deserialize)]
struct ExportedEndpoint {
    #[serde(default)]
    user: String,
    #[serde(default)]
    host: String,
}

#[derive(Deserialize)]
struct ExportedProvision {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct Exported {
    id: i64,
    #[serde(default)]
    email: String,
    /// `null` for an account saved without a name (the column is nullable).
    #[serde(default)]
    name: Option<String>,
    imap: Option<ExportedEndpoint>,
    provision: Option<ExportedProvision>,
}

/// What `mail:account:delete` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    AlreadyGone,
}

pub struct Occ {
    runner: Arc<dyn CommandRunner>,
    command: Vec<String>,
    imap: Server,
    smtp: Server,
}

impl Occ {
    pub fn new(
        runner: Arc<dyn CommandRunner>,
        command: Vec<String>,
        imap: Server,
        smtp: Server,
    ) -> Self {
        Self {
            runner,
            command,
            imap,
            smtp,
        }
    }

    /// Runs occ; environment-level failures (maintenance mode, app disabled,
    /// wrong uid, container down) become errors here, so callers only see
    /// the command's own results. Every caller puts its positional
    /// arguments after `--`: Symfony reads a value starting with `-` (a user
    /// id such as `-bob`) as an option otherwise.
    async fn occ(&self, args: &[&str]) -> Result<ExecOutput> {
        let mut argv = self.command.clone();
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self.runner.run(&argv).await.map_err(|e| match e {
            ExecError::Unavailable(m) => Error::Unavailable(m),
            ExecError::Config(m) => Error::Config(m),
        })?;
        if let Some(e) = environment_error(&out) {
            return Err(e);
        }
        Ok(out)
    }

    /// The IMAP host accounts are created with.
    pub fn imap_host(&self) -> &str {
        &self.imap.host
    }

    /// The user's Mail accounts (`[]` for an unknown user).
    pub async fn export(&self, user: &str) -> Result<Vec<Account>> {
        let out = self
            .occ(&["mail:account:export", "--output=json", "--", user])
            .await?;
        if out.exit_code != 0 {
            return Err(Error::Protocol(format!(
                "mail:account:export {user} exited {}: {}",
                out.exit_code,
                first_line(&out)
            )));
        }
        let exported: Vec<Exported> = serde_json::from_str(out.stdout.trim()).map_err(|e| {
            Error::Protocol(format!(
                "mail:account:export {user} did not print JSON ({e}); Mail app older than 4.0?"
            ))
        })?;
        Ok(exported
            .into_iter()
            .map(|a| Account {
                id: a.id,
                email: a.email,
                name: a.name.unwrap_or_default(),
                imap_user: a.imap.as_ref().map(|i| i.user.clone()).unwrap_or_default(),
                imap_host: a.imap.map(|i| i.host).unwrap_or_default(),
                provisioned: a.provision.is_some_and(|p| p.status != "none"),
            })
            .collect())
    }

    /// Whether Nextcloud knows `user` (`user:info`).
    pub async fn user_exists(&self, user: &str) -> Result<bool> {
        let out = self
            .occ(&["user:info", "--output=json", "--", user])
            .await?;
        match out.exit_code {
            0 => Ok(true),
            1 if out.stdout.contains("not found") => Ok(false),
            code => Err(Error::Protocol(format!(
                "user:info {user} exited {code}: {}",
                first_line(&out)
            ))),
        }
    }

    /// Creates an account; returns its id.
    pub async fn create(
        &self,
        user: &str,
        name: &str,
        email: &str,
        login: &str,
        password: &str,
    ) -> Result<i64> {
        let (imap_port, smtp_port) = (self.imap.port.to_string(), self.smtp.port.to_string());
        let out = self
            .occ(&[
                "mail:account:create",
                "--",
                user,
                name,
                email,
                &self.imap.host,
                &imap_port,
                &self.imap.security,
                login,
                password,
                &self.smtp.host,
                &smtp_port,
                &self.smtp.security,
                login,
                password,
                "password",
            ])
            .await?;
        if out.exit_code == 1 && out.stdout.contains("does not exist") {
            return Err(Error::Permanent(format!(
                "Nextcloud user {user} does not exist"
            )));
        }
        if out.exit_code != 0 {
            return Err(Error::Protocol(format!(
                "mail:account:create exited {}: {}",
                out.exit_code,
                first_line(&out)
            )));
        }
        // `Account <id> for <email> created`
        out.stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("Account ")?
                    .split_once(" for ")?
                    .0
                    .parse()
                    .ok()
            })
            .ok_or_else(|| Error::Protocol("mail:account:create printed no account id".into()))
    }

    pub async fn delete(&self, id: i64) -> Result<Deleted> {
        let out = self
            .occ(&["mail:account:delete", "--", &id.to_string()])
            .await?;
        match out.exit_code {
            0 => Ok(Deleted::Deleted),
            1 if out.stdout.contains("does not exist") => Ok(Deleted::AlreadyGone),
            2 => Err(Error::Refused(format!(
                "account {id} is provisioned; it is never ours and occ cannot delete it"
            ))),
            code => Err(Error::Protocol(format!(
                "mail:account:delete {id} exited {code}: {}",
                first_line(&out)
            ))),
        }
    }

    pub async fn set_password(&self, id: i64, password: &str) -> Result<()> {
        let imap = format!("--imap-password={password}");
        let smtp = format!("--smtp-password={password}");
        let out = self
            .occ(&["mail:account:update", &imap, &smtp, "--", &id.to_string()])
            .await?;
        match out.exit_code {
            0 => Ok(()),
            1 if out.stdout.contains("No Email Account found") => {
                Err(Error::Permanent(format!("account {id} is gone")))
            }
            code => Err(Error::Protocol(format!(
                "mail:account:update {id} exited {code}"
            ))),
        }
    }
}

fn first_line(out: &ExecOutput) -> String {
    out.stdout
        .lines()
        .chain(out.stderr.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// Failures of Nextcloud as a whole rather than of one command (B7).
fn environment_error(out: &ExecOutput) -> Option<Error> {
    let all = format!("{}\n{}", out.stdout, out.stderr);
    if all.contains("Console has to be executed with the user that owns the file config/config.php")
    {
        return Some(Error::Config(
            "occ runs as the wrong user; set OCC_USER to the owner of config/config.php (33, or 82 on Alpine)"
                .into(),
        ));
    }
    if out.exit_code == 0 {
        return None;
    }
    if all.contains("maintenance mode") {
        return Some(Error::Unavailable(
            "Nextcloud is in maintenance mode".into(),
        ));
    }
    if all.contains("require upgrade") {
        return Some(Error::Unavailable(
            "Nextcloud or an app requires an upgrade".into(),
        ));
    }
    // Nextcloud boots on its database: every command fails with
    // `Doctrine\DBAL\Exception: Failed to connect to the database: …`
    // (lib/private/DB/Connection.php) while it is down.
    if all.contains("Failed to connect to the database") {
        return Some(Error::Unavailable(
            "Nextcloud cannot reach its database".into(),
        ));
    }
    if all.contains("is not installed") {
        return Some(Error::Unavailable("Nextcloud is not installed".into()));
    }
    if all.contains("There are no commands defined in the \"mail")
        || all.contains("Command \"mail:")
    {
        return Some(Error::Unavailable(
            "the Mail app is disabled or not installed".into(),
        ));
    }
    if out.exit_code == 126 || out.exit_code == 127 {
        return Some(Error::Config(format!(
            "occ could not be run: {}",
            first_line(out)
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i64, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            exit_code: code,
        }
    }

    #[test]
    fn environment_errors_are_classified() {
        let maintenance = out(
            1,
            "",
            "Nextcloud is in maintenance mode, no apps are loaded.\nCommands provided by apps are unavailable.\n\n  There are no commands defined in the \"mail:account\" namespace.  \n",
        );
        assert!(
            matches!(environment_error(&maintenance), Some(Error::Unavailable(m)) if m.contains("maintenance"))
        );
        let disabled = out(
            1,
            "",
            "There are no commands defined in the \"mail:account\" namespace.",
        );
        assert!(
            matches!(environment_error(&disabled), Some(Error::Unavailable(m)) if m.contains("Mail app"))
        );
        let uid = out(
            1,
            "Console has to be executed with the user that owns the file config/config.php\nCurrent user id: 0",
            "",
        );
        assert!(matches!(environment_error(&uid), Some(Error::Config(_))));
        let database_down = out(
            1,
            "",
            "An unhandled exception has been thrown:\nDoctrine\\DBAL\\Exception: Failed to connect to the database: An exception occurred in the driver: SQLSTATE[HY000] [2002] Connection refused",
        );
        assert!(
            matches!(environment_error(&database_down), Some(Error::Unavailable(m)) if m.contains("database"))
        );
        assert!(environment_error(&out(1, "User bob does not exist\n", "")).is_none());
    }
}
