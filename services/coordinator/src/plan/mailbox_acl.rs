//! Dovecot shared-folder ACLs.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::{Observed, ObservedOwnerAcls};

/// Mailbox ACLs are owned per folder: an entry a person set on one folder
/// before we wanted it stays theirs, while the owner's other folders (and
/// folders created later) get ours.
pub(super) fn plan_mailbox_acls(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    // (owner, grantee) pairs to consider, with who they belong to;
    // borrowed, as there is one ledger row per folder of each pair.
    let mut pairs: BTreeMap<(&str, &str), (&str, &crate::group_set::GroupSet)> = BTreeMap::new();
    for d in desired
        .mailbox_acls
        .values()
        .filter(|d| scope.contains(&d.user))
    {
        pairs.insert(
            (d.owner.as_str(), d.grantee.as_str()),
            (d.user.as_str(), &d.groups),
        );
    }
    for (key, row) in ledger.iter().filter(|(_, r)| scope.contains(&r.username)) {
        if let Some((owner, grantee, _)) = keys::parse_mailbox_acl(key) {
            pairs
                .entry((owner, grantee))
                .or_insert((row.username.as_str(), &row.groups));
        }
    }

    if let Some(why) = observed.unavailable(Resource::MailboxAcl)
        && !pairs.is_empty()
    {
        plan.hold(Resource::MailboxAcl, "", why);
    }
    for ((owner, grantee), (username, groups)) in pairs {
        let Some(obs) = observed.mailbox_acls.get(owner) else {
            continue;
        };
        let want = desired
            .mailbox_acls
            .get(&keys::mailbox_grant(owner, grantee))
            .map(|d| d.rights.clone());
        // This grant's folder entries: keys sort by owner, then grantee.
        let first = keys::mailbox_acl(owner, grantee, "");
        let rows: BTreeMap<&str, &LedgerRow> = ledger
            .range::<LedgerKey, _>(&first..)
            .map_while(|(k, r)| match keys::parse_mailbox_acl(k) {
                Some((o, g, folder)) if o == owner && g == grantee => Some((folder, *r)),
                _ => None,
            })
            .collect();
        let step = |folder: &str, action, rights: &BTreeSet<String>, reason: &str| Step {
            resource: Resource::MailboxAcl,
            key: keys::mailbox_acl(owner, grantee, folder),
            action,
            username: username.to_owned(),
            groups: groups.clone(),
            target: Target::MailboxAcl {
                owner: owner.to_owned(),
                grantee: grantee.to_owned(),
                folder: folder.to_owned(),
                rights: rights.iter().cloned().collect(),
            },
            reason: reason.to_owned(),
        };
        let none = BTreeSet::new();
        let entry = ObservedOwnerAcls::entry_of(grantee);
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
            let have = obs.rights(folder, &entry).unwrap_or(&none);
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
                (Some(w), Some(LedgerState::Intent)) if have == w => {
                    plan.steps
                        .push(step(folder, Action::Adopt, w, "set by an earlier run"))
                }
                (Some(w), Some(LedgerState::Intent)) => {
                    plan.steps
                        .push(step(folder, Action::Create, w, "granted by group"))
                }
                (Some(w), Some(LedgerState::Created)) if have != w => {
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
