//! The durable job queue.
//!
//! Rules: a job is acknowledged only after commit; one event pk maps to one
//! job; a queued job for the same subject absorbs new triggers (debounce);
//! at most one job per subject runs at a time.

use sqlx::Row;

use super::{Commit, Store, now_millis, summary};
use crate::error::Result;
use crate::subject::Subject;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: i64,
    /// The trigger joined an existing job (same event pk, or same subject
    /// still waiting).
    pub deduplicated: bool,
}

#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: i64,
    pub subject: String,
    pub force: bool,
    pub attempts: i64,
    /// What queued it (`webhook`, `timer`, `grace`, `catchup`, …).
    pub trigger: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub trigger: String,
    pub last_error: String,
    /// The stored summary ([`summary::combine`]): JSON text, or empty until
    /// an attempt has reported; served as the object it holds.
    #[serde(serialize_with = "summary::serialize_stored")]
    pub summary: String,
}

/// What [`Store::requeue_interrupted`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interrupted {
    /// Running jobs queued again.
    pub requeued: u64,
    /// Jobs failed because every attempt was used.
    pub gave_up: u64,
}

/// [`Store::finish`] inside `tx`.
async fn finish_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    instance: &str,
    id: i64,
    summary: &str,
) -> Result<()> {
    if !end_attempt(tx, instance, id, "done").await? {
        return Ok(());
    }
    let summary = combined_summary(tx, id, summary).await?;
    sqlx::query(
        "UPDATE jobs SET state = 'done', summary = $1, last_error = '', updated_at = $2 WHERE id = $3",
    )
    .bind(summary)
    .bind(now_millis())
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The job's stored summary combined with this attempt's.
async fn combined_summary(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
    attempt: &str,
) -> Result<String> {
    let previous: Option<String> = sqlx::query_scalar("SELECT summary FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(summary::combine(&previous.unwrap_or_default(), attempt))
}

/// One attempt of a job, as recorded (migration 0016): which instance ran
/// it and when.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct JobAttempt {
    pub job_id: i64,
    pub attempt: i64,
    pub instance: String,
    /// Unix ms.
    pub started_at: i64,
    /// `None` while it runs.
    pub ended_at: Option<i64>,
    /// `running`, `done`, `retry`, `failed` or `interrupted`.
    pub outcome: String,
}

/// The PostgreSQL notification channel a new job is announced on.
pub const JOBS_CHANNEL: &str = "reconciler_jobs";

/// Serializes claims among coordinators sharing PostgreSQL (a transaction
/// lock; any constant distinct from the leader lock's).
const CLAIM_LOCK: i64 = 0x636c_6169_6d00; // "claim"

/// Closes this instance's open attempt of job `id` with `outcome`; `false`
/// if it has none: the job was taken from it (a new leader queued it
/// again), and its result is stale.
async fn end_attempt(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    instance: &str,
    id: i64,
    outcome: &str,
) -> Result<bool> {
    let ended = sqlx::query(
        "UPDATE job_attempts SET ended_at = $1, outcome = $2
         WHERE job_id = $3 AND instance = $4 AND ended_at IS NULL",
    )
    .bind(now_millis())
    .bind(outcome)
    .bind(id)
    .bind(instance)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if ended == 0 {
        tracing::warn!(
            job_id = id,
            "the job was queued again elsewhere while this attempt ran; its result is dropped"
        );
    }
    Ok(ended > 0)
}

/// One trigger to make durable ([`Store::enqueue`]).
#[derive(Clone, Debug)]
pub(super) struct EnqueueRequest {
    pub subject: String,
    pub force: bool,
    pub trigger: String,
    pub event_pk: Option<String>,
}

/// [`Store::enqueue`] on `conn`, inside the caller's write transaction.
pub(super) async fn enqueue_in(
    conn: &mut sqlx::AnyConnection,
    request: &EnqueueRequest,
) -> Result<Enqueued> {
    let now = now_millis();
    if let Some(pk) = &request.event_pk {
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT job_id FROM webhook_events WHERE event_pk = $1")
                .bind(pk)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(job_id) = existing {
            return Ok(Enqueued {
                job_id,
                deduplicated: true,
            });
        }
    }
    let waiting: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE subject = $1 AND state = 'queued' AND force >= $2
         ORDER BY id LIMIT 1",
    )
    .bind(&request.subject)
    .bind(request.force as i64)
    .fetch_optional(&mut *conn)
    .await?;
    let (job_id, deduplicated) = match waiting {
        Some(id) => (id, true),
        None => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO jobs (subject, force, state, not_before, created_at, updated_at, trigger)
                 VALUES ($1, $2, 'queued', $3, $4, $5, $6) RETURNING id",
            )
            .bind(&request.subject)
            .bind(request.force as i64)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(&request.trigger)
            .fetch_one(&mut *conn)
            .await?;
            (id, false)
        }
    };
    if let Some(pk) = &request.event_pk {
        sqlx::query(
            "INSERT INTO webhook_events (event_pk, job_id, received_at) VALUES ($1, $2, $3)",
        )
        .bind(pk)
        .bind(job_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Enqueued {
        job_id,
        deduplicated,
    })
}

/// On PostgreSQL, tells the leader's workers that new jobs are queued
/// (delivered at commit; see `duties::wake_on_enqueue`): the instance that
/// accepted them may not be the one that runs them.
pub(super) async fn announce_new_jobs(
    conn: &mut sqlx::AnyConnection,
    backend: super::Backend,
    enqueued: &[Enqueued],
) -> Result<()> {
    if backend == super::Backend::Postgres && enqueued.iter().any(|e| !e.deduplicated) {
        sqlx::query("SELECT COUNT(*) FROM (SELECT pg_notify($1, '')) AS notified")
            .bind(JOBS_CHANNEL)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

impl Store {
    /// Makes a trigger durable: a new queued job, or a merge into the
    /// subject's waiting job or the job its event pk already made. Triggers
    /// that arrive together commit together ([`super::intake`]).
    pub async fn enqueue(
        &self,
        subject: &Subject,
        force: bool,
        trigger: &str,
        event_pk: Option<&str>,
    ) -> Result<Enqueued> {
        self.intake
            .submit(
                &self.writer,
                EnqueueRequest {
                    subject: subject.key(),
                    force,
                    trigger: trigger.to_owned(),
                    event_pk: event_pk.map(str::to_owned),
                },
            )
            .await
    }

    /// Claims the next runnable job: due, and no job for the same subject is
    /// running. A sweep runs alone: it is not claimed while anything runs,
    /// and nothing is claimed while it runs. The attempt is recorded under
    /// this store's instance in the same transaction.
    pub async fn claim(&self) -> Result<Option<ClaimedJob>> {
        let mut tx = self.write_tx_with(Commit::Lazy).await?;
        let job = self.claim_in(&mut tx).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Marks job `id` done ([`Self::finish`]) and claims the next runnable
    /// job ([`Self::claim`]) in one transaction. A busy worker commits once
    /// per job instead of twice, and every commit is an fsync holding the
    /// state DB's one write lock, which webhook accepts wait for.
    pub async fn finish_and_claim(&self, id: i64, summary: &str) -> Result<Option<ClaimedJob>> {
        let mut tx = self.write_tx_with(Commit::Lazy).await?;
        finish_in(&mut tx, &self.instance, id, summary).await?;
        let job = self.claim_in(&mut tx).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn claim_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<Option<ClaimedJob>> {
        let now = now_millis();
        if self.backend == super::Backend::Postgres {
            // Claims from several instances (around a hand-over) go one at
            // a time, so the check for a running job of the same subject
            // sees every claim committed before. (SQLite's BEGIN IMMEDIATE
            // does the same.) The count is there because `Any` reads every
            // row, and `void` is no type it knows.
            sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS claiming")
                .bind(CLAIM_LOCK)
                .execute(&mut **tx)
                .await?;
        }
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = $1
             WHERE id = (
                SELECT j.id FROM jobs j
                WHERE j.state = 'queued' AND j.not_before <= $1
                  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running'
                                  AND (r.subject = j.subject OR r.subject = $2 OR j.subject = $2))
                ORDER BY j.not_before, j.id LIMIT 1)
             AND state = 'queued'
             RETURNING id, subject, force, attempts, trigger",
        )
        .bind(now)
        .bind(Subject::SWEEP)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let job = ClaimedJob {
            id: r.get("id"),
            subject: r.get("subject"),
            force: r.get::<i64, _>("force") != 0,
            attempts: r.get("attempts"),
            trigger: r.get("trigger"),
        };
        sqlx::query(
            "INSERT INTO job_attempts (job_id, attempt, instance, started_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(job.id)
        .bind(job.attempts)
        .bind(&*self.instance)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(Some(job))
    }

    /// Every recorded attempt of job `id`, in order.
    pub async fn job_attempts(&self, id: i64) -> Result<Vec<JobAttempt>> {
        Ok(sqlx::query_as(
            "SELECT job_id, attempt, instance, started_at, ended_at, outcome FROM job_attempts
             WHERE job_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?)
    }

    /// Marks a job done. `summary` is this attempt's report; the stored
    /// summary combines it with earlier attempts' ([`summary::combine`]).
    pub async fn finish(&self, id: i64, summary: &str) -> Result<()> {
        let mut tx = self.write_tx_with(Commit::Lazy).await?;
        finish_in(&mut tx, &self.instance, id, summary).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts a job back with a delay, or marks it failed for good. `summary`
    /// is this attempt's report (empty if it produced none), combined with
    /// earlier attempts' as in [`Self::finish`].
    pub async fn retry_or_fail(
        &self,
        id: i64,
        error: &str,
        summary: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let outcome = if retry_at.is_some() {
            "retry"
        } else {
            "failed"
        };
        if !end_attempt(&mut tx, &self.instance, id, outcome).await? {
            return Ok(());
        }
        let summary = combined_summary(&mut tx, id, summary).await?;
        match retry_at {
            Some(at) => sqlx::query(
                "UPDATE jobs SET state = 'queued', not_before = $1, last_error = $2, summary = $3,
                     updated_at = $4 WHERE id = $5",
            )
            .bind(at)
            .bind(error)
            .bind(summary)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?,
            None => sqlx::query(
                "UPDATE jobs SET state = 'failed', last_error = $1, summary = $2, updated_at = $3
                     WHERE id = $4",
            )
            .bind(error)
            .bind(summary)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?,
        };
        tx.commit().await?;
        Ok(())
    }

    /// After a crash (or when a new leader takes over), jobs that were
    /// running are runnable again, and their attempts are closed as
    /// `interrupted`, unless
    /// the interrupted attempt was their last: those fail, so no job ever
    /// runs more than `max_attempts` times, however often the process dies.
    /// Queued jobs that already used `max_attempts` (the setting was
    /// lowered) fail the same way.
    pub async fn requeue_interrupted(&self, max_attempts: i64) -> Result<Interrupted> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE job_attempts SET ended_at = $1, outcome = 'interrupted'
             WHERE ended_at IS NULL AND job_id IN (SELECT id FROM jobs WHERE state = 'running')",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let gave_up = sqlx::query(
            "UPDATE jobs SET state = 'failed', updated_at = $1,
             last_error = 'gave up after ' || attempts || ' attempts, '
                 || CASE state WHEN 'running' THEN 'the last one interrupted'
                    ELSE 'the limit (JOB_MAX_ATTEMPTS) is now ' || $2 END
                 || CASE last_error WHEN '' THEN '' ELSE '; before: ' || last_error END
             WHERE state IN ('running', 'queued') AND attempts >= $2",
        )
        .bind(now)
        .bind(max_attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requeued = sqlx::query(
            "UPDATE jobs SET state = 'queued', updated_at = $1 WHERE state = 'running'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Interrupted { requeued, gave_up })
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(
            "SELECT id, subject, state, attempts, trigger, last_error, summary FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| JobRow {
            id: r.get("id"),
            subject: r.get("subject"),
            state: r.get("state"),
            attempts: r.get("attempts"),
            trigger: r.get("trigger"),
            last_error: r.get("last_error"),
            summary: r.get("summary"),
        }))
    }

    /// The most recent sweep that finished (done or failed).
    pub async fn last_finished_sweep(&self) -> Result<Option<JobRow>> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE subject = $1 AND state IN ('done', 'failed')
             ORDER BY updated_at DESC, id DESC LIMIT 1",
        )
        .bind(Subject::SWEEP)
        .fetch_optional(&self.reader)
        .await?;
        match id {
            Some(id) => self.job(id).await,
            None => Ok(None),
        }
    }

    pub async fn job_counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.reader)
            .await?;
        let mut counts = JobCounts::default();
        for r in rows {
            let n: i64 = r.get("n");
            match r.get::<String, _>("state").as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                "failed" => counts.failed = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// When the oldest queued job was queued (unix ms), if any is.
    pub async fn oldest_queued_job(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(created_at) FROM jobs WHERE state = 'queued'")
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// When the next queued job becomes due (unix ms), for the worker's sleep.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(not_before) FROM jobs WHERE state = 'queued'")
                .fetch_one(&self.reader)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    async fn store() -> (Store, tempfile::TempDir) {
        Store::open_temp().await
    }

    /// Enqueues a job, claims it, and "crashes" (the process dies while it
    /// runs): the job stays `running` in the DB.
    async fn claimed_then_crashed(store: &Store, id: Option<i64>) -> i64 {
        let id = match id {
            Some(id) => id,
            None => {
                store
                    .enqueue(&Subject::User("alice".into()), false, "test", None)
                    .await
                    .unwrap()
                    .job_id
            }
        };
        let claimed = store.claim().await.unwrap().expect("claimable");
        assert_eq!(claimed.id, id);
        id
    }

    #[tokio::test]
    async fn a_job_interrupted_on_its_last_attempt_fails_instead_of_running_again() {
        let (store, _dir) = store().await;
        let max = 3;
        let id = claimed_then_crashed(&store, None).await;
        for _ in 1..max {
            let restart = store.requeue_interrupted(max).await.unwrap();
            assert_eq!(
                restart,
                Interrupted {
                    requeued: 1,
                    gave_up: 0
                }
            );
            claimed_then_crashed(&store, Some(id)).await;
        }
        let job = store.job(id).await.unwrap().unwrap();
        assert_eq!((job.state.as_str(), job.attempts), ("running", max));

        let restart = store.requeue_interrupted(max).await.unwrap();
        assert_eq!(
            restart,
            Interrupted {
                requeued: 0,
                gave_up: 1
            }
        );
        let job = store.job(id).await.unwrap().unwrap();
        assert_eq!(job.state, "failed");
        assert_eq!(job.attempts, max, "never more than JOB_MAX_ATTEMPTS");
        assert_eq!(
            job.last_error,
            "gave up after 3 attempts, the last one interrupted"
        );
        assert!(
            store.claim().await.unwrap().is_none(),
            "nothing left to run"
        );
    }

    #[tokio::test]
    async fn finishing_and_claiming_together_records_both_and_frees_the_subject() {
        let (store, _dir) = store().await;
        let alice = Subject::User("alice".into());
        let first = claimed_then_crashed(&store, None).await;
        // Queued while the first runs: the same subject waits for it.
        let second = store.enqueue(&alice, false, "test", None).await.unwrap();
        assert!(!second.deduplicated);
        assert!(store.claim().await.unwrap().is_none(), "alice's job runs");

        let next = store
            .finish_and_claim(first, r#"{"outcomes":{}}"#)
            .await
            .unwrap()
            .expect("the waiting job is claimed in the same transaction");
        assert_eq!(next.id, second.job_id);
        assert_eq!(store.job(first).await.unwrap().unwrap().state, "done");
        assert_eq!(store.job(next.id).await.unwrap().unwrap().state, "running");
        let attempts = store.job_attempts(first).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, "done");
        assert!(attempts[0].ended_at.is_some());
        let attempts = store.job_attempts(next.id).await.unwrap();
        assert_eq!((attempts.len(), attempts[0].ended_at), (1, None));

        // Nothing else to run: the result is still recorded.
        assert!(
            store
                .finish_and_claim(next.id, "{}")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.job(next.id).await.unwrap().unwrap().state, "done");
    }

    #[tokio::test]
    async fn a_summary_counts_the_changes_of_every_attempt() {
        let (store, _dir) = store().await;
        let id = claimed_then_crashed(&store, None).await;
        let first = r#"{"outcomes":{"sender_acl.add.applied":1,"app_password.add.transient":1},"transient_failures":1}"#;
        store
            .retry_or_fail(id, "1 change(s) failed transiently", first, Some(0))
            .await
            .unwrap();
        claimed_then_crashed(&store, Some(id)).await;
        // An attempt that failed before reporting keeps the record.
        store
            .retry_or_fail(id, "Authentik unreachable", "", Some(0))
            .await
            .unwrap();
        claimed_then_crashed(&store, Some(id)).await;
        let last = r#"{"outcomes":{"app_password.add.applied":1},"transient_failures":0}"#;
        store.finish(id, last).await.unwrap();

        let job = store.job(id).await.unwrap().unwrap();
        let summary: Value = serde_json::from_str(&job.summary).unwrap();
        assert_eq!(
            summary["outcomes"]["sender_acl.add.applied"], 1,
            "{summary}"
        );
        assert_eq!(
            summary["outcomes"]["app_password.add.applied"], 1,
            "{summary}"
        );
        assert_eq!(summary["transient_failures"], 1, "{summary}");
        assert_eq!(summary["attempts_reported"], 2, "{summary}");
        assert_eq!(
            summary["last_attempt"],
            serde_json::from_str::<Value>(last).unwrap()
        );
    }
}
