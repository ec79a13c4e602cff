//! SOGo cache evictions owed (see the `sogo_cache_evictions` migration):
//! recorded when an eviction fails, settled when a retry succeeds.

use sqlx::Row;

use super::{Store, now_millis};
use crate::error::Result;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OwedEviction {
    pub uid: String,
    /// Failed evictions so far.
    pub attempts: i64,
    pub last_error: String,
}

impl Store {
    pub async fn owed_sogo_evictions(&self) -> Result<Vec<OwedEviction>> {
        let rows =
            sqlx::query("SELECT uid, attempts, last_error FROM sogo_cache_evictions ORDER BY uid")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| OwedEviction {
                uid: r.get("uid"),
                attempts: r.get("attempts"),
                last_error: r.get("last_error"),
            })
            .collect())
    }

    /// Records that these uids' evictions failed (again) for `reason`.
    pub async fn owe_sogo_evictions(&self, uids: &[String], reason: &str) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        for uid in uids {
            sqlx::query(
                "INSERT INTO sogo_cache_evictions (uid, attempts, last_error, owed_since, updated_at)
                 VALUES ($1, 1, $2, $3, $3)
                 ON CONFLICT (uid) DO UPDATE SET attempts = sogo_cache_evictions.attempts + 1,
                   last_error = excluded.last_error, updated_at = excluded.updated_at",
            )
            .bind(uid)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// These uids' evictions happened: nothing is owed for them any more.
    pub async fn settle_sogo_evictions(&self, uids: &[String]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for uid in uids {
            sqlx::query("DELETE FROM sogo_cache_evictions WHERE uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn owed_evictions_survive_until_settled() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = Store::open(&url).await.unwrap();
        let uids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store
            .owe_sogo_evictions(&uids(&["a@x.org", "b@x.org"]), "down")
            .await
            .unwrap();
        store
            .owe_sogo_evictions(&uids(&["a@x.org"]), "stalled")
            .await
            .unwrap();
        drop(store);
        // Durable: a restarted coordinator still owes them.
        let store = Store::open(&url).await.unwrap();
        let owed = store.owed_sogo_evictions().await.unwrap();
        assert_eq!(
            owed,
            vec![
                OwedEviction {
                    uid: "a@x.org".into(),
                    attempts: 2,
                    last_error: "stalled".into()
                },
                OwedEviction {
                    uid: "b@x.org".into(),
                    attempts: 1,
                    last_error: "down".into()
                },
            ]
        );
        store
            .settle_sogo_evictions(&uids(&["a@x.org"]))
            .await
            .unwrap();
        let owed = store.owed_sogo_evictions().await.unwrap();
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].uid, "b@x.org");
    }
}
