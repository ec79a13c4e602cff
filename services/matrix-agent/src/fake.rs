//! An in-memory Synapse behind [`MatrixApi`], for tests that run the agent
//! in process. It answers the way Synapse does where the agent depends on
//! it: an unknown room or alias is a 404 `M_NOT_FOUND`, force-joining a
//! joined user is Synapse's 403 "already in the room", kicking someone not
//! in the room its 403 "not in the room"; a switch makes every call fail
//! (Synapse down, the token refused).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::synapse::{
    Account, Change, ForceJoin, Kick, LinkedAccount, MatrixApi, Member, Membership, RoomState,
};

type Fault = Box<dyn Fn() -> Error + Send + Sync>;

#[derive(Default)]
struct World {
    rooms: BTreeMap<String, RoomState>,
    aliases: BTreeMap<String, String>,
    accounts: BTreeMap<String, Account>,
    /// (auth provider, external id) → user ID.
    links: BTreeMap<(String, String), String>,
    /// Membership and power-level writes, in order, for "nothing was sent".
    writes: Vec<String>,
}

pub struct FakeMatrix {
    bot: String,
    world: Mutex<World>,
    fault: Mutex<Option<Fault>>,
}

impl FakeMatrix {
    /// A Synapse whose bot is `bot` (`@reconciler:example.org`), an admin.
    pub fn new(bot: &str) -> Self {
        let world = World {
            accounts: BTreeMap::from([(bot.to_owned(), Account::Active)]),
            ..World::default()
        };
        Self {
            bot: bot.to_owned(),
            world: Mutex::new(world),
            fault: Mutex::new(None),
        }
    }

    /// A room the bot created and is joined to (power 100), with an alias.
    pub fn add_room(&self, room_id: &str, alias: Option<&str>) {
        let mut world = lock(&self.world);
        let mut state = RoomState {
            room_version: "10".into(),
            creators: vec![self.bot.clone()],
            ..RoomState::default()
        };
        state.power_levels.set_user(&self.bot, Some(100));
        state
            .members
            .insert(self.bot.clone(), member(Membership::Join, &self.bot));
        world.rooms.insert(room_id.to_owned(), state);
        if let Some(alias) = alias {
            world.aliases.insert(alias.to_owned(), room_id.to_owned());
        }
    }

    pub fn add_space_child(&self, space_id: &str, child_id: &str) {
        if let Some(space) = lock(&self.world).rooms.get_mut(space_id) {
            space.space_children.push(child_id.to_owned());
        }
    }

    pub fn add_account(&self, user_id: &str) {
        lock(&self.world)
            .accounts
            .insert(user_id.to_owned(), Account::Active);
    }

    /// Sets a membership as if someone else (a room admin, the user) had.
    pub fn set_membership(&self, room_id: &str, user_id: &str, membership: Membership) {
        if let Some(room) = lock(&self.world).rooms.get_mut(room_id) {
            room.members
                .insert(user_id.to_owned(), member(membership, user_id));
        }
    }

    pub fn membership(&self, room_id: &str, user_id: &str) -> Option<Membership> {
        let world = lock(&self.world);
        let room = world.rooms.get(room_id)?;
        room.membership(user_id).cloned()
    }

    pub fn power_level_entry(&self, room_id: &str, user_id: &str) -> Option<i64> {
        let world = lock(&self.world);
        world.rooms.get(room_id)?.power_levels.user_entry(user_id)
    }

    pub fn linked_user(&self, auth_provider: &str, external_id: &str) -> Option<String> {
        let key = (auth_provider.to_owned(), external_id.to_owned());
        lock(&self.world).links.get(&key).cloned()
    }

    /// Every write so far, as `"<call> <room or user> <user>"`.
    pub fn writes(&self) -> Vec<String> {
        lock(&self.world).writes.clone()
    }

    /// Every call fails with `fault()` from now on.
    pub fn fail_with(&self, fault: impl Fn() -> Error + Send + Sync + 'static) {
        *lock(&self.fault) = Some(Box::new(fault));
    }

    fn check(&self) -> Result<()> {
        match &*lock(&self.fault) {
            Some(fault) => Err(fault()),
            None => Ok(()),
        }
    }

    /// Checks the fault, finds the room and runs `f` on it, noting the write.
    fn write<T>(
        &self,
        call: &'static str,
        room_id: &str,
        user_id: &str,
        f: impl FnOnce(&mut RoomState, &str) -> Result<T>,
    ) -> Result<T> {
        self.check()?;
        let mut world = lock(&self.world);
        let room = world
            .rooms
            .get_mut(room_id)
            .ok_or_else(|| not_found(call, room_id))?;
        let out = f(room, &self.bot)?;
        world.writes.push(format!("{call} {room_id} {user_id}"));
        Ok(out)
    }
}

fn member(membership: Membership, sender: &str) -> Member {
    Member {
        membership,
        sender: sender.to_owned(),
        reason: None,
    }
}

fn not_found(call: &'static str, what: &str) -> Error {
    Error::Permanent {
        call,
        status: 404,
        errcode: "M_NOT_FOUND".into(),
        reason: format!("{what} not found"),
    }
}

fn forbidden(call: &'static str, reason: &str) -> Error {
    Error::Permanent {
        call,
        status: 403,
        errcode: "M_FORBIDDEN".into(),
        reason: reason.to_owned(),
    }
}

fn set(room: &mut RoomState, user_id: &str, m: Membership, bot: &str, reason: &str) {
    let mut member = member(m, bot);
    member.reason = Some(reason.to_owned()).filter(|r| !r.is_empty());
    room.members.insert(user_id.to_owned(), member);
}

#[async_trait]
impl MatrixApi for FakeMatrix {
    async fn whoami(&self) -> Result<String> {
        self.check()?;
        Ok(self.bot.clone())
    }

    async fn server_version(&self) -> Result<String> {
        self.check()?;
        Ok("1.0.0 (fake)".into())
    }

    async fn room_id(&self, room: &str) -> Result<String> {
        if !room.starts_with('#') {
            return Ok(room.to_owned());
        }
        self.check()?;
        let world = lock(&self.world);
        let id = world.aliases.get(room).cloned();
        id.ok_or_else(|| not_found("resolve_alias", room))
    }

    async fn joined_members(&self, room_id: &str) -> Result<Vec<String>> {
        self.check()?;
        let world = lock(&self.world);
        let room = world
            .rooms
            .get(room_id)
            .ok_or_else(|| not_found("joined_members", room_id))?;
        let joined = room.with_membership(&Membership::Join);
        Ok(joined.into_iter().map(str::to_owned).collect())
    }

    async fn room_state(&self, room_id: &str) -> Result<RoomState> {
        self.check()?;
        let world = lock(&self.world);
        let room = world.rooms.get(room_id).cloned();
        room.ok_or_else(|| not_found("room_state", room_id))
    }

    async fn invite(&self, room_id: &str, user_id: &str, reason: Option<&str>) -> Result<()> {
        self.write("invite", room_id, user_id, |room, bot| {
            match room.membership(user_id) {
                Some(Membership::Join) => {
                    return Err(forbidden(
                        "invite",
                        &format!("{user_id} is already in the room."),
                    ));
                }
                Some(Membership::Ban) => {
                    return Err(forbidden(
                        "invite",
                        &format!("{user_id} is banned from the room"),
                    ));
                }
                _ => {}
            }
            set(
                room,
                user_id,
                Membership::Invite,
                bot,
                reason.unwrap_or_default(),
            );
            Ok(())
        })
    }

    async fn force_join(&self, room_id: &str, user_id: &str) -> Result<ForceJoin> {
        self.write("force_join", room_id, user_id, |room, bot| {
            Ok(match room.membership(user_id) {
                Some(Membership::Join) => ForceJoin::AlreadyJoined,
                Some(Membership::Ban) => {
                    return Err(forbidden("force_join", "You are banned from this room"));
                }
                _ => {
                    set(room, user_id, Membership::Join, bot, "");
                    ForceJoin::Joined
                }
            })
        })
    }

    async fn kick(&self, room_id: &str, user_id: &str, reason: &str) -> Result<Kick> {
        self.write("kick", room_id, user_id, |room, bot| {
            Ok(match room.membership(user_id) {
                Some(Membership::Join | Membership::Invite | Membership::Knock) => {
                    set(room, user_id, Membership::Leave, bot, reason);
                    Kick::Kicked
                }
                _ => Kick::NotInRoom,
            })
        })
    }

    async fn ban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()> {
        self.write("ban", room_id, user_id, |room, bot| {
            set(room, user_id, Membership::Ban, bot, reason);
            Ok(())
        })
    }

    async fn unban(&self, room_id: &str, user_id: &str, reason: &str) -> Result<()> {
        self.write("unban", room_id, user_id, |room, bot| {
            if room.membership(user_id) == Some(&Membership::Ban) {
                set(room, user_id, Membership::Leave, bot, reason);
            }
            Ok(())
        })
    }

    async fn set_power_level(
        &self,
        room_id: &str,
        user_id: &str,
        level: Option<i64>,
    ) -> Result<Change> {
        self.write("set_power_level", room_id, user_id, |room, _| {
            Ok(if room.power_levels.set_user(user_id, level) {
                Change::Changed
            } else {
                Change::Unchanged
            })
        })
    }

    async fn user_by_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> Result<Option<String>> {
        self.check()?;
        Ok(self.linked_user(auth_provider, external_id))
    }

    async fn account(&self, user_id: &str) -> Result<Account> {
        self.check()?;
        let world = lock(&self.world);
        Ok(world
            .accounts
            .get(user_id)
            .copied()
            .unwrap_or(Account::Absent))
    }

    async fn create_linked_account(
        &self,
        user_id: &str,
        auth_provider: &str,
        external_id: &str,
        _displayname: Option<&str>,
    ) -> Result<LinkedAccount> {
        self.check()?;
        let mut world = lock(&self.world);
        let key = (auth_provider.to_owned(), external_id.to_owned());
        world.links.insert(key, user_id.to_owned());
        world
            .writes
            .push(format!("create_linked_account {user_id}"));
        Ok(
            match world.accounts.insert(user_id.to_owned(), Account::Active) {
                None => LinkedAccount::Created,
                Some(_) => LinkedAccount::Linked,
            },
        )
    }

    async fn exempt_from_rate_limits(&self, _user_id: &str) -> Result<()> {
        self.check()
    }
}

/// Nothing here is left half-updated by a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
