//! The simulator's Mail accounts in a real MariaDB table with Nextcloud
//! Mail's schema, so a reader of `oc_mail_accounts` (the nextcloud-agent
//! with `NEXTCLOUD_DB_URL`) sees exactly what `occ mail:account:create`
//! made, as on a real Nextcloud. Users, maintenance mode and the Mail app
//! switch stay in the state file.
//!
//! Unlike Nextcloud, which encrypts `inbound_password`/`outbound_password`
//! with the instance secret, the simulator stores them in clear so tests can
//! check an account's password against its Mailcow app password.

use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

use super::state::{Account, AccountStore, Endpoint, StoreError};

/// `<prefix>mail_accounts` as Nextcloud Mail's migrations create it on
/// MySQL/MariaDB (nextcloud/mail `Version0100Date20180825194217`, with
/// `provisioning_id` from `Version1100Date20210419080523` and `auth_method`
/// from v1.14): the columns export prints and create writes. Ports are
/// strings in the table; the entity casts them to integers.
pub fn create_table_sql(prefix: &str) -> String {
    format!(
        "CREATE TABLE `{prefix}mail_accounts` (
           `id` INT AUTO_INCREMENT NOT NULL,
           `user_id` VARCHAR(64) NOT NULL,
           `name` VARCHAR(64) DEFAULT NULL,
           `email` VARCHAR(255) DEFAULT '' NOT NULL,
           `inbound_host` VARCHAR(64) DEFAULT '' NOT NULL,
           `inbound_port` VARCHAR(6) DEFAULT '' NOT NULL,
           `inbound_ssl_mode` VARCHAR(10) DEFAULT '' NOT NULL,
           `inbound_user` VARCHAR(64) DEFAULT '' NOT NULL,
           `inbound_password` VARCHAR(2048) DEFAULT NULL,
           `outbound_host` VARCHAR(64) DEFAULT NULL,
           `outbound_port` VARCHAR(6) DEFAULT NULL,
           `outbound_ssl_mode` VARCHAR(10) DEFAULT NULL,
           `outbound_user` VARCHAR(64) DEFAULT NULL,
           `outbound_password` VARCHAR(2048) DEFAULT NULL,
           `provisioning_id` INT DEFAULT NULL,
           `auth_method` VARCHAR(255) DEFAULT 'password' NOT NULL,
           PRIMARY KEY (`id`),
           INDEX `mail_userid_index` (`user_id`)
         ) DEFAULT CHARACTER SET utf8mb4 COLLATE `utf8mb4_bin` ENGINE = InnoDB"
    )
}

const COLUMNS: &str = "id, user_id, name, email, inbound_host, inbound_port, inbound_ssl_mode, \
     inbound_user, inbound_password, outbound_host, outbound_port, outbound_ssl_mode, \
     outbound_user, outbound_password, provisioning_id, auth_method";

/// Accounts in `<prefix>mail_accounts`; blocking (occ is a one-shot process).
pub struct MariaDbAccounts {
    runtime: tokio::runtime::Runtime,
    conn: Conn,
    table: String,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!("Failed to connect to the database: {e}"))
}

fn query_failed(e: impl std::fmt::Display) -> StoreError {
    StoreError(format!(
        "An exception occurred while executing a query: {e}"
    ))
}

impl MariaDbAccounts {
    /// Connects as Nextcloud does at boot; a database that is down fails
    /// here, before any command runs.
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(failed)?;
        let opts = mysql_async::Opts::from_url(url).map_err(failed)?;
        let conn = runtime.block_on(Conn::new(opts)).map_err(failed)?;
        Ok(Self {
            runtime,
            conn,
            table: format!("{prefix}mail_accounts"),
        })
    }

    /// Every account (for tests that inspect the whole state).
    pub fn all(&mut self) -> Result<Vec<Account>, StoreError> {
        self.select("TRUE", Vec::new())
    }

    fn select(
        &mut self,
        condition: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<Vec<Account>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM `{}` WHERE {condition} ORDER BY id",
            self.table
        );
        let rows: Vec<Row> = self
            .runtime
            .block_on(self.conn.exec(sql, params))
            .map_err(query_failed)?;
        Ok(rows.into_iter().map(account).collect())
    }

    fn execute(&mut self, sql: String, params: Vec<mysql_async::Value>) -> Result<(), StoreError> {
        self.runtime
            .block_on(self.conn.exec_drop(sql, params))
            .map_err(query_failed)
    }
}

fn text(row: &Row, column: &str) -> String {
    row.get::<Option<String>, _>(column)
        .flatten()
        .unwrap_or_default()
}

fn port(row: &Row, column: &str) -> i64 {
    text(row, column).trim().parse().unwrap_or(0)
}

fn account(row: Row) -> Account {
    Account {
        id: row.get("id").unwrap_or(0),
        user_id: text(&row, "user_id"),
        name: text(&row, "name"),
        email: text(&row, "email"),
        imap: Endpoint {
            user: text(&row, "inbound_user"),
            host: text(&row, "inbound_host"),
            port: port(&row, "inbound_port"),
            security: text(&row, "inbound_ssl_mode"),
            password: text(&row, "inbound_password"),
        },
        smtp: Endpoint {
            user: text(&row, "outbound_user"),
            host: text(&row, "outbound_host"),
            port: port(&row, "outbound_port"),
            security: text(&row, "outbound_ssl_mode"),
            password: text(&row, "outbound_password"),
        },
        auth_method: text(&row, "auth_method"),
        provisioning_id: row.get::<Option<i64>, _>("provisioning_id").flatten(),
    }
}

/// The values of every column but `id`, in [`COLUMNS`] order.
fn values(a: &Account) -> Vec<mysql_async::Value> {
    vec![
        a.user_id.clone().into(),
        a.name.clone().into(),
        a.email.clone().into(),
        a.imap.host.clone().into(),
        a.imap.port.to_string().into(),
        a.imap.security.clone().into(),
        a.imap.user.clone().into(),
        a.imap.password.clone().into(),
        a.smtp.host.clone().into(),
        a.smtp.port.to_string().into(),
        a.smtp.security.clone().into(),
        a.smtp.user.clone().into(),
        a.smtp.password.clone().into(),
        a.provisioning_id.into(),
        a.auth_method.clone().into(),
    ]
}

impl AccountStore for MariaDbAccounts {
    fn of_user(&mut self, user: &str) -> Result<Vec<Account>, StoreError> {
        self.select("user_id = ?", vec![user.into()])
    }

    fn find(&mut self, id: i64) -> Result<Option<Account>, StoreError> {
        Ok(self.select("id = ?", vec![id.into()])?.into_iter().next())
    }

    fn insert(&mut self, account: Account) -> Result<i64, StoreError> {
        let columns = COLUMNS.trim_start_matches("id, ");
        let placeholders = vec!["?"; 15].join(", ");
        let sql = format!(
            "INSERT INTO `{}` ({columns}) VALUES ({placeholders})",
            self.table
        );
        self.execute(sql, values(&account))?;
        self.conn
            .last_insert_id()
            .map(|id| id as i64)
            .ok_or_else(|| query_failed("no AUTO_INCREMENT id"))
    }

    fn update(&mut self, account: &Account) -> Result<(), StoreError> {
        let set = COLUMNS
            .trim_start_matches("id, ")
            .split(", ")
            .map(|c| format!("{} = ?", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut params = values(account);
        params.push(account.id.into());
        self.execute(
            format!("UPDATE `{}` SET {set} WHERE id = ?", self.table),
            params,
        )
    }

    fn delete(&mut self, id: i64) -> Result<(), StoreError> {
        self.execute(
            format!("DELETE FROM `{}` WHERE id = ?", self.table),
            vec![id.into()],
        )
    }
}
