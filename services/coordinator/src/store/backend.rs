//! The two databases the state DB may live in, and how each is opened.
//!
//! Queries are written once, for both, through sqlx's `Any` driver: `$1`
//! parameters (SQLite reads them too), and SQL both dialects accept. What
//! differs is here: connection settings, the migrations (one directory per
//! backend, the same versions with the same meaning), and the few
//! statements [`Backend`] picks between (`BEGIN IMMEDIATE`, the claim's
//! lock).

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One coordinator, a file beside it.
    Sqlite,
    /// One or more coordinators sharing a server (README, "High
    /// availability").
    Postgres,
}

impl Backend {
    /// The backend a `STATE_DB_URL` names, if any.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }

    pub(super) fn migrations(self) -> &'static Migrator {
        static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
        static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
        match self {
            Self::Sqlite => &SQLITE,
            Self::Postgres => &POSTGRES,
        }
    }
}

/// What an opened database gives the store.
pub(super) struct Opened {
    pub reader: AnyPool,
    pub writer: AnyPool,
    /// The SQLite file (`None` in memory and for PostgreSQL): snapshots
    /// are taken next to it.
    pub path: Option<std::path::PathBuf>,
    /// SQLite file only: the connection that checkpoints the WAL
    /// ([`super::checkpoint`]).
    pub checkpointer: Option<AnyPool>,
}

/// Every SQLite connection's settings. WAL: readers never wait for the
/// writer. FULL: a 202 promises the job survives a power cut, not just a
/// crash.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// Opens and migrates a SQLite file (or in-memory DB): one writing
/// connection, read-only readers beside it.
pub(super) async fn open_sqlite(url: &str) -> Result<Opened> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::Config(format!("STATE_DB_URL: {e}")))?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    // `Any` connects each connection from the URL anew: an in-memory DB
    // needs one shared name; a file is opened with a mode (created by the
    // writer, read-only for readers), unless the URL sets one.
    let with_mode = |mode: &str| {
        if url.contains("mode=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode={mode}")
        } else {
            format!("{url}?mode={mode}")
        }
    };
    let (writer_url, reader_url) = if in_memory {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let shared = format!(
            "sqlite:file:reconciler-memory-{}-{}?mode=memory",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        (shared, None)
    } else {
        (with_mode("rwc"), Some(with_mode("ro")))
    };
    let path = (!in_memory)
        .then(|| options.get_filename().to_path_buf())
        .filter(|p| !p.as_os_str().is_empty());
    let sqlite_pool = |connections: u32, extra: &'static str| {
        AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    if !extra.is_empty() {
                        conn.execute(extra).await?;
                    }
                    Ok(())
                })
            })
    };
    // A file's writer never checkpoints (the checkpointer does), on every
    // connection the pool opens, replacements included; when the WAL starts
    // over, the writer cuts a file a burst grew back to 16 MiB.
    let writer_pragmas = if reader_url.is_some() {
        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 16777216"
    } else {
        ""
    };
    let writer = sqlite_pool(1, writer_pragmas).connect(&writer_url).await?;
    Backend::Sqlite.migrations().run(&writer).await?;
    let (reader, checkpointer) = match reader_url {
        Some(url) => (
            sqlite_pool(8, "").connect(&url).await?,
            Some(sqlite_pool(1, "").connect(&with_mode("rw")).await?),
        ),
        // One in-memory database lives in one pool, and has no WAL.
        None => (writer.clone(), None),
    };
    Ok(Opened {
        reader,
        writer,
        path,
        checkpointer,
    })
}

/// Connects to and migrates a PostgreSQL database: one pool, for reads and
/// writes (PostgreSQL has no single write lock to queue for).
pub(super) async fn open_postgres(url: &str) -> Result<Opened> {
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| Error::Config(format!("STATE_DB_URL: cannot connect: {e}")))?;
    // Instances starting together migrate one at a time (sqlx holds an
    // advisory lock while it migrates).
    Backend::Postgres.migrations().run(&pool).await?;
    Ok(Opened {
        reader: pool.clone(),
        writer: pool,
        path: None,
        checkpointer: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One migration set in two dialects: the same versions, from files of
    /// the same names (the description is the file name's rest).
    #[test]
    fn both_backends_list_the_same_migrations() {
        let listed = |backend: Backend| -> Vec<(i64, String)> {
            backend
                .migrations()
                .iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect()
        };
        let sqlite = listed(Backend::Sqlite);
        assert!(sqlite.len() >= 8, "{sqlite:?}");
        assert_eq!(sqlite, listed(Backend::Postgres));
    }

    /// `.cargo/config.toml` asks for the bundled SQLite to be built with
    /// `fdatasync()` (docs/BENCHMARKS.md, "Webhook intake"). Cargo hands
    /// the same variable to this crate's compiler as to libsqlite3-sys's
    /// build script, so this catches the line removed or overridden; what
    /// the C code was compiled with it cannot see.
    #[test]
    fn the_bundled_sqlite_build_asks_for_fdatasync() {
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "LIBSQLITE3_FLAGS = {flags:?}"
        );
    }

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Backend::of_url("sqlite://state.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of_url("postgres://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of_url("postgresql://u@h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::of_url("mysql://u@h/db"), None);
    }
}
