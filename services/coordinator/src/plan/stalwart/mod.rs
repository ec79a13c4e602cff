//! Stalwart: domains, accounts (with their suspension and aliases) and
//! mailing lists.
//!
//! Lifecycle of an account we created: a deactivated Authentik user's
//! account is suspended (sign-in refused, mail kept) and resumed when they
//! are active again. A member who left every provisioning group, or was
//! deleted in Authentik, is suspended at once; the account is destroyed
//! (which erases its mail) only after `STALWART_DELETE_AFTER`, a durable
//! pending removal that re-entitlement cancels. Without the setting it is
//! never destroyed.
//!
//! Ownership: only objects the ledger says we created are changed or
//! removed. A person's account at a member's address is reported and left
//! alone, unless `STALWART_ADOPT_EXISTING=true` makes it ours. Only
//! suspensions we set are lifted, only aliases we added are removed.
//! Domains are created when missing and never destroyed.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::{DesiredStalwart, DesiredState, StalwartAccountWant};
use crate::ledger::{LedgerKey, LedgerRow, LedgerState, keys};
use crate::observed::{ObservedStalwart, ObservedStalwartAccount};

/// The stalwart ledger rows the run may touch, by resource.
#[derive(Default)]
struct Rows<'l> {
    domains: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    accounts: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    suspensions: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    aliases: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    lists: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
}

pub(super) fn plan_stalwart(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &[LedgerRow],
    clock: &GraceClock,
    scope: &Scope,
    plan: &mut Plan,
) {
    let want = &desired.stalwart;
    let mut rows = Rows::default();
    for row in ledger {
        // Lists and domains are the groups', planned in every run.
        let group_level = matches!(row.resource.as_str(), "stalwart_list" | "stalwart_domain");
        if !group_level && !scope.contains(&row.username) {
            continue;
        }
        let map = match row.resource.as_str() {
            "stalwart_domain" => &mut rows.domains,
            "stalwart_account" => &mut rows.accounts,
            "stalwart_suspension" => &mut rows.suspensions,
            "stalwart_alias" => &mut rows.aliases,
            "stalwart_list" => &mut rows.lists,
            _ => continue,
        };
        map.insert(&row.key, row);
    }
    let accounts: BTreeMap<&str, &StalwartAccountWant> = want
        .accounts
        .iter()
        .filter(|(_, a)| scope.contains(&a.user))
        .map(|(k, a)| (k.as_str(), a))
        .collect();
    let nothing = accounts.is_empty()
        && want.lists.is_empty()
        && rows.accounts.is_empty()
        && rows.suspensions.is_empty()
        && rows.aliases.is_empty()
        && rows.lists.is_empty();
    if nothing {
        return;
    }
    for (user, why) in &want.problems {
        if scope.contains(user) {
            plan.warnings
                .push(format!("Stalwart: user `{user}`: {why}"));
        }
    }
    let Some(stalwart) = &observed.stalwart else {
        if let Some(why) = observed.unavailable(Resource::StalwartAccount) {
            plan.hold(Resource::StalwartAccount, "", why);
        }
        return;
    };
    let mut planner = Planner {
        want,
        stalwart,
        clock,
        rows: &rows,
        plan,
    };
    planner.domains();
    // Suspension and alias rows name their account: left over when the
    // account went (destroyed by us, or forgotten), they are forgotten too.
    let keys: BTreeSet<&str> = accounts
        .keys()
        .copied()
        .chain(rows.accounts.keys().map(|k| k.as_str()))
        .chain(rows.suspensions.keys().map(|k| k.as_str()))
        .chain(
            rows.aliases
                .keys()
                .filter_map(|k| keys::parse_stalwart_alias(k).map(|(owner, _)| owner)),
        )
        .collect();
    for address in keys {
        planner.account(address, accounts.get(address).copied());
    }
    let lists: BTreeSet<&str> = want
        .lists
        .keys()
        .map(String::as_str)
        .chain(rows.lists.keys().map(|k| k.as_str()))
        .collect();
    for address in lists {
        planner.list(address);
    }
}

struct Planner<'a, 'l> {
    want: &'a DesiredStalwart,
    stalwart: &'a ObservedStalwart,
    clock: &'a GraceClock,
    rows: &'a Rows<'l>,
    plan: &'a mut Plan,
}

/// A step on `resource` for `key`, owned by `username` through `groups`.
fn step(
    resource: Resource,
    key: LedgerKey,
    action: Action,
    (username, groups): (&str, &crate::group_set::GroupSet),
    target: Target,
    reason: &str,
) -> Step {
    Step {
        resource,
        key,
        action,
        username: username.to_owned(),
        groups: groups.clone(),
        target,
        reason: reason.to_owned(),
    }
}

impl Planner<'_, '_> {
    /// Managed domains the desired accounts and lists need, created when
    /// missing. Never destroyed.
    fn domains(&mut self) {
        let none = crate::group_set::GroupSet::new();
        for domain in &self.want.domains {
            let Some(observed) = self.stalwart.domains.get(domain) else {
                continue;
            };
            if observed.is_some() {
                continue;
            }
            self.plan.steps.push(step(
                Resource::StalwartDomain,
                keys::stalwart(domain),
                Action::Create,
                ("", &none),
                Target::StalwartDomain {
                    name: domain.clone(),
                },
                "a managed domain accounts or lists need",
            ));
        }
    }

    fn account(&mut self, address: &str, want: Option<&StalwartAccountWant>) {
        let Some(observed) = self.stalwart.accounts.get(address) else {
            // Not read this run (an error for this account): nothing planned.
            return;
        };
        let key = keys::stalwart(address);
        let row = self.rows.accounts.get(&key).copied();
        let (username, groups) = match (want, row) {
            (Some(w), _) => (w.user.clone(), w.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => {
                self.leftovers(address);
                return;
            }
        };
        let who = (username.as_str(), &groups);
        let id = observed.as_ref().map(|a| a.id.clone()).unwrap_or_default();
        let target = |quota| Target::StalwartAccount {
            address: address.to_owned(),
            id: id.clone(),
            quota,
        };
        let state = row.map(|r| r.state);
        let Some(want) = want else {
            self.leaver(address, &key, row, observed.as_ref(), who);
            return;
        };
        if self
            .clock
            .pending(Resource::StalwartAccount, &key)
            .is_some()
        {
            self.plan.steps.push(step(
                Resource::StalwartAccount,
                key.clone(),
                Action::Cancel,
                who,
                target(want.quota),
                "entitled again: the account is not destroyed",
            ));
        }
        let Some(account) = observed else {
            // A deactivated user gets no new account: nothing to keep.
            if want.active && state != Some(LedgerState::Foreign) {
                self.plan.steps.push(step(
                    Resource::StalwartAccount,
                    key,
                    Action::Create,
                    who,
                    target(want.quota),
                    "granted by group",
                ));
                self.aliases(address, Some(want), None, who);
            }
            return;
        };
        let ours = match state {
            Some(LedgerState::Created) => true,
            Some(LedgerState::Intent) => {
                self.plan.steps.push(step(
                    Resource::StalwartAccount,
                    key.clone(),
                    Action::Adopt,
                    who,
                    target(want.quota),
                    "created by an earlier run",
                ));
                true
            }
            Some(LedgerState::Foreign) => false,
            None if self.want.adopt_existing => {
                self.plan.steps.push(step(
                    Resource::StalwartAccount,
                    key.clone(),
                    Action::Adopt,
                    who,
                    target(want.quota),
                    "a person's account at the member's address, adopted (STALWART_ADOPT_EXISTING)",
                ));
                true
            }
            None => {
                self.plan.steps.push(step(
                    Resource::StalwartAccount,
                    key.clone(),
                    Action::RecordForeign,
                    who,
                    target(want.quota),
                    "an account a person made at the member's address",
                ));
                self.plan.warnings.push(format!(
                    "Stalwart: {address} exists and was not made by us; left alone \
                     (STALWART_ADOPT_EXISTING=true adopts it)"
                ));
                false
            }
        };
        if !ours {
            return;
        }
        if account.quota != want.quota {
            self.plan.steps.push(step(
                Resource::StalwartAccount,
                key.clone(),
                Action::Update,
                who,
                target(want.quota),
                "the granting groups' quota",
            ));
        }
        self.suspension(address, account, !want.active, who);
        self.aliases(address, Some(want), Some(account), who);
    }

    /// Our account, no longer granted: suspended at once, destroyed after
    /// `STALWART_DELETE_AFTER` (never without it).
    fn leaver(
        &mut self,
        address: &str,
        key: &LedgerKey,
        row: Option<&LedgerRow>,
        observed: Option<&ObservedStalwartAccount>,
        who: (&str, &crate::group_set::GroupSet),
    ) {
        let Some(row) = row else { return };
        let target = Target::StalwartAccount {
            address: address.to_owned(),
            id: observed.map(|a| a.id.clone()).unwrap_or_default(),
            quota: None,
        };
        let Some(account) = observed else {
            self.plan.steps.push(step(
                Resource::StalwartAccount,
                key.clone(),
                Action::Forget,
                who,
                target,
                "already gone",
            ));
            self.leftovers(address);
            return;
        };
        if row.state == LedgerState::Foreign {
            self.plan.steps.push(step(
                Resource::StalwartAccount,
                key.clone(),
                Action::Forget,
                who,
                target,
                "not granted any more; a person's account stays",
            ));
            return;
        }
        // The account we recorded must still be the one there.
        if !row.remote_id.is_empty() && row.remote_id != account.id {
            self.plan.warnings.push(format!(
                "Stalwart: {address} is not the account we created (id {} instead of {}); left alone",
                account.id, row.remote_id
            ));
            return;
        }
        self.suspension(address, account, true, who);
        let Some(after) = self.want.delete_after else {
            return;
        };
        let now = self.clock.now_millis;
        let after = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let (action, reason) = match self.clock.pending(Resource::StalwartAccount, key) {
            Some(due) if due <= now => (
                Action::Delete,
                "left every provisioning group and STALWART_DELETE_AFTER passed",
            ),
            Some(_) => return,
            None => (
                Action::Defer {
                    due_at: now.saturating_add(after),
                },
                "left every provisioning group: suspended, destroyed after STALWART_DELETE_AFTER",
            ),
        };
        self.plan.steps.push(step(
            Resource::StalwartAccount,
            key.clone(),
            action,
            who,
            target,
            reason,
        ));
    }

    /// The suspension and alias rows of an account that is no longer ours
    /// to plan (no account row: we destroyed it, or forgot it): forgotten.
    /// Nothing is sent to Stalwart.
    fn leftovers(&mut self, address: &str) {
        let key = keys::stalwart(address);
        if let Some(row) = self.rows.suspensions.get(&key).copied() {
            self.plan.steps.push(step(
                Resource::StalwartSuspension,
                key,
                Action::Forget,
                (&row.username, &row.groups),
                Target::StalwartSuspension {
                    address: address.to_owned(),
                    id: String::new(),
                },
                "the account is gone",
            ));
        }
        let owner = self
            .rows
            .aliases
            .iter()
            .find(|(k, _)| keys::parse_stalwart_alias(k).is_some_and(|(o, _)| o == address))
            .map(|(_, r)| (r.username.clone(), r.groups.clone()));
        if let Some((username, groups)) = owner {
            self.aliases(address, None, None, (&username, &groups));
        }
    }

    /// Suspends our account when it should be, and lifts a suspension we
    /// set when it should not; a person's suspension stays.
    fn suspension(
        &mut self,
        address: &str,
        account: &ObservedStalwartAccount,
        suspend: bool,
        who: (&str, &crate::group_set::GroupSet),
    ) {
        let key = keys::stalwart(address);
        let row = self.rows.suspensions.get(&key).copied();
        let target = Target::StalwartSuspension {
            address: address.to_owned(),
            id: account.id.clone(),
        };
        let (action, reason) = match (suspend, account.suspended, row.map(|r| r.state)) {
            (true, false, _) => (
                Action::Create,
                "deactivated in Authentik, or no longer granted",
            ),
            (true, true, None) => (Action::RecordForeign, "already suspended by someone else"),
            (true, true, Some(LedgerState::Intent)) => {
                (Action::Adopt, "suspended by an earlier run")
            }
            (true, true, Some(_)) => return,
            (false, true, Some(LedgerState::Created | LedgerState::Intent)) => {
                (Action::Delete, "active and entitled again: resumed")
            }
            (false, true, Some(LedgerState::Foreign) | None) => {
                self.plan.warnings.push(format!(
                    "Stalwart: {address} is suspended by someone else; not resumed"
                ));
                return;
            }
            (false, false, Some(_)) => (Action::Forget, "resumed by someone else"),
            (false, false, None) => return,
        };
        self.plan.steps.push(step(
            Resource::StalwartSuspension,
            key,
            action,
            who,
            target,
            reason,
        ));
    }

    /// The user's `mail_aliases` on our account: added when missing,
    /// removed when no longer wanted and we added them. `account` is `None`
    /// while the account is being created (or gone).
    fn aliases(
        &mut self,
        address: &str,
        want: Option<&StalwartAccountWant>,
        account: Option<&ObservedStalwartAccount>,
        who: (&str, &crate::group_set::GroupSet),
    ) {
        let wanted: BTreeSet<&str> = want
            .map(|w| w.aliases.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let ours: BTreeMap<&str, &LedgerRow> = self
            .rows
            .aliases
            .iter()
            .filter_map(|(k, r)| {
                let (owner, alias) = keys::parse_stalwart_alias(k)?;
                (owner == address).then_some((alias, *r))
            })
            .collect();
        let all: BTreeSet<&str> = wanted.iter().copied().chain(ours.keys().copied()).collect();
        let keep = want.is_some_and(|w| w.keep_aliases);
        for alias in all {
            let present = account.is_some_and(|a| a.aliases.contains(alias));
            let row = ours.get(alias).map(|r| r.state);
            if keep && present && !wanted.contains(alias) {
                continue;
            }
            let action = match (wanted.contains(alias), present, row) {
                (true, false, _) => Action::Create,
                (true, true, None) => Action::RecordForeign,
                (true, true, Some(LedgerState::Intent)) => Action::Adopt,
                (true, true, Some(_)) => continue,
                (false, true, Some(LedgerState::Created | LedgerState::Intent)) => Action::Delete,
                (false, _, Some(_)) => Action::Forget,
                (false, _, None) => continue,
            };
            self.plan.steps.push(step(
                Resource::StalwartAlias,
                keys::stalwart_alias(address, alias),
                action,
                who,
                Target::StalwartAlias {
                    address: address.to_owned(),
                    alias: alias.to_owned(),
                    id: account.map(|a| a.id.clone()).unwrap_or_default(),
                },
                match action {
                    Action::Create => "in the user's mail_aliases",
                    Action::Delete => "no longer in the user's mail_aliases",
                    _ => "alias bookkeeping",
                },
            ));
        }
    }

    fn list(&mut self, address: &str) {
        let Some(observed) = self.stalwart.lists.get(address) else {
            return;
        };
        let key = keys::stalwart(address);
        let want = self.want.lists.get(address);
        let row = self.rows.lists.get(&key).copied();
        let groups = match (want, row) {
            (Some(w), _) => w.groups.clone(),
            (None, Some(r)) => r.groups.clone(),
            (None, None) => return,
        };
        let recipients: Vec<String> = want
            .map(|w| w.recipients.iter().cloned().collect())
            .unwrap_or_default();
        let target = Target::StalwartList {
            address: address.to_owned(),
            id: observed.as_ref().map(|l| l.id.clone()).unwrap_or_default(),
            recipients: recipients.clone(),
        };
        let state = row.map(|r| r.state);
        let action = match (want, observed, state) {
            (Some(_), None, Some(LedgerState::Foreign)) => Action::Forget,
            (Some(_), None, _) => Action::Create,
            (Some(_), Some(_), None) => {
                self.plan.warnings.push(format!(
                    "Stalwart: the list {address} exists and was not made by us; left alone"
                ));
                Action::RecordForeign
            }
            (Some(_), Some(_), Some(LedgerState::Intent)) => Action::Adopt,
            (Some(_), Some(_), Some(LedgerState::Foreign)) => return,
            (Some(w), Some(list), Some(LedgerState::Created)) => {
                if list.recipients == w.recipients {
                    return;
                }
                Action::Update
            }
            (None, Some(_), Some(LedgerState::Created | LedgerState::Intent)) => Action::Delete,
            (None, _, Some(_)) => Action::Forget,
            (None, _, None) => return,
        };
        self.plan.steps.push(step(
            Resource::StalwartList,
            key,
            action,
            ("", &groups),
            target,
            match action {
                Action::Create | Action::Update => "the group's effective members",
                Action::Delete => "no group names this list any more",
                _ => "list bookkeeping",
            },
        ));
    }
}

#[cfg(test)]
mod tests;
