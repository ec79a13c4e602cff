//! The engine's side of owed SOGo cache evictions (see
//! [`crate::plan::sogo_cache`]): load them into the plan, record what the
//! sogo-agent reports, and say so in the job summary.

use reconciler_proto::agent::{self as pb, Outcome, change::Kind};

use super::{Engine, RunReport};
use crate::error::Result;
use crate::plan::sogo_cache::plan_owed_evictions;
use crate::plan::{Plan, Resource, Step, Target};

impl Engine {
    /// Plans every eviction owed by earlier runs.
    pub(super) async fn plan_owed_sogo_evictions(&self, plan: &mut Plan) -> Result<()> {
        let owed = self.store.owed_sogo_evictions().await?;
        plan_owed_evictions(plan, &owed, self.sogo.is_some());
        Ok(())
    }

    /// Keeps the owed-eviction records in step with one change result: a
    /// delegation written while memcached failed owes its evictions (and
    /// the job is retried, as SOGo still shows the old delegation); a
    /// retried eviction settles them or stays owed.
    pub(super) async fn record_sogo_evictions(
        &self,
        step: &Step,
        result: &pb::ChangeResult,
        report: &mut RunReport,
    ) -> Result<()> {
        if step.resource == Resource::SogoCacheEviction {
            let uid = std::slice::from_ref(&step.key);
            // One change carries every owed uid; a partial failure lists
            // the uids still owed, and the others were evicted.
            let evicted = result.outcome() == Outcome::Applied
                || (!result.eviction_owed.is_empty() && !result.eviction_owed.contains(&step.key));
            match result.outcome() {
                _ if evicted => self.store.settle_sogo_evictions(uid).await?,
                // Retrying will not help (the agent refused the uid).
                Outcome::Permanent | Outcome::Refused => {
                    report.warnings.push(format!(
                        "SOGo cache eviction for {} dropped: {}",
                        step.key, result.message
                    ));
                    self.store.settle_sogo_evictions(uid).await?
                }
                _ => self.store.owe_sogo_evictions(uid, &result.message).await?,
            }
            return Ok(());
        }
        if result.eviction_owed.is_empty() {
            return Ok(());
        }
        self.store
            .owe_sogo_evictions(&result.eviction_owed, &result.message)
            .await?;
        report.warnings.push(format!(
            "SOGo cache eviction owed for {} (retried by the next runs): {}",
            result.eviction_owed.join(", "),
            result.message
        ));
        *report
            .outcomes
            .entry(format!(
                "{}.{}.owed",
                Resource::SogoCacheEviction.as_str(),
                crate::plan::Action::Evict.as_str()
            ))
            .or_default() += result.eviction_owed.len() as u64;
        report.transient_failures += 1;
        Ok(())
    }
}

/// One SogoCacheEvict change for the eviction steps, if any.
pub(super) fn evict_change(steps: &[&Step]) -> Option<pb::Change> {
    let uids: Vec<String> = steps
        .iter()
        .filter_map(|s| match &s.target {
            Target::SogoCacheEviction { uid } => Some(uid.clone()),
            _ => None,
        })
        .collect();
    (!uids.is_empty()).then(|| pb::Change {
        id: format!("{}:evict", Resource::SogoCacheEviction.as_str()),
        kind: Some(Kind::SogoCacheEvict(pb::SogoCacheEvict { uids })),
    })
}
