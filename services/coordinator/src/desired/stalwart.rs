//! Desired Stalwart state: an account per member of a `mailbox: true`
//! group (suspended while the Authentik user is deactivated), with the
//! user's `mail_aliases`, and a list per `list:` whose recipients are the
//! group's effective members.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::address;
use serde::Serialize;

use crate::attributes::StalwartSpec;
use crate::attributes::stalwart::parse_mail_aliases;
use crate::authentik::User;

/// The coordinator's Stalwart settings that shape desired state.
#[derive(Clone, Debug, Default)]
pub struct StalwartSettings {
    /// `STALWART_DOMAINS`: domains we provision in (created when missing,
    /// never destroyed). A member whose email is elsewhere is reported.
    pub domains: BTreeSet<String>,
    /// `STALWART_DELETE_AFTER`: how long a leaver's account stays suspended
    /// before it is destroyed (destroying erases its mail); `None`: never.
    pub delete_after: Option<std::time::Duration>,
    /// `STALWART_ADOPT_EXISTING`: an account a person made at a member's
    /// address becomes ours (managed, and removed like ours).
    pub adopt_existing: bool,
}

/// An account `address` for the Authentik user `user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StalwartAccountWant {
    pub address: String,
    pub user: String,
    /// False while the Authentik user is deactivated: suspended, kept.
    pub active: bool,
    /// Bytes; the largest any granting group gives.
    pub quota: Option<u64>,
    pub aliases: BTreeSet<String>,
    pub groups: crate::group_set::GroupSet,
    /// The user's `mail_aliases` do not parse: the aliases we added stay
    /// until it is fixed (a typo in a profile is not a wish to lose them).
    #[serde(skip)]
    pub keep_aliases: bool,
}

/// A list and its recipients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StalwartListWant {
    pub address: String,
    pub recipients: BTreeSet<String>,
    pub groups: crate::group_set::GroupSet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredStalwart {
    /// By address.
    pub accounts: BTreeMap<String, StalwartAccountWant>,
    /// By address.
    pub lists: BTreeMap<String, StalwartListWant>,
    /// Managed domains the accounts and lists need.
    pub domains: BTreeSet<String>,
    /// Members who get nothing, and why (not in a managed domain, bad
    /// aliases): said in every run's warnings.
    pub problems: BTreeMap<String, String>,
    #[serde(skip)]
    pub delete_after: Option<std::time::Duration>,
    #[serde(skip)]
    pub adopt_existing: bool,
}

impl DesiredStalwart {
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.lists.is_empty() && self.problems.is_empty()
    }

    /// Adds what the group `group_id` provisions for `members`.
    pub fn grant(
        &mut self,
        settings: &StalwartSettings,
        attribute_key: &str,
        group_id: &crate::group_set::GroupId,
        spec: &StalwartSpec,
        members: &[&User],
    ) {
        let members: Vec<(&User, String)> = members
            .iter()
            .filter(|u| {
                !matches!(
                    u.user_type.as_str(),
                    "service_account" | "internal_service_account"
                )
            })
            .filter_map(|u| address::normalize(&u.email).ok().map(|email| (*u, email)))
            .collect();
        if let Some(list) = &spec.list {
            let want = self
                .lists
                .entry(list.clone())
                .or_insert_with(|| StalwartListWant {
                    address: list.clone(),
                    recipients: BTreeSet::new(),
                    groups: crate::group_set::GroupSet::new(),
                });
            // Deactivated users receive nothing through a list.
            want.recipients.extend(
                members
                    .iter()
                    .filter(|(u, email)| u.is_active && email != list)
                    .map(|(_, email)| email.clone()),
            );
            want.groups.insert(group_id.clone());
            if let Some(domain) = managed_domain(settings, list) {
                self.domains.insert(domain);
            }
        }
        if !spec.mailbox {
            return;
        }
        for (user, email) in members {
            let Some(domain) = managed_domain(settings, &email) else {
                self.problems.insert(
                    user.username.clone(),
                    format!(
                        "{email} is not in a managed Stalwart domain (STALWART_DOMAINS); no account"
                    ),
                );
                continue;
            };
            let (aliases, keep_aliases) = match parse_mail_aliases(&user.attributes, attribute_key)
            {
                Ok(aliases) => (
                    aliases
                        .into_iter()
                        .filter(|a| *a != email && managed_domain(settings, a).is_some())
                        .collect(),
                    false,
                ),
                Err(e) => {
                    self.problems.insert(
                        user.username.clone(),
                        format!("{e}; the aliases we added stay until it is fixed"),
                    );
                    (BTreeSet::new(), true)
                }
            };
            self.domains.insert(domain);
            // An alias in another managed domain needs that domain too.
            self.domains.extend(
                aliases
                    .iter()
                    .filter_map(|a: &String| managed_domain(settings, a)),
            );
            let want = self
                .accounts
                .entry(email.clone())
                .or_insert_with(|| StalwartAccountWant {
                    address: email.clone(),
                    user: user.username.clone(),
                    active: user.is_active,
                    quota: None,
                    aliases,
                    groups: crate::group_set::GroupSet::new(),
                    keep_aliases,
                });
            want.quota = want.quota.max(spec.quota);
            want.groups.insert(group_id.clone());
        }
    }
}

/// The domain of `address` if STALWART_DOMAINS names it.
fn managed_domain(settings: &StalwartSettings, address: &str) -> Option<String> {
    let domain = address.rsplit_once('@')?.1;
    settings.domains.contains(domain).then(|| domain.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, email: &str, active: bool, attributes: serde_json::Value) -> User {
        serde_json::from_value(json!({
            "pk": 1, "username": name, "email": email, "is_active": active,
            "type": "internal", "attributes": attributes,
        }))
        .unwrap()
    }

    #[test]
    fn accounts_lists_and_what_is_reported() {
        let settings = StalwartSettings {
            domains: BTreeSet::from(["example.com".into()]),
            ..StalwartSettings::default()
        };
        let alice = user(
            "alice",
            "Alice@example.com",
            true,
            json!({"reconciler": {"mail_aliases": ["a.smith@example.com", "a@elsewhere.org"]}}),
        );
        let bob = user("bob", "bob@example.com", false, json!({}));
        let eve = user("eve", "eve@elsewhere.org", true, json!({}));
        let spec = StalwartSpec {
            mailbox: true,
            quota: Some(1 << 30),
            list: Some("team@example.com".into()),
        };
        let mut d = DesiredStalwart::default();
        d.grant(
            &settings,
            "reconciler",
            &"g1".into(),
            &spec,
            &[&alice, &bob, &eve],
        );
        let a = &d.accounts["alice@example.com"];
        assert!(a.active);
        assert_eq!(a.aliases, BTreeSet::from(["a.smith@example.com".into()]));
        assert_eq!(a.quota, Some(1 << 30));
        assert!(
            !d.accounts["bob@example.com"].active,
            "deactivated: suspended"
        );
        assert!(!d.accounts.contains_key("eve@elsewhere.org"));
        assert!(d.problems["eve"].contains("not in a managed"));
        assert_eq!(
            d.lists["team@example.com"].recipients,
            BTreeSet::from(["alice@example.com".into(), "eve@elsewhere.org".into()])
        );
        assert_eq!(d.domains, BTreeSet::from(["example.com".into()]));
    }

    #[test]
    fn an_alias_in_another_managed_domain_needs_that_domain() {
        let settings = StalwartSettings {
            domains: BTreeSet::from(["example.com".into(), "example.org".into()]),
            ..StalwartSettings::default()
        };
        let alice = user(
            "alice",
            "alice@example.com",
            true,
            json!({"reconciler": {"mail_aliases": ["alice@example.org"]}}),
        );
        let spec = StalwartSpec {
            mailbox: true,
            ..StalwartSpec::default()
        };
        let mut d = DesiredStalwart::default();
        d.grant(&settings, "reconciler", &"g1".into(), &spec, &[&alice]);
        assert_eq!(
            d.domains,
            BTreeSet::from(["example.com".into(), "example.org".into()])
        );
    }
}
