//! Target adapters: everything the coordinator knows about one agent.
//!
//! The engine knows no target by name. It asks each configured adapter to
//! observe what the scope could touch (the adapter calls its own agent
//! through its own typed client and folds the answer into [`Observed`]),
//! and hands it the planned steps of the resources it owns, which the
//! adapter turns into changes of its own type and sends. Results come back
//! as the shared [`ChangeResult`]. A new target is a new file here
//! implementing [`TargetAdapter`], plus its resources in the planner
//! (docs/ARCHITECTURE.md, "Adding a target").

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use reconciler_proto::agent::ChangeResult;
use reconciler_runtime::secrets::Secret;

use crate::desired::DesiredState;
use crate::engine::RunReport;
use crate::error::Result;
use crate::ledger::{LedgerKey, LedgerRow};
use crate::observed::Observed;
use crate::plan::{Plan, Resource, Scope, Step};
use crate::store::Store;

pub mod mailcow;
pub mod matrix;
pub mod nextcloud;
pub mod sogo;
pub mod stalwart;

/// How many changes go to an agent in one Apply call.
const APPLY_BATCH: usize = 200;

/// What an adapter reads to decide what to observe.
pub struct ObserveInput<'a> {
    pub desired: &'a DesiredState,
    pub ledger: &'a [LedgerRow],
    pub scope: &'a Scope,
}

/// What a call to an agent cost beyond the call itself: doveadm processes
/// (the one cost the benchmarks and the run report follow).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub doveadm_execs: u64,
    /// doveadm `acl set` / `acl delete` commands.
    pub doveadm_acl_writes: u64,
}

/// An adapter's answer from its agent, folded into [`Observed`] once every
/// adapter has answered: adapters are observed at the same time, so none
/// writes into `Observed` while another is still reading.
pub struct Observation {
    pub cost: Cost,
    absorb: Box<dyn FnOnce(&mut Observed) + Send>,
}

impl Observation {
    /// Nothing in scope concerns the adapter: nothing was asked.
    pub fn nothing() -> Self {
        Self::new(Cost::default(), |_| {})
    }

    /// An answer that cost `cost`, and how it goes into `Observed`.
    pub fn new(cost: Cost, absorb: impl FnOnce(&mut Observed) + Send + 'static) -> Self {
        Self {
            cost,
            absorb: Box::new(absorb),
        }
    }

    pub fn absorb(self, observed: &mut Observed) {
        (self.absorb)(observed);
    }
}

/// Secrets produced by this run's changes (app passwords), by the ledger
/// key of the step that produced them. They live only in this run's memory.
pub type Secrets = BTreeMap<LedgerKey, Secret>;

/// One change of an adapter's own type, and the planned steps it carries.
/// `id` is the change's id on the wire: the agent's result names it.
pub struct Batch<'s, C> {
    pub id: String,
    pub change: C,
    pub steps: Vec<&'s Step>,
}

/// What an adapter made of its steps: changes to send, and steps that
/// cannot be sent in this run (with why; they are transient).
pub struct Changes<'s, C> {
    /// Changes the others depend on (an account before its memberships,
    /// an unban before the join): sent in calls of their own, first, since
    /// an agent may apply the changes of one call concurrently.
    pub first: Vec<Batch<'s, C>>,
    pub ready: Vec<Batch<'s, C>>,
    pub waiting: Vec<(&'s Step, String)>,
}

impl<C> Default for Changes<'_, C> {
    fn default() -> Self {
        Self {
            first: Vec::new(),
            ready: Vec::new(),
            waiting: Vec::new(),
        }
    }
}

impl<'s, C> Changes<'s, C> {
    /// A change carrying exactly one step; `change` is given the change's id.
    pub fn push(&mut self, step: &'s Step, change: impl FnOnce(String) -> C) {
        self.ready.push(Batch::of(step, change));
    }

    /// Like [`push`](Self::push), for a change the others wait for.
    pub fn push_first(&mut self, step: &'s Step, change: impl FnOnce(String) -> C) {
        self.first.push(Batch::of(step, change));
    }

    /// One change per step: `change` makes it from the step and its id,
    /// and says whether others wait for it; a step it cannot make waits,
    /// as not a change of `target`.
    pub fn one_per_step(
        steps: &[&'s Step],
        target: &str,
        change: impl Fn(&Step, String) -> Option<(C, bool)>,
    ) -> Self {
        let mut changes = Self::default();
        for step in steps {
            let id = change_id(step);
            match change(step, id.clone()) {
                Some((made, first)) => {
                    let batch = Batch {
                        id,
                        change: made,
                        steps: vec![*step],
                    };
                    if first {
                        changes.first.push(batch);
                    } else {
                        changes.ready.push(batch);
                    }
                }
                None => changes.waiting.push((
                    step,
                    format!(
                        "{} {} is not a {target} change",
                        step.resource.as_str(),
                        step.action.as_str()
                    ),
                )),
            }
        }
        changes
    }
}

impl<'s, C> Batch<'s, C> {
    fn of(step: &'s Step, change: impl FnOnce(String) -> C) -> Self {
        let id = change_id(step);
        Self {
            change: change(id.clone()),
            id,
            steps: vec![step],
        }
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

/// What an agent answered to one Apply call.
#[derive(Debug, Default)]
pub struct Applied {
    /// One result per change, named by the change's id.
    pub results: Vec<ChangeResult>,
    pub cost: Cost,
}

/// One target, as the engine drives it: the adapter owns its agent's typed
/// client and change type; the engine sees steps, results and costs only.
#[async_trait::async_trait]
pub trait TargetAdapter: Send + Sync + 'static {
    /// The change this adapter's agent applies (its contract's `Change`).
    type Change: Send + Sync + 'static;

    /// The agent's name, as health and errors report it.
    fn name(&self) -> &str;

    /// The resources whose steps this adapter turns into changes.
    fn resources(&self) -> &'static [Resource];

    /// Asks the agent what `input` could touch; [`Observation::nothing`]
    /// (no call at all) when nothing in scope concerns it. An error holds
    /// every resource of the adapter for this run.
    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation>;

    /// The agent changes for this adapter's steps. `secrets` holds what
    /// adapters applied earlier in this run produced.
    fn changes<'s>(&self, steps: &[&'s Step], secrets: &Secrets) -> Changes<'s, Self::Change>;

    /// Sends `changes` to the agent in one call. An error means the whole
    /// call failed: nothing is known to be done.
    async fn apply(&self, changes: Vec<Self::Change>) -> Result<Applied>;

    /// The agent's `grpc.health.v1` status.
    async fn health(&self) -> Result<()>;

    /// Adds steps owed by earlier runs (read from the state DB) to `plan`.
    async fn extend_plan(&self, _store: &Store, _plan: &mut Plan) -> Result<()> {
        Ok(())
    }

    /// The likely fix for a failure cause this target is known to report
    /// (the agent's message, addresses and numbers taken out), shown with
    /// the run's one warning for that cause.
    fn hint(&self, _cause: &str) -> Option<&'static str> {
        None
    }

    /// Target-specific bookkeeping for one change result, besides the
    /// ledger and audit entries the engine writes for every result.
    async fn settle(
        &self,
        _store: &Store,
        _step: &Step,
        _result: &ChangeResult,
        _report: &mut RunReport,
    ) -> Result<()> {
        Ok(())
    }
}

/// One Apply call, ready to send: the changes it carries (by id, with their
/// steps) and the call itself, which does nothing until awaited.
pub struct Call<'a> {
    pub changes: Vec<(String, Vec<&'a Step>)>,
    pub send: BoxFuture<'a, Result<Applied>>,
}

/// What an adapter made of its steps, with its change type out of sight:
/// calls to send one after another, and steps that wait.
pub struct Prepared<'a> {
    pub calls: Vec<Call<'a>>,
    pub waiting: Vec<(&'a Step, String)>,
}

/// A [`TargetAdapter`] with its change type out of sight, as the engine
/// holds it. Every adapter is one; nothing implements this by hand.
#[async_trait::async_trait]
pub trait DynAdapter: Send + Sync {
    fn name(&self) -> &str;
    fn resources(&self) -> &'static [Resource];
    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation>;
    /// The adapter's changes for `steps`, in calls of at most
    /// [`APPLY_BATCH`] changes.
    fn prepare<'a>(&'a self, steps: &[&'a Step], secrets: &Secrets) -> Prepared<'a>;
    async fn health(&self) -> Result<()>;
    fn hint(&self, cause: &str) -> Option<&'static str>;
    async fn extend_plan(&self, store: &Store, plan: &mut Plan) -> Result<()>;
    async fn settle(
        &self,
        store: &Store,
        step: &Step,
        result: &ChangeResult,
        report: &mut RunReport,
    ) -> Result<()>;
}

#[async_trait::async_trait]
impl<T: TargetAdapter> DynAdapter for T {
    fn name(&self) -> &str {
        TargetAdapter::name(self)
    }

    fn resources(&self) -> &'static [Resource] {
        TargetAdapter::resources(self)
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        TargetAdapter::observe(self, input).await
    }

    fn prepare<'a>(&'a self, steps: &[&'a Step], secrets: &Secrets) -> Prepared<'a> {
        let Changes {
            first,
            ready,
            waiting,
        } = self.changes(steps, secrets);
        let mut calls = Vec::new();
        for batches in [first, ready] {
            let mut batches = batches.into_iter().peekable();
            while batches.peek().is_some() {
                let (changes, sent): (Vec<_>, Vec<_>) = batches
                    .by_ref()
                    .take(APPLY_BATCH)
                    .map(|b| ((b.id, b.steps), b.change))
                    .unzip();
                calls.push(Call {
                    changes,
                    send: Box::pin(self.apply(sent)),
                });
            }
        }
        Prepared { calls, waiting }
    }

    async fn health(&self) -> Result<()> {
        TargetAdapter::health(self).await
    }

    fn hint(&self, cause: &str) -> Option<&'static str> {
        TargetAdapter::hint(self, cause)
    }

    async fn extend_plan(&self, store: &Store, plan: &mut Plan) -> Result<()> {
        TargetAdapter::extend_plan(self, store, plan).await
    }

    async fn settle(
        &self,
        store: &Store,
        step: &Step,
        result: &ChangeResult,
        report: &mut RunReport,
    ) -> Result<()> {
        TargetAdapter::settle(self, store, step, result, report).await
    }
}

/// The configured adapters, in apply order: an adapter that consumes
/// secrets (Nextcloud accounts) comes after the one producing them (app
/// passwords). A resource no adapter owns has no agent configured.
#[derive(Clone, Default)]
pub struct Adapters {
    list: Vec<Arc<dyn DynAdapter>>,
}

impl Adapters {
    /// Adds an adapter after those already added.
    pub fn with<A: TargetAdapter>(mut self, adapter: Arc<A>) -> Self {
        self.list.push(adapter);
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn DynAdapter>> {
        self.list.iter()
    }

    /// The adapter owning `resource`, if one is configured.
    pub fn owner(&self, resource: Resource) -> Option<&Arc<dyn DynAdapter>> {
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
                .map(|r| r.key.subject().to_owned()),
        )
        .collect()
}
