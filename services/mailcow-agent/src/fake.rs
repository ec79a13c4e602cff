//! An in-memory Mailcow behind [`MailcowApi`], for tests that run the
//! agent in process: aliases and app passwords that can be seeded, and a
//! switch that makes every call fail the way a real Mailcow can.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::mailcow::{Alias, AliasAdded, AppPassword, Mailbox, MailcowApi};

type Fault = Box<dyn Fn() -> Error + Send + Sync>;

#[derive(Default)]
pub struct FakeMailcow {
    state: Mutex<State>,
    fault: Mutex<Option<Fault>>,
}

#[derive(Default)]
struct State {
    mailboxes: Vec<Mailbox>,
    aliases: Vec<Alias>,
    app_passwords: Vec<AppPassword>,
    /// Each app password's current secret, by id: what a login must present.
    secrets: std::collections::BTreeMap<i64, String>,
    last_id: i64,
}

impl FakeMailcow {
    /// Every call fails with `fault()` from now on (Mailcow down, key revoked…).
    pub fn fail_with(&self, fault: impl Fn() -> Error + Send + Sync + 'static) {
        *lock(&self.fault) = Some(Box::new(fault));
    }

    pub fn add_mailbox(&self, username: &str) {
        lock(&self.state).mailboxes.push(Mailbox {
            username: username.to_owned(),
            sender_acl: Some(Vec::new()),
        });
    }

    /// An alias as someone else made it: with `comment`, which decides
    /// whether it carries our marker. Returns its id.
    pub fn add_alias(&self, address: &str, goto: &[&str], comment: &str) -> i64 {
        let mut state = lock(&self.state);
        let id = state.next_id();
        state.aliases.push(Alias {
            id,
            address: address.to_owned(),
            goto: goto.iter().map(|g| (*g).to_owned()).collect(),
            active: true,
            sogo_visible: true,
            sender_allowed: true,
            private_comment: comment.to_owned(),
        });
        id
    }

    /// The current secrets of the app passwords named `name` on `mailbox`.
    pub fn app_password_secrets(&self, mailbox: &str, name: &str) -> Vec<String> {
        let state = lock(&self.state);
        let ids = state
            .app_passwords
            .iter()
            .filter(|p| p.mailbox == mailbox && p.name == name);
        ids.filter_map(|p| state.secrets.get(&p.id).cloned())
            .collect()
    }

    /// Deletes every app password on `mailbox`, as a person might in the UI.
    pub fn delete_app_passwords_by_hand(&self, mailbox: &str) {
        let mut state = lock(&self.state);
        let gone: Vec<i64> = state
            .app_passwords
            .iter()
            .filter(|p| p.mailbox == mailbox)
            .map(|p| p.id)
            .collect();
        state.app_passwords.retain(|p| p.mailbox != mailbox);
        for id in gone {
            state.secrets.remove(&id);
        }
    }

    pub fn aliases_now(&self) -> Vec<Alias> {
        lock(&self.state).aliases.clone()
    }

    fn check(&self) -> Result<()> {
        match &*lock(&self.fault) {
            Some(fault) => Err(fault()),
            None => Ok(()),
        }
    }

    /// The state, once the fault switch let the call through.
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        self.check()?;
        Ok(lock(&self.state))
    }
}

impl State {
    fn next_id(&mut self) -> i64 {
        self.last_id += 1;
        self.last_id
    }

    fn app_password(&mut self, id: i64) -> Result<&mut AppPassword> {
        self.app_passwords
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or_else(|| Error::Permanent(format!("no app password {id}")))
    }

    fn alias_mut(&mut self, id: i64) -> Result<&mut Alias> {
        self.aliases
            .iter_mut()
            .find(|a| a.id == id)
            .ok_or_else(|| Error::Permanent(format!("no alias {id}")))
    }
}

#[async_trait]
impl MailcowApi for FakeMailcow {
    async fn mailbox(&self, login: &str) -> Result<Option<Mailbox>> {
        let state = self.state()?;
        let found = state.mailboxes.iter().find(|m| m.username == login);
        Ok(found.cloned())
    }

    async fn mailboxes(&self) -> Result<Vec<Mailbox>> {
        Ok(self.state()?.mailboxes.clone())
    }

    async fn aliases(&self) -> Result<Vec<Alias>> {
        Ok(self.state()?.aliases.clone())
    }

    async fn alias(&self, id_or_address: &str) -> Result<Option<Alias>> {
        let state = self.state()?;
        let found = state.aliases.iter().find(|a| {
            a.id.to_string() == id_or_address || a.address.eq_ignore_ascii_case(id_or_address)
        });
        Ok(found.cloned())
    }

    async fn app_passwords(&self, mailbox: &str) -> Result<Vec<AppPassword>> {
        let state = self.state()?;
        let listed = state.app_passwords.iter().filter(|p| p.mailbox == mailbox);
        Ok(listed.cloned().collect())
    }

    async fn set_sender_acl(&self, login: &str, send_as: &[String]) -> Result<()> {
        let mut state = self.state()?;
        let mailbox = state.mailboxes.iter_mut().find(|m| m.username == login);
        let mailbox = mailbox.ok_or_else(|| Error::Permanent(format!("no mailbox {login}")))?;
        mailbox.sender_acl = Some(send_as.to_vec());
        Ok(())
    }

    async fn add_app_password(
        &self,
        mailbox: &str,
        name: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()> {
        let mut state = self.state()?;
        let id = state.next_id();
        state.secrets.insert(id, secret.to_owned());
        state.app_passwords.push(AppPassword {
            id,
            mailbox: mailbox.to_owned(),
            name: name.to_owned(),
            active: true,
            protocols: protocols.to_vec(),
        });
        Ok(())
    }

    async fn edit_app_password(&self, id: i64, _mailbox: &str, protocols: &[String]) -> Result<()> {
        self.state()?.app_password(id)?.protocols = protocols.to_vec();
        Ok(())
    }

    async fn set_app_password_secret(
        &self,
        id: i64,
        _mailbox: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()> {
        let mut state = self.state()?;
        state.app_password(id)?.protocols = protocols.to_vec();
        state.secrets.insert(id, secret.to_owned());
        Ok(())
    }

    async fn delete_app_password(&self, id: i64) -> Result<()> {
        let mut state = self.state()?;
        state.app_passwords.retain(|p| p.id != id);
        state.secrets.remove(&id);
        Ok(())
    }

    async fn add_alias(&self, address: &str, goto: &[String], comment: &str) -> Result<AliasAdded> {
        let mut state = self.state()?;
        let taken = state
            .aliases
            .iter()
            .any(|a| a.address.eq_ignore_ascii_case(address))
            || state
                .mailboxes
                .iter()
                .any(|m| m.username.eq_ignore_ascii_case(address));
        if taken {
            return Ok(AliasAdded::AddressTaken);
        }
        let id = state.next_id();
        state.aliases.push(Alias {
            id,
            address: address.to_owned(),
            goto: goto.to_vec(),
            active: true,
            sogo_visible: true,
            sender_allowed: true,
            private_comment: comment.to_owned(),
        });
        Ok(AliasAdded::Created { id })
    }

    async fn edit_alias(&self, id: i64, goto: &[String]) -> Result<()> {
        self.state()?.alias_mut(id)?.goto = goto.to_vec();
        Ok(())
    }

    async fn delete_alias(&self, id: i64) -> Result<()> {
        self.state()?.aliases.retain(|a| a.id != id);
        Ok(())
    }
}

/// Nothing here is left half-updated by a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
