//! One reconcile run: read Authentik, compute desired state, observe, plan,
//! apply, record. Every trigger (webhook, sweep, gRPC) ends up here. The
//! engine knows no target by name: it drives the configured
//! [`TargetAdapter`](crate::targets::TargetAdapter)s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::authentik::DirectorySource;
use crate::desired::{DesiredConfig, DesiredState, desired_state};
use crate::directory::Directory;
use crate::error::Result;
use crate::plan::{Action, GraceClock, Guards, Plan, Scope, implausible, plan_at};
use crate::store::{BackupPolicy, Store};
use crate::targets::{Adapters, ObserveInput};
use reconciler_runtime::locks::KeyedLocks;

mod apply;
mod bookkeeping;
mod directory_read;
mod observe;
mod patch_log;
mod report;
mod scope;

use crate::subject::Subject;

use crate::leader::Leadership;
pub use bookkeeping::MAX_FAILURE_BACKOFF;
use directory_read::{DirectoryRead, Snapshot, SnapshotSlot};
use observe::Observation;
use patch_log::PatchLog;
pub use report::RunReport;

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
    /// State DB snapshots before a run that removes anything.
    pub backups: BackupPolicy,
    /// How long a whole read of the directory may be patched by webhooks
    /// instead of read again (`None`: every run reads it whole).
    pub directory_max_age: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            desired: DesiredConfig::default(),
            max_user_drop: 0.5,
            max_removal_share: 0.5,
            removal_guard_min: 10,
            failure_backoff_base: Duration::from_secs(900),
            backups: BackupPolicy::default(),
            directory_max_age: Some(Duration::from_secs(900)),
        }
    }
}

pub struct Engine {
    store: Store,
    directory: Arc<dyn DirectorySource>,
    adapters: Adapters,
    config: EngineConfig,
    locks: KeyedLocks,
    /// The last whole directory read, patched by webhooks since.
    snapshot: tokio::sync::Mutex<SnapshotSlot>,
    /// Every patch of the snapshot, numbered: which object each last
    /// changed, and those made while whole reads are under way.
    patch_log: Arc<std::sync::Mutex<PatchLog>>,
    /// Whether this instance runs jobs (health and status show it).
    leadership: Leadership,
}

/// What a run decided, before applying.
pub struct Prepared {
    pub plan: Plan,
    /// The directory the plan was made from (group names, nesting).
    pub directory: Arc<Directory>,
    scope_users: BTreeSet<String>,
    people: Vec<(i64, String, String)>,
    user_count: usize,
    plausible: bool,
    observe_doveadm_execs: u64,
    /// The directory changes made after this run's read (not its own).
    read_since: patch_log::Since,
}

/// Objects whose change failed for good and waits out its backoff, for
/// one resource and cause: how many, and the fix a target knows for it.
#[derive(Clone, Debug)]
pub struct FailingCause {
    pub resource: String,
    /// The agent's message, addresses and numbers taken out.
    pub cause: String,
    pub objects: u64,
    pub hint: Option<&'static str>,
}

impl Engine {
    /// What keeps failing, by resource and cause (gRPC `Status`, the
    /// status page, the metrics).
    pub async fn failing_causes(&self) -> Result<Vec<FailingCause>> {
        let mut counts: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for ((resource, _), backoff) in self.store.backoffs().await? {
            let cause = report::cause(&backoff.last_error);
            *counts.entry((resource, cause)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((resource, cause), objects)| FailingCause {
                hint: self.adapters.iter().find_map(|a| a.hint(&cause)),
                resource,
                cause,
                objects,
            })
            .collect())
    }

    pub fn new(
        store: Store,
        directory: Arc<dyn DirectorySource>,
        adapters: Adapters,
        config: EngineConfig,
    ) -> Self {
        Self {
            store,
            directory,
            adapters,
            config,
            locks: KeyedLocks::default(),
            snapshot: tokio::sync::Mutex::default(),
            patch_log: Default::default(),
            leadership: Leadership::sole(),
        }
    }

    /// Runs under elected leadership (coordinators sharing PostgreSQL).
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = leadership;
        self
    }

    pub fn leadership(&self) -> &Leadership {
        &self.leadership
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn directory(&self) -> &Arc<dyn DirectorySource> {
        &self.directory
    }

    pub fn adapters(&self) -> &Adapters {
        &self.adapters
    }

    /// Reads, observes and plans without changing anything, the directory
    /// snapshot included (`coordinator plan`, `explain`).
    pub async fn prepare(&self, subject: &Subject, force: bool) -> Result<Prepared> {
        self.prepare_for(subject, force, Snapshot::ReadOnly).await
    }

    /// [`Self::prepare`]; a run's ([`Snapshot::Write`]) also keeps what it
    /// read of the directory for the runs after it.
    #[tracing::instrument(skip_all, fields(subject = %subject))]
    async fn prepare_for(
        &self,
        subject: &Subject,
        force: bool,
        snapshot: Snapshot,
    ) -> Result<Prepared> {
        let (directory, read) = self.read_directory(subject, snapshot).await?;
        let mut read_since = patch_log::Since::from(read.patches_from());
        let user_count = directory.all_users.len();
        let group_count = directory.groups.len();
        let desired = {
            let (directory, config) = (directory.clone(), self.config.desired.clone());
            off_runtime(move || desired_state(&directory, &config)).await
        };
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
        if let DirectoryRead::Whole {
            read_at_millis,
            read,
        } = read
            && plausible
            && snapshot == Snapshot::Write
        {
            read_since.own = self
                .keep_snapshot(&directory, read_at_millis, &read)
                .await?;
        }
        let ledger = self.store.ledger_rows(None).await?;
        let scope = self.scope(subject, &directory, &ledger).await?;
        let Observation {
            observed,
            doveadm_execs: observe_doveadm_execs,
        } = self
            .observe(&ObserveInput {
                desired: &desired,
                ledger: &ledger,
                scope: &scope,
            })
            .await;
        let clock = GraceClock {
            now_millis: crate::store::now_millis(),
            due: self.store.pending_due_times().await?,
        };
        let (mut plan, desired, scope) = off_runtime(move || {
            let plan = plan_at(&desired, &observed, &ledger, &clock, &scope, &guards);
            (plan, desired, scope)
        })
        .await;
        for adapter in self.adapters.iter() {
            adapter.extend_plan(&self.store, &mut plan).await?;
        }
        let scope_users = match &scope {
            Scope::All => BTreeSet::new(),
            Scope::Users(users) => users.clone(),
        };
        let people = people_with_grants(&directory, &desired, &scope);
        Ok(Prepared {
            plan,
            directory,
            scope_users,
            people,
            user_count,
            plausible,
            observe_doveadm_execs,
            read_since,
        })
    }

    /// A full run: prepare, then apply under per-user locks.
    #[tracing::instrument(skip_all, fields(job_id, subject = %subject))]
    pub async fn run(&self, job_id: i64, subject: &Subject, force: bool) -> Result<RunReport> {
        let mut prepared = self.prepare_for(subject, force, Snapshot::Write).await?;
        let mut replans = 0;
        // Planning happens before the locks. A run whose users (or the
        // members behind a group alias it writes) a newer read changed
        // meanwhile plans again (`overtaken`): that read's run may have applied
        // already, and this plan would undo it (a grant revoked from a
        // stale view). One that reads after the locks are held applies
        // after this run. (One that read after this run but observed the
        // target before this run applied may plan from that observation;
        // the next run for those users, or the next sweep, settles it.)
        let _held = loop {
            let held = self.locks.lock_all(&lock_keys(subject, &prepared)).await;
            if subject.is_sweep() || !self.overtaken(&prepared) {
                break held;
            }
            drop(held);
            if replans == MAX_OVERTAKES {
                return Err(crate::error::Error::Overtaken(format!(
                    "newer directory reads changed what this run planned from {} times in a row",
                    replans + 1
                )));
            }
            replans += 1;
            info!(
                replans,
                "a newer directory read changed what this run planned from: planning again"
            );
            prepared = self.prepare_for(subject, force, Snapshot::Write).await?;
        };
        // A run that removes anything (from a target or from the ledger)
        // first snapshots the state DB, so a wrong removal can be undone.
        let removes = prepared
            .plan
            .steps
            .iter()
            .any(|s| matches!(s.action, Action::Delete | Action::Forget));
        let snapshot = if removes {
            self.store.snapshot(&self.config.backups).await?
        } else {
            None
        };
        let mut report = self.apply(job_id, &prepared.plan).await?;
        report.state_backup = snapshot.map(|p| p.display().to_string());
        report.doveadm_execs += prepared.observe_doveadm_execs;
        if prepared.plausible {
            // Written when it moved only: a webhook run keeps the count.
            let count = prepared.user_count.to_string();
            if self.store.get_meta("last_user_count").await?.as_deref() != Some(&count) {
                self.store.set_meta("last_user_count", &count).await?;
            }
        }
        self.store.remember_users(&prepared.people).await?;
        if subject.is_sweep() {
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
}

/// How often a run reads its subject again (a newer read of the same
/// objects was applied first), and how often it plans again (a newer read
/// changed its users before it held them). Each costs a read of the
/// subject, a few requests; past this the run fails as transient
/// ([`crate::error::Error::Overtaken`]) and its job is retried later,
/// rather than apply what may be stale.
const MAX_OVERTAKES: usize = 3;

/// The per-user locks a run holds while it applies, and `aliases` (group
/// aliases span users). Sweeps already run alone (the queue guarantees it).
fn lock_keys(subject: &Subject, prepared: &Prepared) -> BTreeSet<String> {
    if subject.is_sweep() {
        return BTreeSet::new();
    }
    prepared
        .scope_users
        .iter()
        .map(|u| format!("user:{u}"))
        .chain(["aliases".to_owned()])
        .collect()
}

/// Runs CPU-bound work over the whole directory (desired state, the plan)
/// on the blocking pool: on the runtime's few threads it would hold up the
/// HTTP accept of every webhook arriving meanwhile (issue 12).
async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Everyone granted anything on any target (of `scope`, when the run has
/// one), remembered so a webhook about them still finds who they were once
/// Authentik deleted them.
fn people_with_grants(
    directory: &Directory,
    desired: &DesiredState,
    scope: &Scope,
) -> Vec<(i64, String, String)> {
    let granted: BTreeSet<&str> = crate::plan::Resource::ALL
        .into_iter()
        .flat_map(|r| desired.users_of(r))
        .collect();
    directory
        .people
        .values()
        .filter(|p| granted.contains(p.username.as_str()))
        .filter(|p| match scope {
            Scope::All => true,
            Scope::Users(users) => users.contains(&p.username),
        })
        .map(|p| (p.pk, p.username.clone(), p.email.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
