//! The sogo-agent: SOGo mail delegation in SOGo's database, and the
//! memcached entries SOGo caches it in.

use reconciler_proto::agent::{
    self as pb, Outcome, SogoObserveRequest, SogoObserveResponse,
    sogo_agent_client::SogoAgentClient, sogo_change::Kind,
};

use super::{Applied, Batch, Changes, Cost, Observation, ObserveInput, Secrets, TargetAdapter};
use crate::agents::{AgentLink, MAX_MESSAGE_SIZE, Transport};
use crate::engine::RunReport;
use crate::error::Result;
use crate::observed::{Observed, ObservedSogoOwner, canonical};
use crate::plan::sogo_cache::plan_owed_evictions;
use crate::plan::{Action, Plan, Resource, Step, Target};
use crate::store::Store;

pub struct Sogo {
    link: AgentLink,
    client: SogoAgentClient<Transport>,
}

impl Sogo {
    pub fn new(link: AgentLink) -> Self {
        let client = SogoAgentClient::new(link.transport())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self { link, client }
    }

    /// One Observe call, its failure classed.
    pub async fn observe_agent(&self, request: SogoObserveRequest) -> Result<SogoObserveResponse> {
        self.link
            .call("observe", self.client.clone().observe(request))
            .await
    }

    /// One Apply call, its failure classed.
    pub async fn apply_agent(
        &self,
        request: pb::SogoApplyRequest,
    ) -> Result<pb::SogoApplyResponse> {
        self.link
            .call("apply", self.client.clone().apply(request))
            .await
    }
}

const RESOURCES: &[Resource] = &[Resource::SogoDelegation, Resource::SogoCacheEviction];

#[async_trait::async_trait]
impl TargetAdapter for Sogo {
    type Change = pb::SogoChange;

    fn name(&self) -> &str {
        self.link.name()
    }

    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        let owners = super::subjects_in_scope(
            input
                .desired
                .sogo_delegations
                .values()
                .map(|d| (&d.user, &d.owner)),
            input,
            Resource::SogoDelegation,
        );
        if owners.is_empty() {
            return Ok(Observation::nothing());
        }
        let response = self
            .observe_agent(SogoObserveRequest {
                owners: owners.into_iter().collect(),
            })
            .await?;
        Ok(Observation::new(Cost::default(), move |observed| {
            absorb(response, observed)
        }))
    }

    fn changes<'s>(&self, steps: &[&'s Step], _secrets: &Secrets) -> Changes<'s, Self::Change> {
        let mut changes = Changes::default();
        let mut evictions: Vec<&Step> = Vec::new();
        for step in steps {
            let kind = match (&step.target, step.action) {
                (Target::SogoCacheEviction { .. }, _) => {
                    evictions.push(step);
                    continue;
                }
                (Target::SogoDelegation { owner, delegate }, Action::Create) => {
                    Kind::DelegateAdd(pb::SogoDelegateAdd {
                        owner: owner.clone(),
                        delegate: delegate.clone(),
                    })
                }
                (Target::SogoDelegation { owner, delegate }, _) => {
                    Kind::DelegateRemove(pb::SogoDelegateRemove {
                        owner: owner.clone(),
                        delegate: delegate.clone(),
                    })
                }
                _ => {
                    changes.waiting.push((
                        step,
                        format!("{} is not a SOGo resource", step.resource.as_str()),
                    ));
                    continue;
                }
            };
            changes.push(step, |id| pb::SogoChange {
                id,
                kind: Some(kind),
            });
        }
        // Owed cache evictions travel as one change.
        if let Some(change) = evict_change(&evictions) {
            changes.ready.push(Batch {
                id: change.id.clone(),
                change,
                steps: evictions,
            });
        }
        changes
    }

    async fn apply(&self, changes: Vec<Self::Change>) -> Result<Applied> {
        let response = self
            .apply_agent(pb::SogoApplyRequest {
                changes,
                dry_run: false,
            })
            .await?;
        Ok(Applied {
            results: response.results,
            cost: Cost::default(),
        })
    }

    async fn health(&self) -> Result<()> {
        self.link.health().await
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
            let owed_uid = step.key.to_string();
            let uid = std::slice::from_ref(&owed_uid);
            // One change carries every owed uid; a partial failure lists
            // the uids still owed, and the others were evicted.
            let evicted = result.outcome() == Outcome::Applied
                || (!result.eviction_owed.is_empty() && !result.eviction_owed.contains(&owed_uid));
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

/// Folds the sogo-agent's report into `observed`.
fn absorb(response: SogoObserveResponse, observed: &mut Observed) {
    observed.sogo = Some(
        response
            .delegations
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

/// One SogoCacheEvict change for the eviction steps, if any.
fn evict_change(steps: &[&Step]) -> Option<pb::SogoChange> {
    let uids: Vec<String> = steps
        .iter()
        .filter_map(|s| match &s.target {
            Target::SogoCacheEviction { uid } => Some(uid.clone()),
            _ => None,
        })
        .collect();
    (!uids.is_empty()).then(|| pb::SogoChange {
        id: format!("{}:evict", Resource::SogoCacheEviction.as_str()),
        kind: Some(Kind::CacheEvict(pb::SogoCacheEvict { uids })),
    })
}
