//! The service over the in-memory Synapse ([`crate::fake::FakeMatrix`]).

use std::sync::Arc;

use reconciler_proto::agent::matrix_agent_server::MatrixAgent as _;
use reconciler_proto::agent::{
    ChangeResult, MatrixAccount, MatrixApplyRequest, MatrixBan, MatrixChange, MatrixCreateUser,
    MatrixExternalId, MatrixForceJoin, MatrixInvite, MatrixKick, MatrixObserveRequest,
    MatrixObserveResponse, MatrixSetPowerLevel, MatrixUnban, Outcome, matrix_change::Kind,
};
use tonic::Request;

use super::MatrixAgent;
use crate::error::Error;
use crate::fake::FakeMatrix;
use crate::synapse::Membership;

const BOT: &str = "@reconciler:example.org";
const ALICE: &str = "@alice:example.org";
const ROOM: &str = "!team:example.org";
const ALIAS: &str = "#team:example.org";

fn setup() -> (Arc<FakeMatrix>, MatrixAgent) {
    let fake = Arc::new(FakeMatrix::new(BOT));
    fake.add_room(ROOM, Some(ALIAS));
    fake.add_account(ALICE);
    let agent = MatrixAgent::new(fake.clone());
    (fake, agent)
}

fn change(id: &str, kind: Kind) -> MatrixChange {
    MatrixChange {
        id: id.into(),
        kind: Some(kind),
    }
}

fn force_join(room: &str) -> Kind {
    Kind::ForceJoin(MatrixForceJoin {
        room: room.into(),
        user_id: ALICE.into(),
    })
}

async fn apply(
    agent: &MatrixAgent,
    changes: Vec<MatrixChange>,
    dry_run: bool,
) -> Vec<ChangeResult> {
    let request = Request::new(MatrixApplyRequest { changes, dry_run });
    agent.apply(request).await.unwrap().into_inner().results
}

async fn apply_one(agent: &MatrixAgent, kind: Kind) -> ChangeResult {
    apply(agent, vec![change("c", kind)], false).await.remove(0)
}

async fn observe(agent: &MatrixAgent, request: MatrixObserveRequest) -> MatrixObserveResponse {
    agent
        .observe(Request::new(request))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn force_join_by_alias_joins_once_then_is_unchanged() {
    let (fake, agent) = setup();
    let first = apply_one(&agent, force_join(ALIAS)).await;
    assert_eq!(first.outcome(), Outcome::Applied, "{}", first.message);
    assert_eq!(fake.membership(ROOM, ALICE), Some(Membership::Join));
    let again = apply_one(&agent, force_join(ALIAS)).await;
    assert_eq!(again.outcome(), Outcome::Unchanged, "{}", again.message);
    assert_eq!(fake.writes().len(), 1, "{:?}", fake.writes());
}

#[tokio::test]
async fn a_dry_run_reads_but_writes_nothing() {
    let (fake, agent) = setup();
    let kinds = [
        force_join(ROOM),
        Kind::Ban(MatrixBan {
            room: ROOM.into(),
            user_id: ALICE.into(),
            reason: "left".into(),
        }),
        Kind::SetPowerLevel(MatrixSetPowerLevel {
            room: ROOM.into(),
            user_id: ALICE.into(),
            level: Some(50),
        }),
        Kind::CreateUser(MatrixCreateUser {
            localpart: "bob".into(),
            auth_provider: "oidc-authentik".into(),
            external_id: "uid-bob".into(),
            displayname: String::new(),
        }),
    ];
    let changes = kinds.into_iter().map(|k| change("c", k)).collect();
    for r in apply(&agent, changes, true).await {
        assert_eq!(r.outcome(), Outcome::DryRun, "{}", r.message);
    }
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    let kick = Kind::Kick(MatrixKick {
        room: ROOM.into(),
        user_id: ALICE.into(),
        reason: "left".into(),
    });
    let r = apply(&agent, vec![change("k", kick)], true).await.remove(0);
    assert_eq!(
        r.outcome(),
        Outcome::Unchanged,
        "not in the room: {}",
        r.message
    );
}

#[tokio::test]
async fn membership_changes_say_unchanged_when_already_so() {
    let (fake, agent) = setup();
    let invite = || {
        Kind::Invite(MatrixInvite {
            room: ROOM.into(),
            user_id: ALICE.into(),
            reason: String::new(),
        })
    };
    assert_eq!(
        apply_one(&agent, invite()).await.outcome(),
        Outcome::Applied
    );
    assert_eq!(fake.membership(ROOM, ALICE), Some(Membership::Invite));
    assert_eq!(
        apply_one(&agent, invite()).await.outcome(),
        Outcome::Unchanged
    );
    let kick = || {
        Kind::Kick(MatrixKick {
            room: ROOM.into(),
            user_id: ALICE.into(),
            reason: "left the group".into(),
        })
    };
    assert_eq!(apply_one(&agent, kick()).await.outcome(), Outcome::Applied);
    assert_eq!(fake.membership(ROOM, ALICE), Some(Membership::Leave));
    assert_eq!(
        apply_one(&agent, kick()).await.outcome(),
        Outcome::Unchanged
    );
    let ban = || {
        Kind::Ban(MatrixBan {
            room: ROOM.into(),
            user_id: ALICE.into(),
            reason: "left the group".into(),
        })
    };
    assert_eq!(apply_one(&agent, ban()).await.outcome(), Outcome::Applied);
    assert_eq!(apply_one(&agent, ban()).await.outcome(), Outcome::Unchanged);
    let unban = || {
        Kind::Unban(MatrixUnban {
            room: ROOM.into(),
            user_id: ALICE.into(),
            reason: "back in the group".into(),
        })
    };
    assert_eq!(apply_one(&agent, unban()).await.outcome(), Outcome::Applied);
    assert_eq!(fake.membership(ROOM, ALICE), Some(Membership::Leave));
    assert_eq!(
        apply_one(&agent, unban()).await.outcome(),
        Outcome::Unchanged
    );
}

#[tokio::test]
async fn one_bad_change_leaves_the_others_applied() {
    let (fake, agent) = setup();
    let results = apply(
        &agent,
        vec![
            change("unknown", force_join("!nowhere:example.org")),
            change("bad-alias", force_join("#nowhere:example.org")),
            change("empty", force_join("")),
            change(
                "none",
                Kind::ForceJoin(MatrixForceJoin {
                    room: ROOM.into(),
                    user_id: "alice".into(),
                }),
            ),
            MatrixChange {
                id: "no-kind".into(),
                kind: None,
            },
            change("good", force_join(ROOM)),
        ],
        false,
    )
    .await;
    let outcomes: Vec<(&str, Outcome)> = results
        .iter()
        .map(|r| (r.id.as_str(), r.outcome()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("unknown", Outcome::Permanent),
            ("bad-alias", Outcome::Permanent),
            ("empty", Outcome::Permanent),
            ("none", Outcome::Permanent),
            ("no-kind", Outcome::Permanent),
            ("good", Outcome::Applied),
        ]
    );
    assert!(
        results[0].message.contains("M_NOT_FOUND"),
        "{}",
        results[0].message
    );
    assert_eq!(fake.membership(ROOM, ALICE), Some(Membership::Join));
}

#[tokio::test]
async fn synapse_down_is_transient_and_a_refused_token_config() {
    let (fake, agent) = setup();
    fake.fail_with(|| Error::Transient("connection refused".into()));
    assert_eq!(
        apply_one(&agent, force_join(ROOM)).await.outcome(),
        Outcome::Transient
    );
    let seen = observe(
        &agent,
        MatrixObserveRequest {
            rooms: vec![ROOM.into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seen.unavailable.unwrap().outcome(), Outcome::Transient);
    assert!(seen.rooms.is_empty());
    fake.fail_with(|| Error::Config("M_UNKNOWN_TOKEN".into()));
    assert_eq!(
        apply_one(&agent, force_join(ROOM)).await.outcome(),
        Outcome::Config
    );
}

#[tokio::test]
async fn power_levels_are_set_and_reset_to_the_default() {
    let (fake, agent) = setup();
    let set = |level| {
        Kind::SetPowerLevel(MatrixSetPowerLevel {
            room: ROOM.into(),
            user_id: ALICE.into(),
            level,
        })
    };
    assert_eq!(
        apply_one(&agent, set(Some(50))).await.outcome(),
        Outcome::Applied
    );
    assert_eq!(fake.power_level_entry(ROOM, ALICE), Some(50));
    assert_eq!(
        apply_one(&agent, set(Some(50))).await.outcome(),
        Outcome::Unchanged
    );
    assert_eq!(
        apply_one(&agent, set(None)).await.outcome(),
        Outcome::Applied
    );
    assert_eq!(fake.power_level_entry(ROOM, ALICE), None);
    assert_eq!(
        apply_one(&agent, set(None)).await.outcome(),
        Outcome::Unchanged
    );
}

#[tokio::test]
async fn create_user_links_the_account_once_and_names_it() {
    let (fake, agent) = setup();
    let create = |localpart: &str| {
        Kind::CreateUser(MatrixCreateUser {
            localpart: localpart.into(),
            auth_provider: "oidc-authentik".into(),
            external_id: "uid-bob".into(),
            displayname: "Bob".into(),
        })
    };
    let made = apply_one(&agent, create("bob")).await;
    assert_eq!(made.outcome(), Outcome::Applied, "{}", made.message);
    assert_eq!(made.remote_id, "@bob:example.org");
    assert_eq!(
        fake.linked_user("oidc-authentik", "uid-bob").as_deref(),
        Some("@bob:example.org")
    );
    assert_eq!(
        apply_one(&agent, create("bob")).await.outcome(),
        Outcome::Unchanged
    );
    let other = apply_one(&agent, create("bobby")).await;
    assert_eq!(
        other.outcome(),
        Outcome::Permanent,
        "linked elsewhere: {}",
        other.message
    );
    assert_eq!(
        apply_one(&agent, create("@x:y")).await.outcome(),
        Outcome::Permanent
    );
}

#[tokio::test]
async fn observe_reads_members_levels_children_users_and_links() {
    let (fake, agent) = setup();
    let child = "!child:example.org";
    fake.add_room(child, None);
    fake.add_space_child(ROOM, child);
    fake.set_membership(ROOM, ALICE, Membership::Join);
    fake.set_membership(ROOM, "@carol:example.org", Membership::Invite);
    fake.set_membership(ROOM, "@mallory:example.org", Membership::Ban);
    apply_one(
        &agent,
        Kind::CreateUser(MatrixCreateUser {
            localpart: "bob".into(),
            auth_provider: "oidc-authentik".into(),
            external_id: "uid-bob".into(),
            displayname: String::new(),
        }),
    )
    .await;
    let seen = observe(
        &agent,
        MatrixObserveRequest {
            rooms: vec![ALIAS.into(), "#gone:example.org".into(), ALIAS.into()],
            include_children: true,
            users: vec![ALICE.into(), "@nobody:example.org".into(), "nobody".into()],
            external_ids: vec![
                MatrixExternalId {
                    auth_provider: "oidc-authentik".into(),
                    external_id: "uid-bob".into(),
                },
                MatrixExternalId {
                    auth_provider: "oidc-authentik".into(),
                    external_id: "uid-x".into(),
                },
            ],
        },
    )
    .await;
    assert_eq!(seen.bot_user_id, BOT);
    assert!(seen.unavailable.is_none());
    let rooms: Vec<(&str, &str, &str)> = seen
        .rooms
        .iter()
        .map(|r| (r.room.as_str(), r.room_id.as_str(), r.parent_space.as_str()))
        .collect();
    assert_eq!(
        rooms,
        vec![
            (ALIAS, ROOM, ""),
            ("#gone:example.org", "", ""),
            (child, child, ROOM)
        ]
    );
    let team = &seen.rooms[0];
    assert_eq!(team.joined, vec![ALICE.to_owned(), BOT.to_owned()]);
    assert_eq!(team.invited, vec!["@carol:example.org".to_owned()]);
    assert_eq!(team.banned, vec!["@mallory:example.org".to_owned()]);
    assert!(team.bot_joined && team.bot_can_invite && team.bot_can_kick && team.bot_can_ban);
    assert!(team.bot_can_set_power_levels);
    assert_eq!(team.bot_power_level, 100);
    assert_eq!(team.user_power_levels.get(BOT), Some(&100));
    assert_eq!(team.space_children, vec![child.to_owned()]);
    let gone = seen.rooms[1].error.clone().unwrap();
    assert_eq!(gone.outcome(), Outcome::Permanent, "{}", gone.reason);
    let users: Vec<(&str, MatrixAccount)> = seen
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u.account()))
        .collect();
    assert_eq!(
        users,
        vec![
            (ALICE, MatrixAccount::Active),
            ("@nobody:example.org", MatrixAccount::Absent)
        ]
    );
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.errors[0].subject, "nobody");
    let links: Vec<&str> = seen
        .external_ids
        .iter()
        .map(|l| l.user_id.as_str())
        .collect();
    assert_eq!(links, vec!["@bob:example.org", ""]);
}
