//! The planner: a pure function of (desired, observed, ledger, scope, guards)
//! to an ordered list of steps. A plan is data: it can be printed as a
//! dry-run, diffed, and asserted on.
//!
//! Ownership rules (architecture §3): never modify or delete an object that
//! neither the ledger nor the object's marker says we created. An object
//! that already exists when we want it is recorded as foreign and is never
//! removed later.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::markers;
use serde::Serialize;

use crate::desired::{DesiredState, keys};
use crate::observed::{Observed, ObservedAlias, ObservedAppPassword};
use crate::store::{LedgerRow, LedgerState};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    SenderAcl,
    AppPassword,
    Alias,
    MailboxAcl,
    SogoDelegation,
    NextcloudAccount,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SenderAcl => "sender_acl",
            Self::AppPassword => "app_password",
            Self::Alias => "alias",
            Self::MailboxAcl => "mailbox_acl",
            Self::SogoDelegation => "sogo_delegation",
            Self::NextcloudAccount => "nextcloud_account",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create on the target (ledger intent first).
    Create,
    /// Bring an object we own back to its desired shape.
    Update,
    /// Remove an object we own.
    Delete,
    /// Ledger only: an object we meant to create exists; mark it created.
    Adopt,
    /// Ledger only: it existed before we wanted it; never remove it.
    RecordForeign,
    /// Ledger only: the object is gone from the target; drop the row.
    Forget,
    /// A new secret for an app password we own (its secret is needed
    /// again, e.g. for a Nextcloud account, and is never stored).
    Rotate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Adopt => "adopt",
            Self::RecordForeign => "record_foreign",
            Self::Forget => "forget",
            Self::Rotate => "rotate",
        }
    }

    /// Whether the step changes the target (as opposed to the ledger only).
    pub fn writes_target(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Delete | Self::Rotate
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    SenderAcl {
        login: String,
        send_as: String,
    },
    AppPassword {
        mailbox: String,
        name: String,
        /// 0 until created.
        id: i64,
        protocols: Vec<String>,
    },
    Alias {
        address: String,
        id: i64,
        goto: Vec<String>,
    },
    /// One folder's entry for `grantee`.
    MailboxAcl {
        owner: String,
        grantee: String,
        folder: String,
        /// The rights to set (empty for a delete).
        rights: Vec<String>,
    },
    /// `delegate` may use `owner`'s identity in SOGo.
    SogoDelegation {
        owner: String,
        delegate: String,
    },
    /// A Nextcloud Mail account; Create and Update take their password from
    /// the app password step on `app_password_key` in the same run.
    NextcloudAccount {
        user: String,
        email: String,
        login: String,
        /// 0 until created.
        id: i64,
        app_password_key: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub resource: Resource,
    pub key: String,
    pub action: Action,
    /// The Authentik username the object belongs to ("" for aliases).
    pub username: String,
    /// Groups that grant it (for the ledger).
    pub groups: BTreeSet<String>,
    pub target: Target,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Why removals were held back, conflicts, unusable targets.
    pub warnings: Vec<String>,
    /// Mailbox ACLs in scope could not be observed; `Some(true)` when that
    /// is temporary and the run should be retried.
    pub mailbox_acls_skipped: Option<bool>,
    /// The same for Nextcloud Mail accounts.
    pub nextcloud_skipped: Option<bool>,
}

impl Plan {
    pub fn target_writes(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action.writes_target())
            .count()
    }
}

/// Which users this run may touch. Aliases are group-level and always planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Users(BTreeSet<String>),
}

impl Scope {
    pub fn contains(&self, username: &str) -> bool {
        match self {
            Self::All => true,
            Self::Users(users) => users.contains(username),
        }
    }
}

/// Safety limits on removals.
#[derive(Clone, Debug)]
pub struct Guards {
    /// False when Authentik looked wrong this run: nothing is removed.
    pub allow_removals: bool,
    pub hold_reason: String,
    /// Removals beyond this share of owned objects stop unless forced...
    pub max_removal_share: f64,
    /// ...once there are more than this many of them.
    pub removal_guard_min: usize,
    pub force: bool,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            allow_removals: true,
            hold_reason: String::new(),
            max_removal_share: 0.5,
            removal_guard_min: 10,
            force: false,
        }
    }
}

pub fn plan(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &[LedgerRow],
    scope: &Scope,
    guards: &Guards,
) -> Plan {
    let ledger_by = |resource: Resource| -> BTreeMap<&str, &LedgerRow> {
        ledger
            .iter()
            .filter(|r| r.resource == resource.as_str())
            .map(|r| (r.key.as_str(), r))
            .collect()
    };
    let mut plan = Plan::default();
    plan_sender_acls(
        desired,
        observed,
        &ledger_by(Resource::SenderAcl),
        scope,
        &mut plan,
    );
    plan_app_passwords(
        desired,
        observed,
        &ledger_by(Resource::AppPassword),
        scope,
        &mut plan,
    );
    plan_aliases(desired, observed, &ledger_by(Resource::Alias), &mut plan);
    plan_mailbox_acls(
        desired,
        observed,
        &ledger_by(Resource::MailboxAcl),
        scope,
        &mut plan,
    );
    plan_sogo_delegations(
        desired,
        observed,
        &ledger_by(Resource::SogoDelegation),
        scope,
        &mut plan,
    );
    // After app passwords: accounts need the secret of an app password
    // created (or rotated) in the same run.
    plan_nextcloud_accounts(
        desired,
        observed,
        &ledger_by(Resource::NextcloudAccount),
        scope,
        &mut plan,
    );
    apply_guards(&mut plan, desired, ledger, guards);
    plan
}

fn plan_sender_acls(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .sender_acls
            .iter()
            .map(|(k, d)| (k.as_str(), d.user.as_str())),
        ledger,
        scope,
    );

    for key in keys {
        let want = desired.sender_acls.get(key);
        let row = ledger.get(key).copied();
        let Some((login, send_as)) = key.split_once('|') else {
            continue;
        };
        let Some(obs) = observed.sender_acls.get(login) else {
            continue;
        };
        let (username, groups) = match (want, row) {
            (Some(d), _) => (d.user.clone(), d.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => continue,
        };
        let step = |action, reason: &str| Step {
            resource: Resource::SenderAcl,
            key: key.to_owned(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::SenderAcl {
                login: login.to_owned(),
                send_as: send_as.to_owned(),
            },
            reason: reason.to_owned(),
        };
        if !obs.mailbox_exists {
            if want.is_some() {
                plan.warnings.push(format!(
                    "{login} is not a Mailcow mailbox; cannot grant send-as {send_as}"
                ));
            }
            if row.is_some() {
                plan.steps
                    .push(step(Action::Forget, "mailbox no longer exists"));
            }
            continue;
        }
        let present = obs.send_as.contains(send_as);
        let implicit = obs.implicitly_allowed.contains(send_as);
        match (want.is_some(), present, row.map(|r| r.state)) {
            (true, true, None) => plan.steps.push(step(
                Action::RecordForeign,
                "already present before we wanted it",
            )),
            (true, true, Some(LedgerState::Intent)) => plan
                .steps
                .push(step(Action::Adopt, "created by an earlier run")),
            (true, true, Some(_)) => {}
            (true, false, _) if implicit => {}
            (true, false, _) => plan.steps.push(step(Action::Create, "granted by group")),
            (false, true, Some(LedgerState::Created | LedgerState::Intent)) => {
                plan.steps.push(step(Action::Delete, "no longer granted"))
            }
            (false, true, Some(LedgerState::Foreign)) => plan.steps.push(step(
                Action::Forget,
                "not granted any more; a person's entry stays",
            )),
            (false, true, None) => {}
            (false, false, Some(_)) => plan.steps.push(step(Action::Forget, "already gone")),
            (false, false, None) => {}
        }
    }
}

/// Keys a run may touch: desired entries of users in scope, plus every
/// ledger row of such a user (so what a leaver was granted is covered).
fn scoped_keys<'a>(
    desired: impl Iterator<Item = (&'a str, &'a str)>,
    ledger: &BTreeMap<&'a str, &'a LedgerRow>,
    scope: &Scope,
) -> BTreeSet<&'a str> {
    desired
        .filter(|(_, user)| scope.contains(user))
        .map(|(key, _)| key)
        .chain(
            ledger
                .iter()
                .filter(|(_, r)| scope.contains(&r.username))
                .map(|(k, _)| *k),
        )
        .collect()
}

/// `authentik-sync:<user>:<target>` → `<user>`, in any form we ever
/// named app passwords (see [`markers::parse_app_password_name`]).
fn user_from_app_password_name(name: &str) -> Option<String> {
    markers::parse_app_password_name(name).map(|(user, _)| user)
}

fn plan_app_passwords(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    // Observed entries carrying our marker, by key.
    let mut found: BTreeMap<String, Vec<&ObservedAppPassword>> = BTreeMap::new();
    for list in observed.app_passwords.values() {
        for p in list {
            // By the name we would give it today: an older or re-escaped
            // form of the same name is the same app password.
            if let Some(name) = markers::canonical_app_password_name(&p.name) {
                found
                    .entry(keys::app_password(&p.mailbox, &name))
                    .or_default()
                    .push(p);
            }
        }
    }
    let mut all_keys: BTreeSet<String> = desired
        .app_passwords
        .iter()
        .filter(|(_, d)| scope.contains(&d.user))
        .map(|(k, _)| k.clone())
        .collect();
    all_keys.extend(
        ledger
            .iter()
            .filter(|(_, r)| scope.contains(&r.username))
            .map(|(k, _)| k.to_string()),
    );
    all_keys.extend(
        found
            .keys()
            .filter(|k| {
                k.split_once('|')
                    .and_then(|(_, name)| user_from_app_password_name(name))
                    .is_some_and(|u| scope.contains(&u))
            })
            .cloned(),
    );

    for key in all_keys {
        let Some((mailbox, name)) = key.split_once('|') else {
            continue;
        };
        if !observed.app_passwords.contains_key(mailbox) {
            continue;
        }
        let want = desired.app_passwords.get(&key);
        let row = ledger.get(key.as_str()).copied();
        let mut matches: Vec<&ObservedAppPassword> = found.get(&key).cloned().unwrap_or_default();
        let username = want
            .map(|d| d.user.clone())
            .or_else(|| row.map(|r| r.username.clone()))
            .or_else(|| user_from_app_password_name(name))
            .unwrap_or_default();
        let groups = want
            .map(|d| d.groups.clone())
            .or_else(|| row.map(|r| r.groups.clone()))
            .unwrap_or_default();
        let protocols = want.map(|d| d.protocols.clone()).unwrap_or_default();
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::AppPassword,
            key: key.clone(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::AppPassword {
                mailbox: mailbox.to_owned(),
                name: name.to_owned(),
                id,
                protocols: protocols.clone(),
            },
            reason: reason.to_owned(),
        };
        match want {
            Some(d) => {
                if matches.is_empty() {
                    plan.steps.push(step(Action::Create, 0, "granted by group"));
                    continue;
                }
                // Keep the one the ledger knows, else the newest; names are
                // not unique in Mailcow, so extras from a crashed run go.
                let ledger_id = row.and_then(|r| r.remote_id.parse::<i64>().ok());
                matches.sort_by_key(|p| (Some(p.id) == ledger_id, p.id));
                let Some(keep) = matches.pop() else { continue };
                for extra in matches {
                    plan.steps
                        .push(step(Action::Delete, extra.id, "duplicate of ours"));
                }
                let known = row.is_some_and(|r| {
                    r.state == LedgerState::Created && r.remote_id == keep.id.to_string()
                });
                if !known {
                    plan.steps
                        .push(step(Action::Adopt, keep.id, "carries our name"));
                }
                let wanted: BTreeSet<String> = d.protocols.iter().cloned().collect();
                if !keep.active || keep.protocols != wanted {
                    plan.steps.push(step(
                        Action::Update,
                        keep.id,
                        "inactive or protocols drifted",
                    ));
                }
            }
            None => {
                for p in &matches {
                    plan.steps
                        .push(step(Action::Delete, p.id, "no longer granted"));
                }
                if matches.is_empty() && row.is_some() {
                    plan.steps.push(step(Action::Forget, 0, "already gone"));
                }
            }
        }
    }
}

fn plan_aliases(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    plan: &mut Plan,
) {
    let Some(aliases) = &observed.aliases else {
        return;
    };
    let mut all: BTreeSet<&str> = desired.aliases.keys().map(String::as_str).collect();
    all.extend(
        aliases
            .iter()
            .filter(|(_, a)| a.managed)
            .map(|(k, _)| k.as_str()),
    );
    all.extend(ledger.keys().copied());

    for address in all {
        let want = desired.aliases.get(address);
        let have: Option<&ObservedAlias> = aliases.get(address);
        let row = ledger.get(address).copied();
        let groups = want
            .map(|d| d.groups.clone())
            .or_else(|| row.map(|r| r.groups.clone()))
            .unwrap_or_default();
        let goto: Vec<String> = want
            .map(|d| d.goto.iter().cloned().collect())
            .unwrap_or_default();
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::Alias,
            key: address.to_owned(),
            action,
            username: String::new(),
            groups: groups.clone(),
            target: Target::Alias {
                address: address.to_owned(),
                id,
                goto: goto.clone(),
            },
            reason: reason.to_owned(),
        };
        match (want, have) {
            (Some(_), None) => plan.steps.push(step(Action::Create, 0, "group alias")),
            (Some(d), Some(a)) if a.managed => {
                let known = row.is_some_and(|r| {
                    r.state == LedgerState::Created && r.remote_id == a.id.to_string()
                });
                if !known {
                    plan.steps
                        .push(step(Action::Adopt, a.id, "carries our marker"));
                }
                if a.goto != d.goto || !a.active || !a.sogo_visible || !a.sender_allowed {
                    plan.steps
                        .push(step(Action::Update, a.id, "members or flags changed"));
                }
            }
            (Some(_), Some(a)) => {
                plan.warnings.push(format!(
                    "alias {address} exists and was not created by us; left alone"
                ));
                if row.map(|r| r.state) != Some(LedgerState::Foreign) {
                    plan.steps.push(step(
                        Action::RecordForeign,
                        a.id,
                        "exists without our marker",
                    ));
                }
            }
            (None, Some(a)) if a.managed => {
                plan.steps
                    .push(step(Action::Delete, a.id, "no longer an alias attribute"))
            }
            (None, Some(_)) => {
                if row.is_some_and(|r| r.state == LedgerState::Foreign) {
                    plan.steps.push(step(
                        Action::Forget,
                        0,
                        "no longer wanted; a person's alias stays",
                    ));
                }
            }
            (None, None) => {
                if row.is_some() {
                    plan.steps.push(step(Action::Forget, 0, "already gone"));
                }
            }
        }
    }
}

/// Drops removals that safety rules forbid, explaining each in a warning.
/// Mailbox ACLs are owned per folder: an entry a person set on one folder
/// before we wanted it stays theirs, while the owner's other folders (and
/// folders created later) get ours.
fn plan_mailbox_acls(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    // (owner, grantee) pairs to consider, with who they belong to.
    let mut pairs: BTreeMap<(String, String), (String, BTreeSet<String>)> = BTreeMap::new();
    for d in desired
        .mailbox_acls
        .values()
        .filter(|d| scope.contains(&d.user))
    {
        pairs.insert(
            (d.owner.clone(), d.grantee.clone()),
            (d.user.clone(), d.groups.clone()),
        );
    }
    for (key, row) in ledger.iter().filter(|(_, r)| scope.contains(&r.username)) {
        if let Some((owner, grantee, _)) = keys::split_mailbox_acl(key) {
            pairs
                .entry((owner.to_owned(), grantee.to_owned()))
                .or_insert_with(|| (row.username.clone(), row.groups.clone()));
        }
    }

    if let Some(unavailable) = &observed.mailbox_acls_unavailable
        && !pairs.is_empty()
    {
        plan.warnings.push(format!(
            "mailbox ACLs not reconciled: {}",
            unavailable.reason
        ));
        plan.mailbox_acls_skipped = Some(unavailable.transient);
    }
    for ((owner, grantee), (username, groups)) in pairs {
        let Some(obs) = observed.mailbox_acls.get(&owner) else {
            continue;
        };
        let want = desired
            .mailbox_acls
            .get(&keys::pair(&owner, &grantee))
            .map(|d| d.rights.clone());
        let prefix = format!("{owner}|{grantee}|");
        let rows: BTreeMap<&str, &LedgerRow> = ledger
            .range::<&str, _>(prefix.as_str()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, r)| (&k[prefix.len()..], *r))
            .collect();
        let step = |folder: &str, action, rights: &BTreeSet<String>, reason: &str| Step {
            resource: Resource::MailboxAcl,
            key: keys::mailbox_acl(&owner, &grantee, folder),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::MailboxAcl {
                owner: owner.clone(),
                grantee: grantee.clone(),
                folder: folder.to_owned(),
                rights: rights.iter().cloned().collect(),
            },
            reason: reason.to_owned(),
        };
        let none = BTreeSet::new();
        if !obs.exists {
            // doveadm says the same for a deleted and an inactive mailbox.
            // Forgetting our rows would orphan entries that come back with
            // a reactivated mailbox, so keep them and wait.
            plan.warnings.push(format!(
                "Dovecot does not know {owner} (deleted or inactive); its folder ACLs wait"
            ));
            continue;
        }
        // Ledger rows of folders that no longer exist.
        for folder in rows.keys().filter(|f| !obs.folders.contains_key(**f)) {
            plan.steps
                .push(step(folder, Action::Forget, &none, "folder is gone"));
        }
        for folder in obs.folders.keys() {
            let have = obs.rights(folder, &grantee);
            let row = rows.get(folder.as_str()).map(|r| r.state);
            match (&want, row) {
                (_, Some(LedgerState::Foreign)) if want.is_none() => plan.steps.push(step(
                    folder,
                    Action::Forget,
                    &none,
                    "not granted any more; a person's entry stays",
                )),
                (_, Some(LedgerState::Foreign)) => {}
                (Some(w), None) if have.is_empty() => {
                    plan.steps
                        .push(step(folder, Action::Create, w, "granted by group"))
                }
                (Some(w), None) => plan.steps.push(step(
                    folder,
                    Action::RecordForeign,
                    w,
                    "a person set this entry before we wanted it",
                )),
                (Some(w), Some(LedgerState::Intent)) if &have == w => {
                    plan.steps
                        .push(step(folder, Action::Adopt, w, "set by an earlier run"))
                }
                (Some(w), Some(LedgerState::Intent)) => {
                    plan.steps
                        .push(step(folder, Action::Create, w, "granted by group"))
                }
                (Some(w), Some(LedgerState::Created)) if &have != w => {
                    plan.steps
                        .push(step(folder, Action::Update, w, "rights drifted or changed"))
                }
                (Some(_), Some(_)) => {}
                (None, Some(_)) if have.is_empty() => {
                    plan.steps
                        .push(step(folder, Action::Forget, &none, "already gone"))
                }
                (None, Some(_)) => {
                    plan.steps
                        .push(step(folder, Action::Delete, &none, "no longer granted"))
                }
                (None, None) => {}
            }
        }
    }
}

/// SOGo delegation follows the sender_acl rules: a delegate a person added
/// in SOGo before we wanted it is recorded foreign and never removed.
fn plan_sogo_delegations(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .sogo_delegations
            .iter()
            .map(|(k, d)| (k.as_str(), d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return;
    }
    let Some(owners) = &observed.sogo else {
        if let Some(reason) = &observed.sogo_unavailable {
            plan.warnings
                .push(format!("SOGo delegation not reconciled: {reason}"));
        }
        return;
    };
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let Some((owner, delegate)) = key.split_once('|') else {
            continue;
        };
        let Some(obs) = owners.get(owner) else {
            continue;
        };
        if let Some(error) = &obs.error {
            if reported.insert(owner) {
                plan.warnings.push(format!(
                    "SOGo settings of {owner} are unreadable, nothing changed for it: {error}"
                ));
            }
            continue;
        }
        let want = desired.sogo_delegations.get(key);
        let row = ledger.get(key).copied();
        let (username, groups) = match (want, row) {
            (Some(d), _) => (d.user.clone(), d.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => continue,
        };
        let step = |action, reason: &str| Step {
            resource: Resource::SogoDelegation,
            key: key.to_owned(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::SogoDelegation {
                owner: owner.to_owned(),
                delegate: delegate.to_owned(),
            },
            reason: reason.to_owned(),
        };
        let present = obs.delegate_to.contains(delegate);
        match (want.is_some(), present, row.map(|r| r.state)) {
            (true, true, None) => plan.steps.push(step(
                Action::RecordForeign,
                "a person delegated it before we wanted it",
            )),
            (true, true, Some(LedgerState::Intent)) => plan
                .steps
                .push(step(Action::Adopt, "created by an earlier run")),
            (true, true, Some(_)) => {}
            // Absent although the ledger says created: SOGo overwrote it
            // (a concurrent settings save) or a person removed it; repair.
            (true, false, _) => plan.steps.push(step(Action::Create, "granted by group")),
            (false, true, Some(LedgerState::Created | LedgerState::Intent)) => {
                plan.steps.push(step(Action::Delete, "no longer granted"))
            }
            (false, true, Some(LedgerState::Foreign)) => plan.steps.push(step(
                Action::Forget,
                "not granted any more; a person's delegation stays",
            )),
            (false, false, Some(_)) => plan.steps.push(step(Action::Forget, "already gone")),
            (false, _, None) => {}
        }
    }
}

/// Nextcloud Mail accounts. An account is ours by the ledger's account id;
/// email + IMAP user + IMAP host identify it only after a crash left an
/// intent without an id. The account's password is an app password secret
/// that exists only in memory during a run, so every create or re-key
/// comes with an app password create or rotate in the same plan.
fn plan_nextcloud_accounts(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .nextcloud_accounts
            .iter()
            .map(|(k, d)| (k.as_str(), d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return;
    }
    let Some(users) = &observed.nextcloud else {
        if let Some(unavailable) = &observed.nextcloud_unavailable {
            plan.warnings.push(format!(
                "Nextcloud Mail accounts not reconciled: {}",
                unavailable.reason
            ));
            plan.nextcloud_skipped = Some(unavailable.transient);
        }
        return;
    };
    for key in keys {
        let Some((user, email)) = key.split_once('|') else {
            continue;
        };
        let want = desired.nextcloud_accounts.get(key);
        let row = ledger.get(key).copied();
        let accounts = users.get(user).map(Vec::as_slice).unwrap_or_default();
        let login = want.map_or(email, |w| w.login.as_str());
        let app_password_key = want.map_or_else(
            || keys::app_password(email, &markers::app_password_name(user, email)),
            |w| w.app_password_key.clone(),
        );
        let by_id = row
            .and_then(|r| r.remote_id.parse::<i64>().ok())
            .and_then(|id| accounts.iter().find(|a| a.id == id));
        // Same address, login and server: ours only if the ledger holds an
        // intent without an id (a crash right after occ created it).
        let lookalike = accounts.iter().find(|a| {
            a.email == email && a.imap_user == login && a.configured_server && !a.provisioned
        });
        let (username, groups) = match (want, row) {
            (Some(d), _) => (d.user.clone(), d.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => continue,
        };
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::NextcloudAccount,
            key: key.to_owned(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::NextcloudAccount {
                user: user.to_owned(),
                email: email.to_owned(),
                login: login.to_owned(),
                id,
                app_password_key: app_password_key.clone(),
            },
            reason: reason.to_owned(),
        };
        let state = row.map(|r| r.state);
        let recovered = match (state, by_id, row) {
            (Some(LedgerState::Intent), None, Some(r)) if r.remote_id.is_empty() => lookalike,
            _ => None,
        };
        match (want, state) {
            (_, Some(LedgerState::Foreign)) if want.is_none() => plan.steps.push(step(
                Action::Forget,
                0,
                "not granted any more; a person's account stays",
            )),
            (_, Some(LedgerState::Foreign)) => {}
            (Some(_), None) if lookalike.is_some() => plan.steps.push(step(
                Action::RecordForeign,
                lookalike.map_or(0, |a| a.id),
                "the user already has an account for this mailbox",
            )),
            (Some(_), _) => {
                if let Some(found) = recovered {
                    // Created by an interrupted run: ours, but its password
                    // is unknown. The re-key records it as created.
                    if secret_step(plan, desired, observed, &app_password_key) {
                        plan.steps.push(step(
                            Action::Update,
                            found.id,
                            "created by an interrupted run; re-key",
                        ));
                    }
                } else if let Some(account) = by_id {
                    if state == Some(LedgerState::Intent) {
                        // A re-key that did not happen last time.
                        if secret_step(plan, desired, observed, &app_password_key) {
                            plan.steps.push(step(
                                Action::Update,
                                account.id,
                                "re-key that did not complete",
                            ));
                        }
                    } else if creates(plan, &app_password_key) {
                        // The app password was lost (deleted in Mailcow):
                        // its re-creation is planned; hand the new secret over.
                        plan.steps.push(step(
                            Action::Update,
                            account.id,
                            "app password was re-created; rotate",
                        ));
                    }
                } else if observed.nextcloud_unknown_users.contains(user) {
                    // Creating would fail every sweep (and rotate an app
                    // password each time); wait until the user exists.
                    plan.warnings.push(format!(
                        "Nextcloud has no user {user} yet (never logged in?); their Mail account for {email} waits"
                    ));
                } else if secret_step(plan, desired, observed, &app_password_key) {
                    plan.steps.push(step(Action::Create, 0, "granted by group"));
                } else {
                    plan.warnings.push(format!(
                        "no app password can be made for {user}'s Nextcloud account on {email}"
                    ));
                }
            }
            (None, Some(_)) => match by_id.or(recovered) {
                Some(account) => {
                    plan.steps
                        .push(step(Action::Delete, account.id, "no longer granted"))
                }
                None => plan.steps.push(step(Action::Forget, 0, "already gone")),
            },
            (None, None) => {}
        }
    }
}

/// Whether the plan creates (or rotates) the app password `key` in this run.
fn creates(plan: &Plan, key: &str) -> bool {
    plan.steps.iter().any(|s| {
        s.resource == Resource::AppPassword
            && s.key == key
            && matches!(s.action, Action::Create | Action::Rotate)
    })
}

/// Makes sure this run produces a secret for the app password `key`: it is
/// being created, or (when it exists and is ours) it is rotated. False when
/// neither is possible.
fn secret_step(plan: &mut Plan, desired: &DesiredState, observed: &Observed, key: &str) -> bool {
    if creates(plan, key) {
        return true;
    }
    let Some((mailbox, name)) = key.split_once('|') else {
        return false;
    };
    let Some(want) = desired.app_passwords.get(key) else {
        return false;
    };
    let Some(existing) = observed
        .app_passwords
        .get(mailbox)
        .and_then(|list| list.iter().find(|p| p.name == name))
    else {
        return false;
    };
    plan.steps.push(Step {
        resource: Resource::AppPassword,
        key: key.to_owned(),
        action: Action::Rotate,
        username: want.user.clone(),
        groups: want.groups.clone(),
        target: Target::AppPassword {
            mailbox: mailbox.to_owned(),
            name: name.to_owned(),
            id: existing.id,
            protocols: want.protocols.clone(),
        },
        reason: "its secret is needed for a Nextcloud account".into(),
    });
    true
}

fn apply_guards(plan: &mut Plan, desired: &DesiredState, ledger: &[LedgerRow], guards: &Guards) {
    let is_delete = |s: &Step| s.action == Action::Delete;
    // Updates that can take access away count as removals where it matters:
    // an alias losing members, folder rights narrowing.
    let may_shrink = |s: &Step| {
        is_delete(s)
            || (s.action == Action::Update
                && matches!(s.resource, Resource::Alias | Resource::MailboxAcl))
    };
    if !guards.allow_removals {
        let held = plan.steps.iter().filter(|s| may_shrink(s)).count();
        if held > 0 {
            plan.warnings
                .push(format!("{held} removal(s) held: {}", guards.hold_reason));
        }
        plan.steps.retain(|s| !may_shrink(s));
        return;
    }
    // A group whose attributes no longer parse keeps what it granted.
    if !desired.invalid_groups.is_empty() {
        let before = plan.steps.len();
        plan.steps.retain(|s| {
            !(may_shrink(s)
                && s.groups
                    .iter()
                    .any(|g| desired.invalid_groups.contains_key(g)))
        });
        let held = before - plan.steps.len();
        if held > 0 {
            plan.warnings.push(format!(
                "{held} removal(s) held because a granting group has invalid attributes"
            ));
        }
    }
    let removals = plan.steps.iter().filter(|s| is_delete(s)).count();
    let owned = ledger
        .iter()
        .filter(|r| r.state != LedgerState::Foreign)
        .count();
    let limit = ((owned as f64) * guards.max_removal_share).floor() as usize;
    if !guards.force && removals > guards.removal_guard_min && removals > limit {
        plan.warnings.push(format!(
            "{removals} removal(s) of {owned} owned objects exceed the guard \
             ({:.0}% and more than {}); run a forced sweep to apply them",
            guards.max_removal_share * 100.0,
            guards.removal_guard_min
        ));
        plan.steps.retain(|s| !is_delete(s));
    }
    for w in desired.invalid_groups.values() {
        plan.warnings.push(w.clone());
    }
}

#[cfg(test)]
mod tests;
