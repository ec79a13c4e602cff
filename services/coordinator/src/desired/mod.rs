//! Desired state: a pure function from the directory to the set of resources
//! that should exist. No I/O; golden-tested.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::mailcow::markers;
use serde::Serialize;

use crate::group_set::{GroupId, GroupSet};
use crate::plan::Resource;

use crate::attributes::{GrantSpec, parse_group_attributes};

pub mod matrix;
pub mod stalwart;

use crate::directory::Directory;
use crate::ledger::{LedgerKey, keys};
pub use matrix::{
    DesiredMatrix, LeavePolicy, MatrixDefaults, MatrixGrant, MatrixMapping, MatrixPolicy,
};
pub use stalwart::{DesiredStalwart, StalwartAccountWant, StalwartListWant, StalwartSettings};

/// Knobs the desired-state function needs from configuration.
#[derive(Clone, Debug)]
pub struct DesiredConfig {
    /// The group attribute holding the spec (default `reconciler`).
    pub attribute_key: String,
    /// Mailcow protocol flags for app passwords we create.
    pub app_password_protocols: Vec<String>,
    pub matrix: MatrixDefaults,
    pub stalwart: StalwartSettings,
}

impl Default for DesiredConfig {
    fn default() -> Self {
        Self {
            attribute_key: "reconciler".into(),
            app_password_protocols: vec!["imap_access".into(), "smtp_access".into()],
            matrix: MatrixDefaults::default(),
            stalwart: StalwartSettings::default(),
        }
    }
}

/// Mailcow `sender_acl`: `login` may send as `send_as`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SenderAcl {
    pub login: String,
    pub send_as: String,
    pub user: String,
    pub groups: GroupSet,
}

/// A Mailcow app password on `mailbox`, used by `user`'s Nextcloud Mail account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppPassword {
    pub mailbox: String,
    pub name: String,
    pub user: String,
    pub protocols: Vec<String>,
    pub groups: GroupSet,
}

/// Dovecot rights for `grantee` on every folder of `owner`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MailboxAcl {
    pub owner: String,
    pub grantee: String,
    pub user: String,
    pub rights: BTreeSet<String>,
    pub groups: GroupSet,
}

/// SOGo: `delegate` is offered `owner`'s identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SogoDelegation {
    pub owner: String,
    pub delegate: String,
    pub user: String,
    pub groups: GroupSet,
}

/// A Nextcloud Mail account for `user` on the shared mailbox `email`,
/// logging in as the mailbox with the app password `app_password_key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextcloudAccount {
    /// The Nextcloud user id (the Authentik username).
    pub user: String,
    pub email: String,
    pub login: String,
    /// Ledger key of the app password whose secret the account uses.
    pub app_password_key: LedgerKey,
    pub groups: GroupSet,
}

/// A Mailcow alias whose targets are a group's effective members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alias {
    pub address: String,
    pub goto: BTreeSet<String>,
    pub groups: GroupSet,
}

/// Everything that should exist, keyed by each resource's ledger key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub sender_acls: BTreeMap<LedgerKey, SenderAcl>,
    pub app_passwords: BTreeMap<LedgerKey, AppPassword>,
    pub mailbox_acls: BTreeMap<String, MailboxAcl>,
    pub sogo_delegations: BTreeMap<LedgerKey, SogoDelegation>,
    pub nextcloud_accounts: BTreeMap<LedgerKey, NextcloudAccount>,
    pub aliases: BTreeMap<String, Alias>,
    /// Group UUID → why its attributes were rejected. Resources tied to these
    /// groups are held: nothing is removed because of a typo.
    pub invalid_groups: BTreeMap<String, String>,
    /// Members of managed groups whose Authentik email is not a usable
    /// address: username → why. They get nothing new, and what they were
    /// given stays until the address is fixed (group UUIDs that hold them
    /// in `groups_with_unusable_members`).
    pub unusable_members: BTreeMap<String, String>,
    pub groups_with_unusable_members: BTreeSet<String>,
    /// Rooms and spaces, by group.
    #[serde(skip_serializing_if = "DesiredMatrix::is_empty")]
    pub matrix: DesiredMatrix,
    /// Stalwart accounts and lists.
    #[serde(skip_serializing_if = "DesiredStalwart::is_empty")]
    pub stalwart: DesiredStalwart,
}

impl DesiredState {
    /// The users with a desired `resource` entry (aliases have none).
    pub fn users_of(&self, resource: Resource) -> Box<dyn Iterator<Item = &str> + '_> {
        match resource {
            Resource::SenderAcl => Box::new(self.sender_acls.values().map(|d| d.user.as_str())),
            Resource::AppPassword => Box::new(self.app_passwords.values().map(|d| d.user.as_str())),
            Resource::MailboxAcl => Box::new(self.mailbox_acls.values().map(|d| d.user.as_str())),
            Resource::SogoDelegation => {
                Box::new(self.sogo_delegations.values().map(|d| d.user.as_str()))
            }
            Resource::NextcloudAccount => {
                Box::new(self.nextcloud_accounts.values().map(|d| d.user.as_str()))
            }
            Resource::MatrixMembership | Resource::MatrixPowerLevel | Resource::MatrixAccount => {
                Box::new(self.matrix.grants.values().map(|g| g.user.as_str()))
            }
            Resource::StalwartAccount | Resource::StalwartSuspension | Resource::StalwartAlias => {
                Box::new(self.stalwart.accounts.values().map(|a| a.user.as_str()))
            }
            Resource::Alias
            | Resource::SogoCacheEviction
            | Resource::MatrixBan
            | Resource::StalwartDomain
            | Resource::StalwartList => Box::new(std::iter::empty()),
        }
    }
}

/// Computes the desired state of the whole directory.
pub fn desired_state(directory: &Directory, config: &DesiredConfig) -> DesiredState {
    let mut state = DesiredState::default();
    state.matrix.fallback_on_leave = config.matrix.on_leave;
    state.matrix.fallback_grace_period = config.matrix.grace_period;
    state.stalwart.delete_after = config.stalwart.delete_after;
    state.stalwart.adopt_existing = config.stalwart.adopt_existing;
    for (group_id, group) in &directory.groups {
        let mapped: Vec<_> = config
            .matrix
            .mappings
            .iter()
            .filter(|m| m.group == group.name)
            .map(MatrixMapping::spec)
            .collect();
        let spec = match parse_group_attributes(&group.attributes, &config.attribute_key) {
            Ok(Some(spec)) => spec,
            Ok(None) if !mapped.is_empty() => GrantSpec::default(),
            Ok(None) => continue,
            Err(reason) => {
                state.invalid_groups.insert(
                    group_id.clone(),
                    format!("group `{}`: {reason}", group.name),
                );
                continue;
            }
        };
        // One copy of the id, shared by every object this group grants.
        let shared_id = GroupId::from(group_id.as_str());
        let unusable = directory.unusable_members(group_id);
        if !unusable.is_empty() {
            state.groups_with_unusable_members.insert(group_id.clone());
            state.unusable_members.extend(unusable);
        }
        let members: Vec<_> = directory
            .effective_members(group_id)
            .into_iter()
            .filter_map(|pk| directory.people.get(&pk))
            .collect();
        if let Some(stalwart) = &spec.stalwart {
            // Deactivated members too: their account is suspended, not dropped.
            let users = directory.effective_member_users(group_id);
            state.stalwart.grant(
                &config.stalwart,
                &config.attribute_key,
                &shared_id,
                stalwart,
                &users,
            );
        }
        for matrix in spec.matrix.iter().chain(&mapped) {
            state
                .matrix
                .grant(&config.matrix, &shared_id, &group.name, matrix, &members);
        }
        if let Some(address) = &spec.alias {
            let goto: BTreeSet<String> = members
                .iter()
                .map(|p| p.email.clone())
                // Mailcow silently skips an alias whose address is in its goto.
                .filter(|email| email != address)
                .collect();
            if !goto.is_empty() {
                let alias = state
                    .aliases
                    .entry(address.clone())
                    .or_insert_with(|| Alias {
                        address: address.clone(),
                        goto: BTreeSet::new(),
                        groups: GroupSet::new(),
                    });
                alias.goto.extend(goto);
                alias.groups.insert(shared_id.clone());
            }
        }
        let Some(target) = &spec.shared_mailbox else {
            continue;
        };
        for person in members {
            // The owner already has every right on their own mailbox.
            if &person.email == target {
                continue;
            }
            grant_member(&mut state, config, &spec, target, &shared_id, person);
        }
    }
    state
}

fn grant_member(
    state: &mut DesiredState,
    config: &DesiredConfig,
    spec: &GrantSpec,
    target: &str,
    group_id: &GroupId,
    person: &crate::directory::Person,
) {
    let group = || GroupSet::from([group_id.clone()]);
    if spec.send_as {
        state
            .sender_acls
            .entry(keys::sender_acl(&person.email, target))
            .and_modify(|g| {
                g.groups.insert(group_id.clone());
            })
            .or_insert_with(|| SenderAcl {
                login: person.email.clone(),
                send_as: target.to_owned(),
                user: person.username.clone(),
                groups: group(),
            });
    }
    if spec.nextcloud_mail {
        let name = markers::app_password_name(&person.username, target);
        state
            .app_passwords
            .entry(keys::app_password(target, &name))
            .and_modify(|g| {
                g.groups.insert(group_id.clone());
            })
            .or_insert_with(|| AppPassword {
                mailbox: target.to_owned(),
                name,
                user: person.username.clone(),
                protocols: config.app_password_protocols.clone(),
                groups: group(),
            });
        state
            .nextcloud_accounts
            .entry(keys::nextcloud_account(&person.username, target))
            .and_modify(|g| {
                g.groups.insert(group_id.clone());
            })
            .or_insert_with(|| NextcloudAccount {
                user: person.username.clone(),
                email: target.to_owned(),
                login: target.to_owned(),
                app_password_key: keys::app_password(
                    target,
                    &markers::app_password_name(&person.username, target),
                ),
                groups: group(),
            });
    }
    if !spec.rights.is_empty() {
        // Several groups granting the same mailbox: the union of rights.
        let acl = state
            .mailbox_acls
            .entry(keys::mailbox_grant(target, &person.email))
            .or_insert_with(|| MailboxAcl {
                owner: target.to_owned(),
                grantee: person.email.clone(),
                user: person.username.clone(),
                rights: BTreeSet::new(),
                groups: GroupSet::new(),
            });
        acl.rights.extend(spec.rights.iter().cloned());
        acl.groups.insert(group_id.clone());
    }
    if spec.sogo_delegate {
        state
            .sogo_delegations
            .entry(keys::sogo_delegation(target, &person.email))
            .and_modify(|g| {
                g.groups.insert(group_id.clone());
            })
            .or_insert_with(|| SogoDelegation {
                owner: target.to_owned(),
                delegate: person.email.clone(),
                user: person.username.clone(),
                groups: group(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authentik::{Group, User};

    /// The golden fixture: nesting three deep, a cycle, an inactive user, a
    /// user without email, a service account, overlapping grants, an invalid
    /// group, the owner inside its own group, and an alias on a nested group.
    fn fixture() -> Directory {
        let users: Vec<User> =
            serde_json::from_str(include_str!("../../testdata/golden_users.json")).unwrap();
        let groups: Vec<Group> =
            serde_json::from_str(include_str!("../../testdata/golden_groups.json")).unwrap();
        Directory::new(users, groups)
    }

    #[test]
    fn golden_desired_state() {
        let state = desired_state(&fixture(), &DesiredConfig::default());
        insta::assert_json_snapshot!("desired_state", state);
    }

    #[test]
    fn desired_state_is_deterministic_and_order_independent() {
        let a = desired_state(&fixture(), &DesiredConfig::default());
        let mut users: Vec<User> =
            serde_json::from_str(include_str!("../../testdata/golden_users.json")).unwrap();
        let mut groups: Vec<Group> =
            serde_json::from_str(include_str!("../../testdata/golden_groups.json")).unwrap();
        users.reverse();
        groups.reverse();
        let b = desired_state(&Directory::new(users, groups), &DesiredConfig::default());
        assert_eq!(a, b);
    }
}
