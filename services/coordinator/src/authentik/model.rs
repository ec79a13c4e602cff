//! The parts of Authentik's user and group objects the reconciler reads.
//! Unknown fields are ignored so newer Authentik versions keep working.

use serde::{Deserialize, Serialize};

/// Serialize writes the same field names back, so the directory snapshot
/// in the state DB reads as Authentik's own JSON.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct User {
    pub pk: i64,
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub is_active: bool,
    /// `internal`, `external`, `service_account`, `internal_service_account`.
    #[serde(default, rename = "type")]
    pub user_type: String,
    /// Direct group UUIDs (dashed).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The stable hashed id: the OIDC `sub` Authentik gives the user, so
    /// the key of their SSO link in Synapse.
    #[serde(default)]
    pub uid: String,
    /// The user's attributes (`reconciler.mail_aliases`).
    #[serde(default)]
    pub attributes: serde_json::Value,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Group {
    /// UUID, dashed.
    pub pk: String,
    pub name: String,
    /// Several parents (Authentik 2025.12 and later).
    #[serde(default)]
    pub parents: Option<Vec<String>>,
    /// The single parent of Authentik 2025.10 and earlier.
    #[serde(default)]
    pub parent: Option<String>,
    /// Direct member user pks.
    #[serde(default)]
    pub users: Vec<i64>,
    #[serde(default)]
    pub attributes: serde_json::Value,
}

impl Group {
    /// Parent UUIDs, whichever field this Authentik version sends.
    pub fn parent_ids(&self) -> Vec<String> {
        match (&self.parents, &self.parent) {
            (Some(parents), _) => parents.iter().map(|p| normalize_uuid(p)).collect(),
            (None, Some(parent)) => vec![normalize_uuid(parent)],
            (None, None) => Vec::new(),
        }
    }
}

/// An Authentik object with `attributes`, of which the reconciler reads
/// only the subtree under its key (`RECONCILER_ATTRIBUTE_KEY`).
pub trait Attributed {
    fn attributes_mut(&mut self) -> &mut serde_json::Value;

    /// Drops every attribute but `key`'s subtree. Other applications keep
    /// their own data there (tokens, personal details); dropped as each
    /// page is parsed, it never reaches the directory held in memory, the
    /// snapshot in the state DB or a log, and costs no memory past the page.
    /// Whether anything was dropped.
    fn keep_attributes(&mut self, key: &str) -> bool {
        let attributes = self.attributes_mut();
        let (ours, others) = match attributes {
            serde_json::Value::Object(map) => {
                let ours = map.remove(key);
                (ours, !map.is_empty())
            }
            serde_json::Value::Null => (None, false),
            _ => (None, true),
        };
        let mut kept = serde_json::Map::new();
        if let Some(ours) = ours {
            kept.insert(key.to_owned(), ours);
        }
        *attributes = serde_json::Value::Object(kept);
        others
    }
}

impl Attributed for User {
    fn attributes_mut(&mut self) -> &mut serde_json::Value {
        &mut self.attributes
    }
}

impl Attributed for Group {
    fn attributes_mut(&mut self) -> &mut serde_json::Value {
        &mut self.attributes
    }
}

/// Authentik's pagination envelope. `next` is a page number; 0 means done.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub pagination: Pagination,
    pub results: Vec<T>,
}

/// Authentik (`authentik/api/pagination.py`) always sends all seven fields;
/// [`super::listing`] checks each page against them.
#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub next: u64,
    pub previous: u64,
    pub count: u64,
    pub current: u64,
    pub total_pages: u64,
    /// 1-based positions of the page's first and last item in the whole
    /// listing; both 0 for an empty listing.
    pub start_index: u64,
    pub end_index: u64,
}

/// Whether `raw` is a UUID in either form Authentik uses.
pub fn is_uuid(raw: &str) -> bool {
    let mut hex = raw.bytes().filter(|b| *b != b'-');
    hex.clone().count() == 32 && hex.all(|b| b.is_ascii_hexdigit())
}

/// Whether `raw` already is what [`normalize_uuid`] makes of it: dashed
/// and lower case, as the API sends group UUIDs.
fn is_normal_uuid(raw: &str) -> bool {
    raw.len() == 36
        && raw.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// [`normalize_uuid`] of an owned value, kept without a copy when it is
/// already normal: the directory normalises every membership of every
/// user (hundreds of thousands at 10,000 users), and most already are.
pub fn into_normal_uuid(raw: String) -> String {
    if is_normal_uuid(&raw) {
        raw
    } else {
        normalize_uuid(&raw)
    }
}

/// Group UUIDs arrive dashed from the API and undashed (hex) in event
/// context. Everything inside the reconciler uses the dashed lower-case form.
pub fn normalize_uuid(raw: &str) -> String {
    if is_normal_uuid(raw) || !is_uuid(raw) {
        return raw.to_owned();
    }
    let hex: String = raw
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms_normalize_to_dashed() {
        let dashed = "3f2a0c1e-1111-2222-3333-444455556666";
        assert_eq!(normalize_uuid("3f2a0c1e111122223333444455556666"), dashed);
        assert_eq!(normalize_uuid(&dashed.to_uppercase()), dashed);
        assert_eq!(normalize_uuid("admins"), "admins");
        assert_eq!(normalize_uuid(dashed), dashed);
        // Oddly dashed is still a UUID, and comes out in the one form.
        assert_eq!(
            normalize_uuid("3f2a0c1e1111-2222-3333-444455556666"),
            dashed
        );
        for raw in [
            dashed,
            "3f2a0c1e111122223333444455556666",
            "3F2A0C1E-1111-2222-3333-444455556666",
            "admins",
            "3f2a0c1e-1111-2222-3333-44445555666g",
        ] {
            assert_eq!(
                into_normal_uuid(raw.to_owned()),
                normalize_uuid(raw),
                "{raw}"
            );
        }
        assert!(!is_uuid("3f2a0c1e-1111-2222-3333-44445555666"));
        assert!(!is_uuid("3f2a0c1e-1111-2222-3333-44445555666g"));
    }

    #[test]
    fn legacy_parent_is_read() {
        let g: Group = serde_json::from_value(serde_json::json!({
            "pk": "3f2a0c1e-1111-2222-3333-444455556666", "name": "a",
            "parent": "3f2a0c1e111122223333444455556667", "users": []
        }))
        .unwrap();
        assert_eq!(g.parent_ids(), vec!["3f2a0c1e-1111-2222-3333-444455556667"]);
    }
}
