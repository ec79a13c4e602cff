//! The simulator's persistent state.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoint {
    pub user: String,
    pub host: String,
    pub port: i64,
    pub security: String,
    /// Stored in clear here (Nextcloud encrypts it); never exported.
    pub password: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub imap: Endpoint,
    pub smtp: Endpoint,
    pub auth_method: String,
    /// Set for provisioned accounts, which the CLI refuses to delete.
    #[serde(default)]
    pub provisioning_id: Option<i64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub maintenance: bool,
    pub mail_enabled: bool,
    pub users: Vec<String>,
    pub next_id: i64,
    pub accounts: Vec<Account>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            maintenance: false,
            mail_enabled: true,
            users: Vec::new(),
            next_id: 1,
            accounts: Vec::new(),
        }
    }
}
