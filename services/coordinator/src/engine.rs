//! One reconcile run: read Authentik, compute desired state, observe, plan,
//! apply, record. Every trigger (webhook, sweep, gRPC) ends up here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use reconciler_proto::agent::{self as pb, ApplyRequest, ObserveRequest, Outcome, change::Kind};
use serde::Serialize;
use tracing::{info, warn};

use crate::agents::AgentBackend;
use crate::authentik::{DirectorySource, normalize_uuid};
use crate::desired::{DesiredConfig, DesiredState, desired_state};
use crate::directory::Directory;
use crate::error::{Error, Result};
use crate::ledger::{LedgerRow, LedgerState};
use crate::locks::KeyLocks;
use crate::observed::{Observed, Unavailable};
use crate::plan::{Action, Guards, Plan, Resource, Scope, Step, Target, implausible, plan};
use crate::store::{AuditEntry, Store};
use reconciler_runtime::secrets::Secret;

mod sogo_cache;

/// How many changes go to an agent in one Apply call.
const APPLY_BATCH: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    All,
    User(String),
    Group(String),
}

impl Subject {
    /// Parses the job-queue form: `sweep`, `user:<x>`, `group:<x>`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == "sweep" => Ok(Self::All),
            Some(("user", x)) if !x.trim().is_empty() => Ok(Self::User(x.trim().to_owned())),
            Some(("group", x)) if !x.trim().is_empty() => Ok(Self::Group(x.trim().to_owned())),
            _ => Err(Error::InvalidInput(format!("unknown subject `{s}`"))),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::All => "sweep".into(),
            Self::User(u) => format!("user:{u}"),
            Self::Group(g) => format!("group:{g}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub desired: DesiredConfig,
    /// Removals stop when the user count falls by this share or more since
    /// the last good (plausible) run.
    pub max_user_drop: f64,
    pub max_removal_share: f64,
    pub removal_guard_min: usize,
    /// First wait before a change that failed permanently is sent again
    /// (doubling per failure, capped at [`MAX_FAILURE_BACKOFF`]).
    pub failure_backoff_base: Duration,
}

/// The longest a permanently failing change waits between attempts.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(86_400);

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            desired: DesiredConfig::default(),
            max_user_drop: 0.5,
            max_removal_share: 0.5,
            removal_guard_min: 10,
            failure_backoff_base: Duration::from_secs(900),
        }
    }
}

/// Counts by `<resource>.<action>.<outcome>`; no secrets, no user data.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    pub planned: usize,
    pub outcomes: BTreeMap<String, u64>,
    pub transient_failures: u64,
    pub permanent_failures: u64,
    pub warnings: Vec<String>,
    /// What mailbox ACLs cost on the Dovecot side: doveadm execs (observe
    /// and apply) and `acl set`/`acl delete` commands.
    pub doveadm_execs: u64,
    pub doveadm_acl_writes: u64,
    /// Changes not sent because the same change failed permanently before
    /// and its backoff has not run out.
    pub backing_off: u64,
}

impl RunReport {
    fn count(&mut self, step: &Step, outcome: &str) {
        *self
            .outcomes
            .entry(format!(
                "{}.{}.{}",
                step.resource.as_str(),
                step.action.as_str(),
                outcome
            ))
            .or_default() += 1;
    }

    pub fn summary(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct Engine {
    store: Store,
    directory: Arc<dyn DirectorySource>,
    mailcow: Arc<dyn AgentBackend>,
    sogo: Option<Arc<dyn AgentBackend>>,
    nextcloud: Option<Arc<dyn AgentBackend>>,
    config: EngineConfig,
    locks: KeyLocks,
}

/// The agents a coordinator drives; only the mailcow-agent is required.
pub struct Agents {
    pub mailcow: Arc<dyn AgentBackend>,
    pub sogo: Option<Arc<dyn AgentBackend>>,
    pub nextcloud: Option<Arc<dyn AgentBackend>>,
}

/// What a run decided, before applying.
pub struct Prepared {
    pub plan: Plan,
    scope_users: BTreeSet<String>,
    people: Vec<(i64, String, String)>,
    user_count: usize,
    plausible: bool,
    observe_doveadm_execs: u64,
}

impl Engine {
    pub fn new(
        store: Store,
        directory: Arc<dyn DirectorySource>,
        agents: Agents,
        config: EngineConfig,
    ) -> Self {
        Self {
            store,
            directory,
            mailcow: agents.mailcow,
            sogo: agents.sogo,
            nextcloud: agents.nextcloud,
            config,
            locks: KeyLocks::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn directory(&self) -> &Arc<dyn DirectorySource> {
        &self.directory
    }

    pub fn mailcow(&self) -> &Arc<dyn AgentBackend> {
        &self.mailcow
    }

    pub fn sogo(&self) -> Option<&Arc<dyn AgentBackend>> {
        self.sogo.as_ref()
    }

    pub fn nextcloud(&self) -> Option<&Arc<dyn AgentBackend>> {
        self.nextcloud.as_ref()
    }

    /// Reads, observes and plans without changing anything.
    #[tracing::instrument(skip_all, fields(subject = %subject.key()))]
    pub async fn prepare(&self, subject: &Subject, force: bool) -> Result<Prepared> {
        // Fetch both lists before anything else: an Authentik error ends the
        // run here, before a single change (and so before any removal).
        let (users, groups) = tokio::try_join!(self.directory.users(), self.directory.groups())?;
        let user_count = users.len();
        let group_count = groups.len();
        let directory = Directory::new(users, groups);
        let desired = desired_state(&directory, &self.config.desired);
        let mut guards = Guards {
            max_removal_share: self.config.max_removal_share,
            removal_guard_min: self.config.removal_guard_min,
            force,
            ..Guards::default()
        };
        let previous: Option<usize> = self
            .store
            .get_meta("last_user_count")
            .await?
            .and_then(|v| v.parse().ok());
        if let Some(reason) =
            implausible(user_count, group_count, previous, self.config.max_user_drop)
        {
            warn!(%reason, "Authentik looks wrong; no removals this run");
            guards.allow_removals = false;
            guards.hold_reason = reason;
        }
        let plausible = guards.allow_removals;
        let ledger = self.store.ledger_rows(None).await?;
        let scope = self.scope(subject, &directory, &ledger).await?;
        let request = observe_request(&desired, &ledger, &scope);
        let mailboxes: BTreeSet<String> = request.app_password_mailboxes.iter().cloned().collect();
        // Each target is observed on its own: one that cannot be read has
        // its resources held, and every other target is reconciled.
        let mut observe_doveadm_execs = 0;
        let mut observed = match self.mailcow.observe(request).await {
            Ok(response) => {
                observe_doveadm_execs = response.doveadm_execs;
                Observed::from_mailcow(response, &mailboxes)
            }
            Err(e) => {
                warn!(error = %e, "mailcow-agent could not be observed; its resources are held");
                Observed::mailcow_unavailable(Unavailable::transient(format!(
                    "the mailcow-agent could not be observed: {e}"
                )))
            }
        };
        let sogo_owners = in_scope(
            desired
                .sogo_delegations
                .values()
                .map(|d| (&d.user, &d.owner)),
            &ledger,
            Resource::SogoDelegation,
            &scope,
        );
        let request = ObserveRequest {
            sogo_owners: sogo_owners.into_iter().collect(),
            ..ObserveRequest::default()
        };
        match observe_optional(self.sogo.as_deref(), "sogo-agent (SOGO_AGENT_URL)", request).await {
            Optional::Observed(response) => observed.add_sogo(*response),
            Optional::Unavailable(why) => observed.sogo_unavailable = Some(why),
            Optional::NotNeeded => {}
        }
        let nextcloud_users = in_scope(
            desired
                .nextcloud_accounts
                .values()
                .map(|d| (&d.user, &d.user)),
            &ledger,
            Resource::NextcloudAccount,
            &scope,
        );
        let request = ObserveRequest {
            nextcloud_users: nextcloud_users.into_iter().collect(),
            ..ObserveRequest::default()
        };
        match observe_optional(
            self.nextcloud.as_deref(),
            "nextcloud-agent (NEXTCLOUD_AGENT_URL)",
            request,
        )
        .await
        {
            Optional::Observed(response) => observed.add_nextcloud(*response),
            Optional::Unavailable(why) => observed.nextcloud_unavailable = Some(why),
            Optional::NotNeeded => {}
        }
        let mut plan = plan(&desired, &observed, &ledger, &scope, &guards);
        self.plan_owed_sogo_evictions(&mut plan).await?;
        let scope_users = match &scope {
            Scope::All => BTreeSet::new(),
            Scope::Users(users) => users.clone(),
        };
        let people = people_with_grants(&directory, &desired);
        Ok(Prepared {
            plan,
            scope_users,
            people,
            user_count,
            plausible,
            observe_doveadm_execs,
        })
    }

    async fn scope(
        &self,
        subject: &Subject,
        directory: &Directory,
        ledger: &[LedgerRow],
    ) -> Result<Scope> {
        Ok(match subject {
            Subject::All => Scope::All,
            Subject::User(needle) => {
                let username = match directory.find_user(needle) {
                    Some(u) => Some(u.username.clone()),
                    // Deleted from Authentik: find who they were from our records.
                    None => self.store.known_username(needle).await?,
                };
                Scope::Users(username.into_iter().collect())
            }
            Subject::Group(needle) => {
                let id = directory
                    .find_group(needle)
                    .map(|g| normalize_uuid(&g.pk))
                    .unwrap_or_else(|| normalize_uuid(needle));
                let mut users: BTreeSet<String> = directory
                    .effective_members(&id)
                    .iter()
                    .filter_map(|pk| directory.people.get(pk))
                    .map(|p| p.username.clone())
                    .collect();
                // Everyone the ledger ties to this group or one below it,
                // so leavers (and members of a deleted group) are covered.
                let below = directory.descendants(&id);
                users.extend(
                    ledger
                        .iter()
                        .filter(|r| r.groups.iter().any(|g| below.contains(g)))
                        .map(|r| r.username.clone())
                        .filter(|u| !u.is_empty()),
                );
                Scope::Users(users)
            }
        })
    }

    /// A full run: prepare, then apply under per-user locks.
    #[tracing::instrument(skip_all, fields(job_id, subject = %subject.key()))]
    pub async fn run(&self, job_id: i64, subject: &Subject, force: bool) -> Result<RunReport> {
        let prepared = self.prepare(subject, force).await?;
        let lock_keys: BTreeSet<String> = if *subject == Subject::All {
            // Sweeps already run alone (the queue guarantees it).
            BTreeSet::new()
        } else {
            prepared
                .scope_users
                .iter()
                .map(|u| format!("user:{u}"))
                .chain(["aliases".to_owned()])
                .collect()
        };
        let _held = self.locks.lock_all(&lock_keys).await;
        // Planning happened before the lock; plan again if someone else ran
        // in between? Not needed: every step is idempotent on the agent side
        // and re-checked there (existing names, markers, current lists).
        let mut report = self.apply(job_id, &prepared.plan).await?;
        report.doveadm_execs += prepared.observe_doveadm_execs;
        if prepared.plausible {
            self.store
                .set_meta("last_user_count", &prepared.user_count.to_string())
                .await?;
        }
        self.store.remember_users(&prepared.people).await?;
        if *subject == Subject::All {
            self.store
                .set_meta(
                    "last_sweep_finished",
                    &(crate::store::now_millis() / 1000).to_string(),
                )
                .await?;
        }
        info!(
            planned = report.planned,
            transient = report.transient_failures,
            permanent = report.permanent_failures,
            "reconcile finished"
        );
        Ok(report)
    }

    async fn apply(&self, job_id: i64, plan: &Plan) -> Result<RunReport> {
        let trace_id = reconciler_runtime::telemetry::current_trace_id();
        let mut report = RunReport {
            planned: plan.steps.len(),
            warnings: plan.warnings.clone(),
            ..RunReport::default()
        };
        for w in &plan.warnings {
            warn!(warning = %w, "plan warning");
        }
        // Held because unreadable: nothing was planned for them, so
        // nothing is recorded; a transient reason retries the job.
        for held in plan.held.iter().filter(|h| h.transient) {
            report.transient_failures += 1;
            *report
                .outcomes
                .entry(format!("{}.observe.transient", held.resource.as_str()))
                .or_default() += 1;
        }
        // Ledger-only steps first: they need no agent.
        for step in plan.steps.iter().filter(|s| !s.action.writes_target()) {
            match step.action {
                Action::Adopt => {
                    self.store
                        .ledger_put(&ledger_row(step, LedgerState::Created, remote_id(step)))
                        .await?
                }
                Action::RecordForeign => {
                    self.store
                        .ledger_put(&ledger_row(step, LedgerState::Foreign, remote_id(step)))
                        .await?
                }
                Action::Forget => {
                    self.store
                        .ledger_delete(step.resource.as_str(), &step.key)
                        .await?
                }
                _ => unreachable!("filtered to ledger-only actions"),
            }
            self.audit(job_id, &trace_id, step, "ok", "").await?;
            report.count(step, "ok");
        }

        // A change the target refused for good is not re-sent every sweep:
        // it waits (per object, doubling) unless its inputs changed.
        let backoffs = self.store.backoffs().await?;
        let now = crate::store::now_millis();
        let mut writes: Vec<&Step> = Vec::new();
        for step in plan.steps.iter().filter(|s| s.action.writes_target()) {
            let key = (step.resource.as_str().to_owned(), step.key.clone());
            match backoffs.get(&key) {
                Some(b) if b.holds(&fingerprint(step), now) => {
                    report.count(step, "backing_off");
                    report.backing_off += 1;
                }
                _ => writes.push(step),
            }
        }
        if report.backing_off > 0 {
            report.warnings.push(format!(
                "{} change(s) not sent: each failed permanently before and waits before the next \
                 attempt (sent at once when its group, member or target changes)",
                report.backing_off
            ));
        }
        // Nextcloud accounts go last: they take the secrets of the app
        // passwords created or rotated by the Mailcow changes.
        let (nextcloud, writes_now): (Vec<&Step>, Vec<&Step>) = writes
            .iter()
            .partition(|s| s.resource == Resource::NextcloudAccount);
        let (changes, members) = build_changes(&writes_now);
        // Intent before create: a crash after the agent creates but before we
        // record it leaves a row the next run adopts.
        for step in writes.iter().filter(|s| s.action == Action::Create) {
            self.store
                .ledger_put(&ledger_row(step, LedgerState::Intent, String::new()))
                .await?;
        }
        // Each change goes to the agent that holds its target's credentials.
        let (sogo, mailcow): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .zip(members)
            .partition(|(change, _)| is_sogo(change));
        let secrets = self
            .apply_batches(
                job_id,
                &trace_id,
                self.mailcow.as_ref(),
                mailcow,
                &mut report,
            )
            .await?;
        if !sogo.is_empty() {
            match &self.sogo {
                Some(agent) => {
                    self.apply_batches(job_id, &trace_id, agent.as_ref(), sogo, &mut report)
                        .await?;
                }
                // Planned only when observed, so only reachable if the
                // agent went away mid-run: retry later.
                None => {
                    for step in sogo.iter().flat_map(|(_, steps)| steps) {
                        self.audit(job_id, &trace_id, step, "transient", "no sogo-agent")
                            .await?;
                        report.count(step, "transient");
                        report.transient_failures += 1;
                    }
                }
            }
        }
        if !nextcloud.is_empty() {
            self.apply_nextcloud(job_id, &trace_id, &nextcloud, &secrets, &mut report)
                .await?;
        }
        // Every secret dies here: it was only ever in this run's memory.
        drop(secrets);
        Ok(report)
    }

    /// Nextcloud account changes, with the app password secrets this run
    /// produced. A step whose secret is missing (its app password failed)
    /// is transient: the next run rotates and tries again.
    async fn apply_nextcloud(
        &self,
        job_id: i64,
        trace_id: &str,
        steps: &[&Step],
        secrets: &BTreeMap<String, Secret>,
        report: &mut RunReport,
    ) -> Result<()> {
        let mut work = Vec::new();
        for step in steps {
            match (nextcloud_change(step, secrets), &self.nextcloud) {
                (Some(change), Some(_)) => work.push((change, vec![*step])),
                (change, agent) => {
                    let why = if agent.is_none() {
                        "no nextcloud-agent"
                    } else if change.is_none() {
                        "its app password could not be created or rotated in this run"
                    } else {
                        unreachable!()
                    };
                    self.audit(job_id, trace_id, step, "transient", why).await?;
                    report.count(step, "transient");
                    report.transient_failures += 1;
                    // Never sent: nothing was made.
                    self.unsettled(step, true).await?;
                }
            }
        }
        if let Some(agent) = &self.nextcloud
            && !work.is_empty()
        {
            self.apply_batches(job_id, trace_id, agent.as_ref(), work, report)
                .await?;
        }
        Ok(())
    }

    /// Sends `work` to `agent` in batches and records every outcome.
    async fn apply_batches(
        &self,
        job_id: i64,
        trace_id: &str,
        agent: &dyn AgentBackend,
        work: Vec<(pb::Change, Vec<&Step>)>,
        report: &mut RunReport,
    ) -> Result<BTreeMap<String, Secret>> {
        let mut secrets = BTreeMap::new();
        for batch in work.chunks(APPLY_BATCH) {
            let response = agent
                .apply(ApplyRequest {
                    changes: batch.iter().map(|(c, _)| c.clone()).collect(),
                    dry_run: false,
                })
                .await;
            let results = match response {
                Ok(r) => {
                    report.doveadm_execs += r.doveadm_execs;
                    report.doveadm_acl_writes += r.doveadm_acl_writes;
                    r.results
                }
                Err(e) => {
                    // The whole call failed: nothing is recorded as done.
                    for step in batch.iter().flat_map(|(_, steps)| steps) {
                        self.audit(job_id, trace_id, step, "transient", &e.to_string())
                            .await?;
                        report.count(step, "transient");
                        report.transient_failures += 1;
                    }
                    continue;
                }
            };
            let by_id: BTreeMap<&str, &pb::ChangeResult> =
                results.iter().map(|r| (r.id.as_str(), r)).collect();
            for (change, steps) in batch {
                let Some(result) = by_id.get(change.id.as_str()) else {
                    for step in steps {
                        self.audit(
                            job_id,
                            trace_id,
                            step,
                            "transient",
                            "agent returned no result",
                        )
                        .await?;
                        report.transient_failures += 1;
                    }
                    continue;
                };
                for step in steps {
                    if step.resource == Resource::AppPassword && !result.secret.is_empty() {
                        secrets.insert(step.key.clone(), Secret::new(result.secret.clone()));
                    }
                    self.record(job_id, trace_id, step, result, report).await?;
                }
            }
        }
        Ok(secrets)
    }

    /// Records one change's outcome in the ledger and the audit log.
    async fn record(
        &self,
        job_id: i64,
        trace_id: &str,
        step: &Step,
        result: &pb::ChangeResult,
        report: &mut RunReport,
    ) -> Result<()> {
        // The secret of a created app password is dropped here; nothing in
        // this path may format `result` as a whole.
        self.record_sogo_evictions(step, result, report).await?;
        let outcome = result.outcome();
        let label = outcome_label(outcome);
        match outcome {
            Outcome::Applied | Outcome::Unchanged => match step.action {
                Action::Create => {
                    let id = if result.remote_id != 0 {
                        result.remote_id.to_string()
                    } else {
                        String::new()
                    };
                    self.store
                        .ledger_put(&ledger_row(step, LedgerState::Created, id))
                        .await?;
                }
                Action::Delete => {
                    // Only the ledger row of the object we deleted goes; a
                    // duplicate's delete leaves the keeper's row alone.
                    let deleted = remote_id(step);
                    let row = self
                        .store
                        .ledger_get(step.resource.as_str(), &step.key)
                        .await?;
                    if row.is_some_and(|r| r.remote_id.is_empty() || r.remote_id == deleted) {
                        self.store
                            .ledger_delete(step.resource.as_str(), &step.key)
                            .await?;
                    }
                }
                // A Nextcloud account re-keyed (or adopted and re-keyed)
                // with the secret its app password now has.
                Action::Update if step.resource == Resource::NextcloudAccount => {
                    self.store
                        .ledger_put(&ledger_row(step, LedgerState::Created, remote_id(step)))
                        .await?;
                }
                _ => {}
            },
            Outcome::Transient => {
                report.transient_failures += 1;
                self.unsettled(step, false).await?;
            }
            // The agent found the object there already and left it: our
            // create certainly did not make it.
            Outcome::Refused => {
                report.permanent_failures += 1;
                self.unsettled(step, true).await?;
            }
            // A target can report a failure for a write it applied (Mailcow
            // answers an error message for a change it made): the intent
            // stays, and the next observation settles it.
            _ => {
                report.permanent_failures += 1;
                self.unsettled(step, false).await?;
            }
        }
        match outcome {
            Outcome::Applied | Outcome::Unchanged => {
                self.store
                    .backoff_clear(step.resource.as_str(), &step.key)
                    .await?
            }
            Outcome::Permanent | Outcome::Config | Outcome::Refused => {
                self.store
                    .backoff_failed(
                        step.resource.as_str(),
                        &step.key,
                        &fingerprint(step),
                        &result.message,
                        self.config.failure_backoff_base,
                        MAX_FAILURE_BACKOFF,
                    )
                    .await?
            }
            _ => {}
        }
        let detail = if result.implicitly_allowed.is_empty() {
            result.message.clone()
        } else {
            format!(
                "{} (already allowed through an alias: {})",
                result.message,
                result.implicitly_allowed.join(", ")
            )
        };
        self.audit(job_id, trace_id, step, label, &detail).await?;
        report.count(step, label);
        Ok(())
    }

    /// A change that did not happen, or may not have. A create's intent
    /// row goes only when `made_nothing` is certain (never sent, or the
    /// agent refused because the object was already there); otherwise it
    /// stays, and the next run's observation resolves it: present → ours
    /// (adopted), absent → dropped or created again. An error message alone
    /// never decides, so a write the target applied but reported as failed
    /// is still revoked when access ends. A Nextcloud re-key that did not
    /// happen is remembered, so the next run re-keys again instead of
    /// leaving a dead password.
    async fn unsettled(&self, step: &Step, made_nothing: bool) -> Result<()> {
        match step.action {
            Action::Create if made_nothing => {
                let row = self
                    .store
                    .ledger_get(step.resource.as_str(), &step.key)
                    .await?;
                if row.is_some_and(|r| r.state == LedgerState::Intent && r.remote_id.is_empty()) {
                    self.store
                        .ledger_delete(step.resource.as_str(), &step.key)
                        .await?;
                }
            }
            Action::Update if step.resource == Resource::NextcloudAccount => {
                self.store
                    .ledger_put(&ledger_row(step, LedgerState::Intent, remote_id(step)))
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }

    async fn audit(
        &self,
        job_id: i64,
        trace_id: &str,
        step: &Step,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        self.store
            .audit(AuditEntry {
                job_id,
                trace_id,
                resource: step.resource.as_str(),
                key: &step.key,
                action: step.action.as_str(),
                outcome,
                reason: &step.reason,
                detail,
            })
            .await
    }
}

fn remote_id(step: &Step) -> String {
    match &step.target {
        Target::AppPassword { id, .. }
        | Target::Alias { id, .. }
        | Target::NextcloudAccount { id, .. }
            if *id != 0 =>
        {
            id.to_string()
        }
        _ => String::new(),
    }
}

fn ledger_row(step: &Step, state: LedgerState, remote_id: String) -> LedgerRow {
    LedgerRow {
        resource: step.resource.as_str().to_owned(),
        key: step.key.clone(),
        state,
        username: step.username.clone(),
        groups: step.groups.clone(),
        remote_id,
    }
}

/// Identifies a change (what it does to which object, with which values),
/// so a backoff applies only while the change stays the same. Stable within
/// a build; after an upgrade a waiting change is simply tried once more.
fn fingerprint(step: &Step) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    step.action.as_str().hash(&mut hasher);
    serde_json::to_string(&step.target)
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "applied",
        Outcome::DryRun => "dry_run",
        Outcome::Unchanged => "unchanged",
        Outcome::Transient => "transient",
        Outcome::Permanent => "permanent",
        Outcome::Config => "config",
        Outcome::Refused => "refused",
        Outcome::Unspecified => "unspecified",
    }
}

/// Turns target-writing steps into agent changes. Sender-ACL steps for one
/// login become one delta, so the agent reads and writes that list once.
/// Returns the changes and, for each, the steps it carries.
fn build_changes<'a>(writes: &[&'a Step]) -> (Vec<pb::Change>, Vec<Vec<&'a Step>>) {
    let mut changes = Vec::new();
    let mut members: Vec<Vec<&Step>> = Vec::new();
    let mut by_login: BTreeMap<&str, usize> = BTreeMap::new();
    // ACL steps for one (owner, grantee, rights) become one change with a
    // folder list; the agent batches them per owner.
    let mut by_acl: BTreeMap<(&str, &str, &[String]), usize> = BTreeMap::new();
    // Owed SOGo cache evictions travel as one change.
    let mut evictions: Vec<&Step> = Vec::new();
    for step in writes {
        if step.resource == Resource::SogoCacheEviction {
            evictions.push(*step);
            continue;
        }
        if let Target::MailboxAcl {
            owner,
            grantee,
            folder,
            rights,
        } = &step.target
        {
            let delete = step.action == Action::Delete;
            let rights: &[String] = if delete { &[] } else { rights };
            let index = *by_acl
                .entry((owner.as_str(), grantee.as_str(), rights))
                .or_insert_with(|| {
                    let (id, kind) = if delete {
                        (
                            format!("mailbox_acl:delete:{owner}|{grantee}"),
                            Kind::MailboxAclDelete(pb::MailboxAclDelete {
                                owner: owner.clone(),
                                grantee: grantee.clone(),
                                folders: vec![],
                            }),
                        )
                    } else {
                        (
                            format!("mailbox_acl:set:{owner}|{grantee}|{}", rights.join(" ")),
                            Kind::MailboxAclSet(pb::MailboxAclSet {
                                owner: owner.clone(),
                                grantee: grantee.clone(),
                                rights: rights.to_vec(),
                                folders: vec![],
                            }),
                        )
                    };
                    changes.push(pb::Change {
                        id,
                        kind: Some(kind),
                    });
                    members.push(Vec::new());
                    changes.len() - 1
                });
            match &mut changes[index].kind {
                Some(Kind::MailboxAclSet(set)) => set.folders.push(folder.clone()),
                Some(Kind::MailboxAclDelete(delete)) => delete.folders.push(folder.clone()),
                _ => {}
            }
            members[index].push(*step);
            continue;
        }
        let kind = match (&step.target, step.action) {
            (Target::SenderAcl { login, send_as }, action) => {
                let index = *by_login.entry(login.as_str()).or_insert_with(|| {
                    changes.push(pb::Change {
                        id: format!("sender_acl:{login}"),
                        kind: Some(Kind::SenderAcl(pb::SenderAclDelta {
                            login: login.clone(),
                            add: vec![],
                            remove: vec![],
                        })),
                    });
                    members.push(Vec::new());
                    changes.len() - 1
                });
                if let Some(Kind::SenderAcl(delta)) = &mut changes[index].kind {
                    match action {
                        Action::Create => delta.add.push(send_as.clone()),
                        _ => delta.remove.push(send_as.clone()),
                    }
                }
                members[index].push(*step);
                continue;
            }
            (
                Target::AppPassword {
                    mailbox,
                    name,
                    protocols,
                    ..
                },
                Action::Create,
            ) => Kind::AppPasswordCreate(pb::AppPasswordCreate {
                mailbox: mailbox.clone(),
                name: name.clone(),
                protocols: protocols.clone(),
            }),
            (
                Target::AppPassword {
                    mailbox,
                    name,
                    id,
                    protocols,
                },
                Action::Update,
            ) => Kind::AppPasswordUpdate(pb::AppPasswordUpdate {
                id: *id,
                mailbox: mailbox.clone(),
                name: name.clone(),
                protocols: protocols.clone(),
            }),
            (
                Target::AppPassword {
                    mailbox,
                    name,
                    id,
                    protocols,
                },
                Action::Rotate,
            ) => Kind::AppPasswordRotate(pb::AppPasswordRotate {
                id: *id,
                mailbox: mailbox.clone(),
                name: name.clone(),
                protocols: protocols.clone(),
            }),
            (
                Target::AppPassword {
                    mailbox, name, id, ..
                },
                _,
            ) => Kind::AppPasswordDelete(pb::AppPasswordDelete {
                id: *id,
                mailbox: mailbox.clone(),
                name: name.clone(),
            }),
            (Target::Alias { address, goto, .. }, Action::Create) => {
                Kind::AliasCreate(pb::AliasCreate {
                    address: address.clone(),
                    goto: goto.clone(),
                })
            }
            (Target::Alias { address, id, goto }, Action::Update) => {
                Kind::AliasUpdate(pb::AliasUpdate {
                    id: *id,
                    address: address.clone(),
                    goto: goto.clone(),
                })
            }
            (Target::Alias { address, id, .. }, _) => Kind::AliasDelete(pb::AliasDelete {
                id: *id,
                address: address.clone(),
            }),
            (Target::MailboxAcl { .. }, _) => unreachable!("handled above"),
            (Target::NextcloudAccount { .. }, _) => {
                unreachable!("built after the app passwords they need")
            }
            (Target::SogoDelegation { owner, delegate }, Action::Create) => {
                Kind::SogoDelegateAdd(pb::SogoDelegateAdd {
                    owner: owner.clone(),
                    delegate: delegate.clone(),
                })
            }
            (Target::SogoDelegation { owner, delegate }, _) => {
                Kind::SogoDelegateRemove(pb::SogoDelegateRemove {
                    owner: owner.clone(),
                    delegate: delegate.clone(),
                })
            }
            (Target::SogoCacheEviction { .. }, _) => unreachable!("grouped above"),
        };
        changes.push(pb::Change {
            id: format!(
                "{}:{}:{}:{}",
                step.resource.as_str(),
                step.action.as_str(),
                step.key,
                remote_id(step)
            ),
            kind: Some(kind),
        });
        members.push(vec![*step]);
    }
    if let Some(change) = sogo_cache::evict_change(&evictions) {
        changes.push(change);
        members.push(evictions);
    }
    (changes, members)
}

/// The agent change for a Nextcloud account step; `None` when it needs a
/// secret this run does not have.
fn nextcloud_change(step: &Step, secrets: &BTreeMap<String, Secret>) -> Option<pb::Change> {
    let Target::NextcloudAccount {
        user,
        email,
        login,
        id,
        app_password_key,
    } = &step.target
    else {
        return None;
    };
    let secret = || secrets.get(app_password_key).map(|s| s.expose().to_owned());
    let kind = match step.action {
        Action::Create => Kind::NextcloudAccountCreate(pb::NextcloudAccountCreate {
            user: user.clone(),
            email: email.clone(),
            name: email.clone(),
            login: login.clone(),
            password: secret()?,
        }),
        Action::Update => Kind::NextcloudAccountSetPassword(pb::NextcloudAccountSetPassword {
            user: user.clone(),
            id: *id,
            email: email.clone(),
            password: secret()?,
        }),
        _ => Kind::NextcloudAccountDelete(pb::NextcloudAccountDelete {
            user: user.clone(),
            id: *id,
            email: email.clone(),
        }),
    };
    Some(pb::Change {
        id: format!(
            "{}:{}:{}:{}",
            step.resource.as_str(),
            step.action.as_str(),
            step.key,
            remote_id(step)
        ),
        kind: Some(kind),
    })
}

fn is_sogo(change: &pb::Change) -> bool {
    matches!(
        change.kind,
        Some(Kind::SogoDelegateAdd(_) | Kind::SogoDelegateRemove(_) | Kind::SogoCacheEvict(_))
    )
}

/// What an optional agent said, if it was asked.
enum Optional {
    Observed(Box<pb::ObserveResponse>),
    /// Something in scope needs it, but it is not configured or could not
    /// be observed.
    Unavailable(Unavailable),
    /// Nothing in scope needs it.
    NotNeeded,
}

/// Observes an optional agent when the request asks it anything. An agent
/// that is absent or fails is reported, never an error of the whole run.
async fn observe_optional(
    agent: Option<&dyn AgentBackend>,
    setting: &str,
    request: ObserveRequest,
) -> Optional {
    if request.sogo_owners.is_empty() && request.nextcloud_users.is_empty() {
        return Optional::NotNeeded;
    }
    let Some(agent) = agent else {
        return Optional::Unavailable(Unavailable::not_configured(format!(
            "no {setting} is configured"
        )));
    };
    match agent.observe(request).await {
        Ok(response) => Optional::Observed(Box::new(response)),
        Err(e) => {
            warn!(error = %e, "agent could not be observed; its resources are held");
            Optional::Unavailable(Unavailable::transient(format!(
                "the agent could not be observed: {e}"
            )))
        }
    }
}

/// The subjects (owners, users) an optional agent is asked about: those of
/// desired entries `(user, subject)` in scope, and the first key part of
/// `resource`'s ledger rows in scope.
fn in_scope<'a>(
    desired: impl Iterator<Item = (&'a String, &'a String)>,
    ledger: &[LedgerRow],
    resource: Resource,
    scope: &Scope,
) -> BTreeSet<String> {
    desired
        .filter(|(user, _)| scope.contains(user))
        .map(|(_, subject)| subject.clone())
        .chain(
            ledger
                .iter()
                .filter(|r| r.resource == resource.as_str() && scope.contains(&r.username))
                .filter_map(|r| r.key.split('|').next().map(str::to_owned)),
        )
        .collect()
}

/// What to ask the Mailcow agent about: every login and mailbox the scope
/// could touch, from desired state and the ledger.
fn observe_request(desired: &DesiredState, ledger: &[LedgerRow], scope: &Scope) -> ObserveRequest {
    let mut logins = BTreeSet::new();
    let mut mailboxes = BTreeSet::new();
    for acl in desired
        .sender_acls
        .values()
        .filter(|d| scope.contains(&d.user))
    {
        logins.insert(acl.login.clone());
    }
    for pw in desired
        .app_passwords
        .values()
        .filter(|d| scope.contains(&d.user))
    {
        mailboxes.insert(pw.mailbox.clone());
    }
    for row in ledger.iter().filter(|r| scope.contains(&r.username)) {
        let first = row.key.split('|').next().unwrap_or_default().to_owned();
        match row.resource.as_str() {
            r if r == Resource::SenderAcl.as_str() => {
                logins.insert(first);
            }
            r if r == Resource::AppPassword.as_str() => {
                mailboxes.insert(first);
            }
            _ => {}
        }
    }
    // Owners are only asked about when some group shares a mailbox (or we
    // hold entries to clean up), so an agent without Dovecot access works
    // for everything else.
    let owners: BTreeSet<String> = desired
        .mailbox_acls
        .values()
        .filter(|d| scope.contains(&d.user))
        .map(|d| d.owner.clone())
        .chain(
            ledger
                .iter()
                .filter(|r| r.resource == Resource::MailboxAcl.as_str())
                .filter(|r| scope.contains(&r.username))
                .filter_map(|r| r.key.split('|').next().map(str::to_owned)),
        )
        .collect();
    ObserveRequest {
        sender_acl_logins: logins.into_iter().collect(),
        app_password_mailboxes: mailboxes.into_iter().collect(),
        aliases: true,
        mailbox_acl_owners: owners.into_iter().collect(),
        ..ObserveRequest::default()
    }
}

fn people_with_grants(directory: &Directory, desired: &DesiredState) -> Vec<(i64, String, String)> {
    let granted: BTreeSet<&str> = desired
        .sender_acls
        .values()
        .map(|d| d.user.as_str())
        .chain(desired.app_passwords.values().map(|d| d.user.as_str()))
        .chain(desired.mailbox_acls.values().map(|d| d.user.as_str()))
        .collect();
    directory
        .people
        .values()
        .filter(|p| granted.contains(p.username.as_str()))
        .map(|p| (p.pk, p.username.clone(), p.email.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        for s in ["sweep", "user:alice", "group:abc"] {
            assert_eq!(Subject::parse(s).unwrap().key(), s);
        }
        assert!(Subject::parse("user:").is_err());
        assert!(Subject::parse("nonsense").is_err());
    }
}
