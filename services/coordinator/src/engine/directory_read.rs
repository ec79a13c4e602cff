//! Where a run's directory comes from (issue 12). A sweep reads every page
//! of users and groups. A webhook about one user or group reads only that
//! object (and any group it names that the snapshot has not seen) and
//! patches the snapshot the last whole read left: a few requests, not a
//! hundred pages, at 10,000 users.
//!
//! The snapshot is trusted only while it is younger than the sweep
//! interval (`DIRECTORY_MAX_AGE_SECONDS`); an older one, or none, means a
//! whole read. Anything that could be a deletion (an object the snapshot
//! knows answering 404) also means a whole read, so removals caused by an
//! object vanishing always come from a whole directory and its guards.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Engine, Subject};
use crate::authentik::model::Attributed;
use crate::authentik::{UserField, normalize_uuid};
use crate::directory::{Directory, Patch, Touched};
use crate::error::Result;
use crate::store::now_millis;

/// The directory the last whole read gave, patched since, and what the
/// state DB holds of it.
#[derive(Default)]
pub(super) struct SnapshotSlot {
    /// What webhooks patch, with when it was read whole; `None` until
    /// loaded, and while a whole read is under way (so a sweep never holds
    /// two directories at once).
    current: Option<(Arc<Directory>, i64)>,
    /// A hash of each stored row; `None` when unknown (a whole replace).
    stored: Option<StoredRows>,
}

/// Hashes of the snapshot rows as stored, to write only the rows a new
/// whole read changed: a sweep that finds the directory as it was holds
/// SQLite's write lock for a moment, not for 11,000 rows.
#[derive(Default)]
struct StoredRows {
    users: HashMap<i64, u64>,
    groups: HashMap<String, u64>,
}

impl StoredRows {
    fn of(directory: &Directory) -> Self {
        Self {
            users: directory.users().map(|u| (u.pk, row_hash(u))).collect(),
            groups: directory
                .groups
                .iter()
                .map(|(id, g)| (id.clone(), row_hash(g)))
                .collect(),
        }
    }

    /// The rows that differ between what is stored and `directory`.
    fn differences(&self, now: &StoredRows) -> Touched {
        fn changed<K: Clone + Ord + std::hash::Hash + Eq>(
            old: &HashMap<K, u64>,
            new: &HashMap<K, u64>,
        ) -> BTreeSet<K> {
            old.keys()
                .chain(new.keys())
                .filter(|k| old.get(*k) != new.get(*k))
                .cloned()
                .collect()
        }
        Touched {
            users: changed(&self.users, &now.users),
            groups: changed(&self.groups, &now.groups),
        }
    }

    fn update(&mut self, directory: &Directory, touched: &Touched) {
        for pk in &touched.users {
            match directory.all_users.get(pk) {
                Some(user) => self.users.insert(*pk, row_hash(user)),
                None => self.users.remove(pk),
            };
        }
        for id in &touched.groups {
            match directory.groups.get(id) {
                Some(group) => self.groups.insert(id.clone(), row_hash(group)),
                None => self.groups.remove(id),
            };
        }
    }
}

fn row_hash<T: serde::Serialize>(row: &T) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(row)
        .expect("a directory object serializes")
        .hash(&mut hasher);
    hasher.finish()
}

/// How a run's directory was read.
pub(super) enum DirectoryRead {
    /// Every page, started at this time.
    Whole { read_at_millis: i64 },
    /// The snapshot, patched with what the subject's objects say now.
    Patched,
}

impl Engine {
    /// Drops the snapshot held in memory, so the next run loads it from the
    /// state DB: on taking over the leadership, where another instance may
    /// have patched the stored copy since this one last led.
    pub async fn forget_directory_snapshot(&self) {
        *self.snapshot.lock().await = SnapshotSlot::default();
    }

    pub(super) async fn read_directory(
        &self,
        subject: &Subject,
    ) -> Result<(Arc<Directory>, DirectoryRead)> {
        if !subject.is_sweep()
            && let Some(snapshot) = self.fresh_snapshot().await?
            && let Some(patch) = self.read_subject(subject, &snapshot).await?
        {
            return Ok((
                self.patch_snapshot(snapshot, patch).await?,
                DirectoryRead::Patched,
            ));
        }
        // Let go of the snapshot before reading the whole directory again.
        self.snapshot.lock().await.current = None;
        let read_at_millis = now_millis();
        // Both lists before anything else: an Authentik error ends the run
        // here, before a single change (and so before any removal).
        let (users, groups) = tokio::try_join!(self.directory.users(), self.directory.groups())?;
        Ok((
            Arc::new(Directory::new(users, groups)),
            DirectoryRead::Whole { read_at_millis },
        ))
    }

    /// Keeps a whole read as the snapshot webhooks patch. Only a plausible
    /// read is kept: one that tripped the guards must not become the base
    /// later runs trust.
    pub(super) async fn keep_snapshot(
        &self,
        directory: &Arc<Directory>,
        read_at_millis: i64,
    ) -> Result<()> {
        if self.config.directory_max_age.is_none() {
            return Ok(());
        }
        let mut slot = self.snapshot.lock().await;
        let now = StoredRows::of(directory);
        match &slot.stored {
            Some(stored) => {
                self.store
                    .save_directory_rows(directory, &stored.differences(&now), read_at_millis)
                    .await?
            }
            None => {
                self.store
                    .replace_directory(directory, read_at_millis)
                    .await?
            }
        }
        slot.stored = Some(now);
        slot.current = Some((directory.clone(), read_at_millis));
        Ok(())
    }

    /// The snapshot, loaded from the state DB after a restart, if it is
    /// young enough to trust.
    async fn fresh_snapshot(&self) -> Result<Option<Arc<Directory>>> {
        let Some(max_age) = self.config.directory_max_age else {
            return Ok(None);
        };
        let mut slot = self.snapshot.lock().await;
        if slot.current.is_none()
            && let Some(stored) = self.store.load_directory().await?
        {
            // Rows an earlier version wrote may hold every attribute: kept
            // out of memory, and rewritten whole by the next whole read.
            let key = &self.config.desired.attribute_key;
            let mut users = stored.users;
            let mut groups = stored.groups;
            let mut pruned = false;
            for user in &mut users {
                pruned |= user.keep_attributes(key);
            }
            for group in &mut groups {
                pruned |= group.keep_attributes(key);
            }
            let directory = Directory::new(users, groups);
            slot.stored = (!pruned).then(|| StoredRows::of(&directory));
            slot.current = Some((Arc::new(directory), stored.read_at_millis));
        }
        let max_age_millis = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
        Ok(slot
            .current
            .as_ref()
            .filter(|(_, read_at)| now_millis().saturating_sub(*read_at) <= max_age_millis)
            .map(|(directory, _)| directory.clone()))
    }

    /// What Authentik says now about the subject's objects; `None` when
    /// only a whole read can tell.
    async fn read_subject(&self, subject: &Subject, known: &Directory) -> Result<Option<Patch>> {
        match subject {
            Subject::All => Ok(None),
            Subject::User(needle) => self.read_user(needle, known).await,
            Subject::Group(needle) => self.read_group(needle, known).await,
        }
    }

    async fn read_user(&self, needle: &str, known: &Directory) -> Result<Option<Patch>> {
        let known_pk = known.find_user(needle).map(|u| u.pk);
        let user = match known_pk.or_else(|| needle.parse().ok()) {
            Some(pk) => match self.directory.user(pk).await? {
                Some(user) => Some(user),
                // Deleted, or hidden from our token: only a whole read
                // (and its guards) may decide what goes with them.
                None if known_pk.is_some() => return Ok(None),
                None => None,
            },
            None => {
                let field = if needle.contains('@') {
                    UserField::Email
                } else {
                    UserField::Username
                };
                let mut found = self.directory.users_by(field, needle).await?;
                if found.len() > 1 {
                    // Two users with one email: let the whole read sort it out.
                    return Ok(None);
                }
                found.pop()
            }
        };
        let mut patch = Patch::default();
        if let Some(user) = user {
            self.read_unknown_groups(
                user.groups.iter().map(|g| normalize_uuid(g)),
                known,
                &mut patch,
            )
            .await?;
            patch.users.push(user);
        }
        Ok(Some(patch))
    }

    async fn read_group(&self, needle: &str, known: &Directory) -> Result<Option<Patch>> {
        let known_id = known.find_group(needle).map(|g| g.pk.clone());
        let id = known_id.clone().unwrap_or_else(|| normalize_uuid(needle));
        let Some(group) = self.directory.group(&id).await? else {
            return Ok(if known_id.is_some() {
                None
            } else {
                Some(Patch::default())
            });
        };
        let mut patch = Patch::default();
        if group
            .users
            .iter()
            .any(|pk| !known.all_users.contains_key(pk))
        {
            // Someone the snapshot has never seen: their objects, in one listing.
            patch.users = self.directory.group_members(&id).await?;
        }
        self.read_unknown_groups(group.parent_ids(), known, &mut patch)
            .await?;
        patch.groups.push(group);
        Ok(Some(patch))
    }

    /// Reads the groups in `ids` the snapshot does not hold, and their
    /// unknown parents, into `patch`.
    async fn read_unknown_groups(
        &self,
        ids: impl IntoIterator<Item = String>,
        known: &Directory,
        patch: &mut Patch,
    ) -> Result<()> {
        let mut asked = BTreeSet::new();
        let mut queue: Vec<String> = ids.into_iter().collect();
        while let Some(id) = queue.pop() {
            if known.groups.contains_key(&id) || !asked.insert(id.clone()) {
                continue;
            }
            if let Some(group) = self.directory.group(&id).await? {
                queue.extend(group.parent_ids());
                patch.groups.push(group);
            }
        }
        Ok(())
    }

    /// Applies `patch` to the snapshot and writes the rows it changed.
    async fn patch_snapshot(&self, read: Arc<Directory>, patch: Patch) -> Result<Arc<Directory>> {
        if patch.is_empty() {
            return Ok(read);
        }
        let mut slot = self.snapshot.lock().await;
        let SnapshotSlot { current, stored } = &mut *slot;
        let Some((directory, read_at_millis)) = current.as_mut() else {
            // A whole read started meanwhile: plan from this read alone.
            let mut directory = (*read).clone();
            directory.apply(patch);
            return Ok(Arc::new(directory));
        };
        // Copy on write: a run still planning from the old snapshot keeps
        // it. Our own handle goes first, or every patch would copy.
        drop(read);
        let touched = Arc::make_mut(directory).apply(patch);
        if touched == Touched::default() {
            // Already known: nothing to write (most webhooks re-announce
            // what an earlier one brought).
            return Ok(directory.clone());
        }
        if let Err(e) = self
            .store
            .save_directory_rows(directory, &touched, *read_at_millis)
            .await
        {
            // Memory is ahead of the stored rows now, and a retry would
            // find nothing to write: the next run reads everything again.
            *current = None;
            *stored = None;
            return Err(e);
        }
        if let Some(stored) = stored {
            stored.update(directory, &touched);
        }
        Ok(directory.clone())
    }
}
