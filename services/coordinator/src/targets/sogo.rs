//! The sogo-agent: SOGo mail delegation in SOGo's database, and the
//! memcached entries SOGo caches it in.

use std::sync::Arc;

use reconciler_proto::agent::{self as pb, ObserveRequest, ObserveResponse, Outcome, change::Kind};

use super::{Changes, ObserveInput, Secrets, TargetAdapter};
use crate::agents::AgentBackend;
use crate::engine::RunReport;
use crate::error::Result;
use crate::observed::{Observed, ObservedSogoOwner, canonical};
use crate::plan::sogo_cache::plan_owed_evictions;
use crate::plan::{Action, Plan, Resource, Step, Target};
use crate::store::Store;

pub struct Sogo {
    agent: Arc<dyn AgentBackend>,
}

impl Sogo {
    pub fn new(agent: Arc<dyn AgentBackend>) -> Self {
        Self { agent }
    }
}

const RESOURCES: &[Resource] = &[Resource::SogoDelegation, Resource::SogoCacheEviction];

#[async_trait::async_trait]
impl TargetAdapter for Sogo {
    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    fn agent(&self) -> &dyn AgentBackend {
        self.agent.as_ref()
    }

    fn observe_request(&self, input: &ObserveInput<'_>) -> Option<ObserveRequest> {
        let owners = super::subjects_in_scope(
            input
                .desired
                .sogo_delegations
                .values()
                .map(|d| (&d.user, &d.owner)),
            input,
            Resource::SogoDelegation,
        );
        (!owners.is_empty()).then(|| ObserveRequest {
            sogo_owners: owners.into_iter().collect(),
            ..ObserveRequest::default()
        })
    }

    fn absorb(
        &self,
        _request: &ObserveRequest,
        response: ObserveResponse,
        observed: &mut Observed,
    ) {
        observed.sogo = Some(
            response
                .sogo_delegations
                .into_iter()
                .map(|s| {
                    (
                        canonical(&s.owner),
                        ObservedSogoOwner {
                            delegate_to: s.delegate_to.iter().map(|d| canonical(d)).collect(),
                            error: Some(s.error).filter(|e| !e.is_empty()),
                        },
                    )
                })
                .collect(),
        );
    }

    fn changes<'s>(&self, steps: &[&'s Step], _secrets: &Secrets) -> Changes<'s> {
        let mut changes = Changes::default();
        let mut evictions: Vec<&Step> = Vec::new();
        for step in steps {
            match (&step.target, step.action) {
                (Target::SogoCacheEviction { .. }, _) => evictions.push(step),
                (Target::SogoDelegation { owner, delegate }, Action::Create) => changes.push(
                    step,
                    Kind::SogoDelegateAdd(pb::SogoDelegateAdd {
                        owner: owner.clone(),
                        delegate: delegate.clone(),
                    }),
                ),
                (Target::SogoDelegation { owner, delegate }, _) => changes.push(
                    step,
                    Kind::SogoDelegateRemove(pb::SogoDelegateRemove {
                        owner: owner.clone(),
                        delegate: delegate.clone(),
                    }),
                ),
                _ => changes.waiting.push((
                    step,
                    format!("{} is not a SOGo resource", step.resource.as_str()),
                )),
            }
        }
        // Owed cache evictions travel as one change.
        if let Some(change) = evict_change(&evictions) {
            changes.ready.push(super::Batch {
                change,
                steps: evictions,
            });
        }
        changes
    }

    /// Plans every eviction owed by earlier runs.
    async fn extend_plan(&self, store: &Store, plan: &mut Plan) -> Result<()> {
        let owed = store.owed_sogo_evictions().await?;
        plan_owed_evictions(plan, &owed, true);
        Ok(())
    }

    /// Keeps the owed-eviction records in step with one change result: a
    /// delegation written while memcached failed owes its evictions (and
    /// the job is retried, as SOGo still shows the old delegation); a
    /// retried eviction settles them or stays owed.
    async fn settle(
        &self,
        store: &Store,
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
                _ if evicted => store.settle_sogo_evictions(uid).await?,
                // Retrying will not help (the agent refused the uid).
                Outcome::Permanent | Outcome::Refused => {
                    report.warnings.push(format!(
                        "SOGo cache eviction for {} dropped: {}",
                        step.key, result.message
                    ));
                    store.settle_sogo_evictions(uid).await?
                }
                _ => store.owe_sogo_evictions(uid, &result.message).await?,
            }
            return Ok(());
        }
        if result.eviction_owed.is_empty() {
            return Ok(());
        }
        store
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
                Action::Evict.as_str()
            ))
            .or_default() += result.eviction_owed.len() as u64;
        report.transient_failures += 1;
        Ok(())
    }
}

/// One SogoCacheEvict change for the eviction steps, if any.
fn evict_change(steps: &[&Step]) -> Option<pb::Change> {
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
