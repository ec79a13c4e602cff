//! The durable job queue.
//!
//! Rules: a job is acknowledged only after commit; one event pk maps to one
//! job; a queued job for the same subject absorbs new triggers (debounce);
//! at most one job per subject runs at a time.

use sqlx::Row;

use super::{Store, now_millis};
use crate::error::Result;

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
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub subject: String,
    pub state: String,
    pub attempts: i64,
    pub trigger: String,
    pub last_error: String,
    pub summary: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub running: i64,
    pub done: i64,
    pub failed: i64,
}

impl Store {
    pub async fn enqueue(
        &self,
        subject: &str,
        force: bool,
        trigger: &str,
        event_pk: Option<&str>,
    ) -> Result<Enqueued> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        if let Some(pk) = event_pk {
            let existing: Option<i64> =
                sqlx::query_scalar("SELECT job_id FROM webhook_events WHERE event_pk = ?")
                    .bind(pk)
                    .fetch_optional(&mut *tx)
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
        .bind(subject)
        .bind(force as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let (job_id, deduplicated) = match waiting {
            Some(id) => (id, true),
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO jobs (subject, force, state, not_before, created_at, updated_at, trigger)
                     VALUES (?, ?, 'queued', ?, ?, ?, ?) RETURNING id",
                )
                .bind(subject)
                .bind(force as i64)
                .bind(now)
                .bind(now)
                .bind(now)
                .bind(trigger)
                .fetch_one(&mut *tx)
                .await?;
                (id, false)
            }
        };
        if let Some(pk) = event_pk {
            sqlx::query(
                "INSERT INTO webhook_events (event_pk, job_id, received_at) VALUES (?, ?, ?)",
            )
            .bind(pk)
            .bind(job_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Enqueued {
            job_id,
            deduplicated,
        })
    }

    /// Claims the next runnable job: due, and no job for the same subject is
    /// running. A sweep runs alone: it is not claimed while anything runs,
    /// and nothing is claimed while it runs.
    pub async fn claim(&self) -> Result<Option<ClaimedJob>> {
        let now = now_millis();
        let row = sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_at = ?1
             WHERE id = (
                SELECT j.id FROM jobs j
                WHERE j.state = 'queued' AND j.not_before <= ?1
                  AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running'
                                  AND (r.subject = j.subject OR r.subject = 'sweep' OR j.subject = 'sweep'))
                ORDER BY j.not_before, j.id LIMIT 1)
             AND state = 'queued'
             RETURNING id, subject, force, attempts",
        )
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| ClaimedJob {
            id: r.get("id"),
            subject: r.get("subject"),
            force: r.get::<i64, _>("force") != 0,
            attempts: r.get("attempts"),
        }))
    }

    pub async fn finish(&self, id: i64, summary: &str) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'done', summary = ?, last_error = '', updated_at = ? WHERE id = ?",
        )
        .bind(summary)
        .bind(now_millis())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a job back with a delay, or marks it failed for good.
    pub async fn retry_or_fail(
        &self,
        id: i64,
        error: &str,
        summary: &str,
        retry_at: Option<i64>,
    ) -> Result<()> {
        let now = now_millis();
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
                .execute(&self.pool)
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
                .execute(&self.pool)
                .await?
            }
        };
        Ok(())
    }

    /// After a crash, jobs that were running are runnable again.
    pub async fn requeue_interrupted(&self) -> Result<u64> {
        let done =
            sqlx::query("UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running'")
                .bind(now_millis())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRow>> {
        let row = sqlx::query(
            "SELECT id, subject, state, attempts, trigger, last_error, summary FROM jobs WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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

    pub async fn job_counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
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

    /// When the next queued job becomes due (unix ms), for the worker's sleep.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(not_before) FROM jobs WHERE state = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
