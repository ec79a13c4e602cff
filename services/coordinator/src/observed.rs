//! What the agents reported, in the coordinator's terms.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::agent::ObserveResponse;

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
    /// The grantee's rights on `folder` (empty: no entry).
    pub fn rights(&self, folder: &str, grantee: &str) -> BTreeSet<String> {
        self.folders
            .get(folder)
            .and_then(|entries| entries.get(&format!("user={}", canonical(grantee))))
            .cloned()
            .unwrap_or_default()
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
    /// Why mailbox ACLs could not be observed this run, if they could not.
    pub mailbox_acls_unavailable: Option<Unavailable>,
    /// SOGo delegation by owner; `None` when not observed.
    pub sogo: Option<BTreeMap<String, ObservedSogoOwner>>,
    /// Why SOGo delegation could not be observed (no sogo-agent, or the
    /// sogo-agent or its database is down).
    pub sogo_unavailable: Option<Unavailable>,
    /// Nextcloud Mail accounts by Nextcloud user; `None` when not observed.
    pub nextcloud: Option<BTreeMap<String, Vec<ObservedNextcloudAccount>>>,
    /// Users Nextcloud does not know (no account can be made for them).
    pub nextcloud_unknown_users: BTreeSet<String>,
    /// Why Nextcloud could not be observed this run.
    pub nextcloud_unavailable: Option<Unavailable>,
    /// Why the mailcow-agent could not be observed at all this run: then
    /// nothing it owns (sender_acl, app passwords, aliases, folder ACLs)
    /// is planned, while the other targets are reconciled as usual.
    pub mailcow_unavailable: Option<Unavailable>,
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
fn canonical(s: &str) -> String {
    reconciler_proto::address::canonical(s)
}

impl Observed {
    /// Adds the nextcloud-agent's report.
    pub fn add_nextcloud(&mut self, response: ObserveResponse) {
        if !response.nextcloud_unavailable.is_empty() {
            self.nextcloud_unavailable = Some(Unavailable {
                transient: response.nextcloud_outcome()
                    == reconciler_proto::agent::Outcome::Transient,
                reason: response.nextcloud_unavailable,
            });
            return;
        }
        self.nextcloud_unknown_users = response
            .nextcloud_accounts
            .iter()
            .filter(|u| !u.user_exists)
            .map(|u| u.user.clone())
            .collect();
        self.nextcloud = Some(
            response
                .nextcloud_accounts
                .into_iter()
                .map(|u| {
                    let accounts = u
                        .accounts
                        .into_iter()
                        .map(|a| ObservedNextcloudAccount {
                            id: a.id,
                            email: canonical(&a.email),
                            imap_user: canonical(&a.imap_user),
                            configured_server: a.configured_server,
                            provisioned: a.provisioned,
                        })
                        .collect();
                    (u.user, accounts)
                })
                .collect(),
        );
    }

    /// Adds the sogo-agent's report.
    pub fn add_sogo(&mut self, response: ObserveResponse) {
        self.sogo = Some(
            response
                .sogo_delegations
                .into_iter()
                .map(|s| {
                    (
                        canonical(&s.owner),
                        ObservedSogoOwner {
                            delegate_to: s.delegate_to.iter().map(|d| canonical(d)).collect(),
                            error: Some(s.error).filter(|e| !e.is_empty()),
                        },
                    )
                })
                .collect(),
        );
    }

    /// Converts an agent response; `mailboxes` are the app-password mailboxes
    /// asked about, so "asked and none found" is distinguishable from "not asked".
    pub fn from_mailcow(response: ObserveResponse, mailboxes: &BTreeSet<String>) -> Self {
        let transient =
            response.mailbox_acls_outcome() == reconciler_proto::agent::Outcome::Transient;
        let mailbox_acls_unavailable = Some(response.mailbox_acls_unavailable.clone())
            .filter(|r| !r.is_empty())
            .map(|reason| Unavailable { reason, transient });
        let sender_acls = response
            .sender_acls
            .into_iter()
            .map(|s| {
                (
                    canonical(&s.login),
                    ObservedSenderAcl {
                        mailbox_exists: s.mailbox_exists,
                        send_as: s.send_as.iter().map(|a| canonical(a)).collect(),
                        implicitly_allowed: s
                            .implicitly_allowed
                            .iter()
                            .map(|a| canonical(a))
                            .collect(),
                    },
                )
            })
            .collect();
        let subject_errors: BTreeMap<(String, String), Unavailable> = response
            .errors
            .iter()
            .map(|e| {
                let transient = e.outcome() == reconciler_proto::agent::Outcome::Transient;
                (
                    (e.resource.clone(), canonical(&e.subject)),
                    Unavailable {
                        reason: e.message.clone(),
                        transient,
                    },
                )
            })
            .collect();
        // Asked and none found is an empty list; asked and unreadable is
        // absent, so nothing is created or removed for it.
        let mut app_passwords: BTreeMap<String, Vec<ObservedAppPassword>> = mailboxes
            .iter()
            .filter(|m| !subject_errors.contains_key(&("app_password".to_owned(), canonical(m))))
            .map(|m| (m.clone(), Vec::new()))
            .collect();
        for p in response.app_passwords {
            if subject_errors.contains_key(&("app_password".to_owned(), canonical(&p.mailbox))) {
                continue;
            }
            app_passwords
                .entry(canonical(&p.mailbox))
                .or_default()
                .push(ObservedAppPassword {
                    id: p.id,
                    mailbox: canonical(&p.mailbox),
                    name: p.name,
                    active: p.active,
                    protocols: p.protocols.into_iter().collect(),
                });
        }
        let aliases = response
            .aliases
            .into_iter()
            .map(|a| {
                (
                    canonical(&a.address),
                    ObservedAlias {
                        id: a.id,
                        address: canonical(&a.address),
                        goto: a.goto.iter().map(|g| canonical(g)).collect(),
                        active: a.active,
                        sogo_visible: a.sogo_visible,
                        sender_allowed: a.sender_allowed,
                        managed: a.managed,
                    },
                )
            })
            .collect();

        let mailbox_acls = response
            .mailbox_acls
            .into_iter()
            .map(|owner| {
                (
                    canonical(&owner.owner),
                    ObservedOwnerAcls {
                        exists: owner.owner_exists,
                        folders: owner
                            .folders
                            .into_iter()
                            .map(|f| {
                                let entries = f
                                    .entries
                                    .into_iter()
                                    .map(|e| (canonical(&e.id), e.rights.into_iter().collect()))
                                    .collect();
                                (f.folder, entries)
                            })
                            .collect(),
                    },
                )
            })
            .collect();
        Self {
            sender_acls,
            app_passwords,
            aliases: Some(aliases),
            mailbox_acls,
            mailbox_acls_unavailable,
            sogo: None,
            sogo_unavailable: None,
            nextcloud: None,
            nextcloud_unavailable: None,
            nextcloud_unknown_users: BTreeSet::new(),
            mailcow_unavailable: None,
            subject_errors,
        }
    }

    /// Why `subject` of `resource` could not be read, if it could not.
    pub fn subject_error(
        &self,
        resource: crate::plan::Resource,
        subject: &str,
    ) -> Option<&Unavailable> {
        self.subject_errors
            .get(&(resource.as_str().to_owned(), subject.to_owned()))
    }

    /// The mailcow-agent could not be observed: nothing it owns is known.
    pub fn mailcow_unavailable(reason: Unavailable) -> Self {
        Self {
            aliases: None,
            mailbox_acls_unavailable: Some(reason.clone()),
            mailcow_unavailable: Some(reason),
            ..Self::default()
        }
    }
}
