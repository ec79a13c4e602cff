use std::collections::BTreeMap;
use std::time::Duration;

use crate::attributes::{JoinMethod, LeaveAction};
use crate::desired::{DesiredState, MatrixGrant, MatrixPolicy};
use crate::ledger::{LedgerRow, LedgerState, keys};
use crate::observed::{
    AccountState, MatrixIdentity, Observed, ObservedMatrix, ObservedRoom, Unavailable,
};
use crate::plan::{Action, GraceClock, Guards, Plan, Resource, Scope, Target, plan_at};

const ROOM: &str = "#team:example.org";
const ROOM_ID: &str = "!team:example.org";
const ALICE: &str = "@alice:example.org";
const HOUR_MS: i64 = 3_600_000;

fn desired(granted: bool, grace: Duration, on_leave: LeaveAction) -> DesiredState {
    let mut d = DesiredState::default();
    d.matrix.policies.insert(
        "g1".into(),
        MatrixPolicy {
            group_name: "team".into(),
            on_leave,
            grace_period: grace,
        },
    );
    if granted {
        d.matrix
            .grants
            .insert(format!("{ROOM}|alice"), grant(JoinMethod::Invite, None));
    }
    d
}

fn grant(join: JoinMethod, power_level: Option<i64>) -> MatrixGrant {
    MatrixGrant {
        room: ROOM.into(),
        include_children: false,
        user: "alice".into(),
        uid: "uid-alice".into(),
        display_name: "Alice".into(),
        join,
        power_level,
        groups: crate::group_set::GroupSet::from(["g1"]),
    }
}

fn room(joined: &[&str], invited: &[&str], banned: &[&str]) -> ObservedRoom {
    let set = |users: &[&str]| users.iter().map(|u| u.to_string()).collect();
    ObservedRoom {
        room_id: ROOM_ID.into(),
        joined: set(joined),
        invited: set(invited),
        banned: set(banned),
        ..ObservedRoom::default()
    }
}

fn observed(room: ObservedRoom) -> Observed {
    Observed {
        matrix: Some(ObservedMatrix {
            server_name: "example.org".into(),
            rooms: BTreeMap::from([(ROOM.to_owned(), room.clone()), (ROOM_ID.to_owned(), room)]),
            identities: BTreeMap::from([(
                "alice".to_owned(),
                MatrixIdentity {
                    user_id: ALICE.into(),
                    account: AccountState::Active,
                },
            )]),
            create_users: None,
        }),
        ..Observed::default()
    }
}

fn row(resource: Resource, state: LedgerState, remote_id: &str) -> LedgerRow {
    LedgerRow {
        resource: resource.as_str().into(),
        key: keys::matrix(ROOM_ID, ALICE),
        state,
        username: "alice".into(),
        groups: crate::group_set::GroupSet::from(["g1"]),
        remote_id: remote_id.into(),
    }
}

fn run(d: &DesiredState, o: &Observed, ledger: &[LedgerRow], clock: &GraceClock) -> Plan {
    plan_at(d, o, ledger, clock, &Scope::All, &Guards::default())
}

fn actions(p: &Plan) -> Vec<(Resource, Action)> {
    p.steps.iter().map(|s| (s.resource, s.action)).collect()
}

fn membership_row() -> Vec<LedgerRow> {
    vec![row(Resource::MatrixMembership, LedgerState::Created, "")]
}

fn at(now_millis: i64, due: Option<i64>) -> GraceClock {
    GraceClock {
        now_millis,
        due: due
            .map(|d| {
                (
                    (
                        Resource::MatrixMembership.as_str().to_owned(),
                        keys::matrix(ROOM_ID, ALICE).to_string(),
                    ),
                    d,
                )
            })
            .into_iter()
            .collect(),
    }
}

#[test]
fn a_member_out_of_the_room_is_invited_once() {
    let d = desired(true, Duration::ZERO, LeaveAction::Kick);
    let p = run(&d, &observed(room(&[], &[], &[])), &[], &at(0, None));
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Create)]);
    assert!(matches!(
        &p.steps[0].target,
        Target::MatrixMembership { room_id, user_id, join: JoinMethod::Invite, .. }
            if room_id == ROOM_ID && user_id == ALICE
    ));
    // Invited (pending) or joined: nothing is sent again.
    for observed_room in [room(&[], &[ALICE], &[]), room(&[ALICE], &[], &[])] {
        let p = run(
            &d,
            &observed(observed_room),
            &membership_row(),
            &at(0, None),
        );
        assert_eq!(actions(&p), []);
    }
}

#[test]
fn someone_already_in_the_room_is_theirs_and_stays_after_leaving() {
    let d = desired(true, Duration::ZERO, LeaveAction::Kick);
    let p = run(&d, &observed(room(&[ALICE], &[], &[])), &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [(Resource::MatrixMembership, Action::RecordForeign)]
    );
    let gone = desired(false, Duration::ZERO, LeaveAction::Kick);
    let foreign = [row(Resource::MatrixMembership, LedgerState::Foreign, "")];
    let p = run(
        &gone,
        &observed(room(&[ALICE], &[], &[])),
        &foreign,
        &at(0, None),
    );
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Forget)]);
}

#[test]
fn a_leaver_is_removed_only_after_the_grace_period() {
    let gone = desired(false, Duration::from_secs(7200), LeaveAction::Kick);
    let in_room = observed(room(&[ALICE], &[], &[]));
    // First seen gone: the removal waits until now + 2h.
    let p = run(&gone, &in_room, &membership_row(), &at(1_000, None));
    assert_eq!(
        actions(&p),
        [(
            Resource::MatrixMembership,
            Action::Defer {
                due_at: 1_000 + 2 * HOUR_MS
            }
        )]
    );
    // Still waiting: nothing.
    let p = run(
        &gone,
        &in_room,
        &membership_row(),
        &at(HOUR_MS, Some(2 * HOUR_MS)),
    );
    assert_eq!(actions(&p), []);
    // Due: kicked, with a reason naming the group.
    let p = run(
        &gone,
        &in_room,
        &membership_row(),
        &at(3 * HOUR_MS, Some(2 * HOUR_MS)),
    );
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Delete)]);
    assert!(matches!(
        &p.steps[0].target,
        Target::MatrixMembership { on_leave: LeaveAction::Kick, reason, .. } if reason.contains("team")
    ));
    // Entitled again before it was due: called off, never removed.
    let back = desired(true, Duration::from_secs(7200), LeaveAction::Kick);
    let p = run(
        &back,
        &in_room,
        &membership_row(),
        &at(HOUR_MS, Some(2 * HOUR_MS)),
    );
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Cancel)]);
}

#[test]
fn without_grace_a_leaver_is_removed_at_once_and_one_who_left_is_forgotten() {
    let gone = desired(false, Duration::ZERO, LeaveAction::Ban);
    let p = run(
        &gone,
        &observed(room(&[ALICE], &[], &[])),
        &membership_row(),
        &at(0, None),
    );
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Delete)]);
    assert!(matches!(
        p.steps[0].target,
        Target::MatrixMembership {
            on_leave: LeaveAction::Ban,
            ..
        }
    ));
    let p = run(
        &gone,
        &observed(room(&[], &[], &[])),
        &membership_row(),
        &at(0, None),
    );
    assert_eq!(actions(&p), [(Resource::MatrixMembership, Action::Forget)]);
}

#[test]
fn our_ban_is_lifted_for_a_member_entitled_again_and_no_one_elses() {
    let d = desired(true, Duration::ZERO, LeaveAction::Ban);
    let banned = observed(room(&[], &[], &[ALICE]));
    let ours = [row(Resource::MatrixBan, LedgerState::Created, "")];
    let p = run(&d, &banned, &ours, &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::MatrixBan, Action::Delete),
            (Resource::MatrixMembership, Action::Create)
        ]
    );
    let p = run(&d, &banned, &[], &at(0, None));
    assert_eq!(actions(&p), []);
    assert!(
        p.warnings.iter().any(|w| w.contains("banned")),
        "{:?}",
        p.warnings
    );
    // Someone lifted our ban: the record goes.
    let p = run(&d, &observed(room(&[ALICE], &[], &[])), &ours, &at(0, None));
    assert!(actions(&p).contains(&(Resource::MatrixBan, Action::Forget)));
}

#[test]
fn nothing_is_removed_or_put_on_a_clock_when_authentik_looks_wrong() {
    let gone = desired(false, Duration::from_secs(60), LeaveAction::Kick);
    let guards = Guards {
        allow_removals: false,
        hold_reason: "user count fell".into(),
        ..Guards::default()
    };
    let in_room = observed(room(&[ALICE], &[], &[]));
    for clock in [at(0, None), at(HOUR_MS, Some(1))] {
        let p = plan_at(
            &gone,
            &in_room,
            &membership_row(),
            &clock,
            &Scope::All,
            &guards,
        );
        assert_eq!(actions(&p), [], "{clock:?}");
    }
}

#[test]
fn an_unreadable_room_is_held_and_nothing_in_it_changes() {
    let gone = desired(false, Duration::ZERO, LeaveAction::Kick);
    let mut broken = room(&[ALICE], &[], &[]);
    broken.error = Some(Unavailable::transient("Synapse is down"));
    let p = run(
        &gone,
        &observed(broken.clone()),
        &membership_row(),
        &at(0, None),
    );
    assert_eq!(actions(&p), []);
    let d = desired(true, Duration::ZERO, LeaveAction::Kick);
    let p = run(&d, &observed(broken), &[], &at(0, None));
    assert_eq!(actions(&p), []);
    assert_eq!(p.held.len(), 1);
    assert_eq!(p.held[0].subject, ROOM);
}

#[test]
fn power_levels_are_set_and_reset_only_while_ours() {
    let mut d = desired(true, Duration::ZERO, LeaveAction::Kick);
    d.matrix
        .grants
        .insert(format!("{ROOM}|alice"), grant(JoinMethod::Invite, Some(50)));
    let joined = room(&[ALICE], &[], &[]);
    let p = run(
        &d,
        &observed(joined.clone()),
        &membership_row(),
        &at(0, None),
    );
    assert_eq!(actions(&p), [(Resource::MatrixPowerLevel, Action::Create)]);
    assert_eq!(p.steps[0].target.remote_id(), "50");

    let gone = desired(false, Duration::ZERO, LeaveAction::Kick);
    let set = [row(Resource::MatrixPowerLevel, LedgerState::Created, "50")];
    let mut with_level = joined.clone();
    with_level.power_levels.insert(ALICE.into(), 50);
    let p = run(&gone, &observed(with_level), &set, &at(0, None));
    assert_eq!(actions(&p), [(Resource::MatrixPowerLevel, Action::Delete)]);
    // The reset names the level it removes, as the ledger row recorded it:
    // the bookkeeping drops the row whose remote id the delete names, so a
    // reset naming none would leave our row behind.
    assert_eq!(p.steps[0].target.remote_id(), set[0].remote_id);
    // A room admin changed it since: theirs, left as it is.
    let mut changed = joined;
    changed.power_levels.insert(ALICE.into(), 100);
    let p = run(&gone, &observed(changed), &set, &at(0, None));
    assert_eq!(actions(&p), [(Resource::MatrixPowerLevel, Action::Forget)]);
}

#[test]
fn a_space_with_children_puts_members_in_every_child() {
    let mut d = desired(false, Duration::ZERO, LeaveAction::Kick);
    let mut g = grant(JoinMethod::Force, None);
    g.include_children = true;
    d.matrix.grants.insert(format!("{ROOM}|alice"), g);
    let mut space = room(&[], &[], &[]);
    space.children = vec!["!child:example.org".into()];
    let mut o = observed(space);
    // The agent reports each child as a room of its own.
    let child = ObservedRoom {
        room_id: "!child:example.org".into(),
        ..ObservedRoom::default()
    };
    let rooms = &mut o.matrix.as_mut().unwrap().rooms;
    rooms.insert("!child:example.org".into(), child);
    let p = run(&d, &o, &[], &at(0, None));
    let rooms: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match &s.target {
            Target::MatrixMembership {
                room_id,
                join: JoinMethod::Force,
                ..
            } => Some(room_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rooms, ["!child:example.org", ROOM_ID]);
}

#[test]
fn a_user_without_an_account_waits_or_gets_one_linked() {
    let d = desired(true, Duration::ZERO, LeaveAction::Kick);
    let mut o = observed(room(&[], &[], &[]));
    let matrix = o.matrix.as_mut().unwrap();
    matrix.identities.get_mut("alice").unwrap().account = AccountState::Absent;
    let p = run(&d, &o, &[], &at(0, None));
    assert_eq!(actions(&p), [], "waits quietly");
    assert!(p.warnings.is_empty());

    o.matrix.as_mut().unwrap().create_users = Some("oidc-authentik".into());
    let p = run(&d, &o, &[], &at(0, None));
    assert_eq!(
        actions(&p),
        [
            (Resource::MatrixAccount, Action::Create),
            (Resource::MatrixMembership, Action::Create)
        ]
    );
    assert!(matches!(
        &p.steps[0].target,
        Target::MatrixAccount { localpart, auth_provider, external_id, .. }
            if localpart == "alice" && auth_provider == "oidc-authentik" && external_id == "uid-alice"
    ));
}

#[test]
fn a_mass_leave_is_held_whether_or_not_it_waits_out_a_grace_period() {
    // Twelve members of the room, all gone from the group at once.
    let members: Vec<String> = (0..12).map(|n| format!("@user{n}:example.org")).collect();
    let ledger: Vec<LedgerRow> = members
        .iter()
        .enumerate()
        .map(|(n, user_id)| LedgerRow {
            key: keys::matrix(ROOM_ID, user_id),
            username: format!("user{n}"),
            ..row(Resource::MatrixMembership, LedgerState::Created, "")
        })
        .collect();
    let joined: Vec<&str> = members.iter().map(String::as_str).collect();
    let in_room = observed(room(&joined, &[], &[]));
    for grace in [Duration::ZERO, Duration::from_secs(7200)] {
        let gone = desired(false, grace, LeaveAction::Kick);
        let p = run(&gone, &in_room, &ledger, &at(1_000, None));
        assert_eq!(actions(&p), [], "grace {grace:?}: {:?}", p.steps);
        assert!(
            p.warnings.iter().any(|w| w.contains("exceed the guard")),
            "grace {grace:?}: {:?}",
            p.warnings
        );
    }
    // A forced sweep starts the grace periods.
    let gone = desired(false, Duration::from_secs(7200), LeaveAction::Kick);
    let forced = Guards {
        force: true,
        ..Guards::default()
    };
    let p = plan_at(
        &gone,
        &in_room,
        &ledger,
        &at(1_000, None),
        &Scope::All,
        &forced,
    );
    assert_eq!(p.steps.len(), 12);
    assert!(
        p.steps
            .iter()
            .all(|s| matches!(s.action, Action::Defer { .. }))
    );
}
