//! Workers that drain the durable job queue, and the periodic sweep.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::engine::Engine;
use crate::store::{Store, now_millis};
use crate::subject::Subject;

/// How long an idle worker waits before looking again when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Workers {
    pub engine: Arc<Engine>,
    /// Woken on every enqueue, so a 202 turns into work at once.
    pub wake: Arc<Notify>,
    pub max_attempts: i64,
    pub retry_base: Duration,
}

impl Workers {
    pub fn spawn(
        &self,
        count: usize,
        shutdown: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..count)
            .map(|n| {
                let this = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { this.run(n, shutdown).await })
            })
            .collect()
    }

    async fn run(&self, worker: usize, shutdown: CancellationToken) {
        let store = self.engine.store();
        // Every claim below is made only while not stopping, and every
        // claimed job is run: none is left `running` by a clean stop.
        if shutdown.is_cancelled() {
            return;
        }
        let mut claimed = store.claim().await;
        loop {
            match claimed {
                Ok(Some(job)) => {
                    // Another job may be runnable too; let a sibling look.
                    self.wake.notify_one();
                    let span = tracing::info_span!("job", id = job.id, subject = %job.subject, attempt = job.attempts, worker);
                    let done = self.execute(&job).instrument(span).await;
                    claimed = match done {
                        // The common case: the result and the next claim
                        // in one commit. Not when stopping: a job claimed
                        // now would only be interrupted.
                        Some(summary) if !shutdown.is_cancelled() => {
                            match store.finish_and_claim(job.id, &summary).await {
                                Ok(next) => Ok(next),
                                // The claim may be what failed: the result
                                // must not be lost with it (a job left
                                // `running` holds its subject and every
                                // sweep back).
                                Err(e) => {
                                    warn!(error = %e, job_id = job.id, "result and next claim failed together; recording the result alone");
                                    if let Err(e) = store.finish(job.id, &summary).await {
                                        error!(error = %e, job_id = job.id, "cannot record the job's result");
                                    }
                                    store.claim().await
                                }
                            }
                        }
                        Some(summary) => {
                            if let Err(e) = store.finish(job.id, &summary).await {
                                error!(error = %e, job_id = job.id, "cannot record the job's result");
                            }
                            return;
                        }
                        None if shutdown.is_cancelled() => return,
                        None => store.claim().await,
                    };
                    // The job's subject (or the sweep) is free again.
                    self.wake.notify_one();
                }
                Ok(None) => {
                    let wait = self.idle_wait().await;
                    tokio::select! {
                        // A stop wins over a wake-up that is also ready.
                        biased;
                        _ = shutdown.cancelled() => return,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                    claimed = store.claim().await;
                }
                Err(e) => {
                    error!(error = %e, "cannot claim a job");
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    if shutdown.is_cancelled() {
                        return;
                    }
                    claimed = store.claim().await;
                }
            }
        }
    }

    /// Until the next delayed job is due, capped by the idle poll.
    async fn idle_wait(&self) -> Duration {
        match self.engine.store().next_due().await {
            Ok(Some(due)) => {
                let ms = (due - now_millis()).clamp(10, IDLE_POLL.as_millis() as i64);
                Duration::from_millis(ms as u64)
            }
            _ => IDLE_POLL,
        }
    }

    /// Runs `job`. A job that went well returns its summary for the
    /// caller to record with the next claim; any other outcome is recorded
    /// here.
    async fn execute(&self, job: &crate::store::ClaimedJob) -> Option<String> {
        let (id, force, attempts) = (job.id, job.force, job.attempts);
        let subject = job.subject.as_str();
        let store = self.engine.store();
        let subject = match Subject::parse(subject) {
            Ok(s) => s,
            Err(e) => {
                let _ = store.retry_or_fail(id, &e.to_string(), "", None).await;
                return None;
            }
        };
        let started = std::time::Instant::now();
        let result = self.engine.run(id, &subject, force).await;
        if let Ok(report) = &result {
            let trigger = if job.trigger.is_empty() {
                "unknown"
            } else {
                &job.trigger
            };
            crate::metrics::record_run(trigger, started.elapsed(), report, self.engine.adapters());
        }
        let outcome = match result {
            Ok(report) if report.transient_failures == 0 => return Some(report.summary()),
            Ok(report) => {
                let error = format!("{} change(s) failed transiently", report.transient_failures);
                warn!(%error, "job will be retried");
                store
                    .retry_or_fail(id, &error, &report.summary(), self.retry_at(attempts))
                    .await
            }
            Err(e) => {
                warn!(error = %e, "job failed");
                let retry = if e.is_transient() {
                    self.retry_at(attempts)
                } else {
                    None
                };
                store.retry_or_fail(id, &e.to_string(), "", retry).await
            }
        };
        if let Err(e) = outcome {
            error!(error = %e, "cannot record the job's result");
        }
        None
    }

    /// Exponential backoff with jitter, or `None` once attempts run out.
    fn retry_at(&self, attempts: i64) -> Option<i64> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = self
            .retry_base
            .saturating_mul(1u32 << attempts.clamp(0, 16) as u32 >> 1);
        let capped = exp.min(MAX_BACKOFF).as_millis() as i64;
        let jitter = rand::rng().random_range(0..=capped / 5 + 1);
        Some(now_millis() + capped + jitter)
    }
}

/// Enqueues a sweep at start and then every `interval`.
pub async fn sweep_timer(
    store: Store,
    wake: Arc<Notify>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match store.enqueue(&Subject::All, false, "timer", None).await {
            Ok(job) => {
                info!(
                    job_id = job.job_id,
                    deduplicated = job.deduplicated,
                    "periodic sweep queued"
                );
                wake.notify_one();
            }
            Err(e) => error!(error = %e, "cannot queue the periodic sweep"),
        }
    }
}

/// Queues a run for each user whose grace period ended, so a removal
/// happens when due rather than at the next sweep; at start, every removal
/// that fell due while the coordinator was down. It looks every `poll`
/// (a run may start a grace period at any time) and exactly at each due
/// time it knows of. A removal that stays due (held by a guard) is not
/// queued again: the sweeps retry it.
pub async fn grace_timer(
    store: Store,
    wake: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut after = i64::MIN;
    loop {
        let now = now_millis();
        let next = match store.pending_due(after, now).await {
            Ok((due, next)) => {
                for user in due {
                    match store
                        .enqueue(&Subject::User(user.clone()), false, "grace", None)
                        .await
                    {
                        Ok(job) => {
                            info!(job_id = job.job_id, %user, "grace period over: run queued");
                            wake.notify_one();
                        }
                        Err(e) => error!(error = %e, %user, "cannot queue a due removal"),
                    }
                }
                after = now;
                next
            }
            Err(e) => {
                error!(error = %e, "cannot read pending removals");
                None
            }
        };
        let until_next = next
            .map(|due| Duration::from_millis(u64::try_from(due - now).unwrap_or(0)))
            .unwrap_or(poll);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(until_next.min(poll)) => {}
        }
    }
}

/// Prunes old finished jobs and audit rows once at start, then every
/// `interval`, batch by batch (each a short transaction), off the hot path.
pub async fn prune_timer(
    store: Store,
    retention: crate::store::Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    const BATCH: i64 = 500;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let mut total = crate::store::Pruned::default();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let now = crate::store::now_millis();
            match store.prune_batch(&retention, now, BATCH).await {
                Ok(pruned) => {
                    total.jobs += pruned.jobs;
                    total.webhook_events += pruned.webhook_events;
                    total.audit += pruned.audit;
                    if pruned.jobs < BATCH as u64 && pruned.audit < BATCH as u64 {
                        break;
                    }
                }
                Err(e) => {
                    error!(error = %e, "pruning old jobs and audit rows failed");
                    break;
                }
            }
            // Let jobs take the write lock between batches.
            tokio::task::yield_now().await;
        }
        if total.total() > 0 {
            info!(
                jobs = total.jobs,
                webhook_events = total.webhook_events,
                audit = total.audit,
                "old state pruned"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    use super::Workers;
    use crate::engine::{Engine, EngineConfig};
    use crate::store::Store;
    use crate::subject::Subject;
    use crate::targets::Adapters;
    use crate::testsuite::{EmptyMailcowAgent, FakeDirectory};

    async fn state(store: &Store, id: i64) -> (String, i64) {
        let job = store.job(id).await.unwrap().expect("the job exists");
        (job.state, job.attempts)
    }

    /// Waits (bounded) until job `id` is in `wanted`.
    async fn until_state(store: &Store, id: i64, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while state(store, id).await.0 != wanted {
            assert!(Instant::now() < deadline, "job {id} never became {wanted}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The result and the next claim commit together; when that commit
    /// fails because of the claim, the finished job's result is recorded
    /// alone, and the job that could not be claimed stays queued, untouched,
    /// until it can be.
    #[tokio::test]
    async fn a_failed_claim_does_not_lose_the_result_committed_with_it() {
        let (store, _dir) = Store::open_temp().await;
        let directory = Arc::new(FakeDirectory::default());
        directory.add_user(1, "alice", "alice@example.com");
        directory.add_user(2, "bob", "bob@example.com");
        let adapters = Adapters::default().with(Arc::new(EmptyMailcowAgent::adapter()));
        let engine = Arc::new(Engine::new(
            store.clone(),
            directory,
            adapters,
            EngineConfig::default(),
        ));
        // Every claim of bob's job fails (a claim records its attempt).
        let mut tx = store.write_tx().await.unwrap();
        sqlx::query(
            "CREATE TRIGGER refuse_bob BEFORE INSERT ON job_attempts
             WHEN (SELECT subject FROM jobs WHERE id = NEW.job_id) = 'user:bob'
             BEGIN SELECT RAISE(ABORT, 'claim refused'); END",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let alice = store
            .enqueue(&Subject::User("alice".into()), false, "test", None)
            .await
            .unwrap()
            .job_id;
        let bob = store
            .enqueue(&Subject::User("bob".into()), false, "test", None)
            .await
            .unwrap()
            .job_id;

        let shutdown = CancellationToken::new();
        let workers = Workers {
            engine,
            wake: Arc::new(Notify::new()),
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
        };
        let handles = workers.spawn(1, shutdown.clone());

        // Alice ran; her result and bob's claim failed together.
        until_state(&store, alice, "done").await;
        let attempts = store.job_attempts(alice).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, "done", "her attempt is closed too");
        assert_eq!(state(&store, bob).await, ("queued".to_owned(), 0));

        // Once bob can be claimed, the worker's next look runs him.
        let mut tx = store.write_tx().await.unwrap();
        sqlx::query("DROP TRIGGER refuse_bob")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        until_state(&store, bob, "done").await;
        assert_eq!(state(&store, alice).await, ("done".to_owned(), 1));

        shutdown.cancel();
        for handle in handles {
            handle.await.unwrap();
        }
    }
}
