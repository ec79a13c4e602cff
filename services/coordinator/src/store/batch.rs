//! A run's bookkeeping writes in one transaction (issue 12): the ledger,
//! backoff and audit rows of a whole agent call commit together, with one
//! fsync, instead of one transaction (and one fsync, holding SQLite's only
//! write lock) per row. A webhook's accept waits for that lock, so fewer,
//! shorter holds are what keep its latency flat while jobs run.
//!
//! Nothing else may write through the [`Store`] while a batch is open in
//! the same task: on SQLite the batch holds the one writer connection, and
//! the other write would wait for it, holding every other writer's place in
//! line, until the pool's acquire timeout.

use std::time::Duration;

use sqlx::{Any, Transaction};

use super::{AuditEntry, Store, audit, backoff, ledger, pending};
use crate::error::Result;
use crate::ledger::LedgerRow;

pub struct Batch {
    tx: Transaction<'static, Any>,
}

impl Store {
    /// Opens a batch, taking the write lock at once (`BEGIN IMMEDIATE`).
    pub async fn batch(&self) -> Result<Batch> {
        Ok(Batch {
            tx: self.write_tx().await?,
        })
    }
}

impl Batch {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn ledger_get(&mut self, resource: &str, key: &str) -> Result<Option<LedgerRow>> {
        ledger::get(&mut self.tx, resource, key).await
    }

    pub async fn ledger_put(&mut self, row: &LedgerRow) -> Result<()> {
        ledger::put(&mut self.tx, row).await
    }

    /// Drops the row, and the removal that waited for it, if one did.
    pub async fn ledger_delete(&mut self, resource: &str, key: &str) -> Result<()> {
        ledger::delete(&mut self.tx, resource, key).await
    }

    pub async fn backoff_failed(
        &mut self,
        resource: &str,
        key: &str,
        fingerprint: &str,
        error: &str,
        base: Duration,
        cap: Duration,
    ) -> Result<()> {
        backoff::failed(&mut self.tx, resource, key, fingerprint, error, base, cap).await
    }

    pub async fn backoff_clear(&mut self, resource: &str, key: &str) -> Result<()> {
        backoff::clear(&mut self.tx, resource, key).await
    }

    pub async fn audit(&mut self, entry: AuditEntry<'_>) -> Result<()> {
        audit::audit(&mut self.tx, entry).await
    }

    pub async fn pending_put(
        &mut self,
        resource: &str,
        key: &str,
        username: &str,
        due_at: i64,
        reason: &str,
    ) -> Result<()> {
        pending::put(&mut self.tx, resource, key, username, due_at, reason).await
    }

    pub async fn pending_delete(&mut self, resource: &str, key: &str) -> Result<()> {
        pending::delete(&mut self.tx, resource, key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerKey, LedgerState};

    fn row(key: &str) -> LedgerRow {
        LedgerRow {
            resource: "sogo_delegation".into(),
            key: LedgerKey::parse(
                "sogo_delegation",
                &format!("info@example.com|{key}@example.com"),
            )
            .unwrap(),
            state: LedgerState::Created,
            username: "alice".into(),
            groups: Default::default(),
            remote_id: String::new(),
        }
    }

    #[tokio::test]
    async fn a_batch_commits_all_its_rows_or_none() {
        let (store, _dir) = Store::open_temp().await;
        let mut db = store.batch().await.unwrap();
        db.ledger_put(&row("a")).await.unwrap();
        db.ledger_put(&row("b")).await.unwrap();
        assert!(
            db.ledger_get("sogo_delegation", "info@example.com|a@example.com")
                .await
                .unwrap()
                .is_some()
        );
        drop(db); // a run that failed half-way through its bookkeeping
        assert!(store.ledger_rows(None).await.unwrap().is_empty());

        let mut db = store.batch().await.unwrap();
        db.ledger_put(&row("a")).await.unwrap();
        db.ledger_put(&row("b")).await.unwrap();
        db.commit().await.unwrap();
        assert_eq!(store.ledger_rows(None).await.unwrap().len(), 2);
    }
}
