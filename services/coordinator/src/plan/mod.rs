//! The planner: a pure function of (desired, observed, ledger, scope, guards)
//! to an ordered list of steps. A plan is data: it can be printed as a
//! dry-run, diffed, and asserted on.
//!
//! Ownership rules (docs/ARCHITECTURE.md, "Ownership"): never modify or delete an object that
//! neither the ledger nor the object's marker says we created. An object
//! that already exists when we want it is recorded as foreign and is never
//! removed later.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::attributes::{JoinMethod, LeaveAction};
use crate::desired::DesiredState;
use crate::ledger::LedgerKey;
use crate::ledger::LedgerRow;
use crate::observed::{Observed, Unavailable};

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
    /// A user's membership of a Matrix room (invite or join).
    MatrixMembership,
    /// A user's entry in a room's `m.room.power_levels`.
    MatrixPowerLevel,
    /// A ban we set when a member left (lifted if they are entitled again).
    MatrixBan,
    /// A Matrix account we created, linked to the user's SSO id.
    MatrixAccount,
    /// A Stalwart domain we created (never destroyed).
    StalwartDomain,
    /// A Stalwart account `local@domain`.
    StalwartAccount,
    /// A suspension we set on a Stalwart account (lifted only if ours).
    StalwartSuspension,
    /// An alias we added to a Stalwart account.
    StalwartAlias,
    /// A Stalwart mailing list.
    StalwartList,
}

impl Resource {
    pub const ALL: [Resource; 16] = [
        Self::SenderAcl,
        Self::AppPassword,
        Self::Alias,
        Self::MailboxAcl,
        Self::SogoDelegation,
        Self::NextcloudAccount,
        Self::SogoCacheEviction,
        Self::MatrixMembership,
        Self::MatrixPowerLevel,
        Self::MatrixBan,
        Self::MatrixAccount,
        Self::StalwartDomain,
        Self::StalwartAccount,
        Self::StalwartSuspension,
        Self::StalwartAlias,
        Self::StalwartList,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SenderAcl => "sender_acl",
            Self::AppPassword => "app_password",
            Self::Alias => "alias",
            Self::MailboxAcl => "mailbox_acl",
            Self::SogoDelegation => "sogo_delegation",
            Self::NextcloudAccount => "nextcloud_account",
            Self::SogoCacheEviction => "sogo_cache_eviction",
            Self::MatrixMembership => "matrix_membership",
            Self::MatrixPowerLevel => "matrix_power_level",
            Self::MatrixBan => "matrix_ban",
            Self::MatrixAccount => "matrix_account",
            Self::StalwartDomain => "stalwart_domain",
            Self::StalwartAccount => "stalwart_account",
            Self::StalwartSuspension => "stalwart_suspension",
            Self::StalwartAlias => "stalwart_alias",
            Self::StalwartList => "stalwart_list",
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
    /// Give an object we own a new secret (a Nextcloud Mail account the
    /// password of its app password). Owed until the target confirms it:
    /// the ledger keeps an intent, so the next run re-keys again.
    Rekey,
    /// Drop a cached copy on the target (SOGo's memcached) so it serves
    /// what was written.
    Evict,
    /// State DB only: a removal waits out a grace period, until `due_at`
    /// (Unix ms); a later run removes it when due.
    Defer { due_at: i64 },
    /// State DB only: a waiting removal is called off (entitled again).
    Cancel,
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
            Self::Rekey => "rekey",
            Self::Evict => "evict",
            Self::Defer { .. } => "defer",
            Self::Cancel => "cancel",
        }
    }

    /// Whether the step changes the target (as opposed to the ledger only).
    pub fn writes_target(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Delete | Self::Rotate | Self::Rekey | Self::Evict
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
        app_password_key: LedgerKey,
    },
    /// `<uid>+settings` in SOGo's memcached.
    SogoCacheEviction {
        uid: String,
    },
    /// `user_id` in the room `room_id`: brought in by `join`, removed by
    /// `on_leave` with `reason`.
    MatrixMembership {
        room_id: String,
        user_id: String,
        join: JoinMethod,
        on_leave: LeaveAction,
        reason: String,
    },
    /// `user_id`'s power level in `room_id`: the level set (create,
    /// update), or for a delete the level of ours that is removed, so the
    /// entry falls back to the room's default. `None` only in ledger-only
    /// steps (forget, record foreign) that know no level.
    MatrixPowerLevel {
        room_id: String,
        user_id: String,
        level: Option<i64>,
    },
    /// A ban we set; deleting it lifts it.
    MatrixBan {
        room_id: String,
        user_id: String,
    },
    StalwartDomain {
        name: String,
    },
    /// An account; `id` is Stalwart's, once known ("" before). A create
    /// carries the quota; an update sets it.
    StalwartAccount {
        address: String,
        id: String,
        quota: Option<u64>,
    },
    /// Create = suspend (sign-in refused), delete = resume.
    StalwartSuspension {
        address: String,
        id: String,
    },
    /// `alias` on the account `address`, whose `id` is Stalwart's once
    /// known ("" while the account is being created).
    StalwartAlias {
        address: String,
        alias: String,
        id: String,
    },
    StalwartList {
        address: String,
        id: String,
        recipients: Vec<String>,
    },
    /// `@localpart:server`, linked to `external_id` at `auth_provider`.
    MatrixAccount {
        user_id: String,
        localpart: String,
        auth_provider: String,
        external_id: String,
        display_name: String,
    },
}

impl Target {
    /// The target's id of the object, as the ledger keeps it ("" when the
    /// target has none or it is not known yet).
    pub fn remote_id(&self) -> String {
        match self {
            Self::AppPassword { id, .. }
            | Self::Alias { id, .. }
            | Self::NextcloudAccount { id, .. }
                if *id != 0 =>
            {
                id.to_string()
            }
            // A suspension and an alias are kept under their account's id.
            Self::StalwartAccount { id, .. }
            | Self::StalwartList { id, .. }
            | Self::StalwartSuspension { id, .. }
            | Self::StalwartAlias { id, .. }
                if !id.is_empty() =>
            {
                id.clone()
            }
            // The level we set: reset later only while it is still ours.
            Self::MatrixPowerLevel {
                level: Some(level), ..
            } => level.to_string(),
            _ => String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub resource: Resource,
    pub key: LedgerKey,
    pub action: Action,
    /// The Authentik username the object belongs to ("" for aliases).
    pub username: String,
    /// Groups that grant it (for the ledger).
    pub groups: crate::group_set::GroupSet,
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
    /// Removals the safety guards dropped from this plan.
    #[serde(skip)]
    pub removals_held: usize,
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

/// Removals waiting out a grace period, and the time a plan is made at.
#[derive(Clone, Debug, Default)]
pub struct GraceClock {
    /// Unix milliseconds.
    pub now_millis: i64,
    /// Due times (Unix ms) by `(resource, key)`.
    pub due: BTreeMap<(String, String), i64>,
}

impl GraceClock {
    /// When `key`'s removal is due, if one waits.
    pub fn pending(&self, resource: Resource, key: &LedgerKey) -> Option<i64> {
        self.due
            .get(&(resource.as_str().to_owned(), key.to_string()))
            .copied()
    }
}

/// [`plan_at`] with no removal waiting, at time zero.
pub fn plan(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &[LedgerRow],
    scope: &Scope,
    guards: &Guards,
) -> Plan {
    plan_at(
        desired,
        observed,
        ledger,
        &GraceClock::default(),
        scope,
        guards,
    )
}

pub fn plan_at(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &[LedgerRow],
    clock: &GraceClock,
    scope: &Scope,
    guards: &Guards,
) -> Plan {
    let ledger_by = |resource: Resource| -> BTreeMap<&LedgerKey, &LedgerRow> {
        ledger
            .iter()
            .filter(|r| r.resource == resource.as_str())
            .map(|r| (&r.key, r))
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
    plan_matrix(desired, observed, ledger, clock, scope, &mut plan);
    plan_stalwart(desired, observed, ledger, clock, scope, &mut plan);
    apply_guards(&mut plan, desired, ledger, guards);
    warn_if_ledger_lost(&mut plan, ledger);
    plan
}

/// Keys a run may touch: desired entries of users in scope, plus every
/// ledger row of such a user (so what a leaver was granted is covered).
fn scoped_keys<'a>(
    desired: impl Iterator<Item = (&'a LedgerKey, &'a str)>,
    ledger: &BTreeMap<&'a LedgerKey, &'a LedgerRow>,
    scope: &Scope,
) -> BTreeSet<&'a LedgerKey> {
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

mod alias;
mod app_password;
mod guards;
mod mailbox_acl;
mod matrix;
mod nextcloud_account;
mod sender_acl;
mod sogo_delegation;
mod stalwart;

use alias::plan_aliases;
use app_password::{app_password_wants, plan_app_passwords};
pub use guards::implausible;
use guards::{apply_guards, warn_if_ledger_lost};
use mailbox_acl::plan_mailbox_acls;
use matrix::plan_matrix;
use nextcloud_account::plan_nextcloud_accounts;
use sender_acl::plan_sender_acls;
use sogo_delegation::plan_sogo_delegations;
use stalwart::plan_stalwart;
pub mod sogo_cache;

#[cfg(test)]
mod tests;
