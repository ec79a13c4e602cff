//! Matrix: room membership, power levels, the bans we made and the
//! accounts we created.
//!
//! Rooms (by id or alias, and a space's children) and users (by SSO link or
//! localpart) are resolved with what the matrix-agent observed; ledger keys
//! are `room_id|user_id`, so a renamed alias or a re-linked user never
//! makes a membership look like someone else's.
//!
//! Ownership: a membership is ours only when the ledger says we made it. A
//! user already in the room (joined on their own, invited by a room admin)
//! when the group granted it is recorded as foreign and never removed. A
//! ban is undone only when the ledger says we banned. A power level is
//! reset only when it is still the level we set.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::attributes::JoinMethod;
use crate::desired::{DesiredState, LeavePolicy, MatrixGrant};
use crate::ledger::{LedgerKey, LedgerRow, LedgerState, keys};
use crate::observed::{AccountState, Membership, ObservedMatrix, ObservedRoom};

/// One user's wanted place in one room (by id).
struct Want<'d> {
    grant: &'d MatrixGrant,
    join: JoinMethod,
    power_level: Option<i64>,
    groups: crate::group_set::GroupSet,
}

/// The matrix ledger rows of users in scope, by resource.
#[derive(Default)]
struct Rows<'l> {
    membership: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    power: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    bans: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
    accounts: BTreeMap<&'l LedgerKey, &'l LedgerRow>,
}

impl Rows<'_> {
    fn is_empty(&self) -> bool {
        self.membership.is_empty() && self.power.is_empty() && self.bans.is_empty()
    }
}

pub(super) fn plan_matrix(
    desired: &DesiredState,
    observed: &Observed,
    ledger: &[LedgerRow],
    clock: &GraceClock,
    scope: &Scope,
    plan: &mut Plan,
) {
    let mut rows = Rows::default();
    for row in ledger.iter().filter(|r| scope.contains(&r.username)) {
        let map = match row.resource.as_str() {
            "matrix_membership" => &mut rows.membership,
            "matrix_power_level" => &mut rows.power,
            "matrix_ban" => &mut rows.bans,
            "matrix_account" => &mut rows.accounts,
            _ => continue,
        };
        map.insert(&row.key, row);
    }
    let grants: Vec<&MatrixGrant> = desired
        .matrix
        .grants
        .values()
        .filter(|g| scope.contains(&g.user))
        .collect();
    if grants.is_empty() && rows.is_empty() {
        return;
    }
    let Some(matrix) = &observed.matrix else {
        if let Some(why) = observed.unavailable(Resource::MatrixMembership) {
            plan.hold(Resource::MatrixMembership, "", why);
        }
        return;
    };
    let wants = resolve(&grants, matrix, &rows, plan);
    let mut planner = Planner {
        desired,
        matrix,
        clock,
        rows: &rows,
        plan,
    };
    let membership_keys: BTreeSet<&LedgerKey> = wants
        .keys()
        .chain(rows.membership.keys().copied())
        .collect();
    for key in membership_keys {
        planner.membership(key, wants.get(key));
    }
    let power_keys: BTreeSet<&LedgerKey> = wants
        .iter()
        .filter(|(_, w)| w.power_level.is_some())
        .map(|(k, _)| k)
        .chain(rows.power.keys().copied())
        .collect();
    for key in power_keys {
        planner.power_level(key, wants.get(key));
    }
    for (key, row) in &rows.bans {
        planner.ban_record(key, row);
    }
}

/// Grants in terms of room ids and Matrix IDs. Rooms that could not be
/// read are held (nothing planned in them); users without an account wait
/// quietly, or get one when accounts are created.
fn resolve<'d>(
    grants: &[&'d MatrixGrant],
    matrix: &ObservedMatrix,
    rows: &Rows<'_>,
    plan: &mut Plan,
) -> BTreeMap<LedgerKey, Want<'d>> {
    let mut wants: BTreeMap<LedgerKey, Want<'d>> = BTreeMap::new();
    let mut held_rooms = BTreeSet::new();
    let mut accounts_planned = BTreeSet::new();
    for grant in grants {
        let Some(room) = matrix.room(&grant.room) else {
            continue;
        };
        if let Some(why) = &room.error {
            if held_rooms.insert(grant.room.as_str()) {
                plan.hold(Resource::MatrixMembership, &grant.room, why);
            }
            continue;
        }
        let Some(identity) = matrix.identities.get(&grant.user) else {
            continue;
        };
        match identity.account {
            AccountState::Active => {}
            AccountState::Deactivated => continue,
            AccountState::Absent => match &matrix.create_users {
                Some(provider) if !grant.uid.is_empty() => {
                    if accounts_planned.insert(identity.user_id.clone()) {
                        plan_account(grant, &identity.user_id, provider, rows, plan);
                    }
                }
                // Waits quietly until the user's first login makes it.
                _ => continue,
            },
        }
        let children = if grant.include_children {
            room.children.as_slice()
        } else {
            &[]
        };
        for room_id in std::iter::once(&room.room_id).chain(children) {
            let key = keys::matrix(room_id, &identity.user_id);
            let want = wants.entry(key).or_insert_with(|| Want {
                grant,
                join: grant.join,
                power_level: None,
                groups: crate::group_set::GroupSet::new(),
            });
            want.join = want.join.max(grant.join);
            want.power_level = want.power_level.max(grant.power_level);
            want.groups.union_with(&grant.groups);
        }
    }
    wants
}

/// An account for a user who has none, linked to their Authentik `uid`
/// so their first SSO login lands in it.
fn plan_account(
    grant: &MatrixGrant,
    user_id: &str,
    provider: &str,
    rows: &Rows<'_>,
    plan: &mut Plan,
) {
    let key = keys::matrix_account(user_id);
    let localpart = user_id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .map_or("", |(local, _)| local);
    if rows
        .accounts
        .get(&key)
        .is_some_and(|r| r.state == LedgerState::Foreign)
    {
        return;
    }
    plan.steps.push(Step {
        resource: Resource::MatrixAccount,
        key,
        action: Action::Create,
        username: grant.user.clone(),
        groups: grant.groups.clone(),
        target: Target::MatrixAccount {
            user_id: user_id.to_owned(),
            localpart: localpart.to_owned(),
            auth_provider: provider.to_owned(),
            external_id: grant.uid.clone(),
            display_name: grant.display_name.clone(),
        },
        reason: "granted a room and has no Matrix account yet".into(),
    });
}

struct Planner<'a, 'l> {
    desired: &'a DesiredState,
    matrix: &'a ObservedMatrix,
    clock: &'a GraceClock,
    rows: &'a Rows<'l>,
    plan: &'a mut Plan,
}

/// The observed room holding `key`'s membership, if it could be read.
fn room_of<'k, 'm>(
    matrix: &'m ObservedMatrix,
    key: &'k LedgerKey,
) -> Option<(&'k str, &'k str, &'m ObservedRoom)> {
    let (room_id, user_id) = keys::parse_matrix(key)?;
    let room = matrix.room_by_id(room_id)?;
    room.error.is_none().then_some((room_id, user_id, room))
}

impl Planner<'_, '_> {
    fn membership(&mut self, key: &LedgerKey, want: Option<&Want<'_>>) {
        let Some((room_id, user_id, room)) = room_of(self.matrix, key) else {
            return;
        };
        let row = self.rows.membership.get(key).copied();
        let (username, groups) = match (want, row) {
            (Some(w), _) => (w.grant.user.clone(), w.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => return,
        };
        let policy = self.desired.matrix.policy(&groups);
        let target = |join: JoinMethod| Target::MatrixMembership {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            join,
            on_leave: policy.on_leave,
            reason: policy.reason.clone(),
        };
        let step = |action, join, reason: &str| Step {
            resource: Resource::MatrixMembership,
            key: key.clone(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: target(join),
            reason: reason.to_owned(),
        };
        let membership = room.membership(user_id);
        let state = row.map(|r| r.state);
        let Some(want) = want else {
            let removal = step(Action::Delete, JoinMethod::Invite, "");
            self.leave(key, row, membership, &policy, removal);
            return;
        };
        let pending = self.clock.pending(Resource::MatrixMembership, key);
        if pending.is_some() {
            self.plan.steps.push(step(
                Action::Cancel,
                want.join,
                "in a granting group again: the removal is cancelled",
            ));
        }
        let join = want.join;
        match (membership, state) {
            (Membership::Joined | Membership::Invited, None) => self.plan.steps.push(step(
                Action::RecordForeign,
                join,
                "already in the room before a group granted it",
            )),
            (Membership::Joined | Membership::Invited, Some(LedgerState::Intent)) => self
                .plan
                .steps
                .push(step(Action::Adopt, join, "made by an earlier run")),
            // Granted by force now, invited by us before: join them.
            (Membership::Invited, Some(LedgerState::Created)) if join == JoinMethod::Force => self
                .plan
                .steps
                .push(step(Action::Update, join, "the group now joins by force")),
            (Membership::Joined | Membership::Invited, Some(_)) => {}
            (Membership::Banned, _) => {
                if self.rows.bans.contains_key(key) {
                    self.plan.steps.push(Step {
                        resource: Resource::MatrixBan,
                        key: key.clone(),
                        action: Action::Delete,
                        username: username.clone(),
                        groups: groups.clone(),
                        target: Target::MatrixBan {
                            room_id: room_id.to_owned(),
                            user_id: user_id.to_owned(),
                        },
                        reason: "entitled again: lift the ban we set".into(),
                    });
                    self.plan.steps.push(step(
                        Action::Create,
                        join,
                        "granted by group, after the unban",
                    ));
                } else {
                    self.plan.warnings.push(format!(
                        "{user_id} is banned from {room_id} by someone else; not joined"
                    ));
                }
            }
            // We brought them in and they left: an invite is not sent
            // again (they declined or left); a forced membership is.
            (Membership::Out, Some(LedgerState::Created)) if join == JoinMethod::Invite => {}
            (Membership::Out, _) => {
                self.plan
                    .steps
                    .push(step(Action::Create, join, "granted by group"))
            }
        }
    }

    /// A membership nobody grants any more: ours is removed once its grace
    /// period is over; a person's is only forgotten.
    fn leave(
        &mut self,
        key: &LedgerKey,
        row: Option<&LedgerRow>,
        membership: Membership,
        policy: &LeavePolicy,
        removal: Step,
    ) {
        let Some(row) = row else { return };
        let in_room = matches!(membership, Membership::Joined | Membership::Invited);
        if row.state == LedgerState::Foreign || !in_room {
            let why = if row.state == LedgerState::Foreign {
                "not granted any more; a person's membership stays"
            } else {
                "already out of the room"
            };
            self.plan.steps.push(Step {
                action: Action::Forget,
                reason: why.into(),
                ..removal
            });
            return;
        }
        let now = self.clock.now_millis;
        let grace = i64::try_from(policy.grace_period.as_millis()).unwrap_or(i64::MAX);
        let (action, reason) = match self.clock.pending(Resource::MatrixMembership, key) {
            Some(due) if due <= now => (Action::Delete, "grace period over: no longer granted"),
            Some(_) => return,
            None if grace == 0 => (Action::Delete, "no longer granted"),
            None => (
                Action::Defer {
                    due_at: now.saturating_add(grace),
                },
                "no longer granted: removal after the grace period",
            ),
        };
        self.plan.steps.push(Step {
            action,
            reason: reason.into(),
            ..removal
        });
    }

    fn power_level(&mut self, key: &LedgerKey, want: Option<&Want<'_>>) {
        let Some((room_id, user_id, room)) = room_of(self.matrix, key) else {
            return;
        };
        let row = self.rows.power.get(key).copied();
        let wanted = want.and_then(|w| w.power_level);
        let (username, groups) = match (want, row) {
            (Some(w), _) => (w.grant.user.clone(), w.groups.clone()),
            (None, Some(r)) => (r.username.clone(), r.groups.clone()),
            (None, None) => return,
        };
        let step = |action, level: Option<i64>, reason: &str| Step {
            resource: Resource::MatrixPowerLevel,
            key: key.clone(),
            action,
            username: username.clone(),
            groups: groups.clone(),
            target: Target::MatrixPowerLevel {
                room_id: room_id.to_owned(),
                user_id: user_id.to_owned(),
                level,
            },
            reason: reason.to_owned(),
        };
        let explicit = room.power_levels.get(user_id).copied();
        let effective = explicit.unwrap_or(room.users_default);
        let ours: Option<i64> = row.and_then(|r| r.remote_id.parse().ok());
        let state = row.map(|r| r.state);
        let steps = &mut self.plan.steps;
        match (wanted, state) {
            (_, Some(LedgerState::Foreign)) if wanted.is_none() => steps.push(step(
                Action::Forget,
                None,
                "not granted any more; a person's power level stays",
            )),
            (_, Some(LedgerState::Foreign)) => {}
            (Some(level), None) if effective >= level => {}
            (Some(level), None) => {
                steps.push(step(Action::Create, Some(level), "granted by group"))
            }
            (Some(level), Some(LedgerState::Intent)) if explicit == Some(level) => {
                steps.push(step(Action::Adopt, Some(level), "set by an earlier run"))
            }
            (Some(level), Some(LedgerState::Intent)) => {
                steps.push(step(Action::Create, Some(level), "granted by group"))
            }
            (Some(level), Some(_)) if explicit == Some(level) => {}
            (Some(level), Some(_)) if explicit == ours => steps.push(step(
                Action::Update,
                Some(level),
                "the group's power level changed",
            )),
            // Someone changed the level we set: theirs from now on.
            (Some(_), Some(_)) => steps.push(step(
                Action::RecordForeign,
                explicit,
                "changed by a room admin; left as they set it",
            )),
            // The step names the level it takes away (ours), so the ledger
            // row that recorded it is the one the reset removes.
            (None, Some(LedgerState::Created)) if explicit.is_some() && explicit == ours => steps
                .push(step(
                    Action::Delete,
                    ours,
                    "no longer granted: room default",
                )),
            (None, Some(_)) => steps.push(step(
                Action::Forget,
                None,
                "no longer granted; the level is not the one we set",
            )),
            (None, None) => {}
        }
    }

    /// A ban we set stays recorded while it stands; once someone lifted it
    /// the record goes.
    fn ban_record(&mut self, key: &LedgerKey, row: &LedgerRow) {
        let Some((room_id, user_id, room)) = room_of(self.matrix, key) else {
            return;
        };
        if room.membership(user_id) == Membership::Banned {
            return;
        }
        self.plan.steps.push(Step {
            resource: Resource::MatrixBan,
            key: key.clone(),
            action: Action::Forget,
            username: row.username.clone(),
            groups: row.groups.clone(),
            target: Target::MatrixBan {
                room_id: room_id.to_owned(),
                user_id: user_id.to_owned(),
            },
            reason: "the ban was lifted".into(),
        });
    }
}

#[cfg(test)]
mod tests;
