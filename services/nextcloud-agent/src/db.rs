//! Nextcloud Mail's accounts read straight from Nextcloud's database
//! (`NEXTCLOUD_DB_URL`): one query for every user in scope, where occ needs
//! one `mail:account:export` — one PHP boot — per user. Read only: every
//! write still goes through occ, which keeps Nextcloud's own logic (password
//! encryption, background jobs) in charge.
//!
//! The columns are the ones `mail:account:export` prints and observe uses
//! (nextcloud/mail `lib/Command/ExportAccount.php`, table created by
//! `Version0100Date20180825194217`, `provisioning_id` added by
//! `Version1100Date20210419080523`). The encrypted passwords are never read.

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Params, Pool, Value};

use crate::config::Database;
use crate::error::{Error, Result};
use crate::occ::Account;

/// Users per query. A prepared statement takes at most 65,535 parameters;
/// 10,000 keeps a sweep of 10,000 users to one query and the statement small.
const USERS_PER_QUERY: usize = 10_000;

/// A database that does not answer within this falls back to occ rather
/// than holding the run.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The selected columns, in query order.
type SelectedRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<i64>,
);

/// One row of `<prefix>mail_accounts`, as selected by [`MailAccountsTable`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub id: i64,
    pub user_id: String,
    pub email: String,
    /// Nullable in Nextcloud's schema; export prints `null`.
    pub name: Option<String>,
    pub inbound_user: String,
    pub inbound_host: String,
    pub provisioning_id: Option<i64>,
}

impl From<AccountRow> for Account {
    /// What `mail:account:export` makes of the same row, parsed by
    /// [`crate::occ::Occ::export`]: `provision.status` is `set` when
    /// `getProvisioningId()` is truthy (not NULL and not 0).
    fn from(row: AccountRow) -> Self {
        Account {
            id: row.id,
            email: row.email,
            name: row.name.unwrap_or_default(),
            imap_user: row.inbound_user,
            imap_host: row.inbound_host,
            provisioned: row.provisioning_id.is_some_and(|id| id != 0),
        }
    }
}

pub struct MailAccountsTable {
    pool: Pool,
    table: String,
}

impl MailAccountsTable {
    pub fn new(database: &Database) -> Result<Self> {
        // The parse error never quotes the URL, so the password stays out.
        let opts = mysql_async::Opts::from_url(database.url.expose())
            .map_err(|e| Error::Config(format!("NEXTCLOUD_DB_URL: {e}")))?;
        Ok(Self {
            pool: Pool::new(opts),
            table: database.accounts_table(),
        })
    }

    /// The table read, for messages.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every account of `users`, by user (users without accounts are
    /// absent), each user's accounts in id order as export lists them.
    pub async fn accounts_of(&self, users: &[String]) -> Result<HashMap<String, Vec<Account>>> {
        tokio::time::timeout(READ_TIMEOUT, self.read(users))
            .await
            .map_err(|_| {
                Error::Database(format!(
                    "reading {} took longer than {READ_TIMEOUT:?}",
                    self.table
                ))
            })?
            .map_err(|e| Error::Database(format!("reading {}: {e}", self.table)))
    }

    async fn read(
        &self,
        users: &[String],
    ) -> Result<HashMap<String, Vec<Account>>, mysql_async::Error> {
        let mut accounts: HashMap<String, Vec<Account>> = HashMap::new();
        if users.is_empty() {
            return Ok(accounts);
        }
        let mut conn = self.pool.get_conn().await?;
        for chunk in users.chunks(USERS_PER_QUERY) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT id, user_id, email, name, inbound_user, inbound_host, provisioning_id \
                 FROM `{}` WHERE user_id IN ({placeholders}) ORDER BY user_id, id",
                self.table
            );
            let params =
                Params::Positional(chunk.iter().map(|u| Value::from(u.as_str())).collect());
            let rows: Vec<SelectedRow> = conn.exec(sql, params).await?;
            for (id, user_id, email, name, inbound_user, inbound_host, provisioning_id) in rows {
                let row = AccountRow {
                    id,
                    user_id,
                    email,
                    name,
                    inbound_user,
                    inbound_host,
                    provisioning_id,
                };
                accounts
                    .entry(row.user_id.clone())
                    .or_default()
                    .push(row.into());
            }
        }
        Ok(accounts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> AccountRow {
        AccountRow {
            id: 17,
            user_id: "alice".into(),
            email: "info@example.com".into(),
            name: Some("Info".into()),
            inbound_user: "info@example.com".into(),
            inbound_host: "mail.example.com".into(),
            provisioning_id: None,
        }
    }

    #[test]
    fn a_row_maps_to_what_export_reports() {
        assert_eq!(
            Account::from(row()),
            Account {
                id: 17,
                email: "info@example.com".into(),
                name: "Info".into(),
                imap_user: "info@example.com".into(),
                imap_host: "mail.example.com".into(),
                provisioned: false,
            }
        );
    }

    /// Prints one fixed `mail:account:export --output=json` answer.
    struct Prints(&'static str);

    #[tonic::async_trait]
    impl reconciler_runtime::exec::CommandRunner for Prints {
        async fn run(
            &self,
            _argv: &[String],
        ) -> Result<reconciler_runtime::exec::ExecOutput, reconciler_runtime::exec::ExecError>
        {
            Ok(reconciler_runtime::exec::ExecOutput {
                stdout: self.0.into(),
                stderr: String::new(),
                exit_code: 0,
            })
        }
    }

    /// The same rows through occ (what `ExportAccount.php` prints for them,
    /// `null` name and a provisioning id included) and through the table
    /// give the same accounts, field by field.
    #[tokio::test]
    async fn rows_and_their_export_give_the_same_accounts() {
        let export = r#"[{"id":17,"email":"info@example.com","name":"Info","provision":{"status":"none","id":"N/A"},"imap":{"user":"info@example.com","host":"mail.example.com","port":993,"security":"ssl"},"smtp":{"user":"info@example.com","host":"mail.example.com","port":587,"security":"tls"}},{"id":18,"email":"x@example.com","name":null,"provision":{"status":"set","id":3},"imap":{"user":"x","host":"imap.x","port":993,"security":"ssl"},"smtp":{"user":"x","host":"smtp.x","port":587,"security":"tls"}}]"#;
        let server = crate::config::Server {
            host: "mail.example.com".into(),
            port: 993,
            security: "ssl".into(),
        };
        let occ = crate::occ::Occ::new(
            std::sync::Arc::new(Prints(export)),
            vec!["php".into(), "occ".into()],
            server.clone(),
            server,
        );
        let from_export = occ.export("alice").await.unwrap();
        let from_rows: Vec<Account> = [
            row(),
            AccountRow {
                id: 18,
                email: "x@example.com".into(),
                name: None,
                inbound_user: "x".into(),
                inbound_host: "imap.x".into(),
                provisioning_id: Some(3),
                ..row()
            },
        ]
        .into_iter()
        .map(Account::from)
        .collect();
        assert_eq!(from_rows, from_export);
    }

    #[test]
    fn null_name_and_provisioning_read_as_export_prints_them() {
        let unnamed = AccountRow {
            name: None,
            ..row()
        };
        assert_eq!(Account::from(unnamed).name, "");
        let provisioned = AccountRow {
            provisioning_id: Some(3),
            ..row()
        };
        assert!(Account::from(provisioned).provisioned);
        // PHP's `getProvisioningId() ? 'set' : 'none'`: 0 is falsy.
        let zero = AccountRow {
            provisioning_id: Some(0),
            ..row()
        };
        assert!(!Account::from(zero).provisioned);
    }
}
