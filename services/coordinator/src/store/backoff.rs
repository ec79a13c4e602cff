//! Per-object backoff after permanent failures (see migration 0010).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;

use super::{Store, now_millis};
use crate::error::Result;

/// One object whose last change failed permanently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub fingerprint: String,
    pub failures: i64,
    pub next_attempt_ms: i64,
    pub last_error: String,
}

impl Backoff {
    /// Whether the change with `fingerprint` waits at `now`: the same
    /// change failed and its time has not come. A different change (the
    /// inputs changed) never waits.
    pub fn holds(&self, fingerprint: &str, now: i64) -> bool {
        self.fingerprint == fingerprint && now < self.next_attempt_ms
    }
}

/// The delay after `failures` permanent failures: `base`, doubling, capped.
pub fn delay(failures: i64, base: Duration, cap: Duration) -> Duration {
    let doublings = (failures - 1).clamp(0, 30) as u32;
    base.saturating_mul(1u32 << doublings).min(cap)
}

impl Store {
    /// Every backoff, by `(resource, key)`.
    pub async fn backoffs(&self) -> Result<BTreeMap<(String, String), Backoff>> {
        let rows = sqlx::query(
            "SELECT resource, key, fingerprint, failures, next_attempt_ms, last_error FROM backoff",
        )
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    (r.get("resource"), r.get("key")),
                    Backoff {
                        fingerprint: r.get("fingerprint"),
                        failures: r.get("failures"),
                        next_attempt_ms: r.get("next_attempt_ms"),
                        last_error: r.get("last_error"),
                    },
                )
            })
            .collect())
    }

    /// Records a permanent failure of the change `fingerprint` on an
    /// object; the same change failing again doubles the wait.
    pub async fn backoff_failed(
        &self,
        resource: &str,
        key: &str,
        fingerprint: &str,
        error: &str,
        base: Duration,
        cap: Duration,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        failed(&mut tx, resource, key, fingerprint, error, base, cap).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The object's change went through: no more waiting.
    pub async fn backoff_clear(&self, resource: &str, key: &str) -> Result<()> {
        clear(&mut *self.write_conn().await?, resource, key).await
    }
}

pub(super) async fn failed(
    conn: &mut sqlx::AnyConnection,
    resource: &str,
    key: &str,
    fingerprint: &str,
    error: &str,
    base: Duration,
    cap: Duration,
) -> Result<()> {
    let previous: Option<(String, i64)> = sqlx::query_as(
        "SELECT fingerprint, failures FROM backoff WHERE resource = $1 AND key = $2",
    )
    .bind(resource)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let failures = match previous {
        Some((same, failures)) if same == fingerprint => failures + 1,
        _ => 1,
    };
    let next = now_millis() + delay(failures, base, cap).as_millis() as i64;
    sqlx::query(
        "INSERT INTO backoff (resource, key, fingerprint, failures, next_attempt_ms, last_error)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (resource, key) DO UPDATE SET fingerprint = excluded.fingerprint,
             failures = excluded.failures, next_attempt_ms = excluded.next_attempt_ms,
             last_error = excluded.last_error",
    )
    .bind(resource)
    .bind(key)
    .bind(fingerprint)
    .bind(failures)
    .bind(next)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn clear(conn: &mut sqlx::AnyConnection, resource: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM backoff WHERE resource = $1 AND key = $2")
        .bind(resource)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let base = Duration::from_secs(900);
        let cap = Duration::from_secs(86_400);
        assert_eq!(delay(1, base, cap), base);
        assert_eq!(delay(2, base, cap), base * 2);
        assert_eq!(delay(4, base, cap), base * 8);
        assert_eq!(delay(40, base, cap), cap);
    }

    #[tokio::test]
    async fn the_same_change_waits_longer_and_a_new_one_not_at_all() {
        let (store, _dir) = Store::open_temp().await;
        let (base, cap) = (Duration::from_secs(60), Duration::from_secs(3600));
        store
            .backoff_failed("alias", "a@x.org", "f1", "refused", base, cap)
            .await
            .unwrap();
        store
            .backoff_failed("alias", "a@x.org", "f1", "refused", base, cap)
            .await
            .unwrap();
        let all = store.backoffs().await.unwrap();
        let b = &all[&("alias".to_owned(), "a@x.org".to_owned())];
        assert_eq!(b.failures, 2);
        let now = now_millis();
        assert!(b.holds("f1", now));
        assert!(!b.holds("f2", now));
        assert!(!b.holds("f1", b.next_attempt_ms));
        store.backoff_clear("alias", "a@x.org").await.unwrap();
        assert!(store.backoffs().await.unwrap().is_empty());
    }
}
