//! The Authentik groups a desired object, a planned step or a ledger row
//! is owed to.
//!
//! At 10,000 users there are tens of thousands of these sets, almost all
//! holding one group (issue 12, memory). A `BTreeSet<String>` spends a
//! whole B-tree node (room for 11 strings, 288 bytes) plus a copy of the
//! group id on each; this is a sorted `Vec` of shared ids, so a set of one
//! is a 16-byte pointer to an id every set of that group shares.

use std::fmt;
use std::sync::Arc;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};

/// A group UUID, shared rather than copied.
pub type GroupId = Arc<str>;

/// A sorted set of group ids without duplicates; it serialises as a list
/// of strings, the same JSON a `BTreeSet<String>` gives.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupSet(Vec<GroupId>);

impl GroupSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; false if it was already there.
    pub fn insert(&mut self, id: impl Into<GroupId>) -> bool {
        let id = id.into();
        match self.0.binary_search(&id) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, id);
                true
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.binary_search_by(|g| (**g).cmp(id)).is_ok()
    }

    /// The ids in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + Clone {
        self.0.iter().map(|g| &**g)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every id of `other` added to this set.
    pub fn union_with(&mut self, other: &GroupSet) {
        for id in &other.0 {
            self.insert(id.clone());
        }
    }
}

impl<G: Into<GroupId>> FromIterator<G> for GroupSet {
    fn from_iter<I: IntoIterator<Item = G>>(ids: I) -> Self {
        let mut ids: Vec<GroupId> = ids.into_iter().map(Into::into).collect();
        ids.sort_unstable();
        ids.dedup();
        Self(ids)
    }
}

impl<G: Into<GroupId>> Extend<G> for GroupSet {
    fn extend<I: IntoIterator<Item = G>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

impl<G: Into<GroupId>, const N: usize> From<[G; N]> for GroupSet {
    fn from(ids: [G; N]) -> Self {
        ids.into_iter().collect()
    }
}

impl fmt::Debug for GroupSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for GroupSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for GroupSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ids = Vec::<String>::deserialize(deserializer)?;
        Ok(ids.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ids_sorted_and_once_and_reads_like_a_set_of_strings() {
        let mut set = GroupSet::from(["b", "a", "b"]);
        assert!(set.insert("c"));
        assert!(!set.insert("a"));
        assert_eq!(set.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(set.contains("b") && !set.contains("d"));
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["a","b","c"]"#);
        let back: GroupSet = serde_json::from_str(r#"["c","a","a"]"#).unwrap();
        assert_eq!(back, GroupSet::from(["a", "c"]));
    }

    #[test]
    fn a_shared_id_is_not_copied_into_each_set() {
        let id: GroupId = Arc::from("3f2a");
        let sets: Vec<GroupSet> = (0..3).map(|_| GroupSet::from([id.clone()])).collect();
        assert_eq!(Arc::strong_count(&id), 4);
        let mut union = sets[0].clone();
        union.union_with(&GroupSet::from(["0aaa"]));
        assert_eq!(union.iter().collect::<Vec<_>>(), ["0aaa", "3f2a"]);
    }
}
