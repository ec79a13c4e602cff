//! A snapshot of the Authentik directory with nesting resolved.
//!
//! A member of a child group is an effective member of every ancestor group.
//! Authentik does not reject parent cycles, so every walk keeps a visited set.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use reconciler_proto::address;

use crate::authentik::{Group, User, into_normal_uuid, normalize_uuid};

/// A user who counts: active, with an email, and a person (not a service account).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub pk: i64,
    pub username: String,
    /// Lower-cased; this is the Mailcow login.
    pub email: String,
    /// Authentik's stable hashed id (the OIDC `sub`); empty when the
    /// directory did not give one.
    pub uid: String,
    /// The display name.
    pub name: String,
}

#[derive(Clone, Debug, Default)]
pub struct Directory {
    /// Every user Authentik returned, counting or not, by pk.
    pub all_users: BTreeMap<i64, User>,
    /// Groups by dashed UUID.
    pub groups: BTreeMap<String, Group>,
    /// Users that count, by pk.
    pub people: BTreeMap<i64, Person>,
    /// Group UUID → direct children UUIDs.
    children: HashMap<String, Vec<String>>,
}

impl Directory {
    /// A directory from whole listings. Authentik states membership on both
    /// sides (a user's `groups`, a group's `users`); either side is
    /// trusted, and both are made to agree, so a later [`Patch`] can
    /// replace one object's side and keep the other in step.
    pub fn new(users: Vec<User>, groups: Vec<Group>) -> Self {
        let mut groups: BTreeMap<String, Group> = groups
            .into_iter()
            .map(|mut g| {
                g.pk = into_normal_uuid(std::mem::take(&mut g.pk));
                (g.pk.clone(), g)
            })
            .collect();
        let mut all_users: BTreeMap<i64, User> = users
            .into_iter()
            .map(|mut u| {
                u.groups = std::mem::take(&mut u.groups)
                    .into_iter()
                    .map(into_normal_uuid)
                    .collect();
                (u.pk, u)
            })
            .collect();
        let mut members: BTreeMap<String, BTreeSet<i64>> = groups
            .iter()
            .map(|(id, g)| (id.clone(), g.users.iter().copied().collect()))
            .collect();
        for user in all_users.values() {
            for id in &user.groups {
                members.entry(id.clone()).or_default().insert(user.pk);
            }
        }
        for (id, pks) in &members {
            if let Some(group) = groups.get_mut(id) {
                group.users = pks.iter().copied().collect();
            }
            for pk in pks {
                if let Some(user) = all_users.get_mut(pk)
                    && !user.groups.contains(id)
                {
                    user.groups.push(id.clone());
                }
            }
        }
        let people = all_users
            .values()
            .filter_map(|u| person(u).map(|p| (u.pk, p)))
            .collect();
        let mut directory = Self {
            all_users,
            groups,
            people,
            children: HashMap::new(),
        };
        directory.index_children();
        directory
    }

    fn index_children(&mut self) {
        self.children.clear();
        for (id, group) in &self.groups {
            for parent in group.parent_ids() {
                self.children.entry(parent).or_default().push(id.clone());
            }
        }
    }

    /// Every user and group, for writing the snapshot whole.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.all_users.values()
    }

    /// The group itself and every group below it, each once, cycles included.
    pub fn descendants(&self, group: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![normalize_uuid(group)];
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(kids) = self.children.get(&id) {
                stack.extend(kids.iter().cloned());
            }
        }
        seen
    }

    /// The group itself and every group above it, each once, cycles included.
    pub fn ancestors(&self, group: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![normalize_uuid(group)];
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(g) = self.groups.get(&id) {
                stack.extend(g.parent_ids());
            }
        }
        seen
    }

    /// People who are direct members of the group or of any group below it.
    pub fn effective_members(&self, group: &str) -> BTreeSet<i64> {
        self.descendants(group)
            .iter()
            .filter_map(|id| self.groups.get(id))
            .flat_map(|g| g.users.iter().copied())
            .filter(|pk| self.people.contains_key(pk))
            .collect()
    }

    /// Every group that grants `group`'s members, i.e. `group` and its
    /// ancestors, for the groups a user is directly in.
    pub fn effective_groups(&self, user: &User) -> BTreeSet<String> {
        self.direct_groups(user)
            .iter()
            .flat_map(|g| self.ancestors(g))
            .collect()
    }

    /// The groups a user is directly in. Both sides of the relation agree
    /// inside a [`Directory`]; a `User` from elsewhere is read as it says.
    fn direct_groups(&self, user: &User) -> BTreeSet<String> {
        match self.all_users.get(&user.pk) {
            Some(known) => known.groups.iter().cloned().collect(),
            None => user.groups.iter().map(|g| normalize_uuid(g)).collect(),
        }
    }

    /// How `user` comes to be in `granting`: the group names from
    /// `granting` down to a group the user is directly in (`support`,
    /// `support-emea`), the shortest such chain; `None` when they are not.
    pub fn group_chain(&self, user: &User, granting: &str) -> Option<Vec<String>> {
        let target = normalize_uuid(granting);
        let direct = self.direct_groups(user);
        // Breadth first up the parents, remembering where each came from.
        let mut came_from: BTreeMap<String, Option<String>> =
            direct.iter().map(|g| (g.clone(), None)).collect();
        let mut queue: std::collections::VecDeque<String> = direct.into_iter().collect();
        while let Some(id) = queue.pop_front() {
            if id == target {
                let mut chain = Vec::new();
                let mut at = Some(id);
                while let Some(g) = at {
                    let name = self
                        .groups
                        .get(&g)
                        .map_or_else(|| g.clone(), |x| x.name.clone());
                    chain.push(name);
                    at = came_from.get(&g).cloned().flatten();
                }
                return Some(chain);
            }
            let parents = self
                .groups
                .get(&id)
                .map(|g| g.parent_ids())
                .unwrap_or_default();
            for parent in parents {
                if !came_from.contains_key(&parent) {
                    came_from.insert(parent.clone(), Some(id.clone()));
                    queue.push_back(parent);
                }
            }
        }
        None
    }

    /// Active people in `group` or below whose Authentik email is set but
    /// is not an address we can manage: username → why.
    pub fn unusable_members(&self, group: &str) -> BTreeMap<String, String> {
        self.descendants(group)
            .iter()
            .filter_map(|id| self.groups.get(id))
            .flat_map(|g| g.users.iter())
            .filter(|pk| !self.people.contains_key(pk))
            .filter_map(|pk| self.all_users.get(pk))
            .filter(|u| u.is_active && !u.email.trim().is_empty())
            .filter_map(|u| {
                address::normalize(&u.email)
                    .err()
                    .map(|e| (u.username.clone(), e.to_string()))
            })
            .collect()
    }

    /// Finds a user by pk, username or email (case-insensitive for email).
    pub fn find_user(&self, needle: &str) -> Option<&User> {
        let needle = needle.trim();
        if let Ok(pk) = needle.parse::<i64>()
            && let Some(u) = self.all_users.get(&pk)
        {
            return Some(u);
        }
        self.all_users
            .values()
            .find(|u| u.username == needle)
            .or_else(|| {
                self.all_users
                    .values()
                    .find(|u| !u.email.is_empty() && u.email.eq_ignore_ascii_case(needle))
            })
    }

    /// Every user (active or not, person or not) who is a direct member of
    /// the group or of any group below it: for targets that act on
    /// deactivation (a Stalwart account is suspended, not dropped).
    pub fn effective_member_users(&self, group: &str) -> Vec<&User> {
        self.descendants(group)
            .iter()
            .filter_map(|id| self.groups.get(id))
            .flat_map(|g| g.users.iter().copied())
            .collect::<BTreeSet<i64>>()
            .into_iter()
            .filter_map(|pk| self.all_users.get(&pk))
            .collect()
    }

    /// Finds a group by UUID (either form) or name.
    pub fn find_group(&self, needle: &str) -> Option<&Group> {
        self.groups
            .get(&normalize_uuid(needle))
            .or_else(|| self.groups.values().find(|g| g.name == needle))
    }
}

mod patch;
pub use patch::{Patch, Touched};

fn person(user: &User) -> Option<Person> {
    let is_service = matches!(
        user.user_type.as_str(),
        "service_account" | "internal_service_account"
    );
    // The email becomes a Mailcow login in URLs and doveadm arguments: a
    // value that is not a plain address makes the user not count (as a
    // user without email), reported by [`Directory::unusable_members`].
    let email = address::normalize(&user.email).ok()?;
    (user.is_active && !is_service).then(|| Person {
        pk: user.pk,
        username: user.username.clone(),
        email,
        uid: user.uid.clone(),
        name: user.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn user(pk: i64, name: &str, active: bool, groups: &[&str]) -> User {
        serde_json::from_value(json!({
            "pk": pk, "username": name, "email": format!("{name}@example.com"),
            "is_active": active, "type": "internal", "groups": groups,
        }))
        .unwrap()
    }

    fn group(pk: &str, parents: &[&str], users: &[i64]) -> Group {
        serde_json::from_value(json!({
            "pk": pk, "name": pk, "parents": parents, "users": users, "attributes": {}
        }))
        .unwrap()
    }

    #[test]
    fn child_members_are_effective_members_of_ancestors() {
        let dir = Directory::new(
            vec![user(1, "alice", true, &["c"]), user(2, "bob", true, &["b"])],
            vec![
                group("a", &[], &[]),
                group("b", &["a"], &[2]),
                group("c", &["b"], &[1]),
            ],
        );
        assert_eq!(dir.effective_members("a"), BTreeSet::from([1, 2]));
        assert_eq!(dir.effective_members("c"), BTreeSet::from([1]));
        let alice = dir.all_users.get(&1).unwrap();
        assert_eq!(
            dir.effective_groups(alice),
            BTreeSet::from(["a".into(), "b".into(), "c".into()])
        );
    }

    #[test]
    fn the_group_chain_runs_from_the_granting_group_down_to_the_users_own() {
        let dir = Directory::new(
            vec![user(1, "alice", true, &["c"])],
            vec![
                group("a", &[], &[]),
                group("b", &["a"], &[]),
                group("c", &["b"], &[1]),
                group("z", &[], &[]),
            ],
        );
        let alice = dir.find_user("alice").unwrap();
        assert_eq!(dir.group_chain(alice, "a").unwrap(), ["a", "b", "c"]);
        assert_eq!(dir.group_chain(alice, "c").unwrap(), ["c"]);
        assert_eq!(dir.group_chain(alice, "z"), None);
    }

    #[test]
    fn cycles_terminate() {
        let dir = Directory::new(
            vec![user(1, "alice", true, &["x"])],
            vec![group("x", &["y"], &[1]), group("y", &["x"], &[])],
        );
        assert_eq!(dir.effective_members("y"), BTreeSet::from([1]));
        assert_eq!(dir.descendants("x").len(), 2);
    }

    #[test]
    fn inactive_and_emailless_users_do_not_count() {
        let mut no_mail = user(3, "carol", true, &["a"]);
        no_mail.email.clear();
        let dir = Directory::new(
            vec![
                user(1, "alice", true, &["a"]),
                user(2, "bob", false, &["a"]),
                no_mail,
            ],
            vec![group("a", &[], &[1, 2, 3])],
        );
        assert_eq!(dir.effective_members("a"), BTreeSet::from([1]));
    }

    #[test]
    fn finds_users_by_pk_username_or_email() {
        let dir = Directory::new(vec![user(7, "alice", true, &[])], vec![]);
        assert_eq!(dir.find_user("7").unwrap().username, "alice");
        assert_eq!(dir.find_user("alice").unwrap().pk, 7);
        assert_eq!(dir.find_user("ALICE@example.com").unwrap().pk, 7);
        assert!(dir.find_user("bob").is_none());
    }
}
