//! What the matrix-agent reported about rooms and users.

use std::collections::{BTreeMap, BTreeSet};

use super::Unavailable;

/// Synapse as observed this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedMatrix {
    /// The server part of the bot's ID: where Authentik users' accounts live.
    pub server_name: String,
    /// By room as asked (an id or an alias), and each child by its id.
    pub rooms: BTreeMap<String, ObservedRoom>,
    /// Directory users whose Matrix ID is known, by Authentik username.
    pub identities: BTreeMap<String, MatrixIdentity>,
    /// `MATRIX_CREATE_USERS`: accounts missing are created, linked at this
    /// SSO provider (`oidc-<idp_id>`); `None`: they wait for a first login.
    pub create_users: Option<String>,
}

impl ObservedMatrix {
    /// The room `room` (as asked or by id), once it could be read.
    pub fn room(&self, room: &str) -> Option<&ObservedRoom> {
        self.rooms.get(room)
    }

    /// The observed room whose id is `room_id`.
    pub fn room_by_id(&self, room_id: &str) -> Option<&ObservedRoom> {
        self.rooms
            .get(room_id)
            .filter(|r| r.room_id == room_id)
            .or_else(|| self.rooms.values().find(|r| r.room_id == room_id))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedRoom {
    pub room_id: String,
    /// Why the room could not be read; nothing else is then known of it.
    pub error: Option<Unavailable>,
    pub joined: BTreeSet<String>,
    pub invited: BTreeSet<String>,
    pub banned: BTreeSet<String>,
    /// Explicit `m.room.power_levels` entries, and the room's default.
    pub power_levels: BTreeMap<String, i64>,
    pub users_default: i64,
    /// Child room ids, when the room is a space.
    pub children: Vec<String>,
}

/// A user's membership as the room state shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Joined,
    Invited,
    Banned,
    /// Left, kicked, never there.
    Out,
}

impl ObservedRoom {
    pub fn membership(&self, user_id: &str) -> Membership {
        if self.joined.contains(user_id) {
            Membership::Joined
        } else if self.invited.contains(user_id) {
            Membership::Invited
        } else if self.banned.contains(user_id) {
            Membership::Banned
        } else {
            Membership::Out
        }
    }
}

/// Which Matrix account a directory user has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixIdentity {
    pub user_id: String,
    pub account: AccountState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountState {
    /// No such account yet: nothing can be joined for them.
    Absent,
    Active,
    Deactivated,
}
