//! Removals waiting out a grace period (the `pending_removals` migration).
//! The planner reads them with the ledger; a `defer` step writes one, a
//! `cancel` step or the removal itself (through the ledger row's delete)
//! drops it.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, now_millis};
use crate::error::Result;

/// One removal that waits, as gRPC `Status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PendingRemoval {
    pub resource: String,
    pub key: String,
    pub username: String,
    /// Unix milliseconds.
    pub due_at: i64,
    pub since: i64,
    pub reason: String,
}

/// Pending removals by `(resource, key)`: their due times, as the planner
/// needs them.
pub type DueTimes = BTreeMap<(String, String), i64>;

impl Store {
    pub async fn pending_removals(&self) -> Result<Vec<PendingRemoval>> {
        let rows = sqlx::query(
            "SELECT resource, key, username, due_at, since, reason FROM pending_removals
             ORDER BY due_at, resource, key",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| PendingRemoval {
                resource: r.get("resource"),
                key: r.get("key"),
                username: r.get("username"),
                due_at: r.get("due_at"),
                since: r.get("since"),
                reason: r.get("reason"),
            })
            .collect())
    }

    pub async fn pending_due_times(&self) -> Result<DueTimes> {
        Ok(self
            .pending_removals()
            .await?
            .into_iter()
            .map(|p| ((p.resource, p.key), p.due_at))
            .collect())
    }

    /// Starts a grace period; one already running keeps its due time.
    pub async fn pending_put(
        &self,
        resource: &str,
        key: &str,
        username: &str,
        due_at: i64,
        reason: &str,
    ) -> Result<()> {
        let mut conn = self.write_conn().await?;
        put(&mut conn, resource, key, username, due_at, reason).await
    }

    pub async fn pending_delete(&self, resource: &str, key: &str) -> Result<()> {
        delete(&mut *self.write_conn().await?, resource, key).await
    }

    /// Users with a removal that fell due after `after` and by `now` (Unix
    /// ms), and the next due time after `now`, if any: what the grace
    /// timer wakes for.
    pub async fn pending_due(&self, after: i64, now: i64) -> Result<(Vec<String>, Option<i64>)> {
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT username FROM pending_removals WHERE due_at > $1 AND due_at <= $2
             ORDER BY username",
        )
        .bind(after)
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM pending_removals WHERE due_at > $1")
                .bind(now)
                .fetch_one(&self.reader)
                .await?;
        Ok((due, next))
    }
}

/// Starts a grace period; one already running keeps its due time.
pub(super) async fn put(
    conn: &mut sqlx::AnyConnection,
    resource: &str,
    key: &str,
    username: &str,
    due_at: i64,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO pending_removals (resource, key, username, due_at, since, reason)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource, key) DO NOTHING",
    )
    .bind(resource)
    .bind(key)
    .bind(username)
    .bind(due_at)
    .bind(now_millis())
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn delete(
    conn: &mut sqlx::AnyConnection,
    resource: &str,
    key: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM pending_removals WHERE resource = $1 AND key = $2")
        .bind(resource)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_grace_period_keeps_its_due_time_and_goes_with_its_removal() {
        let (store, _dir) = Store::open_temp().await;
        store
            .pending_put("matrix_membership", "!r:x|@a:x", "alice", 1_000, "left")
            .await
            .unwrap();
        // Seen again by a later run: the first due time stands.
        store
            .pending_put("matrix_membership", "!r:x|@a:x", "alice", 9_000, "left")
            .await
            .unwrap();
        store
            .pending_put("matrix_membership", "!r:x|@b:x", "bob", 5_000, "left")
            .await
            .unwrap();
        assert_eq!(
            store.pending_due(i64::MIN, 2_000).await.unwrap(),
            (vec!["alice".to_owned()], Some(5_000))
        );
        // Already queued once: not again.
        assert_eq!(
            store.pending_due(2_000, 3_000).await.unwrap(),
            (vec![], Some(5_000))
        );
        store
            .ledger_delete("matrix_membership", "!r:x|@a:x")
            .await
            .unwrap();
        store
            .pending_delete("matrix_membership", "!r:x|@b:x")
            .await
            .unwrap();
        assert!(store.pending_removals().await.unwrap().is_empty());
    }
}
