//! Target adapters: everything the coordinator knows about one agent.
//!
//! The engine knows no target by name. It asks each configured adapter what
//! to observe, lets it fold the answer into [`Observed`], and hands it the
//! planned steps of the resources it owns to turn into agent changes. A new
//! target is a new file here implementing [`TargetAdapter`], plus its
//! resources in the planner (docs/ARCHITECTURE.md, "Adding a target").

use std::collections::BTreeMap;
use std::sync::Arc;

use reconciler_proto::agent::{self as pb, ObserveRequest, ObserveResponse};
use reconciler_runtime::secrets::Secret;

use crate::agents::AgentBackend;
use crate::desired::DesiredState;
use crate::engine::RunReport;
use crate::error::Result;
use crate::ledger::LedgerRow;
use crate::ledger::keys;
use crate::observed::Observed;
use crate::plan::{Plan, Resource, Scope, Step};
use crate::store::Store;

pub mod mailcow;
pub mod nextcloud;
pub mod sogo;

/// What an adapter reads to decide what to observe.
pub struct ObserveInput<'a> {
    pub desired: &'a DesiredState,
    pub ledger: &'a [LedgerRow],
    pub scope: &'a Scope,
}

/// Secrets produced by this run's changes (app passwords), by the ledger
/// key of the step that produced them. They live only in this run's memory.
pub type Secrets = BTreeMap<String, Secret>;

/// One agent change and the planned steps it carries.
pub struct Batch<'s> {
    pub change: pb::Change,
    pub steps: Vec<&'s Step>,
}

/// What an adapter made of its steps: changes to send, and steps that
/// cannot be sent in this run (with why; they are transient).
#[derive(Default)]
pub struct Changes<'s> {
    pub ready: Vec<Batch<'s>>,
    pub waiting: Vec<(&'s Step, String)>,
}

impl<'s> Changes<'s> {
    /// A change carrying exactly one step.
    pub fn push(&mut self, step: &'s Step, kind: pb::change::Kind) {
        self.ready.push(Batch {
            change: pb::Change {
                id: change_id(step),
                kind: Some(kind),
            },
            steps: vec![step],
        });
    }
}

/// A change id that names its step: resource, action, key and remote id.
pub fn change_id(step: &Step) -> String {
    format!(
        "{}:{}:{}:{}",
        step.resource.as_str(),
        step.action.as_str(),
        step.key,
        step.target.remote_id()
    )
}

/// One agent, as the engine drives it.
#[async_trait::async_trait]
pub trait TargetAdapter: Send + Sync {
    /// The resources whose steps this adapter turns into changes.
    fn resources(&self) -> &'static [Resource];

    /// The agent behind the adapter (observe, apply, health).
    fn agent(&self) -> &dyn AgentBackend;

    /// What to ask the agent this run; `None` when nothing in scope
    /// concerns it (then it is not called at all).
    fn observe_request(&self, input: &ObserveInput<'_>) -> Option<ObserveRequest>;

    /// Folds the agent's answer to `request` into `observed`.
    fn absorb(&self, request: &ObserveRequest, response: ObserveResponse, observed: &mut Observed);

    /// The agent changes for this adapter's steps. `secrets` holds what
    /// adapters applied earlier in this run produced.
    fn changes<'s>(&self, steps: &[&'s Step], secrets: &Secrets) -> Changes<'s>;

    /// Adds steps owed by earlier runs (read from the state DB) to `plan`.
    async fn extend_plan(&self, _store: &Store, _plan: &mut Plan) -> Result<()> {
        Ok(())
    }

    /// Target-specific bookkeeping for one change result, besides the
    /// ledger and audit entries the engine writes for every result.
    async fn settle(
        &self,
        _store: &Store,
        _step: &Step,
        _result: &pb::ChangeResult,
        _report: &mut RunReport,
    ) -> Result<()> {
        Ok(())
    }
}

/// The configured adapters, in apply order: an adapter that consumes
/// secrets (Nextcloud accounts) comes after the one producing them (app
/// passwords). A resource no adapter owns has no agent configured.
#[derive(Clone, Default)]
pub struct Adapters {
    list: Vec<Arc<dyn TargetAdapter>>,
}

impl Adapters {
    /// Adds an adapter after those already added.
    pub fn with(mut self, adapter: Arc<dyn TargetAdapter>) -> Self {
        self.list.push(adapter);
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn TargetAdapter>> {
        self.list.iter()
    }

    /// The adapter owning `resource`, if one is configured.
    pub fn owner(&self, resource: Resource) -> Option<&Arc<dyn TargetAdapter>> {
        self.list.iter().find(|a| a.resources().contains(&resource))
    }
}

/// The first `|`-separated part of `resource`'s ledger keys of users in
/// scope (owners, users, logins, mailboxes), with the `subject`s of the
/// desired entries in scope, given as `(user, subject)`.
pub fn subjects_in_scope<'a>(
    desired: impl Iterator<Item = (&'a String, &'a String)>,
    input: &ObserveInput<'_>,
    resource: Resource,
) -> std::collections::BTreeSet<String> {
    desired
        .filter(|(user, _)| input.scope.contains(user))
        .map(|(_, subject)| subject.clone())
        .chain(
            input
                .ledger
                .iter()
                .filter(|r| r.resource == resource.as_str() && input.scope.contains(&r.username))
                .map(|r| keys::subject(&r.key).to_owned()),
        )
        .collect()
}
