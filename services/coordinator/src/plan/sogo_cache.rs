//! SOGo cache evictions owed by earlier runs. A delegation row write that
//! committed while memcached could not be reached leaves SOGo showing the
//! old delegation until its cache expires, and the next observation finds
//! the row right, so nothing else would ever evict it. The engine records
//! such evictions in the state DB; every run that reaches the sogo-agent
//! plans them again until one succeeds.

use super::{Action, Plan, Resource, Step, Target};
use crate::ledger::keys;
use crate::store::OwedEviction;

/// Adds an eviction step per owed uid (when a sogo-agent is configured)
/// and says so in the plan's warnings.
pub fn plan_owed_evictions(plan: &mut Plan, owed: &[OwedEviction], agent_configured: bool) {
    if owed.is_empty() {
        return;
    }
    let uids: Vec<&str> = owed.iter().map(|o| o.uid.as_str()).collect();
    if !agent_configured {
        plan.warnings.push(format!(
            "{} SOGo cache eviction(s) owed ({}), but no sogo-agent is configured (SOGO_AGENT_URL)",
            owed.len(),
            uids.join(", ")
        ));
        return;
    }
    plan.warnings.push(format!(
        "retrying {} SOGo cache eviction(s) owed by earlier runs: {}",
        owed.len(),
        uids.join(", ")
    ));
    for o in owed {
        plan.steps.push(Step {
            resource: Resource::SogoCacheEviction,
            key: keys::sogo_cache_eviction(&o.uid),
            action: Action::Evict,
            username: String::new(),
            groups: crate::group_set::GroupSet::new(),
            target: Target::SogoCacheEviction { uid: o.uid.clone() },
            reason: format!(
                "owed after {} failed eviction(s): {}",
                o.attempts, o.last_error
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owed(uid: &str) -> OwedEviction {
        OwedEviction {
            uid: uid.into(),
            attempts: 1,
            last_error: "memcached down".into(),
        }
    }

    #[test]
    fn every_owed_eviction_is_planned_and_reported() {
        let mut plan = Plan::default();
        plan_owed_evictions(&mut plan, &[owed("a@x.org"), owed("b@x.org")], true);
        let planned: Vec<(Resource, Action, &str)> = plan
            .steps
            .iter()
            .map(|s| (s.resource, s.action, s.key.as_str()))
            .collect();
        assert_eq!(
            planned,
            [
                (Resource::SogoCacheEviction, Action::Evict, "a@x.org"),
                (Resource::SogoCacheEviction, Action::Evict, "b@x.org"),
            ]
        );
        assert!(plan.steps[0].reason.contains("memcached down"));
        assert!(
            plan.warnings[0].contains("a@x.org, b@x.org"),
            "{:?}",
            plan.warnings
        );
        assert_eq!(plan.target_writes(), 2);
    }

    #[test]
    fn nothing_owed_plans_nothing_and_no_agent_only_warns() {
        let mut plan = Plan::default();
        plan_owed_evictions(&mut plan, &[], true);
        assert_eq!(plan, Plan::default());
        plan_owed_evictions(&mut plan, &[owed("a@x.org")], false);
        assert!(plan.steps.is_empty());
        assert!(
            plan.warnings[0].contains("no sogo-agent"),
            "{:?}",
            plan.warnings
        );
    }
}
