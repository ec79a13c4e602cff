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
use crate::observed::{
    Observed, ObservedAlias, ObservedAppPassword, ObservedNextcloudAccount, Unavailable,
};
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
    /// A SOGo user's cached settings, owed an eviction (see [`sogo_cache`]).
    SogoCacheEviction,
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
            Self::SogoCacheEviction => "sogo_cache_eviction",
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
    /// Drop a cached copy on the target (SOGo's memcached) so it serves
    /// what was written.
    Evict,
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
            Self::Evict => "evict",
        }
    }

    /// Whether the step changes the target (as opposed to the ledger only).
    pub fn writes_target(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Delete | Self::Rotate | Self::Evict
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
    /// `<uid>+settings` in SOGo's memcached.
    SogoCacheEviction {
        uid: String,
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
    /// Resources in scope that could not be observed, so nothing was
    /// planned for them (neither grants nor removals). The rest of the
    /// plan is unaffected: one target down never holds back the others.
    pub held: Vec<Held>,
}

/// A part of the world this plan leaves alone because it could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    pub resource: Resource,
    /// Which subject (a mailbox, a login), or empty for the whole resource.
    pub subject: String,
    pub reason: String,
    /// Worth retrying soon; the job is retried.
    pub transient: bool,
}

impl Plan {
    fn hold(&mut self, resource: Resource, subject: &str, why: &Unavailable) {
        let what = if subject.is_empty() {
            resource.as_str().to_owned()
        } else {
            format!("{} of {subject}", resource.as_str())
        };
        self.warnings
            .push(format!("{what} not reconciled: {}", why.reason));
        self.held.push(Held {
            resource,
            subject: subject.to_owned(),
            reason: why.reason.clone(),
            transient: why.transient,
        });
    }
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
    let nextcloud_ledger = ledger_by(Resource::NextcloudAccount);
    let wants = app_password_wants(desired, observed, &nextcloud_ledger, &mut plan);
    let owned_app_passwords = plan_app_passwords(
        desired,
        observed,
        &ledger_by(Resource::AppPassword),
        &wants,
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
        &nextcloud_ledger,
        &owned_app_passwords,
        scope,
        &mut plan,
    );
    apply_guards(&mut plan, desired, ledger, guards);
    warn_if_ledger_lost(&mut plan, ledger);
    plan
}

/// The ledger is the only proof of what we created. If it holds nothing of
/// ours while objects we would create already exist, the state DB may have
/// been lost or replaced: those objects are now recorded as a person's and
/// will never be revoked. Say so loudly, with the count.
fn warn_if_ledger_lost(plan: &mut Plan, ledger: &[LedgerRow]) {
    let owned = ledger.iter().any(|r| r.state != LedgerState::Foreign);
    let foreign = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::RecordForeign)
        .count();
    if !owned && foreign > 0 {
        plan.warnings.push(format!(
            "LEDGER EMPTY: the state DB records nothing this service created, yet {foreign} \
             object(s) it would create already exist; they are being recorded as made by a \
             person and will never be revoked. If the state DB was lost or replaced, stop the \
             coordinator and restore it from a backup (README, \"State DB backups\") before \
             the next sweep. On a first run over entries made by hand or by another tool, this \
             is expected."
        ));
    }
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
    if keys.is_empty() {
        return;
    }
    if let Some(why) = &observed.mailcow_unavailable {
        plan.hold(Resource::SenderAcl, "", why);
        return;
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let want = desired.sender_acls.get(key);
        let row = ledger.get(key).copied();
        let Some((login, send_as)) = key.split_once('|') else {
            continue;
        };
        let Some(obs) = observed.sender_acls.get(login) else {
            if let Some(why) = observed.subject_error(Resource::SenderAcl, login)
                && reported.insert(login)
            {
                plan.hold(Resource::SenderAcl, login, why);
            }
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

/// Whether a desired app password should exist this run. Its only use is
/// the Nextcloud Mail account that logs in with it, so that decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Create it if missing, keep it in shape.
    Yes,
    /// Keep ours as it is, but create nothing: its account cannot be made
    /// this run (no nextcloud-agent, Nextcloud down, no such user yet), and
    /// a secret made now would be thrown away.
    Hold,
    /// Not needed: the member already has their own account for the mailbox.
    No,
}

/// What each desired app password is for this run, by ledger key.
fn app_password_wants(
    desired: &DesiredState,
    observed: &Observed,
    nextcloud_ledger: &BTreeMap<&str, &LedgerRow>,
    plan: &mut Plan,
) -> BTreeMap<String, Want> {
    let mut wants: BTreeMap<String, Want> = desired
        .app_passwords
        .keys()
        .map(|k| (k.clone(), Want::Yes))
        .collect();
    let mut without_agent = 0;
    for (key, account) in &desired.nextcloud_accounts {
        let Some(want) = wants.get_mut(&account.app_password_key) else {
            continue;
        };
        let row = nextcloud_ledger.get(key.as_str()).map(|r| r.state);
        let accounts = observed
            .nextcloud
            .as_ref()
            .and_then(|users| users.get(&account.user));
        let own_account = accounts.is_some_and(|list| {
            list.iter()
                .any(|a| is_lookalike(a, &account.email, &account.login))
        });
        *want = match (&observed.nextcloud_unavailable, row) {
            (Some(why), _) if !why.transient => {
                without_agent += 1;
                Want::Hold
            }
            (_, Some(LedgerState::Foreign)) => Want::No,
            (_, None) if own_account => Want::No,
            _ if observed.nextcloud.is_none() => Want::Hold,
            _ if observed.nextcloud_unknown_users.contains(&account.user) => Want::Hold,
            _ => Want::Yes,
        };
    }
    if without_agent > 0 {
        plan.warnings.push(format!(
            "{without_agent} app password(s) for Nextcloud Mail not created: no nextcloud-agent \
             is configured (NEXTCLOUD_AGENT_URL), so nothing would use them"
        ));
    }
    wants
}

/// A Nextcloud account with the address, login and server we would give
/// it, which a provisioning config did not make.
fn is_lookalike(account: &ObservedNextcloudAccount, email: &str, login: &str) -> bool {
    account.email == email
        && account.imap_user == login
        && account.configured_server
        && !account.provisioned
}

/// App passwords. Names are not unique in Mailcow and a person can type our
/// naming pattern, so the name is never proof: an app password is ours
/// only when the ledger says so — the id we learnt, or an intent written
/// before our create (an object with our name that appeared after it).
/// Returns the ids of ours that exist, by key.
fn plan_app_passwords(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    wants: &BTreeMap<String, Want>,
    scope: &Scope,
    plan: &mut Plan,
) -> BTreeMap<String, i64> {
    let mut owned = BTreeMap::new();
    let keys = scoped_keys(
        desired
            .app_passwords
            .iter()
            .map(|(k, d)| (k.as_str(), d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return owned;
    }
    if let Some(why) = &observed.mailcow_unavailable {
        plan.hold(Resource::AppPassword, "", why);
        return owned;
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let Some((mailbox, name)) = key.split_once('|') else {
            continue;
        };
        let Some(list) = observed.app_passwords.get(mailbox) else {
            if let Some(why) = observed.subject_error(Resource::AppPassword, mailbox)
                && reported.insert(mailbox)
            {
                plan.hold(Resource::AppPassword, mailbox, why);
            }
            continue;
        };
        let d = desired.app_passwords.get(key);
        let want = d.map(|_| wants.get(key).copied().unwrap_or(Want::Yes));
        let row = ledger.get(key).copied();
        let same_name: Vec<&ObservedAppPassword> = list
            .iter()
            .filter(|p| markers::canonical_app_password_name(&p.name).as_deref() == Some(name))
            .collect();
        let ours = row.and_then(|r| owned_app_password(r, &same_name));
        let username = d
            .map(|d| d.user.clone())
            .or_else(|| row.map(|r| r.username.clone()))
            .unwrap_or_default();
        let groups = d
            .map(|d| d.groups.clone())
            .or_else(|| row.map(|r| r.groups.clone()))
            .unwrap_or_default();
        let protocols = d.map(|d| d.protocols.clone()).unwrap_or_default();
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::AppPassword,
            key: key.to_owned(),
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
        let others = same_name.len() - usize::from(ours.is_some());
        match (row.map(|r| r.state), ours) {
            (Some(LedgerState::Foreign), _) => {
                let theirs_left = row
                    .and_then(|r| r.remote_id.parse::<i64>().ok())
                    .is_some_and(|id| same_name.iter().any(|p| p.id == id));
                match want {
                    None | Some(Want::No) => plan.steps.push(step(
                        Action::Forget,
                        0,
                        "not granted any more; a person's app password stays",
                    )),
                    Some(Want::Yes) if !theirs_left && same_name.is_empty() => {
                        plan.steps.push(step(Action::Create, 0, "granted by group"))
                    }
                    Some(_) => {}
                }
            }
            (Some(state), Some(p)) => {
                owned.insert(key.to_owned(), p.id);
                let known = state == LedgerState::Created
                    && row.is_some_and(|r| r.remote_id == p.id.to_string());
                if !known {
                    plan.steps
                        .push(step(Action::Adopt, p.id, "created by an earlier run"));
                }
                match want {
                    None | Some(Want::No) => {
                        owned.remove(key);
                        plan.steps
                            .push(step(Action::Delete, p.id, "no longer needed"));
                    }
                    Some(Want::Yes) => {
                        let wanted: BTreeSet<String> = protocols.iter().cloned().collect();
                        if !p.active || p.protocols != wanted {
                            plan.steps.push(step(
                                Action::Update,
                                p.id,
                                "inactive or protocols drifted",
                            ));
                        }
                    }
                    Some(Want::Hold) => {}
                }
            }
            (Some(_), None) => match want {
                Some(Want::Yes) => {
                    plan.steps
                        .push(step(Action::Create, 0, "ours is gone; granted by group"))
                }
                _ => plan.steps.push(step(Action::Forget, 0, "already gone")),
            },
            (None, _) if !same_name.is_empty() => {
                if matches!(want, Some(Want::Yes | Want::Hold)) {
                    plan.warnings.push(format!(
                        "an app password named {name} on {mailbox} was not made by us; it is left \
                         alone, and {username}'s Nextcloud Mail account cannot use it"
                    ));
                    plan.steps.push(step(
                        Action::RecordForeign,
                        same_name[0].id,
                        "exists with our name, but not by our hand",
                    ));
                }
                continue;
            }
            (None, _) => {
                if want == Some(Want::Yes) {
                    plan.steps.push(step(Action::Create, 0, "granted by group"));
                }
            }
        }
        if others > 0 {
            plan.warnings.push(format!(
                "{others} app password(s) named {name} on {mailbox} are not ours; left alone"
            ));
        }
    }
    owned
}

/// Which of the same-named app passwords the ledger row says is ours.
fn owned_app_password<'a>(
    row: &LedgerRow,
    same_name: &[&'a ObservedAppPassword],
) -> Option<&'a ObservedAppPassword> {
    let learnt = row.remote_id.parse::<i64>().ok();
    match (row.state, learnt) {
        (LedgerState::Foreign, _) => None,
        (_, Some(id)) => same_name.iter().copied().find(|p| p.id == id),
        // An intent without an id: our create may have happened before a
        // crash. What appeared under our name since is ours; the oldest, as
        // a retried create only ever adds after it.
        (LedgerState::Intent, None) => same_name.iter().copied().min_by_key(|p| p.id),
        (LedgerState::Created, None) => None,
    }
}

/// Aliases. Ours are those the ledger says we created that still carry our
/// marker (the agent refuses to touch one without it); the marker alone is
/// not proof, since anyone can type it into a comment.
fn plan_aliases(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&str, &LedgerRow>,
    plan: &mut Plan,
) {
    let Some(aliases) = &observed.aliases else {
        if let Some(why) = &observed.mailcow_unavailable
            && (!desired.aliases.is_empty() || !ledger.is_empty())
        {
            plan.hold(Resource::Alias, "", why);
        }
        return;
    };
    let mut all: BTreeSet<&str> = desired.aliases.keys().map(String::as_str).collect();
    all.extend(ledger.keys().copied());

    for address in all {
        let want = desired.aliases.get(address);
        let have: Option<&ObservedAlias> = aliases.get(address);
        let row = ledger.get(address).copied();
        let ours = have.filter(|a| {
            a.managed
                && row.is_some_and(|r| match r.state {
                    LedgerState::Created => {
                        r.remote_id.is_empty() || r.remote_id == a.id.to_string()
                    }
                    LedgerState::Intent => true,
                    LedgerState::Foreign => false,
                })
        });
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
        match (want, have, ours) {
            (Some(_), None, _) => plan.steps.push(step(Action::Create, 0, "group alias")),
            (Some(d), Some(_), Some(a)) => {
                let known = row.is_some_and(|r| {
                    r.state == LedgerState::Created && r.remote_id == a.id.to_string()
                });
                if !known {
                    plan.steps
                        .push(step(Action::Adopt, a.id, "created by an earlier run"));
                }
                if a.goto != d.goto || !a.active || !a.sogo_visible || !a.sender_allowed {
                    plan.steps
                        .push(step(Action::Update, a.id, "members or flags changed"));
                }
            }
            (Some(_), Some(a), None) => {
                plan.warnings.push(format!(
                    "alias {address} exists and the ledger has no record of creating it; left alone"
                ));
                if row.map(|r| r.state) != Some(LedgerState::Foreign) {
                    plan.steps.push(step(
                        Action::RecordForeign,
                        a.id,
                        "exists, not created by us",
                    ));
                }
            }
            (None, Some(_), Some(a)) => {
                plan.steps
                    .push(step(Action::Delete, a.id, "no longer an alias attribute"))
            }
            (None, _, _) => {
                if row.is_some() {
                    let why = if have.is_some() {
                        "no longer wanted; an alias that is not ours stays"
                    } else {
                        "already gone"
                    };
                    plan.steps.push(step(Action::Forget, 0, why));
                }
            }
        }
    }
}

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

    if let Some(why) = &observed.mailbox_acls_unavailable
        && !pairs.is_empty()
    {
        plan.hold(Resource::MailboxAcl, "", why);
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
        if let Some(why) = &observed.sogo_unavailable {
            plan.hold(Resource::SogoDelegation, "", why);
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
    owned_app_passwords: &BTreeMap<String, i64>,
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
        if let Some(why) = &observed.nextcloud_unavailable {
            plan.hold(Resource::NextcloudAccount, "", why);
        }
        return;
    };
    let secret_step =
        |plan: &mut Plan, key: &str| secret_step(plan, desired, owned_app_passwords, key);
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
        let lookalike = accounts.iter().find(|a| is_lookalike(a, email, login));
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
                    if secret_step(plan, &app_password_key) {
                        plan.steps.push(step(
                            Action::Update,
                            found.id,
                            "created by an interrupted run; re-key",
                        ));
                    }
                } else if let Some(account) = by_id {
                    if state == Some(LedgerState::Intent) {
                        // A re-key that did not happen last time.
                        if secret_step(plan, &app_password_key) {
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
                } else if secret_step(plan, &app_password_key) {
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
/// being created, or (when it exists and the ledger says it is ours) it is
/// rotated. False when neither is possible.
fn secret_step(
    plan: &mut Plan,
    desired: &DesiredState,
    owned_app_passwords: &BTreeMap<String, i64>,
    key: &str,
) -> bool {
    if creates(plan, key) {
        return true;
    }
    let Some((mailbox, name)) = key.split_once('|') else {
        return false;
    };
    let (Some(want), Some(id)) = (desired.app_passwords.get(key), owned_app_passwords.get(key))
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
            id: *id,
            protocols: want.protocols.clone(),
        },
        reason: "its secret is needed for a Nextcloud account".into(),
    });
    true
}

/// Drops removals that safety rules forbid, explaining each in a warning.
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
    // A member whose Authentik email stopped being a usable address keeps
    // what they had (and an alias keeps its members) until it is fixed:
    // a typo in a profile is not a leave.
    if !desired.unusable_members.is_empty() {
        let before = plan.steps.len();
        plan.steps.retain(|s| {
            !(may_shrink(s)
                && (desired.unusable_members.contains_key(&s.username)
                    || (s.resource == Resource::Alias
                        && s.groups
                            .iter()
                            .any(|g| desired.groups_with_unusable_members.contains(g)))))
        });
        let held = before - plan.steps.len();
        for (username, why) in &desired.unusable_members {
            plan.warnings.push(format!(
                "user `{username}`: the Authentik email is not a usable address ({why}); \
                 they get nothing new and keep what they had until it is fixed"
            ));
        }
        if held > 0 {
            plan.warnings.push(format!(
                "{held} removal(s) held because a member's Authentik email is not a usable address"
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

pub mod sogo_cache;

#[cfg(test)]
mod tests;
