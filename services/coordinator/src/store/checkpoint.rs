//! WAL checkpoints off the writer (SQLite; issue 12). SQLite checkpoints
//! inline by default: the commit that grows the WAL past 1,000 pages copies
//! them into the database file and syncs it before it returns, and on the
//! one writer connection that commit holds up every writer queued behind
//! it, a webhook's accept included. Here the writer never checkpoints
//! (`wal_autocheckpoint = 0`); a connection of its own runs a `PASSIVE`
//! checkpoint every [`INTERVAL`], which takes no write lock: writers and
//! readers go on beside it.
//!
//! Copying the WAL is not enough to keep it small. SQLite starts the WAL
//! over from its first frame only when a write transaction begins with
//! every frame already copied, and under a steady load the writer appends
//! more frames while the checkpointer copies: measured at 500 webhooks a
//! second, every pass copied all it saw and the WAL still grew to 56 MB
//! before a gap let it start over, once in about ten seconds. So once the
//! WAL holds [`RESTART_AFTER`] frames, the pass is followed by a short one
//! on the writer connection itself, taken in line like any other
//! non-urgent write: it copies the few frames appended meanwhile, and
//! nothing can append during it, so the next write transaction can start
//! the WAL over (and cut a file a burst left larger than
//! [`super::backend`]'s `journal_size_limit` back to it). It does unless a
//! reader that began before the pass is still reading the old WAL; the
//! next pass tries again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyPool, Row};

use super::intake::Priority;

/// Often enough that the WAL stays a few thousand pages at most under a
/// steady load of jobs and webhooks.
pub const INTERVAL: Duration = Duration::from_millis(500);

/// WAL frames (pages) after which a pass ends with the writer's short one,
/// so the WAL can start over: SQLite's own autocheckpoint size (4 MB).
/// Not every pass: the writer's is a turn an accept may wait behind.
pub const RESTART_AFTER: i64 = 1000;

/// Where the checkpoints run.
pub(super) struct Checkpointer {
    /// A connection of its own, for the long copy beside the writer.
    pub own: AnyPool,
    /// The one writer connection, for the short pass after it.
    pub writer: AnyPool,
    /// The writer's line, so an accept's group still goes first.
    pub priority: Arc<Priority>,
    /// The database file, flushed before the writer's pass.
    pub database: PathBuf,
}

impl Checkpointer {
    /// Checkpoints until every holder of the returned token is gone (the
    /// store and its clones).
    pub fn start(self) -> Arc<()> {
        let alive = Arc::new(());
        tokio::spawn(self.run(Arc::downgrade(&alive)));
        alive
    }

    async fn run(self, alive: Weak<()>) {
        let mut ticker = tokio::time::interval(INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "state DB checkpoint failed; retried shortly");
            }
        }
    }

    /// One pass: the copy beside the writer and, if the WAL has grown past
    /// [`RESTART_AFTER`], the short one on the writer that lets it start
    /// over.
    pub async fn pass(&self) -> sqlx::Result<()> {
        let copy = passive(&self.own).await?;
        // Only after a copy that took every frame it saw: one a reader held
        // back would leave the long copy to the writer's pass.
        if copy.wal_frames >= RESTART_AFTER && copy.copied == copy.wal_frames {
            // SQLite syncs the database file only in a pass that reaches
            // the WAL's live end, which under load is the writer's: it would
            // flush every page the copy wrote while accepts wait. Flushed
            // here, beside the writer, that sync is a few pages.
            flush(&self.database).await;
            // In line behind accepts, like any non-urgent write.
            let _turn = self.priority.in_line().await;
            passive(&self.writer).await?;
        }
        Ok(())
    }
}

/// `fdatasync` of `file`, off the runtime. A failure is only logged: the
/// writer's pass still syncs the file itself before the WAL can start over.
async fn flush(file: &Path) {
    let file = file.to_owned();
    let flushed =
        tokio::task::spawn_blocking(move || std::fs::File::open(&file)?.sync_data()).await;
    match flushed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "state DB flush before checkpoint failed"),
        Err(e) => tracing::warn!(error = %e, "state DB flush before checkpoint did not run"),
    }
}

/// What a `PASSIVE` checkpoint reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Progress {
    /// Frames in the WAL.
    wal_frames: i64,
    /// Of those, frames now copied into the database file.
    copied: i64,
}

/// One `PASSIVE` checkpoint: as much of the WAL as no reader still needs.
async fn passive(pool: &AnyPool) -> sqlx::Result<Progress> {
    // The answer is one row: busy, WAL frames, frames copied.
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok(Progress {
        wal_frames: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::backend::{Opened, open_sqlite};
    use super::*;

    /// Adds `rows` rows of 8,000 bytes in one statement: about two WAL
    /// frames each.
    async fn fill(writer: &AnyPool, rows: u32, tag: &str) {
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1)
             INSERT INTO meta (name, value) SELECT $2 || i, printf('%.8000c', 'x') FROM n",
        )
        .bind(rows as i64)
        .bind(format!("{tag}-"))
        .execute(writer)
        .await
        .unwrap();
    }

    async fn one_write(writer: &AnyPool, name: &str) {
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, 'v')")
            .bind(name)
            .execute(writer)
            .await
            .unwrap();
    }

    /// A fresh SQLite file, opened as the store opens it, and a
    /// checkpointer on it (not started: the tests run its passes).
    async fn checkpointed() -> (tempfile::TempDir, Opened, Checkpointer) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        sqlx::any::install_default_drivers();
        let mut opened = open_sqlite(&url).await.unwrap();
        let checkpointer = Checkpointer {
            own: opened
                .checkpointer
                .take()
                .expect("a file has a checkpointer"),
            writer: opened.writer.clone(),
            priority: Arc::default(),
            database: dir.path().join("state.db"),
        };
        (dir, opened, checkpointer)
    }

    fn wal_bytes(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("state.db-wal"))
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn the_writer_never_checkpoints_and_the_checkpointer_copies_the_wal() {
        let (_dir, opened, checkpointer) = checkpointed().await;
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

        // Well past SQLite's default of 1,000 pages, in commits of their
        // own: the writer's commits leave it all in the WAL.
        for i in 0..6 {
            fill(&opened.writer, 100, &format!("filler{i}")).await;
        }
        let progress = passive(&checkpointer.own).await.unwrap();
        assert!(progress.wal_frames > 1000, "{progress:?}");
        assert_eq!(
            progress.copied, progress.wal_frames,
            "no reader holds anything back"
        );
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE name LIKE 'filler%'")
            .fetch_one(&opened.reader)
            .await
            .unwrap();
        assert_eq!(count, 600);
    }

    /// The growth a steady load caused, and its cure. A write under way
    /// while the checkpointer copies keeps the WAL from starting over: the
    /// copy took all it saw, the write appended after it, and so does every
    /// later write. A pass past [`RESTART_AFTER`] frames ends with the
    /// writer's short one, after which the WAL starts over, though writes
    /// never stopped, and is cut back to the size limit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_lets_the_wal_start_over_under_a_steady_stream_of_writes() {
        let (dir, opened, checkpointer) = checkpointed().await;
        // More than the 16 MiB limit, so the cut shows.
        fill(&opened.writer, 2500, "burst").await;
        let grown = wal_bytes(&dir);
        assert!(grown > 16 << 20, "{grown} bytes");

        // The failure, step by step: a write transaction begins, the copy
        // runs beside it and copies every frame there is, the write
        // commits, and the next write appends at the WAL's end instead of
        // starting it over.
        let mut during = opened.writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let copy = passive(&checkpointer.own).await.unwrap();
        assert_eq!(copy.copied, copy.wal_frames);
        sqlx::query("INSERT INTO meta (name, value) VALUES ('during', 'v')")
            .execute(&mut *during)
            .await
            .unwrap();
        during.commit().await.unwrap();
        let before = wal_bytes(&dir);
        one_write(&opened.writer, "after-copy").await;
        assert!(wal_bytes(&dir) > before, "appended, not started over");

        // A pass while another task writes without pause.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stream = tokio::spawn({
            let (writer, stop) = (opened.writer.clone(), stop.clone());
            async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    one_write(&writer, &format!("stream-{n}")).await;
                    n += 1;
                }
                n
            }
        });
        one_write(&opened.writer, "before-pass").await;
        checkpointer.pass().await.unwrap();
        one_write(&opened.writer, "after-pass").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let streamed = stream.await.unwrap();
        assert!(streamed > 0);

        let now = passive(&checkpointer.own).await.unwrap();
        assert!(
            now.wal_frames < copy.wal_frames / 2,
            "started over: {now:?} frames now, {copy:?} before"
        );
        assert!(wal_bytes(&dir) <= 16 << 20, "{} bytes", wal_bytes(&dir));
        let streamed_rows: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE name LIKE 'stream-%'")
                .fetch_one(&opened.reader)
                .await
                .unwrap();
        assert_eq!(streamed_rows, streamed as i64, "every write landed");
    }

    /// A copy a reader held back leaves the writer alone: the writer's pass
    /// would do the long copy itself while accepts wait. Here the writer is
    /// busy in a transaction throughout, so a pass that asked for it would
    /// not finish.
    #[tokio::test]
    async fn a_copy_held_back_by_a_reader_does_not_take_the_writer() {
        let (_dir, opened, checkpointer) = checkpointed().await;
        let mut reading = opened.reader.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta")
            .fetch_one(&mut *reading)
            .await
            .unwrap();
        fill(&opened.writer, 600, "after-the-reader").await;
        let writing = opened.writer.begin_with("BEGIN IMMEDIATE").await.unwrap();

        tokio::time::timeout(Duration::from_secs(10), checkpointer.pass())
            .await
            .expect("the pass did not wait for the writer")
            .unwrap();
        let held_back = passive(&checkpointer.own).await.unwrap();
        assert!(
            held_back.wal_frames >= RESTART_AFTER && held_back.copied < held_back.wal_frames,
            "{held_back:?}"
        );
        writing.rollback().await.unwrap();
        reading.rollback().await.unwrap();
    }
}
