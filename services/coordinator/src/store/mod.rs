//! The state DB: job queue, ledger, audit log. SQLite in WAL mode by
//! default; PostgreSQL for coordinators that share it ([`Backend`]).

mod audit;
mod audit_query;
mod backend;
mod backoff;
mod backup;
mod batch;
mod checkpoint;
mod directory;
mod intake;
mod jobs;
mod ledger;
mod pending;
mod retention;
mod sogo_evictions;
pub mod summary;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AnyPool;

pub use audit::{AuditEntry, Ingested, IngestedEvent};
pub use audit_query::{AuditQuery, AuditRow};
pub use backend::Backend;
pub use backoff::Backoff;
pub use backup::BackupPolicy;
pub use batch::Batch;
pub use directory::StoredDirectory;
pub use jobs::{ClaimedJob, Enqueued, Interrupted, JOBS_CHANNEL, JobAttempt, JobCounts, JobRow};
pub use pending::{DueTimes, PendingRemoval};
pub use retention::{Pruned, Retention};
pub use sogo_evictions::OwedEviction;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Store {
    /// Read-only connections (SQLite: WAL lets them read beside the
    /// writer).
    reader: AnyPool,
    /// What writes. On SQLite one connection: SQLite has one write lock;
    /// with several writing connections a waiter sleeps in SQLite's busy
    /// handler (1, 2, 5, 10, … ms steps) and wakes late, which is what a
    /// webhook's accept felt under load (issue 12). Queued on this pool
    /// instead, writers take turns in order and start the moment the lock is
    /// free. On PostgreSQL the same pool as `reader`.
    writer: AnyPool,
    /// Enqueues that arrive together commit together.
    intake: intake::Intake,
    /// Other writers give way to a waiting group of enqueues.
    priority: Arc<intake::Priority>,
    backend: Backend,
    /// The SQLite file (`None` in memory and for PostgreSQL): backups are
    /// taken next to it.
    path: Option<std::path::PathBuf>,
    /// Who this process is in the job attempt record.
    instance: Arc<str>,
    /// Times the writer was taken for a transaction or statement other than
    /// accepts (the checkpointer's turns are not counted).
    write_turns: Arc<AtomicU64>,
    /// Keeps the WAL checkpointer going while any clone lives (SQLite file).
    _checkpointer: Option<Arc<()>>,
}

impl Store {
    /// Opens (creating if needed) and migrates the DB at `url`:
    /// `sqlite://state.db` or `postgres://user@host/db`.
    pub async fn open(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| {
            Error::Config("STATE_DB_URL: expected sqlite://<file> or postgres://…".into())
        })?;
        let opened = match backend {
            Backend::Sqlite => backend::open_sqlite(url).await?,
            Backend::Postgres => backend::open_postgres(url).await?,
        };
        let priority = Arc::new(intake::Priority::default());
        let store = Self {
            reader: opened.reader,
            intake: intake::Intake::start(opened.writer.clone(), backend, priority.clone()),
            _checkpointer: opened
                .checkpointer
                .zip(opened.path.clone())
                .map(|(own, database)| {
                    checkpoint::Checkpointer {
                        own,
                        writer: opened.writer.clone(),
                        priority: priority.clone(),
                        database,
                    }
                    .start()
                }),
            priority,
            writer: opened.writer,
            backend,
            path: opened.path,
            instance: Arc::from("local"),
            write_turns: Arc::default(),
        };
        let moved = store.canonicalize_app_password_keys().await?;
        if moved > 0 {
            tracing::info!(moved, "app password ledger rows re-keyed to current names");
        }
        Ok(store)
    }

    /// The same store, recording this process as `instance` in the job
    /// attempt record.
    pub fn as_instance(mut self, instance: &str) -> Self {
        self.instance = Arc::from(instance);
        self
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The migration versions applied, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    /// A write transaction. On SQLite it takes the write lock up front: a
    /// deferred transaction that reads, then writes, fails with
    /// SQLITE_BUSY_SNAPSHOT when another connection committed in between,
    /// and the busy timeout cannot help it; `BEGIN IMMEDIATE` waits instead.
    /// PostgreSQL locks rows as they are written.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.write_tx_with(Commit::Durable).await
    }

    /// A write transaction committed as `commit` says.
    async fn write_tx_with(&self, commit: Commit) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let _turn = self.in_line().await;
        self.write_turns.fetch_add(1, Ordering::Relaxed);
        begin_write(&self.writer, self.backend, commit).await
    }

    /// The writer for one statement outside a transaction, taken in line
    /// like [`Self::write_tx`].
    async fn write_conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        let _turn = self.in_line().await;
        self.write_turns.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.writer.acquire().await?;
        if self.backend == Backend::Sqlite {
            // The last transaction on it may have been a lazy one.
            sqlx::query(Commit::Durable.sqlite_pragma())
                .execute(&mut *conn)
                .await?;
        }
        Ok(conn)
    }

    /// How often this store (and its clones) took the writer for a
    /// transaction or statement other than accepting triggers: the
    /// bookkeeping accepts wait behind on SQLite.
    pub fn write_turns(&self) -> u64 {
        self.write_turns.load(Ordering::Relaxed)
    }

    /// A non-urgent writer's turn ([`intake::Priority`]). Only SQLite has
    /// one write lock to queue for; PostgreSQL writers go side by side.
    async fn in_line(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.priority.in_line().await),
            Backend::Postgres => None,
        }
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    pub async fn get_meta(&self, name: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        set_meta_in(&mut *self.write_conn().await?, name, value).await
    }

    /// Remembers pk → username for people we grant things to. Only new
    /// or changed rows are written (`seen_at`: when a row last changed):
    /// most runs remember exactly what is already there, and a write would
    /// take the state DB's one write lock for nothing.
    pub async fn remember_users(&self, users: &[(i64, String, String)]) -> Result<()> {
        let known = self.known_users(users).await?;
        let changed: Vec<&(i64, String, String)> = users
            .iter()
            .filter(|(pk, username, email)| {
                known
                    .get(pk)
                    .is_none_or(|(u, e)| u != username || e != email)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        for (pk, username, email) in changed {
            sqlx::query(
                "INSERT INTO known_users (pk, username, email, seen_at) VALUES ($1, $2, $3, $4)
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

    /// The remembered username and email of each of `users`' pks: one
    /// query per pk for a few, the whole table for many.
    async fn known_users(
        &self,
        users: &[(i64, String, String)],
    ) -> Result<HashMap<i64, (String, String)>> {
        const ONE_BY_ONE_UP_TO: usize = 32;
        if users.len() > ONE_BY_ONE_UP_TO {
            let rows: Vec<(i64, String, String)> =
                sqlx::query_as("SELECT pk, username, email FROM known_users")
                    .fetch_all(&self.reader)
                    .await?;
            return Ok(rows.into_iter().map(|(pk, u, e)| (pk, (u, e))).collect());
        }
        let mut known = HashMap::new();
        for (pk, _, _) in users {
            let row: Option<(String, String)> =
                sqlx::query_as("SELECT username, email FROM known_users WHERE pk = $1")
                    .bind(pk)
                    .fetch_optional(&self.reader)
                    .await?;
            if let Some(row) = row {
                known.insert(*pk, row);
            }
        }
        Ok(known)
    }

    /// Resolves a pk, username or email to a username we once granted to.
    pub async fn known_username(&self, needle: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT username FROM known_users
             WHERE CAST(pk AS TEXT) = $1 OR username = $1 OR lower(email) = lower($1) LIMIT 1",
        )
        .bind(needle)
        .fetch_optional(&self.reader)
        .await?)
    }
}

/// How a write transaction's commit survives what may come after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// On disk before the commit returns (an fsync): survives a power cut.
    /// What a 202, a ledger row or an intent promises.
    Durable,
    /// In the WAL before the commit returns, on disk with the next durable
    /// commit or checkpoint: survives this process crashing, not a power
    /// cut in between. Only for the job queue's own bookkeeping (a claim, a
    /// result), which a power cut at worst makes run again: every run is
    /// idempotent. Spares the fsync a webhook's accept would wait behind
    /// (SQLite; PostgreSQL commits everything durably).
    Lazy,
}

impl Commit {
    /// Set before every write on SQLite's one writer connection, so the
    /// level never carries over from the transaction before.
    fn sqlite_pragma(self) -> &'static str {
        match self {
            Self::Durable => "PRAGMA synchronous = FULL",
            Self::Lazy => "PRAGMA synchronous = NORMAL",
        }
    }

    /// [`Self::sqlite_pragma`], then the write lock up front.
    fn sqlite_begin(self) -> &'static str {
        match self {
            Self::Durable => "PRAGMA synchronous = FULL; BEGIN IMMEDIATE",
            Self::Lazy => "PRAGMA synchronous = NORMAL; BEGIN IMMEDIATE",
        }
    }
}

/// See [`Store::write_tx`].
async fn begin_write(
    writer: &AnyPool,
    backend: Backend,
    commit: Commit,
) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
    Ok(match backend {
        // The level cannot change inside a transaction: it goes first.
        Backend::Sqlite => writer.begin_with(commit.sqlite_begin()).await?,
        Backend::Postgres => writer.begin().await?,
    })
}

/// Sets a `meta` row on `conn` (inside a caller's transaction or not).
async fn set_meta_in(conn: &mut sqlx::AnyConnection, name: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (name, value) VALUES ($1, $2)
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

#[cfg(test)]
impl Store {
    /// A store on a fresh SQLite file in a temporary directory, removed
    /// when the returned guard is dropped: keep it as long as the store.
    pub(crate) async fn open_temp() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = Store::open(&url).await.expect("a fresh state DB opens");
        (store, dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(conn: &mut sqlx::AnyConnection) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(conn)
            .await
            .unwrap()
    }

    /// 2 is FULL, 1 NORMAL: a lazy transaction never leaves its level to
    /// the durable writes after it on the one writer connection.
    #[tokio::test]
    async fn each_write_sets_its_own_commit_level() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = Store::open(&url).await.unwrap();

        let mut lazy = store.write_tx_with(Commit::Lazy).await.unwrap();
        assert_eq!(synchronous(&mut lazy).await, 1);
        lazy.commit().await.unwrap();
        let mut durable = store.write_tx().await.unwrap();
        assert_eq!(synchronous(&mut durable).await, 2);
        durable.commit().await.unwrap();

        let lazy = store.write_tx_with(Commit::Lazy).await.unwrap();
        lazy.commit().await.unwrap();
        let mut conn = store.write_conn().await.unwrap();
        assert_eq!(synchronous(&mut conn).await, 2, "a single statement too");
    }
}
