//! The simulated directory (users, groups, memberships, parentage) and its
//! JSON rendering in the shapes Authentik's serializers produce.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The user types Authentik knows (`UserTypes`).
pub(crate) const USER_TYPES: [&str; 4] = [
    "internal",
    "external",
    "service_account",
    "internal_service_account",
];

#[derive(Clone, Debug)]
pub(crate) struct User {
    pub pk: i64,
    pub uuid: Uuid,
    pub username: String,
    pub name: String,
    pub email: String,
    pub is_active: bool,
    pub last_login: Option<String>,
    pub date_joined: String,
    pub password_change_date: String,
    /// `auto_now`: bumped when the user row is saved, never by membership
    /// changes (the reference's incremental-sync pitfall).
    pub last_updated: String,
    pub attributes: Value,
    pub path: String,
    pub user_type: String,
    pub uid: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub uuid: Uuid,
    pub name: String,
    pub is_superuser: bool,
    pub attributes: Value,
    /// Insertion order, like rows of the parentage through table.
    pub parents: Vec<Uuid>,
    /// Direct members.
    pub users: BTreeSet<i64>,
}

/// Which server generation to render: 2025.12+ (`parents`) or ≤ 2025.10
/// (`parent` / `parent_name`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub legacy_parent: bool,
}

/// Lookups that every rendered page needs; built once per request so a page
/// of 100 objects doesn't rescan the whole directory per object.
pub(crate) struct Index {
    /// user pk → direct groups
    pub user_groups: HashMap<i64, Vec<Uuid>>,
    /// group → direct children
    pub children: HashMap<Uuid, Vec<Uuid>>,
}

#[derive(Debug)]
pub(crate) struct Directory {
    next_pk: i64,
    /// Stands in for Authentik's install id, which salts `User.uid`.
    install_id: u64,
    pub users: BTreeMap<i64, User>,
    pub groups: BTreeMap<Uuid, Group>,
}

impl Directory {
    pub fn new() -> Self {
        Self {
            // pk 1 is the AnonymousUser and pk 2 usually akadmin in a real
            // install; starting higher keeps tests from assuming pk == index.
            next_pk: 3,
            install_id: rand::random(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
    }

    pub fn create_user(&mut self, username: &str, name: &str, email: &str) -> i64 {
        let pk = self.next_pk;
        self.next_pk += 1;
        let now = now_iso();
        self.users.insert(
            pk,
            User {
                pk,
                uuid: Uuid::new_v4(),
                username: username.to_owned(),
                name: name.to_owned(),
                email: email.to_owned(),
                is_active: true,
                last_login: None,
                date_joined: now.clone(),
                password_change_date: now.clone(),
                last_updated: now,
                attributes: json!({}),
                path: "users".into(),
                user_type: "internal".into(),
                uid: uid_for(self.install_id, pk),
            },
        );
        pk
    }

    pub fn create_group(&mut self, name: &str, attributes: Value) -> Uuid {
        let uuid = Uuid::new_v4();
        self.groups.insert(
            uuid,
            Group {
                uuid,
                name: name.to_owned(),
                is_superuser: false,
                attributes,
                parents: Vec::new(),
                users: BTreeSet::new(),
            },
        );
        uuid
    }

    pub fn delete_user(&mut self, pk: i64) -> Option<User> {
        let user = self.users.remove(&pk)?;
        // The through-table rows go with the user (a DB cascade, no m2m signal).
        for group in self.groups.values_mut() {
            group.users.remove(&pk);
        }
        Some(user)
    }

    pub fn delete_group(&mut self, uuid: Uuid) -> Option<Group> {
        let group = self.groups.remove(&uuid)?;
        for other in self.groups.values_mut() {
            other.parents.retain(|p| *p != uuid);
        }
        Some(group)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users.values().find(|u| u.username == username)
    }

    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| g.name == name)
    }

    pub fn index(&self) -> Index {
        let mut user_groups: HashMap<i64, Vec<Uuid>> = HashMap::new();
        let mut children: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
        for group in self.groups.values() {
            for pk in &group.users {
                user_groups.entry(*pk).or_default().push(group.uuid);
            }
            for parent in &group.parents {
                children.entry(*parent).or_default().push(group.uuid);
            }
        }
        Index {
            user_groups,
            children,
        }
    }

    /// `User.is_superuser`: any of the user's groups or their ancestors has
    /// the flag (superuser status is inherited downwards). Cycle-safe.
    fn user_is_superuser(&self, index: &Index, pk: i64) -> bool {
        let mut seen = HashSet::new();
        let mut stack: Vec<Uuid> = index.user_groups.get(&pk).cloned().unwrap_or_default();
        while let Some(uuid) = stack.pop() {
            if !seen.insert(uuid) {
                continue;
            }
            if let Some(group) = self.groups.get(&uuid) {
                if group.is_superuser {
                    return true;
                }
                stack.extend(group.parents.iter().copied());
            }
        }
        false
    }

    /// `UserSerializer`.
    pub fn user_json(
        &self,
        index: &Index,
        user: &User,
        include_groups: bool,
        shape: Shape,
    ) -> Value {
        let direct: &[Uuid] = index
            .user_groups
            .get(&user.pk)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let groups: Vec<Value> = direct.iter().map(|u| json!(u.to_string())).collect();
        let groups_obj = if include_groups {
            Value::Array(
                direct
                    .iter()
                    .filter_map(|u| self.groups.get(u))
                    .map(|g| self.partial_group_json(g, shape))
                    .collect(),
            )
        } else {
            Value::Null
        };
        let mut out = Map::new();
        out.insert("pk".into(), json!(user.pk));
        out.insert("username".into(), json!(user.username));
        out.insert("name".into(), json!(user.name));
        out.insert("is_active".into(), json!(user.is_active));
        out.insert("last_login".into(), json!(user.last_login));
        out.insert("date_joined".into(), json!(user.date_joined));
        out.insert(
            "is_superuser".into(),
            json!(self.user_is_superuser(index, user.pk)),
        );
        out.insert("groups".into(), Value::Array(groups));
        out.insert("groups_obj".into(), groups_obj);
        if !shape.legacy_parent {
            // User roles arrived in 2025.12, together with `parents`.
            out.insert("roles".into(), json!([]));
            out.insert("roles_obj".into(), json!([]));
        }
        out.insert("email".into(), json!(user.email));
        out.insert("avatar".into(), json!(AVATAR));
        out.insert("attributes".into(), user.attributes.clone());
        out.insert("uid".into(), json!(user.uid));
        out.insert("path".into(), json!(user.path));
        out.insert("type".into(), json!(user.user_type));
        out.insert("uuid".into(), json!(user.uuid.to_string()));
        out.insert(
            "password_change_date".into(),
            json!(user.password_change_date),
        );
        out.insert("last_updated".into(), json!(user.last_updated));
        Value::Object(out)
    }

    /// `PartialGroup` (`UserGroup` before 2025.10), inside `groups_obj`.
    fn partial_group_json(&self, group: &Group, shape: Shape) -> Value {
        let mut out = Map::new();
        out.insert("pk".into(), json!(group.uuid.to_string()));
        out.insert("num_pk".into(), json!(num_pk(group.uuid)));
        out.insert("name".into(), json!(group.name));
        out.insert("is_superuser".into(), json!(group.is_superuser));
        if shape.legacy_parent {
            self.insert_legacy_parent(&mut out, group);
        }
        out.insert("attributes".into(), group.attributes.clone());
        Value::Object(out)
    }

    /// ≤ 2025.10 kept a single `parent`; only the first of several survives.
    fn insert_legacy_parent(&self, out: &mut Map<String, Value>, group: &Group) {
        let parent = group.parents.first().and_then(|p| self.groups.get(p));
        out.insert(
            "parent".into(),
            parent.map_or(Value::Null, |p| json!(p.uuid.to_string())),
        );
        out.insert(
            "parent_name".into(),
            parent.map_or(Value::Null, |p| json!(p.name)),
        );
    }

    /// `RelatedGroup`, inside `parents_obj` / `children_obj`.
    fn related_group_json(group: &Group) -> Value {
        json!({
            "pk": group.uuid.to_string(),
            "name": group.name,
            "is_superuser": group.is_superuser,
            "attributes": group.attributes,
            "group_uuid": group.uuid.to_string(),
        })
    }

    /// `GroupMemberSerializer` / `PartialUser`, inside `users_obj`.
    fn partial_user_json(user: &User) -> Value {
        json!({
            "pk": user.pk,
            "username": user.username,
            "name": user.name,
            "is_active": user.is_active,
            "last_login": user.last_login,
            "email": user.email,
            "attributes": user.attributes,
            "uid": user.uid,
        })
    }

    /// `GroupSerializer`.
    pub fn group_json(
        &self,
        index: &Index,
        group: &Group,
        opts: GroupRender,
        shape: Shape,
    ) -> Value {
        let children: &[Uuid] = index
            .children
            .get(&group.uuid)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut out = Map::new();
        out.insert("pk".into(), json!(group.uuid.to_string()));
        out.insert("num_pk".into(), json!(num_pk(group.uuid)));
        out.insert("name".into(), json!(group.name));
        out.insert("is_superuser".into(), json!(group.is_superuser));
        if shape.legacy_parent {
            self.insert_legacy_parent(&mut out, group);
        } else {
            out.insert(
                "parents".into(),
                Value::Array(group.parents.iter().map(|p| json!(p.to_string())).collect()),
            );
            let parents_obj = if opts.include_parents {
                Value::Array(
                    group
                        .parents
                        .iter()
                        .filter_map(|p| self.groups.get(p))
                        .map(Self::related_group_json)
                        .collect(),
                )
            } else {
                Value::Null
            };
            out.insert("parents_obj".into(), parents_obj);
        }
        out.insert(
            "users".into(),
            Value::Array(group.users.iter().map(|pk| json!(pk)).collect()),
        );
        let users_obj = if opts.include_users {
            Value::Array(
                group
                    .users
                    .iter()
                    .filter_map(|pk| self.users.get(pk))
                    .map(Self::partial_user_json)
                    .collect(),
            )
        } else {
            Value::Null
        };
        out.insert("users_obj".into(), users_obj);
        out.insert("attributes".into(), group.attributes.clone());
        out.insert("roles".into(), json!([]));
        out.insert("roles_obj".into(), json!([]));
        if !shape.legacy_parent {
            // 2025.12+, null unless include_inherited_roles=true; no roles
            // are simulated, so an empty list then.
            let inherited = if opts.include_inherited_roles {
                json!([])
            } else {
                Value::Null
            };
            out.insert("inherited_roles_obj".into(), inherited);
        }
        out.insert(
            "children".into(),
            Value::Array(children.iter().map(|c| json!(c.to_string())).collect()),
        );
        let children_obj = if opts.include_children {
            Value::Array(
                children
                    .iter()
                    .filter_map(|c| self.groups.get(c))
                    .map(Self::related_group_json)
                    .collect(),
            )
        } else {
            Value::Null
        };
        out.insert("children_obj".into(), children_obj);
        Value::Object(out)
    }
}

/// The `include_*` switches of the group list / retrieve endpoints.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupRender {
    pub include_users: bool,
    pub include_children: bool,
    pub include_parents: bool,
    pub include_inherited_roles: bool,
}

/// Authentik with `avatars = none` serves this placeholder; the real default
/// (gravatar, initials) would need outbound lookups or image rendering.
const AVATAR: &str = "/static/dist/assets/images/user_default.png";

/// `Group.num_pk`: the first five decimal digits of the UUID's integer value.
/// For LDAP only, not unique.
pub(crate) fn num_pk(uuid: Uuid) -> u64 {
    let digits = uuid.as_u128().to_string();
    digits[..digits.len().min(5)].parse().unwrap_or(0)
}

/// Authentik's `uid` is sha256(f"{install_id}-{pk}") in hex. No hashing
/// crate is in the workspace, so this is a 64-hex-digit value with the same
/// properties clients rely on: stable per user and unique per install.
fn uid_for(install_id: u64, pk: i64) -> String {
    let mut state = install_id ^ (pk as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = String::with_capacity(64);
    for _ in 0..4 {
        state = splitmix64(state);
        out.push_str(&format!("{state:016x}"));
    }
    out
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A display name the way an admin would type it: `jane.doe` → `Jane Doe`.
pub(crate) fn display_name(username: &str) -> String {
    username
        .split(['.', '_', '-', ' '])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// DRF's rendering of an aware UTC datetime: microseconds and a `Z` suffix.
pub(crate) fn now_iso() -> String {
    format!("{}Z", now_parts())
}

/// Python's `datetime.isoformat()` of an aware UTC datetime, which is what
/// the shipped body mapping sends as `created`.
pub(crate) fn now_isoformat_python() -> String {
    format!("{}+00:00", now_parts())
}

fn now_parts() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's algorithm,
/// to avoid a date crate for one timestamp format.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn display_names() {
        assert_eq!(display_name("jane.doe"), "Jane Doe");
        assert_eq!(display_name("user7"), "User7");
    }
}
