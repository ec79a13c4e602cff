//! WAL checkpoints off the writer (SQLite; issue 12). SQLite checkpoints
//! inline by default: the commit that grows the WAL past 1,000 pages copies
//! them into the database file and syncs it before it returns, and on the
//! one writer connection that commit holds up every writer queued behind
//! it, a webhook's accept included. Here the writer never checkpoints
//! (`wal_autocheckpoint = 0`); a connection of its own runs a `PASSIVE`
//! checkpoint every [`INTERVAL`], which takes no write lock: writers and
//! readers go on beside it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;

/// Often enough that the WAL stays a few thousand pages at most under a
/// steady load of jobs and webhooks.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints through `pool` until every holder of the returned token is
/// gone (the store and its clones).
pub(super) fn start(pool: AnyPool) -> Arc<()> {
    let alive = Arc::new(());
    tokio::spawn(run(pool, Arc::downgrade(&alive)));
    alive
}

async fn run(pool: AnyPool, alive: Weak<()>) {
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if alive.upgrade().is_none() {
            return;
        }
        if let Err(e) = checkpoint(&pool).await {
            tracing::warn!(error = %e, "state DB checkpoint failed; retried shortly");
        }
    }
}

/// One `PASSIVE` checkpoint: as much of the WAL as no reader still needs.
pub(super) async fn checkpoint(pool: &AnyPool) -> sqlx::Result<()> {
    // The answer (busy, WAL pages, pages copied) is a row; `Any` reads it.
    sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_all(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::super::backend::open_sqlite;

    /// (WAL pages, pages checkpointed) from a PASSIVE checkpoint.
    async fn passive(pool: &sqlx::AnyPool) -> (i64, i64) {
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await
            .unwrap();
        (row.get(1), row.get(2))
    }

    #[tokio::test]
    async fn the_writer_never_checkpoints_and_the_checkpointer_copies_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        sqlx::any::install_default_drivers();
        let opened = open_sqlite(&url).await.unwrap();
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&opened.writer)
            .await
            .unwrap();
        assert_eq!(autocheckpoint, 0);
        // A connection the pool opens later (after its lifetime) too.
        let first = opened.writer.acquire().await.unwrap();
        first.close().await.unwrap();
        let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&opened.writer)
            .await
            .unwrap();
        assert_eq!(autocheckpoint, 0, "a replacement writer connection");
        let checkpointer = opened.checkpointer.expect("a file has a checkpointer");

        // Well past SQLite's default of 1,000 pages: the writer's commits
        // leave it all in the WAL.
        let filler = "x".repeat(8000);
        for i in 0..600 {
            sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2)")
                .bind(format!("filler-{i}"))
                .bind(&filler)
                .execute(&opened.writer)
                .await
                .unwrap();
        }
        let (wal_pages, copied) = passive(&checkpointer).await;
        assert!(wal_pages > 1000, "{wal_pages} pages in the WAL");
        assert_eq!(copied, wal_pages, "no reader holds anything back");
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE name LIKE 'filler-%'")
            .fetch_one(&opened.reader)
            .await
            .unwrap();
        assert_eq!(count, 600);
    }
}
