//! Patches of the directory snapshot, numbered (issue 12 and the review
//! of its incremental directory): which ones a whole read under way must
//! apply again on top of its listing, and which patch last changed each
//! user and group, so a read or a run can tell that a newer read
//! overtook it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::authentik::normalize_uuid;
use crate::directory::{Patch, Touched};

/// The patches made while whole reads are under way, numbered, so that
/// each whole read can apply those made after it began. Kept only while a
/// whole read that began before them is under way.
///
/// It also knows which patch last changed each user and group, so a patch
/// read before another one changed its objects is read again
/// ([`Self::overtakes`]), and a run can tell whether a newer read changed
/// its users, or what grants them, before it held them
/// ([`Self::changed_since`]), or who is in a group its plan writes a
/// group-wide object of ([`Self::moved_members_since`]).
#[derive(Default)]
pub(super) struct PatchLog {
    pub(super) next: u64,
    /// Where each whole read under way began in the numbering.
    whole_reads: Vec<u64>,
    patches: Vec<(u64, Patch)>,
    /// The patch that last changed each user (by pk) and group (by id):
    /// either side of a membership, a group attached below it, or (a
    /// whole read's listing) its row.
    last_change: HashMap<i64, u64>,
    last_group_change: HashMap<String, u64>,
    /// The patch that last changed what each group is (its attributes or
    /// parents), not who is in it.
    last_redefinition: HashMap<String, u64>,
}

impl PatchLog {
    /// Numbers `patch`, and keeps it for the whole reads under way.
    pub(super) fn record(&mut self, patch: &Patch) -> u64 {
        let number = self.next;
        if !self.whole_reads.is_empty() {
            self.patches.push((number, patch.clone()));
        }
        self.next += 1;
        number
    }

    pub(super) fn changed(&mut self, number: u64, touched: &Touched, redefined: Vec<String>) {
        for pk in &touched.users {
            self.last_change.insert(*pk, number);
        }
        for id in &touched.groups {
            self.last_group_change.insert(id.clone(), number);
        }
        for id in redefined {
            self.last_redefinition.insert(id, number);
        }
    }

    /// Whether a patch numbered `from` or later changed one of the objects
    /// `patch` would set: then `patch` may hold the older read of them.
    pub(super) fn overtakes(&self, from: u64, patch: &Patch) -> bool {
        let from = Since::from(from);
        patch
            .users
            .iter()
            .any(|u| changed_from(&self.last_change, &u.pk, from))
            || patch
                .groups
                .iter()
                .any(|g| changed_from(&self.last_group_change, &normalize_uuid(&g.pk), from))
    }

    /// Whether a patch numbered `from` or later changed any of `users`, or
    /// redefined any of `groups`.
    pub(super) fn changed_since(
        &self,
        from: impl Into<Since>,
        users: &[i64],
        groups: &BTreeSet<String>,
    ) -> bool {
        let from = from.into();
        users
            .iter()
            .any(|pk| changed_from(&self.last_change, pk, from))
            || groups
                .iter()
                .any(|id| changed_from(&self.last_redefinition, id, from))
    }

    /// Marks what a whole read's listing changed in the snapshot (a user
    /// gone from Authentik, what no webhook brought), under a number of its
    /// own, which it returns: a run beside it that read before it planned
    /// from what the listing replaced. Every changed group counts as
    /// redefined too (the rows do not say what moved).
    pub(super) fn listed(&mut self, touched: &Touched) -> u64 {
        let number = self.next;
        self.next += 1;
        let groups: Vec<String> = touched.groups.iter().cloned().collect();
        self.changed(number, touched, groups);
        number
    }

    /// Records that patch `number` moved members into or out of `groups`
    /// without changing their rows (a group attached below them).
    pub(super) fn members_moved(&mut self, number: u64, groups: BTreeSet<String>) {
        for id in groups {
            self.last_group_change.insert(id, number);
        }
    }

    /// Whether a patch numbered `from` or later changed any of `groups`:
    /// who is in it (either side of a membership, or a group attached
    /// below it), or what it is.
    pub(super) fn moved_members_since(
        &self,
        from: impl Into<Since>,
        groups: &BTreeSet<String>,
    ) -> bool {
        let from = from.into();
        groups
            .iter()
            .any(|id| changed_from(&self.last_group_change, id, from))
    }

    fn since(&self, start: u64) -> Vec<Patch> {
        self.patches
            .iter()
            .filter(|(n, _)| *n >= start)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn end(&mut self, start: u64) {
        if let Some(i) = self.whole_reads.iter().position(|s| *s == start) {
            self.whole_reads.swap_remove(i);
        }
        match self.whole_reads.iter().min() {
            Some(&oldest) => self.patches.retain(|(n, _)| *n >= oldest),
            None => self.patches.clear(),
        }
    }
}

/// Whether `last` says a patch `from` covers changed `key`.
fn changed_from<K: std::hash::Hash + Eq>(last: &HashMap<K, u64>, key: &K, from: Since) -> bool {
    last.get(key).is_some_and(|n| from.covers(*n))
}

/// The changes newer than a run's read: those numbered `from` or later,
/// except `own`, the mark its own whole read left ([`PatchLog::listed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Since {
    pub(super) from: u64,
    pub(super) own: Option<u64>,
}

impl From<u64> for Since {
    fn from(from: u64) -> Self {
        Self { from, own: None }
    }
}

impl Since {
    fn covers(self, number: u64) -> bool {
        number >= self.from && Some(number) != self.own
    }
}

/// A whole read under way: patches made from now on are logged for it
/// until it is dropped.
pub(super) struct WholeRead {
    log: Arc<std::sync::Mutex<PatchLog>>,
    pub(super) start: u64,
}

impl WholeRead {
    pub(super) fn begin(log: &Arc<std::sync::Mutex<PatchLog>>) -> Self {
        let mut entries = lock(log);
        let start = entries.next;
        entries.whole_reads.push(start);
        Self {
            log: log.clone(),
            start,
        }
    }

    pub(super) fn patches_since_start(&self) -> Vec<Patch> {
        lock(&self.log).since(self.start)
    }
}

impl Drop for WholeRead {
    fn drop(&mut self) {
        lock(&self.log).end(self.start);
    }
}

pub(super) fn lock(log: &std::sync::Mutex<PatchLog>) -> std::sync::MutexGuard<'_, PatchLog> {
    // Every critical section leaves the log whole: a panic elsewhere
    // cannot have broken it.
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch_of(pk: i64) -> Patch {
        let user = serde_json::from_value(serde_json::json!({
            "pk": pk, "username": format!("u{pk}"), "email": format!("u{pk}@x.org"),
            "is_active": true, "type": "internal", "attributes": {},
        }))
        .unwrap();
        Patch {
            users: vec![user],
            groups: vec![],
        }
    }

    #[test]
    fn a_whole_read_gets_the_patches_made_after_it_began_and_they_go_with_it() {
        let log = Arc::new(std::sync::Mutex::new(PatchLog::default()));
        lock(&log).record(&patch_of(1)); // before any whole read: not kept
        let first = WholeRead::begin(&log);
        lock(&log).record(&patch_of(2));
        let second = WholeRead::begin(&log);
        lock(&log).record(&patch_of(3));
        let pks = |patches: Vec<Patch>| -> Vec<i64> {
            patches
                .iter()
                .flat_map(|p| p.users.iter().map(|u| u.pk))
                .collect()
        };
        assert_eq!(pks(first.patches_since_start()), [2, 3]);
        assert_eq!(pks(second.patches_since_start()), [3]);
        drop(first);
        assert_eq!(lock(&log).patches.len(), 1, "only what the second needs");
        drop(second);
        assert!(lock(&log).patches.is_empty());
        assert!(lock(&log).whole_reads.is_empty());
    }

    fn touched(users: &[i64], groups: &[&str]) -> Touched {
        Touched {
            users: users.iter().copied().collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn a_user_or_granting_group_changed_by_a_later_patch_is_seen_as_overtaken() {
        let mut log = PatchLog::default();
        let none = BTreeSet::new();
        let g: BTreeSet<String> = ["g".to_owned()].into();
        let mine = log.record(&patch_of(1));
        log.changed(mine, &touched(&[1], &[]), vec![]);
        let from = mine + 1;
        assert!(!log.changed_since(from, &[1, 2], &none), "my own patch");
        let theirs = log.record(&patch_of(2));
        log.changed(theirs, &touched(&[2], &["g"]), vec![]);
        assert!(log.changed_since(from, &[1, 2], &none));
        assert!(!log.changed_since(from, &[1, 3], &none));
        // Someone joining g changes g's members, not what g grants...
        assert!(!log.changed_since(from, &[1], &g));
        // ...which a group-wide object of g (its alias) is made of.
        assert!(log.moved_members_since(from, &g));
        assert!(!log.moved_members_since(theirs + 1, &g));
        let moved = log.record(&Patch::default());
        log.changed(moved, &touched(&[], &["g"]), vec!["g".into()]);
        assert!(
            log.changed_since(from, &[1], &g),
            "g moved or granting anew"
        );
    }

    #[test]
    fn a_patch_whose_objects_changed_after_its_read_began_is_overtaken() {
        let mut log = PatchLog::default();
        let from = log.next; // a read of user 2 begins
        let group = "00000000-0000-0000-0000-00000000000a".to_owned();
        let other = log.record(&patch_of(1));
        // User 1's patch moved them into the group: both sides changed.
        log.changed(
            other,
            &Touched {
                users: [1].into(),
                groups: [group.clone()].into(),
            },
            vec![],
        );
        assert!(!log.overtakes(from, &patch_of(2)), "user 2 was not touched");
        assert!(log.overtakes(from, &patch_of(1)));
        let mut group_patch = Patch::default();
        group_patch.groups.push(
            serde_json::from_value(serde_json::json!({
                "pk": group.replace('-', ""), "name": "desk", "users": [],
            }))
            .unwrap(),
        );
        assert!(log.overtakes(from, &group_patch), "undashed id, same group");
        assert!(
            !log.overtakes(from + 1, &group_patch),
            "a read begun after it"
        );
    }
}
