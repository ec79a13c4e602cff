//! Patching a directory with what one webhook read (issue 12): the objects
//! it names replace theirs, and the other side of each membership follows,
//! so the directory reads as if it had been listed whole just now.

use std::collections::BTreeSet;

use super::{Directory, person};
use crate::authentik::{Group, User, normalize_uuid};

/// Objects read fresh from Authentik. A group's `users` is the truth about
/// who is directly in it; a user's `groups` is the truth about where they
/// are directly. Groups are applied before users, so a user read in the
/// same breath has the last word about themselves.
#[derive(Clone, Debug, Default)]
pub struct Patch {
    pub groups: Vec<Group>,
    pub users: Vec<User>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.users.is_empty()
    }
}

/// The objects a patch changed (its own and the other side of each
/// membership it moved): the snapshot rows to write back. An object read
/// exactly as the snapshot holds it is not touched, so a webhook about a
/// change that is already known writes nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub users: BTreeSet<i64>,
    pub groups: BTreeSet<String>,
}

impl Directory {
    pub fn apply(&mut self, patch: Patch) -> Touched {
        let mut touched = Touched::default();
        let regroup = !patch.groups.is_empty();
        for group in patch.groups {
            self.put_group(group, &mut touched);
        }
        if regroup {
            self.index_children();
        }
        for user in patch.users {
            self.put_user(user, &mut touched);
        }
        touched
    }

    fn put_group(&mut self, mut group: Group, touched: &mut Touched) {
        group.pk = normalize_uuid(&group.pk);
        let id = group.pk.clone();
        let new: BTreeSet<i64> = group.users.iter().copied().collect();
        group.users = new.iter().copied().collect();
        if self
            .groups
            .get(&id)
            .is_some_and(|known| same_but_member_order(known, &group, &new))
        {
            return;
        }
        let old: BTreeSet<i64> = match self.groups.get(&id) {
            Some(known) => known.users.iter().copied().collect(),
            // New to us: a user read earlier may already name it.
            None => self
                .all_users
                .values()
                .filter(|u| u.groups.contains(&id))
                .map(|u| u.pk)
                .collect(),
        };
        for pk in old.difference(&new) {
            if let Some(user) = self.all_users.get_mut(pk) {
                user.groups.retain(|g| *g != id);
                touched.users.insert(*pk);
            }
        }
        for pk in new.difference(&old) {
            if let Some(user) = self.all_users.get_mut(pk) {
                user.groups.push(id.clone());
                touched.users.insert(*pk);
            }
        }
        touched.groups.insert(id.clone());
        self.groups.insert(id, group);
    }

    fn put_user(&mut self, mut user: User, touched: &mut Touched) {
        let mut seen = BTreeSet::new();
        user.groups = user
            .groups
            .iter()
            .map(|g| normalize_uuid(g))
            .filter(|g| seen.insert(g.clone()))
            .collect();
        let new: BTreeSet<String> = user.groups.iter().cloned().collect();
        if let Some(known) = self.all_users.get(&user.pk)
            && same_but_group_order(known, &user, &new)
        {
            return;
        }
        let old: BTreeSet<String> = match self.all_users.get(&user.pk) {
            Some(known) => known.groups.iter().cloned().collect(),
            None => self
                .groups
                .iter()
                .filter(|(_, g)| g.users.contains(&user.pk))
                .map(|(id, _)| id.clone())
                .collect(),
        };
        for id in old.difference(&new) {
            if let Some(group) = self.groups.get_mut(id) {
                group.users.retain(|pk| *pk != user.pk);
                touched.groups.insert(id.clone());
            }
        }
        for id in new.difference(&old) {
            if let Some(group) = self.groups.get_mut(id) {
                group.users.push(user.pk);
                touched.groups.insert(id.clone());
            }
        }
        match person(&user) {
            Some(p) => self.people.insert(user.pk, p),
            None => self.people.remove(&user.pk),
        };
        touched.users.insert(user.pk);
        self.all_users.insert(user.pk, user);
    }
}

/// Whether `known` is `read` (whose groups are `groups`), maybe with its
/// groups listed in another order.
fn same_but_group_order(known: &User, read: &User, groups: &BTreeSet<String>) -> bool {
    let User {
        pk,
        username,
        name,
        email,
        is_active,
        user_type,
        groups: known_groups,
        uid,
        attributes,
    } = known;
    *pk == read.pk
        && *username == read.username
        && *name == read.name
        && *email == read.email
        && *is_active == read.is_active
        && *user_type == read.user_type
        && *uid == read.uid
        && *attributes == read.attributes
        && known_groups.len() == groups.len()
        && known_groups.iter().all(|g| groups.contains(g))
}

/// Whether `known` is `read` (whose members are `members`), maybe with its
/// members listed in another order.
fn same_but_member_order(known: &Group, read: &Group, members: &BTreeSet<i64>) -> bool {
    let Group {
        pk,
        name,
        parents,
        parent,
        users,
        attributes,
    } = known;
    *pk == read.pk
        && *name == read.name
        && *parents == read.parents
        && *parent == read.parent
        && *attributes == read.attributes
        && users.len() == members.len()
        && users.iter().all(|u| members.contains(u))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    const A: &str = "00000000-0000-0000-0000-00000000000a";
    const B: &str = "00000000-0000-0000-0000-00000000000b";
    const C: &str = "00000000-0000-0000-0000-00000000000c";

    fn user(pk: i64, groups: &[&str]) -> User {
        serde_json::from_value(json!({
            "pk": pk, "username": format!("u{pk}"), "email": format!("u{pk}@example.com"),
            "is_active": true, "type": "internal", "groups": groups,
        }))
        .unwrap()
    }

    fn group(pk: &str, parents: &[&str], users: &[i64]) -> Group {
        serde_json::from_value(json!({
            "pk": pk, "name": pk, "parents": parents, "users": users, "attributes": {}
        }))
        .unwrap()
    }

    fn dir() -> Directory {
        Directory::new(
            vec![user(1, &[A]), user(2, &[])],
            // u2 is in B by the group's word only: both sides must agree after new().
            vec![group(A, &[], &[1]), group(B, &[A], &[2])],
        )
    }

    /// The directory a whole listing of the patched world gives.
    fn relisted(d: &Directory) -> Directory {
        Directory::new(
            d.all_users.values().cloned().collect(),
            d.groups.values().cloned().collect(),
        )
    }

    fn members(d: &Directory, id: &str) -> BTreeSet<i64> {
        d.effective_members(id)
    }

    #[test]
    fn both_sides_of_a_membership_agree_after_a_whole_read() {
        let d = dir();
        assert_eq!(d.all_users[&2].groups, [B]);
        assert_eq!(members(&d, A), BTreeSet::from([1, 2]));
    }

    #[test]
    fn a_user_read_moves_them_between_groups_on_both_sides() {
        let mut d = dir();
        let touched = d.apply(Patch {
            users: vec![user(1, &[B])],
            ..Patch::default()
        });
        assert_eq!(d.groups[A].users, Vec::<i64>::new());
        assert_eq!(d.groups[B].users, [2, 1]);
        assert_eq!(members(&d, B), BTreeSet::from([1, 2]));
        assert_eq!(
            touched,
            Touched {
                users: BTreeSet::from([1]),
                groups: BTreeSet::from([A.to_owned(), B.to_owned()]),
            }
        );
        assert_eq!(
            relisted(&d).all_users,
            d.all_users,
            "a whole read of the same world agrees"
        );
    }

    #[test]
    fn reading_what_the_snapshot_already_holds_touches_nothing() {
        let mut d = dir();
        // Members and groups in another order than the snapshot lists them.
        d.apply(Patch {
            users: vec![user(1, &[B])],
            ..Patch::default()
        });
        let before = d.clone();
        let touched = d.apply(Patch {
            groups: vec![group(B, &[A], &[1, 2])],
            users: vec![user(1, &[B]), user(2, &[B])],
        });
        assert_eq!(touched, Touched::default());
        assert_eq!(d.all_users, before.all_users);
        assert_eq!(d.groups, before.groups);

        let touched = d.apply(Patch {
            users: vec![user(2, &[])],
            ..Patch::default()
        });
        assert_eq!(touched.users, BTreeSet::from([2]), "a real change still is");
    }

    #[test]
    fn a_group_read_sets_who_is_in_it_and_its_parents() {
        let mut d = dir();
        let touched = d.apply(Patch {
            groups: vec![group(C, &[B], &[1, 2])],
            ..Patch::default()
        });
        assert_eq!(d.all_users[&1].groups, [A, C]);
        assert_eq!(d.all_users[&2].groups, [B, C]);
        assert!(d.descendants(A).contains(C), "the children index follows");
        assert_eq!(touched.users, BTreeSet::from([1, 2]));

        d.apply(Patch {
            groups: vec![group(C, &[B], &[])],
            ..Patch::default()
        });
        assert_eq!(d.all_users[&1].groups, [A]);
        assert_eq!(members(&d, C), BTreeSet::new());
    }

    #[test]
    fn a_new_user_joins_the_groups_they_name_and_an_inactive_one_stops_counting() {
        let mut d = dir();
        d.apply(Patch {
            users: vec![user(3, &["0000000000000000000000000000000a"])],
            ..Patch::default()
        });
        assert_eq!(d.all_users[&3].groups, [A], "undashed ids are normalized");
        assert!(members(&d, A).contains(&3));
        let mut gone = user(3, &[A]);
        gone.is_active = false;
        d.apply(Patch {
            users: vec![gone],
            ..Patch::default()
        });
        assert!(!members(&d, A).contains(&3));
        assert!(!d.people.contains_key(&3));
    }
}
