//! Snapshots of the state DB before a run removes anything. The ledger is
//! the only proof of what we created; a snapshot taken just before a
//! removal lets an operator go back if a removal was wrong (README, "State
//! DB backups").

use std::path::{Path, PathBuf};

use super::{Store, now_millis};
use crate::error::{Error, Result};

/// How many snapshots to keep, and where.
#[derive(Clone, Debug)]
pub struct BackupPolicy {
    /// 0 turns snapshots off.
    pub keep: usize,
    /// `None`: a `backups` directory next to the state DB.
    pub dir: Option<PathBuf>,
}

impl Default for BackupPolicy {
    fn default() -> Self {
        Self { keep: 3, dir: None }
    }
}

const PREFIX: &str = "state-";
const SUFFIX: &str = ".db";

impl Store {
    /// Writes a consistent copy of the state DB (`VACUUM INTO`, safe while
    /// the coordinator runs) and drops the oldest beyond `policy.keep`.
    /// `None` when snapshots are off or the DB lives in memory.
    pub async fn snapshot(&self, policy: &BackupPolicy) -> Result<Option<PathBuf>> {
        let Some(db) = &self.path else {
            return Ok(None);
        };
        if policy.keep == 0 {
            return Ok(None);
        }
        let dir = match &policy.dir {
            Some(dir) => dir.clone(),
            None => db.parent().unwrap_or(Path::new(".")).join("backups"),
        };
        let io = |what: &str, e: std::io::Error| {
            Error::Config(format!("state DB backup {what} {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("directory", e))?;
        // Millisecond stamps of equal width sort in time order by name.
        let mut file = dir.join(format!("{PREFIX}{:013}{SUFFIX}", now_millis()));
        let mut n = 0;
        while file.exists() {
            n += 1;
            file = dir.join(format!("{PREFIX}{:013}-{n}{SUFFIX}", now_millis()));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(file.to_string_lossy().into_owned())
            .execute(&self.reader)
            .await?;
        let mut taken: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| io("directory", e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect();
        taken.sort();
        let excess = taken.len().saturating_sub(policy.keep);
        for old in &taken[..excess] {
            std::fs::remove_file(old).map_err(|e| io("pruning", e))?;
        }
        Ok(Some(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn snapshots_are_readable_copies_and_only_the_newest_are_kept() {
        let (store, dir) = Store::open_temp().await;
        store.set_meta("marker", "before").await.unwrap();
        let policy = BackupPolicy::default();
        let first = store.snapshot(&policy).await.unwrap().unwrap();
        store.set_meta("marker", "after").await.unwrap();

        let copy = Store::open(&format!("sqlite://{}", first.display()))
            .await
            .unwrap();
        assert_eq!(
            copy.get_meta("marker").await.unwrap().as_deref(),
            Some("before"),
            "the snapshot is the DB as it was"
        );
        for _ in 0..4 {
            store.snapshot(&policy).await.unwrap();
        }
        let kept = std::fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("db".as_ref()))
            .count();
        assert_eq!(kept, 3);
        let off = BackupPolicy { keep: 0, dir: None };
        assert_eq!(store.snapshot(&off).await.unwrap(), None);
    }
}
