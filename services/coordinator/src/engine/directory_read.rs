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

use super::patch_log::{WholeRead, lock};
use crate::error::{Error, Result};
use crate::store::now_millis;

/// The directory the last whole read gave, patched since, and what the
/// state DB holds of it.
///
/// Three rules keep a patch from being lost or undone by an older read:
/// - Runs read Authentik side by side, but a patch whose objects another
///   patch changed after this read began is not applied: the run reads
///   again ([`Engine::read_directory`]), so of two reads of one object the
///   one applied last began after the other was applied.
/// - A whole read lists for a while; a patch made meanwhile may be newer
///   than what the listing saw of the same objects. Such patches are
///   logged ([`PatchLog`](super::patch_log::PatchLog)) and applied again
///   on top of the whole read before it becomes the snapshot. (One whose
///   read began just before the listing may be the older of the two; the
///   next webhook about those objects, or the next sweep, settles it.)
/// - Previews (`coordinator plan`, `explain`, on any instance) read, and
///   write neither the snapshot nor its rows.
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

/// Whether a run may change the snapshot: runs do, previews never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Snapshot {
    Write,
    ReadOnly,
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
    Whole {
        read_at_millis: i64,
        read: WholeRead,
    },
    /// The snapshot, patched with what the subject's objects say now;
    /// `next`: the number the patch after this one gets.
    Patched { next: u64 },
}

impl DirectoryRead {
    /// The first patch number that came after this read.
    pub(super) fn patches_from(&self) -> u64 {
        match self {
            Self::Whole { read, .. } => read.start,
            Self::Patched { next } => *next,
        }
    }
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
        snapshot: Snapshot,
    ) -> Result<(Arc<Directory>, DirectoryRead)> {
        let mut attempts = 0;
        while !subject.is_sweep() {
            // Patches numbered from here on came after this read began.
            let from = lock(&self.patch_log).next;
            let Some(known) = self.fresh_snapshot().await? else {
                break;
            };
            let Some(patch) = self.read_subject(subject, &known).await? else {
                break;
            };
            if snapshot == Snapshot::ReadOnly {
                let mut directory = (*known).clone();
                directory.apply(patch);
                let next = lock(&self.patch_log).next;
                return Ok((Arc::new(directory), DirectoryRead::Patched { next }));
            }
            if let Some((directory, next)) = self.patch_snapshot(known, patch, from).await? {
                return Ok((directory, DirectoryRead::Patched { next }));
            }
            // A patch read after this one began changed its objects first.
            attempts += 1;
            if attempts > super::MAX_OVERTAKES {
                return Err(Error::Overtaken(format!(
                    "other webhooks changed {subject}'s directory objects during each of \
                     {attempts} reads"
                )));
            }
        }
        let read = WholeRead::begin(&self.patch_log);
        if snapshot == Snapshot::Write && subject.is_sweep() {
            // A sweep lets go of the snapshot before reading everything
            // again, so it never holds two directories at once. It runs
            // alone; a webhook's whole read (a deletion's) does not, and
            // the runs beside it keep patching the snapshot meanwhile.
            self.snapshot.lock().await.current = None;
        }
        let read_at_millis = now_millis();
        // Both lists before anything else: an Authentik error ends the run
        // here, before a single change (and so before any removal).
        let (users, groups) = tokio::try_join!(self.directory.users(), self.directory.groups())?;
        Ok((
            Arc::new(Directory::new(users, groups)),
            DirectoryRead::Whole {
                read_at_millis,
                read,
            },
        ))
    }

    /// Keeps a whole read as the snapshot webhooks patch. Only a plausible
    /// read is kept: one that tripped the guards must not become the base
    /// later runs trust.
    pub(super) async fn keep_snapshot(
        &self,
        directory: &Arc<Directory>,
        read_at_millis: i64,
        read: &WholeRead,
    ) -> Result<Option<u64>> {
        if self.config.directory_max_age.is_none() {
            return Ok(None);
        }
        let mut slot = self.snapshot.lock().await;
        // Patches land under the slot's lock: none can slip in between.
        let later = read.patches_since_start();
        let directory = &if later.is_empty() {
            directory.clone()
        } else {
            let mut patched = (**directory).clone();
            for patch in later {
                patched.apply(patch);
            }
            Arc::new(patched)
        };
        let now = StoredRows::of(directory);
        let mark = match &slot.stored {
            Some(stored) => {
                let listed = stored.differences(&now);
                self.store
                    .save_directory_rows(directory, &listed, read_at_millis)
                    .await?;
                // Runs beside this one (a deletion's whole read) that read
                // before it may plan from what the listing replaced.
                (listed != Touched::default()).then(|| lock(&self.patch_log).listed(&listed))
            }
            None => {
                self.store
                    .replace_directory(directory, read_at_millis)
                    .await?;
                None
            }
        };
        slot.stored = Some(now);
        slot.current = Some((directory.clone(), read_at_millis));
        Ok(mark)
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
            // Someone the snapshot has never seen: their objects, in one
            // listing, and any group they are in that it has not seen
            // either (without it, what that group inherits would be lost).
            patch.users = self.directory.group_members(&id).await?;
        }
        let named = patch
            .users
            .iter()
            .flat_map(|u| u.groups.iter().map(|g| normalize_uuid(g)))
            .filter(|g| *g != id)
            .chain(group.parent_ids())
            .collect::<BTreeSet<_>>();
        self.read_unknown_groups(named, known, &mut patch).await?;
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

    /// Whether a read newer than `prepared`'s (a webhook's patch, or the
    /// listing of another run's whole read) changed one of its users, what
    /// one of the groups granting them is (its attributes, its parents),
    /// or, for each group-wide object the plan writes (a group alias, a
    /// Stalwart list), who is in that group or below it, or one of those
    /// members: its plan may undo what that read's run did.
    pub(super) fn overtaken(&self, prepared: &super::Prepared) -> bool {
        let directory = &prepared.directory;
        // Every user, the inactive included: a newer read may have found
        // one active again whom this run's read saw deactivated.
        let users: Vec<&crate::authentik::User> = directory
            .users()
            .filter(|user| prepared.scope_users.contains(&user.username))
            .collect();
        let groups: BTreeSet<String> = users
            .iter()
            .flat_map(|user| directory.effective_groups(user))
            .collect();
        let mut pks: Vec<i64> = users.iter().map(|user| user.pk).collect();
        // A group alias's goto (a Stalwart list's members) is every member
        // of its group and of the groups below it, not only this run's
        // users: a newer read that moved someone else in (bob joining while
        // alice's run waited) leaves this plan's goto without them, and
        // applied after that read's run it would take them out again.
        let member_lists: BTreeSet<String> = prepared
            .plan
            .steps
            .iter()
            .filter(|step| step.username.is_empty() && step.action.writes_target())
            .flat_map(|step| step.groups.iter())
            .flat_map(|group| directory.descendants(group))
            .collect();
        // ...and so is each member's address and whether they are active.
        pks.extend(
            member_lists
                .iter()
                .filter_map(|id| directory.groups.get(id))
                .flat_map(|group| group.users.iter().copied()),
        );
        let log = lock(&self.patch_log);
        log.changed_since(prepared.read_since, &pks, &groups)
            || log.moved_members_since(prepared.read_since, &member_lists)
    }

    /// Applies `patch`, read after patch number `from` was applied, to the
    /// snapshot and writes the rows it changed: the directory to plan from,
    /// and the number the next patch gets. `None`, and nothing applied,
    /// when a patch numbered `from` or later changed one of its objects
    /// (this read may be the older one).
    async fn patch_snapshot(
        &self,
        read: Arc<Directory>,
        patch: Patch,
        from: u64,
    ) -> Result<Option<(Arc<Directory>, u64)>> {
        if patch.is_empty() {
            // `read` may lack the patches applied since this read began.
            return Ok(Some((read, from)));
        }
        let mut slot = self.snapshot.lock().await;
        let SnapshotSlot { current, stored } = &mut *slot;
        let Some((directory, read_at_millis)) = current.as_mut() else {
            // The snapshot was dropped after this read began (a failed
            // write of its rows): read again, from the stored copy.
            return Ok(None);
        };
        let number = {
            let mut log = lock(&self.patch_log);
            if log.overtakes(from, &patch) {
                return Ok(None);
            }
            log.record(&patch)
        };
        let redefined = redefined_groups(directory, &patch);
        let regrouped = parents_of_moved_groups(directory, &patch);
        // Copy on write: a run still planning from the old snapshot keeps
        // it. Our own handle goes first, or every patch would copy.
        drop(read);
        let touched = Arc::make_mut(directory).apply(patch);
        {
            let mut log = lock(&self.patch_log);
            log.changed(number, &touched, redefined);
            log.members_moved(number, regrouped);
        }
        if touched == Touched::default() {
            // Already known: nothing to write (most webhooks re-announce
            // what an earlier one brought).
            return Ok(Some((directory.clone(), number + 1)));
        }
        if let Err(e) = self
            .store
            .save_directory_rows(directory, &touched, *read_at_millis)
            .await
        {
            // Memory is ahead of the stored rows now, and a retry would
            // find nothing to write: the next run loads the stored copy.
            *current = None;
            *stored = None;
            return Err(e);
        }
        if let Some(stored) = stored {
            stored.update(directory, &touched);
        }
        Ok(Some((directory.clone(), number + 1)))
    }
}

/// The groups a group `patch` attaches below or detaches from: a group
/// attached below desk brings its members into desk (and into every group
/// above it) without desk's own row changing.
fn parents_of_moved_groups(directory: &Directory, patch: &Patch) -> BTreeSet<String> {
    let mut parents = BTreeSet::new();
    for group in &patch.groups {
        let new: BTreeSet<String> = group.parent_ids().into_iter().collect();
        let old: BTreeSet<String> = directory
            .groups
            .get(&normalize_uuid(&group.pk))
            .map(|known| known.parent_ids().into_iter().collect())
            .unwrap_or_default();
        parents.extend(old.symmetric_difference(&new).cloned());
    }
    parents
}

/// The groups `patch` defines anew in `directory`: new ones, and those
/// whose attributes or parents it changes. A change of members alone is
/// not one: that is the members' change.
fn redefined_groups(directory: &Directory, patch: &Patch) -> Vec<String> {
    patch
        .groups
        .iter()
        .map(|group| (normalize_uuid(&group.pk), group))
        .filter(|(id, group)| {
            directory.groups.get(id).is_none_or(|known| {
                known.attributes != group.attributes || known.parent_ids() != group.parent_ids()
            })
        })
        .map(|(id, _)| id)
        .collect()
}
