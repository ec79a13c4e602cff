//! What the agents reported, in the coordinator's terms.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::Resource;

pub mod matrix;
pub mod stalwart;

pub use matrix::{AccountState, MatrixIdentity, Membership, ObservedMatrix, ObservedRoom};
pub use stalwart::{ObservedStalwart, ObservedStalwartAccount, ObservedStalwartList};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSenderAcl {
    pub mailbox_exists: bool,
    pub send_as: BTreeSet<String>,
    /// Addresses Mailcow already allows through an alias; it drops them
    /// from `sender_acl`, so they count as satisfied.
    pub implicitly_allowed: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedAppPassword {
    pub id: i64,
    pub mailbox: String,
    pub name: String,
    pub active: bool,
    pub protocols: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedAlias {
    pub id: i64,
    pub address: String,
    pub goto: BTreeSet<String>,
    pub active: bool,
    pub sogo_visible: bool,
    pub sender_allowed: bool,
    pub managed: bool,
}

/// One owner's Dovecot folders and their ACL entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedOwnerAcls {
    /// False when Dovecot does not know the owner (or it is inactive).
    pub exists: bool,
    /// folder → identifier (`user=x@y`, `owner`, …) → rights.
    pub folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl ObservedOwnerAcls {
    /// How the grantee's entries are named in [`Self::folders`].
    pub fn entry_of(grantee: &str) -> String {
        format!("user={}", canonical(grantee))
    }

    /// The rights of `entry` (see [`Self::entry_of`]) on `folder`; `None`:
    /// no entry. Borrowed: the planner asks once per folder and grantee.
    pub fn rights(&self, folder: &str, entry: &str) -> Option<&BTreeSet<String>> {
        self.folders
            .get(folder)
            .and_then(|entries| entries.get(entry))
    }
}

/// The observed world. Only what was asked about is present; the planner
/// never draws conclusions about logins or mailboxes it did not observe.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub sender_acls: BTreeMap<String, ObservedSenderAcl>,
    /// Our (marker-named) app passwords, by mailbox. A mailbox that was
    /// observed and has none maps to an empty list.
    pub app_passwords: BTreeMap<String, Vec<ObservedAppPassword>>,
    /// `None` when aliases were not observed.
    pub aliases: Option<BTreeMap<String, ObservedAlias>>,
    /// Mailbox ACLs by owner; only owners that were asked about.
    pub mailbox_acls: BTreeMap<String, ObservedOwnerAcls>,
    /// SOGo delegation by owner; `None` when not observed.
    pub sogo: Option<BTreeMap<String, ObservedSogoOwner>>,
    /// Nextcloud Mail accounts by Nextcloud user; `None` when not observed.
    pub nextcloud: Option<BTreeMap<String, Vec<ObservedNextcloudAccount>>>,
    /// Users Nextcloud does not know (no account can be made for them).
    pub nextcloud_unknown_users: BTreeSet<String>,
    /// Synapse rooms and users; `None` when not observed.
    pub matrix: Option<ObservedMatrix>,
    /// Stalwart domains, accounts and lists; `None` when not observed.
    pub stalwart: Option<ObservedStalwart>,
    /// Resources that could not be observed this run (their agent is not
    /// configured, down, or its target is), and why. Nothing is planned for
    /// them, while every other resource is reconciled as usual.
    pub unavailable: BTreeMap<Resource, Unavailable>,
    /// Subjects the mailcow-agent could not read (one mailbox's app
    /// passwords, one login's sender_acl), by `(resource, subject)`. They
    /// are absent from the maps above; only they are held.
    pub subject_errors: BTreeMap<(String, String), Unavailable>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedNextcloudAccount {
    pub id: i64,
    pub email: String,
    pub imap_user: String,
    /// Its IMAP host is the one the nextcloud-agent creates accounts with.
    pub configured_server: bool,
    pub provisioned: bool,
}

/// An owner's SOGo `Mail.DelegateTo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSogoOwner {
    pub delegate_to: BTreeSet<String>,
    /// The owner's settings cannot be read; nothing is planned for them.
    pub error: Option<String>,
}

/// A part of the world the agent could not read this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    pub reason: String,
    /// Worth retrying soon (Dovecot down) rather than a configuration gap.
    pub transient: bool,
}

impl Unavailable {
    /// Down or unreachable: retry soon.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: true,
        }
    }

    /// Not configured: retrying will not help.
    pub fn not_configured(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: false,
        }
    }
}

/// Addresses read from a target, in the form desired state uses (lower
/// case, IDN domains in ASCII), so `team@bücher.example` and Mailcow's
/// `team@xn--bcher-kva.example` are one alias, not a foreign one and ours.
pub fn canonical(s: &str) -> String {
    reconciler_proto::address::canonical(s)
}

impl Observed {
    /// Why `subject` of `resource` could not be read, if it could not.
    pub fn subject_error(&self, resource: Resource, subject: &str) -> Option<&Unavailable> {
        self.subject_errors
            .get(&(resource.as_str().to_owned(), subject.to_owned()))
    }

    /// Why `resource` could not be observed this run, if it could not.
    pub fn unavailable(&self, resource: Resource) -> Option<&Unavailable> {
        self.unavailable.get(&resource)
    }

    pub fn set_unavailable(&mut self, resource: Resource, why: Unavailable) {
        self.unavailable.insert(resource, why);
    }
}
