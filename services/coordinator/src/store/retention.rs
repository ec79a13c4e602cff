//! Bounded state: finished jobs (with their webhook deliveries) and audit
//! rows older than their retention are deleted in small batches, each its
//! own short transaction, so pruning never holds the write lock for long.

use std::time::Duration;

use super::Store;
use crate::error::Result;

/// How long what is kept; `None` keeps it forever.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Finished (done or failed) jobs, with their webhook deliveries.
    pub jobs: Option<Duration>,
    pub audit: Option<Duration>,
}

/// What one batch removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub webhook_events: u64,
    pub audit: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.jobs + self.webhook_events + self.audit
    }
}

fn cutoff(now_ms: i64, keep: Option<Duration>) -> Option<i64> {
    keep.map(|d| now_ms - d.as_millis() as i64)
}

impl Store {
    /// Deletes at most `batch` old jobs and `batch` old audit rows. Queued
    /// and running jobs are never pruned, whatever their age. A webhook
    /// delivery goes with its job; a replay of it after that only runs an
    /// idempotent reconcile again.
    pub async fn prune_batch(
        &self,
        retention: &Retention,
        now_ms: i64,
        batch: i64,
    ) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        if let Some(before) = cutoff(now_ms, retention.jobs) {
            let mut tx = self.write_tx().await?;
            // The same oldest-first selection twice, in one transaction:
            // the deliveries and attempts first (they reference their job), then
            // the jobs.
            pruned.webhook_events = sqlx::query(
                "DELETE FROM webhook_events WHERE job_id IN (
                   SELECT id FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1
                   ORDER BY updated_at LIMIT $2)",
            )
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "DELETE FROM job_attempts WHERE job_id IN (
                   SELECT id FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1
                   ORDER BY updated_at LIMIT $2)",
            )
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
            pruned.jobs = sqlx::query(
                "DELETE FROM jobs WHERE id IN (
                   SELECT id FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1
                   ORDER BY updated_at LIMIT $2)",
            )
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
        }
        if let Some(before) = cutoff(now_ms, retention.audit) {
            pruned.audit = sqlx::query(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY id LIMIT $2)",
            )
            .bind(before)
            .bind(batch)
            .execute(&mut *self.write_conn().await?)
            .await?
            .rows_affected();
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, now_millis};
    use crate::subject::Subject;

    const DAY: Duration = Duration::from_secs(86_400);

    #[tokio::test]
    async fn old_finished_jobs_and_audit_rows_go_in_batches_and_nothing_else() {
        let (store, _dir) = Store::open_temp().await;
        let now = now_millis();
        let old = now - 40 * DAY.as_millis() as i64;
        let mut jobs = Vec::new();
        for (i, state) in ["done", "failed", "queued", "done"].iter().enumerate() {
            let subject = Subject::User(format!("u{i}"));
            let job = store
                .enqueue(&subject, false, "webhook", Some(&format!("evt-{i}")))
                .await
                .unwrap();
            // The last one finished recently; the others long ago.
            let at = if i == 3 { now } else { old };
            sqlx::query("UPDATE jobs SET state = $1, updated_at = $2 WHERE id = $3")
                .bind(state)
                .bind(at)
                .bind(job.job_id)
                .execute(&store.writer)
                .await
                .unwrap();
            jobs.push(job.job_id);
        }
        for at in [old, old, now] {
            store
                .audit(AuditEntry {
                    job_id: jobs[0],
                    trace_id: "",
                    resource: "alias",
                    key: "a@x.org",
                    action: "create",
                    outcome: "applied",
                    reason: "",
                    detail: "",
                })
                .await
                .unwrap();
            sqlx::query("UPDATE audit SET at = $1 WHERE id = (SELECT MAX(id) FROM audit)")
                .bind(at)
                .execute(&store.writer)
                .await
                .unwrap();
        }
        let retention = Retention {
            jobs: Some(30 * DAY),
            audit: Some(30 * DAY),
        };
        let first = store.prune_batch(&retention, now, 1).await.unwrap();
        assert_eq!(
            first,
            Pruned {
                jobs: 1,
                webhook_events: 1,
                audit: 1
            }
        );
        let second = store.prune_batch(&retention, now, 100).await.unwrap();
        assert_eq!(
            second,
            Pruned {
                jobs: 1,
                webhook_events: 1,
                audit: 1
            }
        );
        assert_eq!(
            store
                .prune_batch(&retention, now, 100)
                .await
                .unwrap()
                .total(),
            0
        );

        assert!(store.job(jobs[0]).await.unwrap().is_none());
        assert!(store.job(jobs[1]).await.unwrap().is_none());
        assert!(
            store.job(jobs[2]).await.unwrap().is_some(),
            "a queued job stays"
        );
        assert!(
            store.job(jobs[3]).await.unwrap().is_some(),
            "a recent job stays"
        );
        let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(audit, 1);

        let forever = Retention {
            jobs: None,
            audit: None,
        };
        assert_eq!(
            store
                .prune_batch(&forever, now + 1000 * DAY.as_millis() as i64, 100)
                .await
                .unwrap()
                .total(),
            0
        );
    }
}
