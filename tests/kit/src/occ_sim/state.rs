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

/// A failure of the store behind the accounts (the database went away);
/// occ prints it as an unhandled exception.
#[derive(Debug)]
pub struct StoreError(pub String);

/// Where the Mail accounts live: the state file ([`FileAccounts`]) or a real
/// `oc_mail_accounts` table ([`super::MariaDbAccounts`]), as on a real
/// Nextcloud, so a reader of the table sees what occ made.
pub trait AccountStore {
    /// The user's accounts in id order (export's order).
    fn of_user(&mut self, user: &str) -> Result<Vec<Account>, StoreError>;
    fn find(&mut self, id: i64) -> Result<Option<Account>, StoreError>;
    /// Saves a new account (its `id` is ignored) and returns the id it got.
    fn insert(&mut self, account: Account) -> Result<i64, StoreError>;
    fn update(&mut self, account: &Account) -> Result<(), StoreError>;
    fn delete(&mut self, id: i64) -> Result<(), StoreError>;
}

/// The accounts kept in the state file itself, taken out of a [`State`]
/// for one command and put back after it.
pub struct FileAccounts {
    next_id: i64,
    accounts: Vec<Account>,
}

impl FileAccounts {
    pub fn take(state: &mut State) -> Self {
        Self {
            next_id: state.next_id,
            accounts: std::mem::take(&mut state.accounts),
        }
    }

    pub fn put_back(self, state: &mut State) {
        state.next_id = self.next_id;
        state.accounts = self.accounts;
    }
}

impl AccountStore for FileAccounts {
    fn of_user(&mut self, user: &str) -> Result<Vec<Account>, StoreError> {
        Ok(self
            .accounts
            .iter()
            .filter(|a| a.user_id == user)
            .cloned()
            .collect())
    }

    fn find(&mut self, id: i64) -> Result<Option<Account>, StoreError> {
        Ok(self.accounts.iter().find(|a| a.id == id).cloned())
    }

    fn insert(&mut self, mut account: Account) -> Result<i64, StoreError> {
        account.id = self.next_id;
        self.next_id += 1;
        self.accounts.push(account);
        Ok(self.next_id - 1)
    }

    fn update(&mut self, account: &Account) -> Result<(), StoreError> {
        if let Some(existing) = self.accounts.iter_mut().find(|a| a.id == account.id) {
            *existing = account.clone();
        }
        Ok(())
    }

    fn delete(&mut self, id: i64) -> Result<(), StoreError> {
        self.accounts.retain(|a| a.id != id);
        Ok(())
    }
}
