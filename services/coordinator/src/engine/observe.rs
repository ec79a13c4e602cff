//! Observing every target, each on its own: one that cannot be read has its
//! resources held, and every other target is reconciled.

use tracing::warn;

use super::Engine;
use crate::observed::{Observed, Unavailable};
use crate::plan::Resource;
use crate::targets::ObserveInput;

/// What observing cost: doveadm processes the agents ran.
pub(super) struct Observation {
    pub observed: Observed,
    pub doveadm_execs: u64,
}

impl Engine {
    pub(super) async fn observe(&self, input: &ObserveInput<'_>) -> Observation {
        let mut observed = Observed::default();
        let mut doveadm_execs = 0;
        let answers = futures::future::join_all(
            self.adapters
                .iter()
                .map(|adapter| async move { (adapter, adapter.observe(input).await) }),
        )
        .await;
        // In adapter order, so the result does not depend on who answered first.
        for (adapter, answer) in answers {
            match answer {
                Ok(observation) => {
                    doveadm_execs += observation.cost.doveadm_execs;
                    observation.absorb(&mut observed);
                }
                Err(e) => {
                    let agent = adapter.name().to_owned();
                    warn!(%agent, error = %e, "agent could not be observed; its resources are held");
                    let why =
                        Unavailable::transient(format!("the {agent} could not be observed: {e}"));
                    for resource in adapter.resources() {
                        observed.set_unavailable(*resource, why.clone());
                    }
                }
            }
        }
        // A resource no adapter owns: held, and said once, when something in
        // scope needs it.
        for resource in Resource::ALL {
            if self.adapters.owner(resource).is_none() && needed(input, resource) {
                observed.set_unavailable(
                    resource,
                    Unavailable::not_configured(format!(
                        "no agent is configured for {}",
                        resource.as_str()
                    )),
                );
            }
        }
        Observation {
            observed,
            doveadm_execs,
        }
    }
}

/// Whether desired state or the ledger has `resource` entries in scope.
fn needed(input: &ObserveInput<'_>, resource: Resource) -> bool {
    input
        .desired
        .users_of(resource)
        .any(|user| input.scope.contains(user))
        || input
            .ledger
            .iter()
            .any(|r| r.resource == resource.as_str() && input.scope.contains(&r.username))
}
