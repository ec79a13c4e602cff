//! The durable job queue.
//!
//! Rules: a job is acknowledged only after commit; one event pk maps to one
//! job; a queued job for the same subject absorbs new triggers (debounce);
//! at most one job per subject runs at a time.

use sqlx::Row;

use super::{Store, now_millis, summary};
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

/// The job's stored summary combined with this attempt's.
async fn combined_summary(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    id: i64,
    attempt: &str,
) -> Result<String> {
    let previous: Option<String> = sqlx::query_scalar("SELECT summary FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(summary::combine(&previous.unwrap_or_default(), attempt))
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
    conn: &mut sqlx::SqliteConnection,
    request: &EnqueueRequest,
) -> Result<Enqueued> {
    let now = now_millis();
    if let Some(pk) = &request.event_pk {
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT job_id FROM webhook_events WHERE event_pk = ?")
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
        "SELECT id FROM jobs WHERE subject = ? AND state = 'queued' AND force >= ?
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
                 VALUES (?, ?, 'queued', ?, ?, ?, ?) RETURNING id",
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
        sqlx::query("INSERT INTO webhook_events (event_pk, job_id, received_at) VALUES (?, ?, ?)")
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
    /// and nothing is claimed while it runs.
    pub async fn claim(&self) -> Result<Option<ClaimedJob>> {
        let _turn = self.priority.in_line().await;
        let now = now_millis();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?1
             WHERE id = (
                SELECT j.id FROM jobs j
                WHERE j.state = 'queued' AND j.not_before <= ?1
                  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running'
                                  AND (r.subject = j.subject OR r.subject = ?2 OR j.subject = ?2))
                ORDER BY j.not_before, j.id LIMIT 1)
             AND state = 'queued'
             RETURNING id, subject, force, attempts, trigger",
        )
        .bind(now)
        .bind(Subject::SWEEP)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(|r| ClaimedJob {
            id: r.get("id"),
            subject: r.get("subject"),
            force: r.get::<i64, _>("force") != 0,
            attempts: r.get("attempts"),
            trigger: r.get("trigger"),
        }))
    }

    /// Marks a job done. `summary` is this attempt's report; the stored
    /// summary combines it with earlier attempts' ([`summary::combine`]).
    pub async fn finish(&self, id: i64, summary: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let summary = combined_summary(&mut tx, id, summary).await?;
        sqlx::query(
            "UPDATE jobs SET state = 'done', summary = ?, last_error = '', updated_at = ? WHERE id = ?",
        )
        .bind(summary)
        .bind(now_millis())
        .bind(id)
        .execute(&mut *tx)
        .await?;
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
        let summary = combined_summary(&mut tx, id, summary).await?;
        match retry_at {
            Some(at) => {
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', not_before = ?, last_error = ?, summary = ?,
                     updated_at = ? WHERE id = ?",
                )
                .bind(at)
                .bind(error)
                .bind(summary)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE jobs SET state = 'failed', last_error = ?, summary = ?, updated_at = ?
                     WHERE id = ?",
                )
                .bind(error)
                .bind(summary)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok(())
    }

    /// After a crash, jobs that were running are runnable again, unless
    /// the interrupted attempt was their last: those fail, so no job ever
    /// runs more than `max_attempts` times, however often the process dies.
    /// Queued jobs that already used `max_attempts` (the setting was
    /// lowered) fail the same way.
    pub async fn requeue_interrupted(&self, max_attempts: i64) -> Result<Interrupted> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let gave_up = sqlx::query(
            "UPDATE jobs SET state = 'failed', updated_at = ?1,
             last_error = 'gave up after ' || attempts || ' attempts, '
                 || CASE state WHEN 'running' THEN 'the last one interrupted'
                    ELSE 'the limit (JOB_MAX_ATTEMPTS) is now ' || ?2 END
                 || CASE last_error WHEN '' THEN '' ELSE '; before: ' || last_error END
             WHERE state IN ('running', 'queued') AND attempts >= ?2",
        )
        .bind(now)
        .bind(max_attempts)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let requeued =
            sqlx::query("UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running'")
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(Interrupted { requeued, gave_up })
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(
            "SELECT id, subject, state, attempts, trigger, last_error, summary FROM jobs WHERE id = ?",
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
            "SELECT id FROM jobs WHERE subject = ? AND state IN ('done', 'failed')
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
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        (Store::open(&url).await.unwrap(), dir)
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
