//! Synapse, as the agent needs it: the [`MatrixApi`] trait (so an in-memory
//! fake can stand in for Synapse) and [`SynapseClient`], its implementation
//! over Synapse's client and admin HTTP APIs.
//!
//! Room arguments are room IDs (`!…`); [`MatrixApi::room_id`] resolves an
//! alias first. Reads go through admin APIs where one exists (joined
//! members, room state), so they work whether or not the bot is in the
//! room; writes that are events in the room (invite, kick, ban, unban,
//! power levels) go through the client API as the bot, so the bot must be
//! joined there with enough power.

mod client;
mod http;
mod paths;
mod state;
mod stats;

use async_trait::async_trait;

use crate::error::Result;

pub use client::SynapseClient;
pub use http::{ClientConfig, RateLimitPolicy};
pub use state::{Member, Membership, PowerLevels, RoomState};
pub use stats::CallStats;

/// What a force-join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceJoin {
    Joined,
    /// The user was joined before: Synapse's 403 "already in the room".
    AlreadyJoined,
}

/// What a kick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Joined or invited before, `leave` now.
    Kicked,
    /// Nothing to kick: Synapse's 403 "The target user is not in the room".
    NotInRoom,
}

/// Whether a read–modify–write wrote anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Changed,
    Unchanged,
}

/// A local account as Synapse's admin API sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Absent,
    Active,
    Deactivated,
}

/// What creating a linked account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedAccount {
    Created,
    /// The account existed; the link was added to it.
    Linked,
}

/// The Synapse operations a membership reconciler needs.
#[async_trait]
pub trait MatrixApi: Send + Sync {
    /// The bot's own user ID (`/account/whoami`): proves the token works.
    async fn whoami(&self) -> Result<String>;

    /// Synapse's version (`/_synapse/admin/v1/server_version`).
    async fn server_version(&self) -> Result<String>;

    /// The room ID of a room ID or an alias (`#name:server`). An unknown
    /// alias is a permanent error.
    async fn room_id(&self, room: &str) -> Result<String>;

    /// Users whose membership is `join` (admin API; lists joined only).
    async fn joined_members(&self, room_id: &str) -> Result<Vec<String>>;

    /// Memberships of every kind, power levels and space children.
    async fn room_state(&self, room_id: &str) -> Result<RoomState>;

    /// `user_id`'s membership in `room_id` (their one `m.room.member`
    /// event), `None` when they never had one. What a change diffs
    /// against: one event, however many members the room has.
    async fn membership_of(&self, room_id: &str, user_id: &str) -> Result<Option<Membership>> {
        Ok(self.room_state(room_id).await?.membership(user_id).cloned())
    }

    /// The rooms a space lists as children (`m.space.child` state events
    /// that still have `via`), direct children only.
    async fn space_children(&self, space_id: &str) -> Result<Vec<String>> {
        Ok(self.room_state(space_id).await?.space_children)
    }

    /// Invites `user_id` as the bot. Inviting an invited user again is a
    /// success (Synapse treats it as a no-op).
    async fn invite(&self, room_id: &str, user_id: &str, reason: Option<&str>) -> Result<()>;

    /// Joins a local user through the admin API; in a room that is not
    /// public Synapse invites them from the bot's account first.
    async fn force_join(&self, room_id: &str, user_id: &str) -> Result<ForceJoin>;

    async fn kick(&self, room_id: &str, user_id: &str, reason: &str) -> Result<Kick>;

    async fn ban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()>;

    async fn unban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()>;

    /// Sets the user's entry in `m.room.power_levels` (`None` removes it, so
    /// the room's `users_default` applies), keeping every other field.
    async fn set_power_level(
        &self,
        room_id: &str,
        user_id: &str,
        level: Option<i64>,
    ) -> Result<Change>;

    /// The user linked to `external_id` by an SSO provider
    /// (`oidc-<idp_id>`), if any.
    async fn user_by_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> Result<Option<String>>;

    async fn account(&self, user_id: &str) -> Result<Account>;

    /// Creates `user_id` (without a password: SSO only) linked to
    /// `external_id`, so the user's first SSO login lands in it; links it
    /// when it exists already.
    async fn create_linked_account(
        &self,
        user_id: &str,
        auth_provider: &str,
        external_id: &str,
        displayname: Option<&str>,
    ) -> Result<LinkedAccount>;

    /// Lifts every rate limit keyed on `user_id` (`override_ratelimit` with
    /// 0 messages per second).
    async fn exempt_from_rate_limits(&self, user_id: &str) -> Result<()>;
}
