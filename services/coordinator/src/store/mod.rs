//! The state DB: job queue, ledger, audit log. SQLite in WAL mode by default.

mod audit;
mod audit_query;
mod backoff;
mod backup;
mod batch;
mod directory;
mod jobs;
mod ledger;
mod pending;
mod retention;
mod sogo_evictions;
pub mod summary;

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use audit::{AuditEntry, Ingested, IngestedEvent};
pub use audit_query::{AuditQuery, AuditRow};
pub use backoff::Backoff;
pub use backup::BackupPolicy;
pub use batch::Batch;
pub use directory::StoredDirectory;
pub use jobs::{ClaimedJob, Enqueued, Interrupted, JobCounts, JobRow};
pub use pending::{DueTimes, PendingRemoval};
pub use retention::{Pruned, Retention};
pub use sogo_evictions::OwedEviction;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The DB file (`None` in memory): backups are taken next to it.
    path: Option<std::path::PathBuf>,
}

impl Store {
    /// Opens (creating if needed) and migrates the DB at `url`, e.g.
    /// `sqlite://state.db`.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::Config(format!("STATE_DB_URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 202 promises the job survives a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10))
            .foreign_keys(true);
        let path = Some(options.get_filename().to_path_buf())
            .filter(|p| !p.as_os_str().is_empty() && p.as_os_str() != ":memory:");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = Self { pool, path };
        let moved = store.canonicalize_app_password_keys().await?;
        if moved > 0 {
            tracing::info!(moved, "app password ledger rows re-keyed to current names");
        }
        Ok(store)
    }

    /// A write transaction that takes SQLite's write lock up front. A
    /// deferred transaction that reads, then writes, fails with
    /// SQLITE_BUSY_SNAPSHOT when another connection committed in between, and
    /// the busy timeout cannot help it; `BEGIN IMMEDIATE` waits instead.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn get_meta(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        set_meta_in(&mut *self.pool.acquire().await?, name, value).await
    }

    /// Remembers pk → username for people we grant things to.
    pub async fn remember_users(&self, users: &[(i64, String, String)]) -> Result<()> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        for (pk, username, email) in users {
            sqlx::query(
                "INSERT INTO known_users (pk, username, email, seen_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (pk) DO UPDATE SET username = excluded.username,
                 email = excluded.email, seen_at = excluded.seen_at",
            )
            .bind(pk)
            .bind(username)
            .bind(email)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Resolves a pk, username or email to a username we once granted to.
    pub async fn known_username(&self, needle: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT username FROM known_users
             WHERE CAST(pk AS TEXT) = ?1 OR username = ?1 OR lower(email) = lower(?1) LIMIT 1",
        )
        .bind(needle)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Sets a `meta` row on `conn` (inside a caller's transaction or not).
async fn set_meta_in(conn: &mut sqlx::SqliteConnection, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (name, value) VALUES (?, ?)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
