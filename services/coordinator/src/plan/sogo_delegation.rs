//! SOGo mail delegation (`Mail.DelegateTo`).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::Observed;

/// SOGo delegation follows the sender_acl rules: a delegate a person added
/// in SOGo before we wanted it is recorded foreign and never removed.
pub(super) fn plan_sogo_delegations(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .sogo_delegations
            .iter()
            .map(|(k, d)| (k, d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return;
    }
    let Some(owners) = &observed.sogo else {
        if let Some(why) = observed.unavailable(Resource::SogoDelegation) {
            plan.hold(Resource::SogoDelegation, "", why);
        }
        return;
    };
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let Some((owner, delegate)) = keys::parse_sogo_delegation(key) else {
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
