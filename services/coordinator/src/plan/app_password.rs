//! Mailcow app passwords, made for the Nextcloud Mail accounts that use them.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::mailcow::markers;

use super::nextcloud_account::is_lookalike;
use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::{Observed, ObservedAppPassword};

/// Whether a desired app password should exist this run. Its only use is
/// the Nextcloud Mail account that logs in with it, so that decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Want {
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
pub(super) fn app_password_wants(
    desired: &DesiredState,
    observed: &Observed,
    nextcloud_ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    plan: &mut Plan,
) -> BTreeMap<LedgerKey, Want> {
    let mut wants: BTreeMap<LedgerKey, Want> = desired
        .app_passwords
        .keys()
        .map(|k| (k.clone(), Want::Yes))
        .collect();
    let mut without_agent = 0;
    for (key, account) in &desired.nextcloud_accounts {
        let Some(want) = wants.get_mut(&account.app_password_key) else {
            continue;
        };
        let row = nextcloud_ledger.get(key).map(|r| r.state);
        let accounts = observed
            .nextcloud
            .as_ref()
            .and_then(|users| users.get(&account.user));
        let own_account = accounts.is_some_and(|list| {
            list.iter()
                .any(|a| is_lookalike(a, &account.email, &account.login))
        });
        *want = match (observed.unavailable(Resource::NextcloudAccount), row) {
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

/// App passwords. Names are not unique in Mailcow and a person can type our
/// naming pattern, so the name is never proof: an app password is ours
/// only when the ledger says so — the id we learnt, or an intent written
/// before our create (an object with our name that appeared after it).
/// Returns the ids of ours that exist, by key.
pub(super) fn plan_app_passwords(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    wants: &BTreeMap<LedgerKey, Want>,
    scope: &Scope,
    plan: &mut Plan,
) -> BTreeMap<LedgerKey, i64> {
    let mut owned = BTreeMap::new();
    let keys = scoped_keys(
        desired
            .app_passwords
            .iter()
            .map(|(k, d)| (k, d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return owned;
    }
    if let Some(why) = observed.unavailable(Resource::AppPassword) {
        plan.hold(Resource::AppPassword, "", why);
        return owned;
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let Some((mailbox, name)) = keys::parse_app_password(key) else {
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
                owned.insert(key.clone(), p.id);
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
pub(super) fn owned_app_password<'a>(
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
