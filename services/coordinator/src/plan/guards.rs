//! Removal guards: what a plan may not remove, and why it says so.

use super::*;
use crate::desired::DesiredState;
use crate::ledger::{LedgerRow, LedgerState};

/// The ledger is the only proof of what we created. If it holds nothing of
/// ours while objects we would create already exist, the state DB may have
/// been lost or replaced: those objects are now recorded as a person's and
/// will never be revoked. Say so loudly, with the count.
pub(super) fn warn_if_ledger_lost(plan: &mut Plan, ledger: &[LedgerRow]) {
    let owned = ledger.iter().any(|r| r.state != LedgerState::Foreign);
    let foreign = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::RecordForeign)
        .count();
    if !owned && foreign > 0 {
        plan.warnings.push(format!(
            "LEDGER EMPTY: the state DB records nothing this service created, yet {foreign} \
             object(s) it would create already exist; they are being recorded as made by a \
             person and will never be revoked. If the state DB was lost or replaced, stop the \
             coordinator and restore it from a backup (README, \"State DB backups\") before \
             the next sweep. On a first run over entries made by hand or by another tool, this \
             is expected."
        ));
    }
}

/// Drops removals that safety rules forbid, explaining each in a warning.
pub(super) fn apply_guards(
    plan: &mut Plan,
    desired: &DesiredState,
    ledger: &[LedgerRow],
    guards: &Guards,
) {
    let is_delete = |s: &Step| s.action == Action::Delete;
    // Updates that can take access away count as removals where it matters:
    // an alias losing members, folder rights narrowing.
    // A removal put off for a grace period is one too: its clock does not
    // start while it could not run.
    let may_shrink = |s: &Step| {
        is_delete(s)
            || matches!(s.action, Action::Defer { .. })
            // A suspension refuses sign-in: access taken away.
            || (s.action == Action::Create && s.resource == Resource::StalwartSuspension)
            || (s.action == Action::Update
                && matches!(
                    s.resource,
                    Resource::Alias | Resource::MailboxAcl | Resource::StalwartList
                ))
    };
    if !guards.allow_removals {
        let held = plan.steps.iter().filter(|s| may_shrink(s)).count();
        if held > 0 {
            plan.warnings
                .push(format!("{held} removal(s) held: {}", guards.hold_reason));
        }
        plan.steps.retain(|s| !may_shrink(s));
        plan.removals_held += held;
        return;
    }
    // A group whose attributes no longer parse keeps what it granted.
    if !desired.invalid_groups.is_empty() {
        let before = plan.steps.len();
        plan.steps.retain(|s| {
            !(may_shrink(s)
                && s.groups
                    .iter()
                    .any(|g| desired.invalid_groups.contains_key(g)))
        });
        let held = before - plan.steps.len();
        plan.removals_held += held;
        if held > 0 {
            plan.warnings.push(format!(
                "{held} removal(s) held because a granting group has invalid attributes"
            ));
        }
    }
    // A member whose Authentik email stopped being a usable address keeps
    // what they had (and an alias keeps its members) until it is fixed:
    // a typo in a profile is not a leave.
    if !desired.unusable_members.is_empty() {
        let before = plan.steps.len();
        plan.steps.retain(|s| {
            !(may_shrink(s)
                && (desired.unusable_members.contains_key(&s.username)
                    || (s.resource == Resource::Alias
                        && s.groups
                            .iter()
                            .any(|g| desired.groups_with_unusable_members.contains(g)))))
        });
        let held = before - plan.steps.len();
        plan.removals_held += held;
        for (username, why) in &desired.unusable_members {
            plan.warnings.push(format!(
                "user `{username}`: the Authentik email is not a usable address ({why}); \
                 they get nothing new and keep what they had until it is fixed"
            ));
        }
        if held > 0 {
            plan.warnings.push(format!(
                "{held} removal(s) held because a member's Authentik email is not a usable address"
            ));
        }
    }
    // A removal put off for a grace period counts here too: once its grace
    // period is over, the grace timer runs each member's removal as a run
    // of its own, one or two removals each, which this guard would never
    // stop. A mass leave is held when it is first seen, deferred or not.
    // A Stalwart suspension refuses sign-in at once: it counts as well.
    let is_removal = |s: &Step| {
        is_delete(s)
            || matches!(s.action, Action::Defer { .. })
            || (s.resource == Resource::StalwartSuspension && s.action == Action::Create)
    };
    let removals = plan.steps.iter().filter(|s| is_removal(s)).count();
    let owned = ledger
        .iter()
        .filter(|r| r.state != LedgerState::Foreign)
        .count();
    let limit = ((owned as f64) * guards.max_removal_share).floor() as usize;
    if !guards.force && removals > guards.removal_guard_min && removals > limit {
        plan.warnings.push(format!(
            "{removals} removal(s) of {owned} owned objects exceed the guard \
             ({:.0}% and more than {}); run a forced sweep to apply them",
            guards.max_removal_share * 100.0,
            guards.removal_guard_min
        ));
        plan.steps.retain(|s| !is_removal(s));
        plan.removals_held += removals;
    }
    for w in desired.invalid_groups.values() {
        plan.warnings.push(w.clone());
    }
}

/// Why this directory should not be trusted for removals, if it shouldn't.
pub fn implausible(
    users: usize,
    groups: usize,
    previous_users: Option<usize>,
    max_drop: f64,
) -> Option<String> {
    if users == 0 {
        return Some("Authentik returned no users".into());
    }
    if groups == 0 {
        return Some("Authentik returned no groups".into());
    }
    // `previous_users` is the count of the last good (plausible) run, so a
    // drop cannot slip through in steps that each stay under the threshold
    // while removals are held. Reaching the threshold holds: a directory cut
    // exactly in half is held with the default 50%. The tolerance absorbs
    // float rounding of shares like 30/100.
    match previous_users {
        Some(prev) if users < prev => {
            let share = (prev - users) as f64 / prev as f64;
            (share + 1e-9 >= max_drop).then(|| {
                format!(
                    "user count fell from {prev} (last good run) to {users}, a drop of {:.0}%, \
                     at or above the {:.0}% limit",
                    share * 100.0,
                    max_drop * 100.0
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_directories_hold_removals() {
        assert!(implausible(0, 5, None, 0.5).is_some());
        assert!(implausible(5, 0, None, 0.5).is_some());
        assert!(implausible(40, 5, Some(100), 0.5).is_some());
        assert!(implausible(60, 5, Some(100), 0.5).is_none());
        assert!(implausible(60, 5, None, 0.5).is_none());
    }

    #[test]
    fn a_drop_at_the_threshold_holds_removals() {
        // Exactly half, with the default 50%.
        let reason = implausible(4, 5, Some(8), 0.5).expect("held");
        assert!(
            reason.contains("fell from 8 (last good run) to 4, a drop of 50%"),
            "{reason}"
        );
        assert!(implausible(50, 5, Some(100), 0.5).is_some());
        assert!(implausible(51, 5, Some(100), 0.5).is_none());
        // Percentages from MAX_USER_DROP_PERCENT that are not exact in binary.
        assert!(implausible(70, 5, Some(100), 0.3).is_some());
        assert!(implausible(71, 5, Some(100), 0.3).is_none());
        assert!(implausible(90, 5, Some(100), 0.1).is_some());
        // Growth, no change, and a first run are never held for the count.
        assert!(implausible(100, 5, Some(100), 0.0).is_none());
        assert!(implausible(150, 5, Some(100), 0.5).is_none());
        assert!(implausible(1, 5, None, 0.5).is_none());
    }
}
