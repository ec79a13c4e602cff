//! Apply: carry out planned changes, one outcome per change. Every write is
//! preceded by a re-check of its object (its own read, or the batch's
//! listing: see [`crate::batch`]), so a change is only made to an object
//! that (still) carries our marker, and only reported applied once Mailcow
//! said so.

use std::collections::BTreeSet;
use std::time::Duration;

use reconciler_proto::agent::{
    AliasCreate, AliasDelete, AliasUpdate, AppPasswordCreate, AppPasswordDelete,
    AppPasswordProtocol, AppPasswordRotate, AppPasswordUpdate, ChangeResult, Outcome,
    SenderAclDelta, mailcow_change::Kind,
};
use reconciler_proto::mailcow::markers::{
    ALIAS_COMMENT, APP_PASSWORD_PREFIX, canonical_app_password_name, is_managed_alias_comment,
};
use reconciler_runtime::locks::{KeyGuard, KeyedLocks};
use reconciler_runtime::secrets::Secret;

use crate::address;
use crate::batch::{Listings, WriteLog};
use crate::error::{Error, Result};
use crate::mailcow::{AliasAdded, MailcowApi};
use crate::observe::implicitly_allowed;
use crate::password;

/// What a change did, before it becomes a wire [`ChangeResult`].
#[derive(Debug)]
pub struct Done {
    pub outcome: Outcome,
    pub message: String,
    pub remote_id: i64,
    pub secret: Option<Secret>,
    pub implicitly_allowed: Vec<String>,
}

impl Done {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            remote_id: 0,
            secret: None,
            implicitly_allowed: Vec::new(),
        }
    }

    fn with_id(mut self, id: i64) -> Self {
        self.remote_id = id;
        self
    }
}

pub struct Applier<'a> {
    pub api: &'a dyn MailcowApi,
    pub locks: &'a KeyedLocks,
    pub dry_run: bool,
    /// How long a create whose answer timed out keeps re-reading for the
    /// object it may have made.
    pub lost_answer_wait: Duration,
    /// The batch's listings, for the re-check before each write.
    pub listings: &'a Listings,
    /// Every write this agent makes is recorded here, so a listing read
    /// before it is not trusted for that object.
    pub writes: &'a WriteLog,
}

/// Between re-reads while waiting for a create whose answer was lost.
const LOST_ANSWER_POLL: Duration = Duration::from_millis(200);

impl Applier<'_> {
    /// Applies one change. Failures become outcomes; nothing here panics or
    /// aborts the batch.
    pub async fn apply(&self, id: String, kind: Option<Kind>) -> ChangeResult {
        let result = match kind {
            None => Err(Error::Permanent("change has no kind".into())),
            Some(Kind::SenderAcl(c)) => self.sender_acl(c).await,
            Some(Kind::AppPasswordCreate(c)) => self.app_password_create(c).await,
            Some(Kind::AppPasswordUpdate(c)) => self.app_password_update(c).await,
            Some(Kind::AppPasswordDelete(c)) => self.app_password_delete(c).await,
            Some(Kind::AppPasswordRotate(c)) => self.app_password_rotate(c).await,
            Some(Kind::AliasCreate(c)) => self.alias_create(c).await,
            Some(Kind::AliasUpdate(c)) => self.alias_update(c).await,
            Some(Kind::AliasDelete(c)) => self.alias_delete(c).await,
            // Batched per owner by the service; never routed here.
            Some(Kind::MailboxAclSet(_) | Kind::MailboxAclDelete(_)) => Err(Error::Permanent(
                "mailbox ACL changes are applied in per-owner batches".into(),
            )),
        };
        change_result(id, result)
    }
}

/// The wire result of one change.
pub fn change_result(id: String, result: Result<Done>) -> ChangeResult {
    {
        let done = result.unwrap_or_else(|e| Done::new(e.outcome(), e.to_string()));
        ChangeResult {
            id,
            outcome: done.outcome as i32,
            message: done.message,
            remote_id: if done.remote_id == 0 {
                String::new()
            } else {
                done.remote_id.to_string()
            },
            secret: done
                .secret
                .map(|s| s.expose().to_owned())
                .unwrap_or_default(),
            implicitly_allowed: done.implicitly_allowed,
            ..Default::default()
        }
    }
}

impl Applier<'_> {
    /// Holds `object` (a login, mailbox or address) against other changes
    /// to it; Mailcow ignores case in these, so the lock does too.
    async fn lock(&self, object: &str) -> KeyGuard {
        self.locks.lock(&object.to_ascii_lowercase()).await
    }

    fn dry(&self, what: String) -> Option<Done> {
        self.dry_run
            .then(|| Done::new(Outcome::DryRun, format!("would {what}")))
    }

    async fn sender_acl(&self, c: SenderAclDelta) -> Result<Done> {
        address::plain("login", &c.login)?;
        for add in &c.add {
            address::plain("send-as address", add)?;
        }
        let _guard = self.lock(&c.login).await;
        let current = match self.listings.sender_acl(self.writes, &c.login) {
            Some(listed) => listed,
            None => self.current_sender_acl(&c.login).await?,
        };
        let removing: BTreeSet<String> = c.remove.iter().map(|a| lower(a)).collect();
        let mut next: Vec<String> = current
            .iter()
            .filter(|a| !removing.contains(&lower(a)))
            .cloned()
            .collect();
        for add in &c.add {
            if !next.iter().any(|a| a.eq_ignore_ascii_case(add)) {
                next.push(add.trim().to_owned());
            }
        }
        if next == current {
            return Ok(Done::new(Outcome::Unchanged, "sender_acl already as asked"));
        }
        if let Some(done) = self.dry(format!(
            "set sender_acl of {} to [{}]",
            c.login,
            next.join(", ")
        )) {
            return Ok(done);
        }
        {
            let _writing = self.writes.writing(&c.login);
            self.api.set_sender_acl(&c.login, &next).await?;
        }

        // Read back: Mailcow drops entries silently instead of failing.
        let stored = self.current_sender_acl(&c.login).await?;
        let has = |a: &str| stored.iter().any(|s| s.eq_ignore_ascii_case(a));
        let kept: Vec<&String> = c.remove.iter().filter(|a| has(a)).collect();
        if !kept.is_empty() {
            return Err(Error::Permanent(format!(
                "Mailcow kept sender_acl entries {kept:?} for {} (it re-inserts entries it no longer manages)",
                c.login
            )));
        }
        let missing: Vec<&String> = c.add.iter().filter(|a| !has(a)).collect();
        if missing.is_empty() {
            return Ok(Done::new(Outcome::Applied, "sender_acl updated"));
        }
        let implicit = implicitly_allowed(&c.login, &self.api.aliases().await?);
        let (dropped, lost): (Vec<&String>, Vec<&String>) = missing
            .into_iter()
            .partition(|a| implicit.contains(&lower(a)));
        if !lost.is_empty() {
            return Err(Error::Permanent(format!(
                "Mailcow did not store sender_acl entries {lost:?} for {}",
                c.login
            )));
        }
        let mut done = Done::new(
            Outcome::Applied,
            "sender_acl updated; some entries are already allowed through an alias",
        );
        done.implicitly_allowed = dropped.into_iter().map(|a| lower(a)).collect();
        Ok(done)
    }

    async fn current_sender_acl(&self, login: &str) -> Result<Vec<String>> {
        let mailbox = self
            .api
            .mailbox(login)
            .await?
            .ok_or_else(|| Error::Permanent(format!("{login} is not a Mailcow mailbox")))?;
        mailbox.sender_acl.ok_or_else(|| {
            Error::Config(
                "Mailcow does not report sender_acl on get/mailbox; it needs release 2026-07a or newer"
                    .into(),
            )
        })
    }

    async fn app_password_create(&self, c: AppPasswordCreate) -> Result<Done> {
        address::plain("mailbox", &c.mailbox)?;
        let wanted = ours(&c.name)?;
        let protocols = mailcow_flags(&c.protocols)?;
        let _guard = self.lock(&c.mailbox).await;
        let before = self.api.app_passwords(&c.mailbox).await?;
        if let Some(existing) = before.iter().find(|p| same_name(&p.name, &wanted)) {
            return Ok(
                Done::new(Outcome::Unchanged, "app password already exists").with_id(existing.id)
            );
        }
        if let Some(done) = self.dry(format!("create app password {} on {}", c.name, c.mailbox)) {
            return Ok(done);
        }
        let secret = password::generate();
        let known: BTreeSet<i64> = before.iter().map(|p| p.id).collect();
        if let Err(e) = self
            .api
            .add_app_password(&c.mailbox, &c.name, secret.expose(), &protocols)
            .await
        {
            if !e.write_may_have_happened() {
                return Err(e);
            }
            // The add may have happened (or still be under way): adding
            // again on retry would make a second one. Look for it first.
            return self
                .adopt_after_lost_answer(&c, &protocols, &wanted, &known, secret, e)
                .await;
        }
        // Mailcow does not return the new id; find it by listing again.
        let id = self
            .new_app_password(&c.mailbox, &wanted, &known)
            .await?
            .ok_or_else(|| {
                Error::Permanent(format!(
                    "Mailcow confirmed app password {} on {} but does not list it",
                    c.name, c.mailbox
                ))
            })?;
        let mut done = Done::new(Outcome::Applied, "app password created").with_id(id);
        done.secret = Some(secret);
        Ok(done)
    }

    /// Several creates on one mailbox: one listing before and one after the
    /// whole group, instead of two per create, so a mailbox's thousandth
    /// app password costs what its first did. Each create still gets its
    /// own outcome, secret and id; a lost answer is settled as for one.
    pub async fn app_password_creates(
        &self,
        mailbox: &str,
        creates: Vec<(usize, String, AppPasswordCreate)>,
    ) -> Vec<(usize, ChangeResult)> {
        let mut results = Vec::new();
        if let Err(e) = address::plain("mailbox", mailbox) {
            let (outcome, message) = (e.outcome(), e.to_string());
            return creates
                .into_iter()
                .map(|(i, id, _)| {
                    (
                        i,
                        change_result(id, Ok(Done::new(outcome, message.clone()))),
                    )
                })
                .collect();
        }
        let _guard = self.lock(mailbox).await;
        let before = match self.api.app_passwords(mailbox).await {
            Ok(before) => before,
            Err(e) => {
                let (outcome, message) = (e.outcome(), e.to_string());
                return creates
                    .into_iter()
                    .map(|(i, id, _)| {
                        (
                            i,
                            change_result(id, Ok(Done::new(outcome, message.clone()))),
                        )
                    })
                    .collect();
            }
        };
        let known: BTreeSet<i64> = before.iter().map(|p| p.id).collect();
        // Added (or maybe added: the answer was lost), waiting for their ids.
        let mut added = Vec::new();
        for (i, id, c) in creates {
            let checked = ours(&c.name).and_then(|w| Ok((w, mailcow_flags(&c.protocols)?)));
            let (wanted, protocols) = match checked {
                Ok(checked) => checked,
                Err(e) => {
                    results.push((i, change_result(id, Err(e))));
                    continue;
                }
            };
            if let Some(existing) = before.iter().find(|p| same_name(&p.name, &wanted)) {
                let done = Done::new(Outcome::Unchanged, "app password already exists")
                    .with_id(existing.id);
                results.push((i, change_result(id, Ok(done))));
                continue;
            }
            if let Some(done) = self.dry(format!("create app password {} on {}", c.name, mailbox)) {
                results.push((i, change_result(id, Ok(done))));
                continue;
            }
            let secret = password::generate();
            let lost = match self
                .api
                .add_app_password(mailbox, &c.name, secret.expose(), &protocols)
                .await
            {
                Ok(()) => None,
                Err(e) if e.write_may_have_happened() => Some(e),
                Err(e) => {
                    results.push((i, change_result(id, Err(e))));
                    continue;
                }
            };
            added.push((i, id, c, wanted, protocols, secret, lost));
        }
        if added.is_empty() {
            return results;
        }
        let after = self.api.app_passwords(mailbox).await;
        for (i, id, c, wanted, protocols, secret, lost) in added {
            let found = match &after {
                Ok(after) => after
                    .iter()
                    .filter(|p| same_name(&p.name, &wanted) && !known.contains(&p.id))
                    .map(|p| p.id)
                    .max(),
                Err(_) => None,
            };
            let result = match (found, lost, &after) {
                (Some(new), None, _) => {
                    let mut done = Done::new(Outcome::Applied, "app password created").with_id(new);
                    done.secret = Some(secret);
                    Ok(done)
                }
                // Mailcow made it but the answer was lost: set the secret
                // anew so the one returned is certainly the one it has.
                (Some(new), Some(e), _) => {
                    tracing::warn!(%mailbox, id = new, error = %e, "add/app-passwd answer lost; adopting the app password it made");
                    self.api
                        .set_app_password_secret(new, mailbox, secret.expose(), &protocols)
                        .await
                        .map(|()| {
                            let mut done = Done::new(
                                Outcome::Applied,
                                "app password created (Mailcow's answer was lost; found and adopted)",
                            )
                            .with_id(new);
                            done.secret = Some(secret);
                            done
                        })
                }
                (None, Some(e), _) => {
                    self.adopt_after_lost_answer(&c, &protocols, &wanted, &known, secret, e)
                        .await
                }
                (None, None, Err(e)) => Ok(Done::new(e.outcome(), e.to_string())),
                (None, None, Ok(_)) => Err(Error::Permanent(format!(
                    "Mailcow confirmed app password {} on {mailbox} but does not list it",
                    c.name
                ))),
            };
            results.push((i, change_result(id, result)));
        }
        results
    }

    /// The newest app password named `wanted` on `mailbox` that is not in
    /// `known` (listed before our add).
    async fn new_app_password(
        &self,
        mailbox: &str,
        wanted: &str,
        known: &BTreeSet<i64>,
    ) -> Result<Option<i64>> {
        Ok(self
            .api
            .app_passwords(mailbox)
            .await?
            .into_iter()
            .filter(|p| same_name(&p.name, wanted) && !known.contains(&p.id))
            .map(|p| p.id)
            .max())
    }

    /// After an `add/app-passwd` without an answer: re-read the mailbox
    /// (for a while after a timeout, since Mailcow goes on after we gave
    /// up) and adopt an app password with our name that was not there
    /// before, instead of letting a retry add a second one. Its secret is
    /// set anew so the one we return is certainly the one it has. Nothing
    /// appeared: the original error, for the next run to look again.
    async fn adopt_after_lost_answer(
        &self,
        c: &AppPasswordCreate,
        protocols: &[String],
        wanted: &str,
        known: &BTreeSet<i64>,
        secret: Secret,
        lost: Error,
    ) -> Result<Done> {
        let wait = match lost {
            Error::TimedOut(_) => self.lost_answer_wait,
            _ => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + wait;
        let id = loop {
            match self.new_app_password(&c.mailbox, wanted, known).await {
                Ok(Some(id)) => break id,
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOST_ANSWER_POLL).await;
                }
                // Not there (yet), or Mailcow cannot be read: retry later.
                Ok(None) | Err(_) => return Err(lost),
            }
        };
        tracing::warn!(
            mailbox = %c.mailbox,
            id,
            error = %lost,
            "add/app-passwd answer lost; adopting the app password it made"
        );
        self.api
            .set_app_password_secret(id, &c.mailbox, secret.expose(), protocols)
            .await?;
        let mut done = Done::new(
            Outcome::Applied,
            "app password created (Mailcow's answer was lost; found and adopted)",
        )
        .with_id(id);
        done.secret = Some(secret);
        Ok(done)
    }

    async fn app_password_update(&self, c: AppPasswordUpdate) -> Result<Done> {
        address::plain("mailbox", &c.mailbox)?;
        ours(&c.name)?;
        let protocols = mailcow_flags(&c.protocols)?;
        let _guard = self.lock(&c.mailbox).await;
        let current = self
            .our_app_password(&c.mailbox, c.id, &c.name)
            .await?
            .ok_or_else(|| {
                Error::Permanent(format!("app password {} is gone from {}", c.id, c.mailbox))
            })?;
        let wanted: BTreeSet<&String> = protocols.iter().collect();
        let have: BTreeSet<&String> = current.protocols.iter().collect();
        if current.active && wanted == have {
            return Ok(
                Done::new(Outcome::Unchanged, "app password already as asked").with_id(c.id),
            );
        }
        if let Some(done) = self.dry(format!("update app password {} on {}", c.name, c.mailbox)) {
            return Ok(done.with_id(c.id));
        }
        self.api
            .edit_app_password(c.id, &c.mailbox, &protocols)
            .await?;
        Ok(Done::new(Outcome::Applied, "app password updated").with_id(c.id))
    }

    /// A new secret on one of our app passwords, returned once.
    async fn app_password_rotate(&self, c: AppPasswordRotate) -> Result<Done> {
        address::plain("mailbox", &c.mailbox)?;
        ours(&c.name)?;
        let protocols = mailcow_flags(&c.protocols)?;
        let _guard = self.lock(&c.mailbox).await;
        self.our_app_password(&c.mailbox, c.id, &c.name)
            .await?
            .ok_or_else(|| {
                Error::Permanent(format!("app password {} is gone from {}", c.id, c.mailbox))
            })?;
        if let Some(done) = self.dry(format!("rotate app password {} on {}", c.name, c.mailbox)) {
            return Ok(done.with_id(c.id));
        }
        let secret = password::generate();
        self.api
            .set_app_password_secret(c.id, &c.mailbox, secret.expose(), &protocols)
            .await?;
        let mut done = Done::new(Outcome::Applied, "app password rotated").with_id(c.id);
        done.secret = Some(secret);
        Ok(done)
    }

    async fn app_password_delete(&self, c: AppPasswordDelete) -> Result<Done> {
        address::plain("mailbox", &c.mailbox)?;
        ours(&c.name)?;
        let _guard = self.lock(&c.mailbox).await;
        if self
            .our_app_password(&c.mailbox, c.id, &c.name)
            .await?
            .is_none()
        {
            return Ok(Done::new(Outcome::Unchanged, "app password already gone"));
        }
        if let Some(done) = self.dry(format!("delete app password {} on {}", c.name, c.mailbox)) {
            return Ok(done.with_id(c.id));
        }
        self.api.delete_app_password(c.id).await?;
        Ok(Done::new(Outcome::Applied, "app password deleted").with_id(c.id))
    }

    /// App password `id` on `mailbox`, `None` when it is gone. Refused when
    /// it is no longer named `name` (in any form of it we ever wrote, or
    /// Mailcow's re-escaping made of it): the id alone is not proof it is ours.
    async fn our_app_password(
        &self,
        mailbox: &str,
        id: i64,
        name: &str,
    ) -> Result<Option<crate::mailcow::AppPassword>> {
        let Some(current) = self
            .api
            .app_passwords(mailbox)
            .await?
            .into_iter()
            .find(|p| p.id == id)
        else {
            return Ok(None);
        };
        if !same_name(&current.name, &ours(name)?) {
            return Err(Error::Refused(format!(
                "app password {id} on {mailbox} is named `{}`, not `{name}`",
                current.name
            )));
        }
        Ok(Some(current))
    }

    async fn alias_create(&self, c: AliasCreate) -> Result<Done> {
        require_alias(&c.address, &c.goto)?;
        if c.goto.is_empty() {
            return Err(Error::Permanent(format!(
                "alias {} needs at least one goto",
                c.address
            )));
        }
        let _guard = self.lock(&c.address).await;
        if let Some(done) = self.dry(format!("create alias {} → {}", c.address, c.goto.join(",")))
        {
            return Ok(done);
        }
        let added = {
            let _writing = self.writes.writing(&c.address);
            self.api
                .add_alias(&c.address, &c.goto, ALIAS_COMMENT)
                .await?
        };
        match added {
            AliasAdded::Created { id } => {
                Ok(Done::new(Outcome::Applied, "alias created").with_id(id))
            }
            AliasAdded::AddressTaken => {
                // Ours from an earlier, interrupted run? Then this is a retry.
                match self.api.alias(&c.address).await? {
                    Some(a) if is_managed_alias_comment(&a.private_comment) => {
                        Ok(Done::new(Outcome::Unchanged, "alias already exists (ours)")
                            .with_id(a.id))
                    }
                    _ => Err(Error::Refused(format!(
                        "{} already exists as a mailbox or an alias we did not create",
                        c.address
                    ))),
                }
            }
        }
    }

    async fn alias_update(&self, c: AliasUpdate) -> Result<Done> {
        require_alias(&c.address, &c.goto)?;
        if c.goto.is_empty() {
            return Err(Error::Permanent(format!(
                "alias {} needs at least one goto; delete it instead",
                c.address
            )));
        }
        let _guard = self.lock(&c.address).await;
        let current = self
            .alias_before_write(c.id, &c.address)
            .await?
            .ok_or_else(|| Error::Permanent(format!("alias {} ({}) is gone", c.address, c.id)))?;
        owned_alias(&current, c.id, &c.address)?;
        let wanted: BTreeSet<String> = c.goto.iter().map(|g| lower(g)).collect();
        let have: BTreeSet<String> = current.goto.iter().map(|g| lower(g)).collect();
        if wanted == have && current.active && current.sogo_visible && current.sender_allowed {
            return Ok(Done::new(Outcome::Unchanged, "alias already as asked").with_id(c.id));
        }
        if let Some(done) = self.dry(format!("set alias {} → {}", c.address, c.goto.join(","))) {
            return Ok(done.with_id(c.id));
        }
        let _writing = self.writes.writing(&c.address);
        self.api.edit_alias(c.id, &c.goto).await?;
        Ok(Done::new(Outcome::Applied, "alias updated").with_id(c.id))
    }

    async fn alias_delete(&self, c: AliasDelete) -> Result<Done> {
        address::plain("alias address", &c.address)?;
        let _guard = self.lock(&c.address).await;
        let Some(current) = self.alias_before_write(c.id, &c.address).await? else {
            return Ok(Done::new(Outcome::Unchanged, "alias already gone"));
        };
        owned_alias(&current, c.id, &c.address)?;
        if let Some(done) = self.dry(format!("delete alias {}", c.address)) {
            return Ok(done.with_id(c.id));
        }
        let _writing = self.writes.writing(&c.address);
        self.api.delete_alias(c.id).await?;
        Ok(Done::new(Outcome::Applied, "alias deleted").with_id(c.id))
    }
}

impl Applier<'_> {
    /// Alias `id` as the batch listed it, or read now when the listing
    /// cannot tell (none taken, not shown, or written since).
    async fn alias_before_write(
        &self,
        id: i64,
        address: &str,
    ) -> Result<Option<crate::mailcow::Alias>> {
        if let Some(listed) = self.listings.alias(self.writes, id, address) {
            return Ok(Some(listed));
        }
        self.api.alias(&id.to_string()).await
    }
}

/// An alias may be changed only if it carries our marker and is still the
/// address we think it is (ids are reused after deletes).
fn owned_alias(alias: &crate::mailcow::Alias, id: i64, address: &str) -> Result<()> {
    if !is_managed_alias_comment(&alias.private_comment) {
        return Err(Error::Refused(format!(
            "alias {} ({id}) does not carry our marker",
            alias.address
        )));
    }
    if !address::same(&alias.address, address) {
        return Err(Error::Refused(format!(
            "alias {id} is {}, not {address}",
            alias.address
        )));
    }
    Ok(())
}

/// The canonical form of `name` when it is one of our app password names.
fn ours(name: &str) -> Result<String> {
    canonical_app_password_name(name).ok_or_else(|| {
        Error::Refused(format!(
            "app password `{name}` is not named {APP_PASSWORD_PREFIX}<user>:<target>"
        ))
    })
}

/// Whether an app password named `name` on Mailcow is the one whose
/// canonical name is `canonical`.
fn same_name(name: &str, canonical: &str) -> bool {
    canonical_app_password_name(name).as_deref() == Some(canonical)
}

/// Mailcow's flags for the wire's protocols. UNSPECIFIED (a client that
/// left the field at its default) and numbers this agent does not know are
/// refused for good: guessing would grant access nobody asked for.
fn mailcow_flags(protocols: &[i32]) -> Result<Vec<String>> {
    if protocols.is_empty() {
        return Err(Error::Permanent(
            "an app password needs at least one protocol".into(),
        ));
    }
    protocols
        .iter()
        .map(|&p| {
            AppPasswordProtocol::try_from(p)
                .ok()
                .and_then(AppPasswordProtocol::mailcow_flag)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::Permanent(format!(
                        "app password protocol {p} is not one of IMAP, SMTP, DAV, EAS, POP3, SIEVE \
                         (APP_PASSWORD_PROTOCOL_UNSPECIFIED is not a protocol)"
                    ))
                })
        })
        .collect()
}

/// An alias address and its goto list must be plain addresses: Mailcow
/// splits both on separators, so anything else could make other aliases.
fn require_alias(address: &str, goto: &[String]) -> Result<()> {
    address::plain("alias address", address)?;
    for g in goto {
        address::plain("alias goto", g)?;
    }
    Ok(())
}

fn lower(s: &str) -> String {
    s.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_protocols_become_mailcow_flags_and_unspecified_is_refused() {
        let wire = [
            AppPasswordProtocol::Imap as i32,
            AppPasswordProtocol::Sieve as i32,
        ];
        assert_eq!(
            mailcow_flags(&wire).unwrap(),
            ["imap_access", "sieve_access"]
        );
        for bad in [
            vec![AppPasswordProtocol::Unspecified as i32],
            vec![42],
            vec![],
        ] {
            let e = mailcow_flags(&bad).unwrap_err();
            assert!(matches!(e, Error::Permanent(_)), "{e}");
            assert_eq!(e.outcome(), Outcome::Permanent, "{e}");
        }
    }
}
