//! A room's current state, read from Synapse's admin state API
//! (`{"state": [event, …]}`), reduced to what membership reconciling needs.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    Join,
    Invite,
    Leave,
    Ban,
    Knock,
    Other(String),
}

impl Membership {
    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "join" => Self::Join,
            "invite" => Self::Invite,
            "leave" => Self::Leave,
            "ban" => Self::Ban,
            "knock" => Self::Knock,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// One user's `m.room.member` state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub membership: Membership,
    /// Who sent the event: the user themselves, the bot, a room admin.
    pub sender: String,
    pub reason: Option<String>,
}

/// The content of `m.room.power_levels`, kept whole: a read–modify–write
/// must send back every field it did not mean to change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerLevels(pub Map<String, Value>);

impl PowerLevels {
    /// The user's explicit entry in `users`, if any.
    pub fn user_entry(&self, user_id: &str) -> Option<i64> {
        self.0.get("users")?.get(user_id)?.as_i64()
    }

    /// The level that applies to the user (their entry, else `users_default`).
    /// Room v12 creators have no entry and unlimited power; this does not
    /// know who created the room.
    pub fn user_level(&self, user_id: &str) -> i64 {
        self.user_entry(user_id)
            .unwrap_or_else(|| self.level("users_default", 0))
    }

    /// A top-level level (`invite`, `kick`, `ban`, …), with the spec's default.
    pub fn level(&self, key: &str, default: i64) -> i64 {
        self.0.get(key).and_then(Value::as_i64).unwrap_or(default)
    }

    /// Sets (`Some`) or removes (`None`) the user's entry; `false` when that
    /// is already so.
    pub(crate) fn set_user(&mut self, user_id: &str, level: Option<i64>) -> bool {
        if self.user_entry(user_id) == level {
            return false;
        }
        let users = self
            .0
            .entry("users")
            .or_insert_with(|| Value::Object(Map::new()));
        if !users.is_object() {
            *users = Value::Object(Map::new());
        }
        if let Value::Object(users) = users {
            match level {
                Some(level) => {
                    users.insert(user_id.to_owned(), Value::from(level));
                }
                None => {
                    users.remove(user_id);
                }
            }
        }
        true
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomState {
    /// Every user with an `m.room.member` event, by user ID.
    pub members: BTreeMap<String, Member>,
    pub power_levels: PowerLevels,
    /// Child room IDs if the room is a space (or lists children anyway).
    pub space_children: Vec<String>,
    /// From `m.room.create`: the room version, and its creator with any
    /// `additional_creators`.
    pub room_version: String,
    pub creators: Vec<String>,
}

impl RoomState {
    pub fn membership(&self, user_id: &str) -> Option<&Membership> {
        self.members.get(user_id).map(|m| &m.membership)
    }

    /// The power that applies to `user_id`. From room version 12 on,
    /// creators have no entry in `users` and outrank every level, so they
    /// get `i64::MAX`.
    pub fn power_of(&self, user_id: &str) -> i64 {
        let v12 = self.room_version.parse::<u32>().is_ok_and(|v| v >= 12);
        if v12 && self.creators.iter().any(|c| c == user_id) {
            return i64::MAX;
        }
        self.power_levels.user_level(user_id)
    }

    /// Users holding `membership`.
    pub fn with_membership(&self, membership: &Membership) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, m)| &m.membership == membership)
            .map(|(user, _)| user.as_str())
            .collect()
    }
}

#[derive(Deserialize)]
struct StateEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    state_key: String,
    #[serde(default)]
    sender: String,
    #[serde(default)]
    content: Value,
}

/// The admin state API's answer as a [`RoomState`]. Events of other types
/// are ignored; malformed ones too, rather than failing the whole room.
pub(crate) fn parse_state(body: &Value) -> RoomState {
    let mut state = RoomState::default();
    let events = body.get("state").and_then(Value::as_array);
    for event in events.into_iter().flatten() {
        let Ok(event) = StateEvent::deserialize(event) else {
            continue;
        };
        match event.kind.as_str() {
            "m.room.member" => {
                let Some(membership) = event.content.get("membership").and_then(Value::as_str)
                else {
                    continue;
                };
                let reason = event
                    .content
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                state.members.insert(
                    event.state_key,
                    Member {
                        membership: Membership::parse(membership),
                        sender: event.sender,
                        reason,
                    },
                );
            }
            "m.room.power_levels" if event.state_key.is_empty() => {
                if let Value::Object(content) = event.content {
                    state.power_levels = PowerLevels(content);
                }
            }
            "m.room.create" if event.state_key.is_empty() => {
                state.room_version = event
                    .content
                    .get("room_version")
                    .and_then(Value::as_str)
                    // The spec's default when the field is absent.
                    .unwrap_or("1")
                    .to_owned();
                state.creators.push(event.sender);
                let more = event.content.get("additional_creators");
                let more = more.and_then(Value::as_array).into_iter().flatten();
                state
                    .creators
                    .extend(more.filter_map(Value::as_str).map(str::to_owned));
            }
            // A removed child is an event with empty content (no `via`).
            "m.space.child" => {
                let has_via = event
                    .content
                    .get("via")
                    .and_then(Value::as_array)
                    .is_some_and(|via| !via.is_empty());
                if has_via {
                    state.space_children.push(event.state_key);
                }
            }
            _ => {}
        }
    }
    state.space_children.sort();
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn members_power_levels_and_live_children_are_read() {
        let body = json!({"state": [
            {"type": "m.room.member", "state_key": "@a:x", "sender": "@a:x", "content": {"membership": "join"}},
            {"type": "m.room.member", "state_key": "@b:x", "sender": "@bot:x", "content": {"membership": "ban", "reason": "left group"}},
            {"type": "m.room.power_levels", "state_key": "", "sender": "@bot:x", "content": {"users": {"@a:x": 50}, "kick": 50, "historical": true}},
            {"type": "m.space.child", "state_key": "!c1:x", "sender": "@bot:x", "content": {"via": ["x"]}},
            {"type": "m.space.child", "state_key": "!gone:x", "sender": "@bot:x", "content": {}},
            {"type": "m.room.topic", "state_key": "", "sender": "@bot:x", "content": {"topic": "t"}},
            {"no type": true}
        ]});
        let state = parse_state(&body);
        assert_eq!(state.membership("@a:x"), Some(&Membership::Join));
        let banned = &state.members["@b:x"];
        assert_eq!(banned.membership, Membership::Ban);
        assert_eq!(banned.reason.as_deref(), Some("left group"));
        assert_eq!(state.with_membership(&Membership::Ban), vec!["@b:x"]);
        assert_eq!(state.power_levels.user_level("@a:x"), 50);
        assert_eq!(state.power_levels.user_level("@b:x"), 0);
        assert_eq!(state.space_children, vec!["!c1:x"]);
        assert_eq!(state.power_of("@bot:x"), 0);
    }

    #[test]
    fn room_v12_creators_outrank_every_level() {
        let create = |version: &str| {
            json!({"state": [
                {"type": "m.room.create", "state_key": "", "sender": "@bot:x", "content": {"room_version": version, "additional_creators": ["@co:x"]}},
                {"type": "m.room.power_levels", "state_key": "", "sender": "@bot:x", "content": {"users": {"@a:x": 50}}}
            ]})
        };
        let v12 = parse_state(&create("12"));
        assert_eq!(v12.power_of("@bot:x"), i64::MAX);
        assert_eq!(v12.power_of("@co:x"), i64::MAX);
        assert_eq!(v12.power_of("@a:x"), 50);
        assert_eq!(parse_state(&create("10")).power_of("@bot:x"), 0);
    }

    #[test]
    fn setting_a_level_keeps_every_other_field() {
        let mut levels = PowerLevels(
            json!({"users": {"@a:x": 50}, "ban": 50, "custom": {"k": 1}})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(!levels.set_user("@a:x", Some(50)));
        assert!(levels.set_user("@b:x", Some(20)));
        assert!(levels.set_user("@a:x", None));
        assert!(!levels.set_user("@a:x", None));
        assert_eq!(
            Value::Object(levels.0),
            json!({"users": {"@b:x": 20}, "ban": 50, "custom": {"k": 1}})
        );
    }
}
