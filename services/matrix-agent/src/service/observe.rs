//! Observe: what Synapse holds for the rooms, users and SSO links asked
//! about. Each room, user and link stands alone: one that cannot be read
//! carries its error and the others are still answered.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    MatrixAccount, MatrixExternalId, MatrixExternalIdLink, MatrixObserveRequest,
    MatrixObserveResponse, MatrixRoom, MatrixUser, ObserveError, Unavailable,
};

use crate::error::{Error, Result};
use crate::synapse::{Account, MatrixApi, Membership};

/// Rooms, users and links read at once.
const READ_CONCURRENCY: usize = 4;

/// Levels the spec assumes when `m.room.power_levels` does not say.
const DEFAULT_INVITE: i64 = 0;
const DEFAULT_KICK_BAN: i64 = 50;
const DEFAULT_STATE: i64 = 50;

pub(super) async fn observe(
    api: &dyn MatrixApi,
    req: MatrixObserveRequest,
) -> MatrixObserveResponse {
    // Whoami first: with Synapse down or the token refused, nothing else
    // can be read either, and the coordinator learns why once.
    let health = async { Ok::<_, Error>((api.whoami().await?, api.server_version().await?)) };
    let (bot, server_version) = match health.await {
        Ok(health) => health,
        Err(e) => {
            return MatrixObserveResponse {
                unavailable: Some(unavailable(&e)),
                ..Default::default()
            };
        }
    };
    let mut asked = BTreeSet::new();
    let rooms: Vec<String> = req
        .rooms
        .into_iter()
        .filter(|r| asked.insert(r.clone()))
        .collect();
    let mut rooms = read_rooms(api, &bot, rooms.into_iter().map(|r| (r, String::new()))).await;
    if req.include_children {
        let mut known: BTreeSet<String> = rooms.iter().map(|r| r.room_id.clone()).collect();
        let children: Vec<(String, String)> = rooms
            .iter()
            .flat_map(|space| {
                let parent = space.room_id.clone();
                space
                    .space_children
                    .iter()
                    .map(move |c| (c.clone(), parent.clone()))
            })
            .filter(|(child, _)| known.insert(child.clone()))
            .collect();
        rooms.extend(read_rooms(api, &bot, children.into_iter()).await);
    }
    let mut errors = Vec::new();
    let users = read_users(api, req.users, &mut errors).await;
    let external_ids = read_links(api, req.external_ids, &mut errors).await;
    MatrixObserveResponse {
        bot_user_id: bot,
        server_version,
        unavailable: None,
        rooms,
        users,
        external_ids,
        errors,
    }
}

fn unavailable(e: &Error) -> Unavailable {
    Unavailable {
        reason: e.to_string(),
        outcome: e.outcome() as i32,
    }
}

/// `(room as asked, parent space id)` pairs, answered in order. Names are
/// resolved first, so a room asked for by alias and by id (the coordinator
/// asks for a group's alias and for the ids in its ledger) is read once.
async fn read_rooms(
    api: &dyn MatrixApi,
    bot: &str,
    rooms: impl Iterator<Item = (String, String)>,
) -> Vec<MatrixRoom> {
    let rooms: Vec<(String, String)> = rooms.collect();
    let names: Vec<String> = rooms.iter().map(|(room, _)| room.clone()).collect();
    let ids: Vec<std::result::Result<String, Unavailable>> = stream::iter(names)
        .map(|room| async move { resolve(api, &room).await.map_err(|e| unavailable(&e)) })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let distinct: BTreeSet<String> = ids.iter().filter_map(|id| id.clone().ok()).collect();
    let reads: BTreeMap<String, std::result::Result<MatrixRoom, Unavailable>> =
        stream::iter(distinct)
            .map(|room_id| async move {
                let read = read_room(api, bot, &room_id).await;
                (room_id, read.map_err(|e| unavailable(&e)))
            })
            .buffered(READ_CONCURRENCY)
            .collect()
            .await;
    rooms
        .into_iter()
        .zip(&ids)
        .map(|((room, parent), id)| {
            let read = id.as_deref().map_err(Clone::clone).and_then(|id| {
                reads
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| Err(Unavailable::default()))
            });
            match read {
                Ok(read) => MatrixRoom {
                    room,
                    parent_space: parent,
                    ..read
                },
                Err(error) => MatrixRoom {
                    room,
                    parent_space: parent,
                    error: Some(error),
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// The room id of a room asked for by id or alias.
async fn resolve(api: &dyn MatrixApi, room: &str) -> Result<String> {
    if room.trim().is_empty() {
        return Err(Error::invalid("an empty room"));
    }
    api.room_id(room).await
}

/// Members, levels and children of the room `room_id`.
async fn read_room(api: &dyn MatrixApi, bot: &str, room_id: &str) -> Result<MatrixRoom> {
    let room_id = room_id.to_owned();
    let joined = api.joined_members(&room_id).await?;
    let state = api.room_state(&room_id).await?;
    let levels = &state.power_levels;
    let bot_joined = joined.iter().any(|u| u == bot);
    let power = state.power_of(bot);
    let reaches = |needed: i64| bot_joined && power >= needed;
    let power_levels_event = levels
        .0
        .get("events")
        .and_then(|e| e.get("m.room.power_levels"))
        .and_then(serde_json::Value::as_i64)
        .unwrap_or_else(|| levels.level("state_default", DEFAULT_STATE));
    let user_power_levels = levels
        .0
        .get("users")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(user, level)| Some((user.clone(), level.as_i64()?)))
        .collect();
    let with = |m: &Membership| {
        state
            .with_membership(m)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    Ok(MatrixRoom {
        room_id,
        bot_joined,
        bot_power_level: power,
        bot_can_invite: reaches(levels.level("invite", DEFAULT_INVITE)),
        bot_can_kick: reaches(levels.level("kick", DEFAULT_KICK_BAN)),
        bot_can_ban: reaches(levels.level("ban", DEFAULT_KICK_BAN)),
        bot_can_set_power_levels: reaches(power_levels_event),
        invited: with(&Membership::Invite),
        banned: with(&Membership::Ban),
        joined,
        user_power_levels,
        users_default: levels.level("users_default", 0),
        space_children: state.space_children.clone(),
        ..Default::default()
    })
}

async fn read_users(
    api: &dyn MatrixApi,
    users: Vec<String>,
    errors: &mut Vec<ObserveError>,
) -> Vec<MatrixUser> {
    let read: Vec<(String, Result<Account>)> = stream::iter(users)
        .map(|user| async move {
            let account = if valid_user_id(&user) {
                api.account(&user).await
            } else {
                Err(Error::invalid(format!("`{user}` is not a Matrix ID")))
            };
            (user, account)
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut found = Vec::new();
    for (user_id, account) in read {
        match account {
            Ok(account) => found.push(MatrixUser {
                user_id,
                account: match account {
                    Account::Absent => MatrixAccount::Absent,
                    Account::Active => MatrixAccount::Active,
                    Account::Deactivated => MatrixAccount::Deactivated,
                } as i32,
            }),
            Err(e) => errors.push(observe_error("user", user_id, &e)),
        }
    }
    found
}

async fn read_links(
    api: &dyn MatrixApi,
    links: Vec<MatrixExternalId>,
    errors: &mut Vec<ObserveError>,
) -> Vec<MatrixExternalIdLink> {
    let read: Vec<(MatrixExternalId, Result<Option<String>>)> = stream::iter(links)
        .map(|link| async move {
            let user = api
                .user_by_external_id(&link.auth_provider, &link.external_id)
                .await;
            (link, user)
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut found = Vec::new();
    for (link, user) in read {
        match user {
            Ok(user) => found.push(MatrixExternalIdLink {
                auth_provider: link.auth_provider,
                external_id: link.external_id,
                user_id: user.unwrap_or_default(),
            }),
            Err(e) => {
                let subject = format!("{}/{}", link.auth_provider, link.external_id);
                errors.push(observe_error("external_id", subject, &e));
            }
        }
    }
    found
}

fn observe_error(resource: &str, subject: String, e: &Error) -> ObserveError {
    ObserveError {
        resource: resource.to_owned(),
        subject,
        message: e.to_string(),
        outcome: e.outcome() as i32,
    }
}

/// `@localpart:server`, as far as a path segment needs: Synapse judges the rest.
pub(super) fn valid_user_id(user_id: &str) -> bool {
    user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| !local.is_empty() && !server.is_empty())
}
