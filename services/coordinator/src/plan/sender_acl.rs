//! Mailcow send-as rights (`sender_acl`).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::Observed;

pub(super) fn plan_sender_acls(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    scope: &Scope,
    plan: &mut Plan,
) {
    let keys = scoped_keys(
        desired
            .sender_acls
            .iter()
            .map(|(k, d)| (k, d.user.as_str())),
        ledger,
        scope,
    );
    if keys.is_empty() {
        return;
    }
    if let Some(why) = observed.unavailable(Resource::SenderAcl) {
        plan.hold(Resource::SenderAcl, "", why);
        return;
    }
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for key in keys {
        let want = desired.sender_acls.get(key);
        let row = ledger.get(key).copied();
        let Some((login, send_as)) = keys::parse_sender_acl(key) else {
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
