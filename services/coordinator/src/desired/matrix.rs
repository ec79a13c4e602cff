//! Desired Matrix membership: which directory users belong in which rooms,
//! as the groups' `matrix` attributes (and `MATRIX_MAPPINGS`) say. Rooms
//! stay as written and users stay Authentik users here: resolving aliases,
//! space children and Matrix IDs needs Synapse, so the planner does it
//! with what the matrix-agent observed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::attributes::{JoinMethod, LeaveAction, MatrixSpec};
use crate::directory::Person;

/// The coordinator's Matrix settings that shape desired state.
#[derive(Clone, Debug)]
pub struct MatrixDefaults {
    /// `MATRIX_JOIN_METHOD` (default invite).
    pub join: JoinMethod,
    /// `MATRIX_REMOVE_ACTION` (default kick).
    pub on_leave: LeaveAction,
    /// `MATRIX_GRACE_PERIOD` (default 0: at once).
    pub grace_period: Duration,
    /// `MATRIX_MAPPINGS`, merged with the group attributes.
    pub mappings: Vec<MatrixMapping>,
}

impl Default for MatrixDefaults {
    fn default() -> Self {
        Self {
            join: JoinMethod::Invite,
            on_leave: LeaveAction::Kick,
            grace_period: Duration::ZERO,
            mappings: Vec::new(),
        }
    }
}

/// One entry of `MATRIX_MAPPINGS`, the shape mapping-file bots use:
/// `{"group": "<name>", "space": "<room>", "method": "invite|force"}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixMapping {
    /// The Authentik group's name.
    pub group: String,
    /// A room or space, by id or alias.
    pub space: String,
    #[serde(default)]
    pub method: Option<String>,
}

/// Parses `MATRIX_MAPPINGS`, every entry checked.
pub fn parse_mappings(json: &str) -> Result<Vec<MatrixMapping>, String> {
    let mappings: Vec<MatrixMapping> =
        serde_json::from_str(json).map_err(|e| format!("not a JSON list of mappings: {e}"))?;
    for m in &mappings {
        crate::attributes::matrix::room_reference(&m.space)?;
        if let Some(method) = &m.method {
            JoinMethod::parse(method).map_err(|e| format!("group `{}`: {e}", m.group))?;
        }
    }
    Ok(mappings)
}

impl MatrixMapping {
    /// The mapping as the attribute it stands for.
    pub fn spec(&self) -> MatrixSpec {
        MatrixSpec {
            rooms: vec![self.space.trim().to_owned()],
            join: self
                .method
                .as_deref()
                .and_then(|m| JoinMethod::parse(m).ok()),
            ..MatrixSpec::default()
        }
    }
}

/// A user's place in a room (as written), merged over every group that
/// grants it: force beats invite, the highest power level wins, children
/// are included when any group asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatrixGrant {
    pub room: String,
    pub include_children: bool,
    /// The Authentik username.
    pub user: String,
    /// Authentik's `uid`: the user's SSO link in Synapse.
    pub uid: String,
    pub display_name: String,
    pub join: JoinMethod,
    pub power_level: Option<i64>,
    pub groups: crate::group_set::GroupSet,
}

/// What a group does when a member leaves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatrixPolicy {
    pub group_name: String,
    pub on_leave: LeaveAction,
    #[serde(with = "seconds")]
    pub grace_period: Duration,
}

/// Everything the groups grant in Matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredMatrix {
    /// By `room|username`.
    pub grants: BTreeMap<String, MatrixGrant>,
    /// By group UUID: groups with Matrix grants.
    pub policies: BTreeMap<String, MatrixPolicy>,
    /// For a membership whose granting groups are all gone: the defaults.
    pub fallback_on_leave: LeaveAction,
    #[serde(with = "seconds")]
    pub fallback_grace_period: Duration,
}

/// How a membership granted by `groups` ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeavePolicy {
    pub on_leave: LeaveAction,
    pub grace_period: Duration,
    /// The kick or ban reason Synapse records, naming the groups.
    pub reason: String,
}

impl DesiredMatrix {
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty() && self.policies.is_empty()
    }

    /// The removal policy of a membership granted by `groups`: the
    /// strictest action and the longest grace among those groups that
    /// still exist, the defaults when none does.
    pub fn policy(&self, groups: &crate::group_set::GroupSet) -> LeavePolicy {
        let known: Vec<&MatrixPolicy> =
            groups.iter().filter_map(|g| self.policies.get(g)).collect();
        if known.is_empty() {
            return LeavePolicy {
                on_leave: self.fallback_on_leave,
                grace_period: self.fallback_grace_period,
                reason: "no longer in a group granting this room".into(),
            };
        }
        let names: Vec<&str> = known.iter().map(|p| p.group_name.as_str()).collect();
        LeavePolicy {
            on_leave: known.iter().map(|p| p.on_leave).max().unwrap_or_default(),
            grace_period: known
                .iter()
                .map(|p| p.grace_period)
                .max()
                .unwrap_or_default(),
            reason: format!("no longer in group {}", names.join(", ")),
        }
    }

    /// Adds `spec`'s rooms for `members` of the group `group_id`.
    pub fn grant(
        &mut self,
        defaults: &MatrixDefaults,
        group_id: &crate::group_set::GroupId,
        group_name: &str,
        spec: &MatrixSpec,
        members: &[&Person],
    ) {
        let policy = self
            .policies
            .entry(group_id.to_string())
            .or_insert_with(|| MatrixPolicy {
                group_name: group_name.to_owned(),
                on_leave: LeaveAction::Kick,
                grace_period: Duration::ZERO,
            });
        // A group named by both an attribute and a mapping: the stricter
        // leave and the longer grace.
        policy.on_leave = policy
            .on_leave
            .max(spec.on_leave.unwrap_or(defaults.on_leave));
        policy.grace_period = policy
            .grace_period
            .max(spec.grace_period.unwrap_or(defaults.grace_period));
        let join = spec.join.unwrap_or(defaults.join);
        for room in &spec.rooms {
            for person in members {
                let grant = self
                    .grants
                    .entry(format!("{room}|{}", person.username))
                    .or_insert_with(|| MatrixGrant {
                        room: room.clone(),
                        include_children: false,
                        user: person.username.clone(),
                        uid: person.uid.clone(),
                        display_name: person.name.clone(),
                        join,
                        power_level: None,
                        groups: crate::group_set::GroupSet::new(),
                    });
                grant.include_children |= spec.include_children;
                grant.join = grant.join.max(join);
                grant.power_level = grant.power_level.max(spec.power_level);
                grant.groups.insert(group_id.clone());
            }
        }
    }
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str) -> Person {
        Person {
            pk: 1,
            username: name.into(),
            email: format!("{name}@example.com"),
            uid: format!("uid-{name}"),
            name: name.into(),
        }
    }

    #[test]
    fn grants_merge_over_groups() {
        let alice = person("alice");
        let mut m = DesiredMatrix::default();
        let defaults = MatrixDefaults::default();
        let spec = |join, level, grace: u64| MatrixSpec {
            rooms: vec!["#team:example.com".into()],
            join,
            power_level: level,
            grace_period: Some(Duration::from_secs(grace)),
            ..MatrixSpec::default()
        };
        m.grant(
            &defaults,
            &"g1".into(),
            "one",
            &spec(None, Some(10), 60),
            &[&alice],
        );
        m.grant(
            &defaults,
            &"g2".into(),
            "two",
            &spec(Some(JoinMethod::Force), Some(50), 5),
            &[&alice],
        );
        let grant = &m.grants["#team:example.com|alice"];
        assert_eq!(grant.join, JoinMethod::Force);
        assert_eq!(grant.power_level, Some(50));
        assert_eq!(grant.groups.len(), 2);
        assert_eq!(grant.uid, "uid-alice");
        assert_eq!(m.policies["g1"].grace_period, Duration::from_secs(60));
        assert_eq!(m.policies["g2"].grace_period, Duration::from_secs(5));
    }

    #[test]
    fn mappings_are_checked() {
        let ok = parse_mappings(
            r##"[{"group": "team", "space": "#s:example.com", "method": "force"}]"##,
        )
        .unwrap();
        assert_eq!(ok[0].spec().join, Some(JoinMethod::Force));
        assert_eq!(ok[0].spec().rooms, ["#s:example.com"]);
        for (bad, expected) in [
            (r#"{"group": "team"}"#, "not a JSON list"),
            (r#"[{"group": "team", "space": "team"}]"#, "not a room id"),
            (
                r##"[{"group": "t", "space": "#s:e.com", "method": "knock"}]"##,
                "not a join method",
            ),
            (
                r##"[{"group": "t", "space": "#s:e.com", "room": "x"}]"##,
                "unknown field",
            ),
        ] {
            let err = parse_mappings(bad).unwrap_err();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }
}
