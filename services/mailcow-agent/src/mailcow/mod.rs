//! The Mailcow REST API as this agent needs it. [`MailcowApi`] is the seam:
//! [`client::HttpMailcow`] speaks HTTP, unit tests use an in-memory double.

pub mod client;
pub mod envelope;

use async_trait::async_trait;

use crate::error::Result;

/// The six protocol flags of an app password (reference mailcow.md §3.2).
pub const APP_PASSWORD_PROTOCOLS: [&str; 6] = [
    "imap_access",
    "smtp_access",
    "dav_access",
    "eas_access",
    "pop3_access",
    "sieve_access",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub username: String,
    /// `None` when this Mailcow predates 2026-07a and does not report it.
    pub sender_acl: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub id: i64,
    pub address: String,
    pub goto: Vec<String>,
    pub active: bool,
    pub sogo_visible: bool,
    pub sender_allowed: bool,
    pub private_comment: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPassword {
    pub id: i64,
    pub mailbox: String,
    /// The name as it was given on create (Mailcow's HTML escaping undone).
    pub name: String,
    pub active: bool,
    pub protocols: Vec<String>,
}

/// What `add/alias` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasAdded {
    Created {
        id: i64,
    },
    /// `is_alias_or_mailbox`: the address is taken.
    AddressTaken,
}

#[async_trait]
pub trait MailcowApi: Send + Sync {
    /// `get/mailbox/{login}`; `None` when no such mailbox.
    async fn mailbox(&self, login: &str) -> Result<Option<Mailbox>>;
    /// `get/mailbox/all`: every mailbox in one request (with `sender_acl`
    /// from 2026-07a on).
    async fn mailboxes(&self) -> Result<Vec<Mailbox>>;
    /// `get/alias/all` (excludes mailbox self-aliases).
    async fn aliases(&self) -> Result<Vec<Alias>>;
    /// `get/alias/{id or address}`; `None` when unknown.
    async fn alias(&self, id_or_address: &str) -> Result<Option<Alias>>;
    /// `get/app-passwd/all/{mailbox}`.
    async fn app_passwords(&self, mailbox: &str) -> Result<Vec<AppPassword>>;
    /// Replaces the mailbox's internal send-as list with `send_as`.
    async fn set_sender_acl(&self, login: &str, send_as: &[String]) -> Result<()>;
    async fn add_app_password(
        &self,
        mailbox: &str,
        name: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()>;
    async fn edit_app_password(&self, id: i64, mailbox: &str, protocols: &[String]) -> Result<()>;
    /// Sets a new secret (and the flags) on an app password.
    async fn set_app_password_secret(
        &self,
        id: i64,
        mailbox: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()>;
    async fn delete_app_password(&self, id: i64) -> Result<()>;
    async fn add_alias(&self, address: &str, goto: &[String], comment: &str) -> Result<AliasAdded>;
    async fn edit_alias(&self, id: i64, goto: &[String]) -> Result<()>;
    async fn delete_alias(&self, id: i64) -> Result<()>;
}
