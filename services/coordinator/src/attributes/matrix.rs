//! The `matrix` part of a group's attributes (README, "Group attributes"):
//!
//! ```yaml
//! reconciler:
//!   matrix:
//!     rooms: ["!abc:example.com", "#team:example.com"]
//!     include_children: false   # also every child room of a listed space
//!     join: invite              # invite | force
//!     on_leave: kick            # kick | ban
//!     grace_period: 2h          # before a removal; 0 = at once
//!     power_level: 50           # optional
//! ```
//!
//! `join`, `on_leave` and `grace_period` left out take the coordinator's
//! defaults (`MATRIX_JOIN_METHOD`, `MATRIX_REMOVE_ACTION`,
//! `MATRIX_GRACE_PERIOD`).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{flag, kind};

const KNOWN_KEYS: [&str; 6] = [
    "rooms",
    "include_children",
    "join",
    "on_leave",
    "grace_period",
    "power_level",
];

/// How a member is brought into a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMethod {
    /// An invite from the bot; the user accepts it.
    Invite,
    /// Joined through the admin API (local users only).
    Force,
}

impl JoinMethod {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "invite" => Ok(Self::Invite),
            "force" => Ok(Self::Force),
            other => Err(format!("`{other}` is not a join method (invite, force)")),
        }
    }
}

/// What happens to a member who lost a room, once the grace period is over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveAction {
    #[default]
    Kick,
    Ban,
}

impl LeaveAction {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "kick" => Ok(Self::Kick),
            "ban" => Ok(Self::Ban),
            other => Err(format!("`{other}` is not a leave action (kick, ban)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kick => "kick",
            Self::Ban => "ban",
        }
    }
}

/// What one group grants in Matrix; unset policies take the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatrixSpec {
    /// Room ids (`!…:server`) or aliases (`#…:server`), as written.
    pub rooms: Vec<String>,
    pub include_children: bool,
    pub join: Option<JoinMethod>,
    pub on_leave: Option<LeaveAction>,
    pub grace_period: Option<Duration>,
    pub power_level: Option<i64>,
}

/// Parses `reconciler.matrix`.
pub fn parse_matrix(value: &Value) -> Result<MatrixSpec, String> {
    let Value::Object(map) = value else {
        return Err(format!("`matrix` must be a mapping, got {}", kind(value)));
    };
    if let Some(unknown) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `matrix.{unknown}` (known: {})",
            KNOWN_KEYS.join(", ")
        ));
    }
    let rooms = match map.get("rooms") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(room) => room_reference(room),
                other => Err(format!(
                    "`matrix.rooms` entries must be strings, got {}",
                    kind(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(room)) => vec![room_reference(room)?],
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(format!(
                "`matrix.rooms` must be a list, got {}",
                kind(other)
            ));
        }
    };
    if rooms.is_empty() {
        return Err("`matrix.rooms` names no room".into());
    }
    let text = |field: &str| -> Result<Option<&str>, String> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!(
                "`matrix.{field}` must be a string, got {}",
                kind(other)
            )),
        }
    };
    let join = text("join")?
        .map(JoinMethod::parse)
        .transpose()
        .map_err(|e| format!("`matrix.join`: {e}"))?;
    let on_leave = text("on_leave")?
        .map(LeaveAction::parse)
        .transpose()
        .map_err(|e| format!("`matrix.on_leave`: {e}"))?;
    let grace_period = match map.get("grace_period") {
        None | Some(Value::Null) => None,
        Some(value) => Some(parse_grace(value).map_err(|e| format!("`matrix.grace_period`: {e}"))?),
    };
    let power_level = match map.get("power_level") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(level) if (0..=100).contains(&level) => Some(level),
            _ => {
                return Err(format!(
                    "`matrix.power_level: {n}` is not a power level from 0 to 100"
                ));
            }
        },
        Some(other) => {
            return Err(format!(
                "`matrix.power_level` must be a number, got {}",
                kind(other)
            ));
        }
    };
    Ok(MatrixSpec {
        rooms,
        include_children: flag(map.get("include_children"), "matrix.include_children")?,
        join,
        on_leave,
        grace_period,
        power_level,
    })
}

/// A room id or alias. An alias is `#local:server`. A room id is
/// `!opaque:server` up to room version 11, and from room version 12 (what
/// Synapse creates by default since 1.16x) `!` and the create event's hash
/// alone, with no server part. Synapse judges the rest; this only keeps
/// obvious mistakes (a bare name, a user ID) out of the ledger and the
/// agent's requests.
pub fn room_reference(room: &str) -> Result<String, String> {
    let room = room.trim();
    let with_server = |rest: &str| {
        rest.split_once(':')
            .is_some_and(|(local, server)| !local.is_empty() && !server.is_empty())
    };
    let well_formed = match (room.strip_prefix('#'), room.strip_prefix('!')) {
        (Some(alias), _) => with_server(alias),
        (_, Some(id)) if id.contains(':') => with_server(id),
        // Room version 12: no server part.
        (_, Some(id)) => !id.is_empty(),
        _ => false,
    };
    let shaped = well_formed && room.len() <= 255 && !room.contains(['|', ' ', '\n']);
    if shaped {
        Ok(room.to_owned())
    } else {
        Err(format!(
            "`{room}` is not a room id (`!abc:example.com`) or alias (`#team:example.com`)"
        ))
    }
}

/// `2h`, `30m`, `1h 30m`, `90s`, `0`, or a number of seconds.
pub fn parse_grace(value: &Value) -> Result<Duration, String> {
    match value {
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{n} is not a number of seconds")),
        Value::String(s) if s.trim() == "0" => Ok(Duration::ZERO),
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("`{s}` is not a duration like 2h or 30m: {e}")),
        other => Err(format!("must be a duration like 2h, got {}", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_spec() {
        let spec = parse_matrix(&json!({
            "rooms": ["!abc:example.com", "#team:example.com"], "include_children": true,
            "join": "force", "on_leave": "ban", "grace_period": "2h", "power_level": 50
        }))
        .unwrap();
        assert_eq!(spec.rooms, ["!abc:example.com", "#team:example.com"]);
        assert!(spec.include_children);
        assert_eq!(spec.join, Some(JoinMethod::Force));
        assert_eq!(spec.on_leave, Some(LeaveAction::Ban));
        assert_eq!(spec.grace_period, Some(Duration::from_secs(7200)));
        assert_eq!(spec.power_level, Some(50));
    }

    #[test]
    fn room_ids_of_every_room_version_are_accepted() {
        // Up to room version 11 the id names a server; from version 12
        // (Synapse's default room version now) it is the create event's
        // hash alone.
        for room in [
            "!abc:example.com",
            "!C3PRI2zxFwPcs8djZorHLYm9NjfXy8I5e-vog6q1oSw",
            "#team:example.com",
        ] {
            assert_eq!(room_reference(room).as_deref(), Ok(room));
            let spec = parse_matrix(&json!({ "rooms": [room] })).unwrap();
            assert_eq!(spec.rooms, [room]);
        }
    }

    #[test]
    fn unset_policies_are_left_to_the_defaults() {
        let spec = parse_matrix(&json!({"rooms": ["#team:example.com"]})).unwrap();
        assert_eq!(
            (spec.join, spec.on_leave, spec.grace_period),
            (None, None, None)
        );
        assert_eq!(
            parse_grace(&json!("0")).unwrap(),
            Duration::ZERO,
            "0 removes at once"
        );
        assert_eq!(parse_grace(&json!(90)).unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn bad_values_are_clear_errors() {
        for (input, expected) in [
            (json!("x"), "must be a mapping"),
            (
                json!({"rooms": ["#a:b"], "joins": "force"}),
                "unknown key `matrix.joins`",
            ),
            (json!({"rooms": []}), "names no room"),
            (json!({"rooms": ["team"]}), "is not a room id"),
            (json!({"rooms": ["@alice:example.com"]}), "is not a room id"),
            (json!({"rooms": ["#team"]}), "is not a room id"),
            (json!({"rooms": ["!"]}), "is not a room id"),
            (json!({"rooms": ["!abc:"]}), "is not a room id"),
            (
                json!({"rooms": ["#a:b"], "join": "knock"}),
                "not a join method",
            ),
            (
                json!({"rooms": ["#a:b"], "on_leave": "mute"}),
                "not a leave action",
            ),
            (
                json!({"rooms": ["#a:b"], "grace_period": "soon"}),
                "not a duration",
            ),
            (
                json!({"rooms": ["#a:b"], "power_level": 150}),
                "from 0 to 100",
            ),
            (
                json!({"rooms": ["#a:b"], "include_children": "yes"}),
                "true or false",
            ),
        ] {
            let err = parse_matrix(&input).unwrap_err();
            assert!(err.contains(expected), "{input}: {err}");
        }
    }
}
