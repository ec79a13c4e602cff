//! Mailcow group aliases.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::desired::DesiredState;
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};
use crate::observed::{Observed, ObservedAlias};

/// Aliases. Ours are those the ledger says we created that still carry our
/// marker (the agent refuses to touch one without it); the marker alone is
/// not proof, since anyone can type it into a comment.
pub(super) fn plan_aliases(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &BTreeMap<&LedgerKey, &LedgerRow>,
    plan: &mut Plan,
) {
    let Some(aliases) = &observed.aliases else {
        if let Some(why) = observed.unavailable(Resource::Alias)
            && (!desired.aliases.is_empty() || !ledger.is_empty())
        {
            plan.hold(Resource::Alias, "", why);
        }
        return;
    };
    // Aliases are keyed by their address, in desired state and the ledger.
    let ledger: BTreeMap<&str, &LedgerRow> = ledger.iter().map(|(k, r)| (k.as_str(), *r)).collect();
    let mut all: BTreeSet<&str> = desired.aliases.keys().map(String::as_str).collect();
    all.extend(ledger.keys().copied());

    for address in all {
        let want = desired.aliases.get(address);
        let have: Option<&ObservedAlias> = aliases.get(address);
        let row = ledger.get(address).copied();
        let ours = have.filter(|a| {
            a.managed
                && row.is_some_and(|r| match r.state {
                    LedgerState::Created => {
                        r.remote_id.is_empty() || r.remote_id == a.id.to_string()
                    }
                    LedgerState::Intent => true,
                    LedgerState::Foreign => false,
                })
        });
        let groups = want
            .map(|d| d.groups.clone())
            .or_else(|| row.map(|r| r.groups.clone()))
            .unwrap_or_default();
        let goto: Vec<String> = want
            .map(|d| d.goto.iter().cloned().collect())
            .unwrap_or_default();
        let step = |action, id: i64, reason: &str| Step {
            resource: Resource::Alias,
            key: keys::alias(address),
            action,
            username: String::new(),
            groups: groups.clone(),
            target: Target::Alias {
                address: address.to_owned(),
                id,
                goto: goto.clone(),
            },
            reason: reason.to_owned(),
        };
        match (want, have, ours) {
            (Some(_), None, _) => plan.steps.push(step(Action::Create, 0, "group alias")),
            (Some(d), Some(_), Some(a)) => {
                let known = row.is_some_and(|r| {
                    r.state == LedgerState::Created && r.remote_id == a.id.to_string()
                });
                if !known {
                    plan.steps
                        .push(step(Action::Adopt, a.id, "created by an earlier run"));
                }
                if a.goto != d.goto || !a.active || !a.sogo_visible || !a.sender_allowed {
                    plan.steps
                        .push(step(Action::Update, a.id, "members or flags changed"));
                }
            }
            (Some(_), Some(a), None) => {
                plan.warnings.push(format!(
                    "alias {address} exists and the ledger has no record of creating it; left alone"
                ));
                if row.map(|r| r.state) != Some(LedgerState::Foreign) {
                    plan.steps.push(step(
                        Action::RecordForeign,
                        a.id,
                        "exists, not created by us",
                    ));
                }
            }
            (None, Some(_), Some(a)) => {
                plan.steps
                    .push(step(Action::Delete, a.id, "no longer an alias attribute"))
            }
            (None, _, _) => {
                if row.is_some() {
                    let why = if have.is_some() {
                        "no longer wanted; an alias that is not ours stays"
                    } else {
                        "already gone"
                    };
                    plan.steps.push(step(Action::Forget, 0, why));
                }
            }
        }
    }
}
