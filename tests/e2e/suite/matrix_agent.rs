//! The matrix-agent binary against a real Synapse (PyPI `matrix-synapse`,
//! private per test): called over gRPC as the coordinator calls it, every
//! change is checked in what Synapse itself shows (the harness's own admin
//! reads members and room state), and every failure arrives in its class.

use std::time::Duration;

use reconciler_proto::agent::matrix_agent_client::MatrixAgentClient;
use reconciler_proto::agent::{
    ChangeResult, MatrixAccount, MatrixApplyRequest, MatrixBan, MatrixChange, MatrixCreateUser,
    MatrixExternalId, MatrixForceJoin, MatrixInvite, MatrixKick, MatrixObserveRequest,
    MatrixObserveResponse, MatrixSetPowerLevel, MatrixUnban, Outcome, matrix_change::Kind,
};
use reconciler_testkit::harness::stack_tokens::AGENT_TOKEN;
use reconciler_testkit::harness::{
    Authed, CertDir, MatrixUser, RoomSpec, Service, Stack, Synapse, start_agent,
};
use serde_json::json;

struct World {
    synapse: Synapse,
    /// The reconciler's bot: a server admin, creator of the test rooms.
    bot: MatrixUser,
    agent: Service,
    client: MatrixAgentClient<Authed>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let synapse = Synapse::start().await;
    let bot = synapse.register("reconciler", true).await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, _, client) = agent(&synapse, &bot.access_token, &dir).await;
    World {
        synapse,
        bot,
        agent,
        client,
        _dir: dir,
    }
}

/// The matrix-agent binary for `synapse`, holding `token`.
async fn agent(
    synapse: &Synapse,
    token: &str,
    dir: &tempfile::TempDir,
) -> (Service, String, MatrixAgentClient<Authed>) {
    let env = [
        ("MATRIX_HOMESERVER_URL".to_owned(), synapse.url()),
        ("MATRIX_ACCESS_TOKEN".to_owned(), token.to_owned()),
    ];
    let (service, addr) =
        start_agent("matrix-agent", &env, dir.path(), Duration::from_secs(30)).await;
    let client = Stack::matrix_agent_client(&addr).await;
    (service, addr, client)
}

/// A room the bot created (so it holds every power), with a local alias.
async fn bot_room(w: &World, alias: &str) -> String {
    let spec = RoomSpec {
        alias: Some(alias.to_owned()),
        ..RoomSpec::default()
    };
    w.synapse.create_room(&w.bot, spec).await
}

fn change(id: &str, kind: Kind) -> MatrixChange {
    MatrixChange {
        id: id.into(),
        kind: Some(kind),
    }
}

fn force_join(room: &str, user_id: &str) -> Kind {
    Kind::ForceJoin(MatrixForceJoin {
        room: room.into(),
        user_id: user_id.into(),
    })
}

async fn apply(
    client: &mut MatrixAgentClient<Authed>,
    changes: Vec<MatrixChange>,
    dry_run: bool,
) -> Vec<ChangeResult> {
    let request = MatrixApplyRequest { changes, dry_run };
    client.apply(request).await.unwrap().into_inner().results
}

/// One change; its outcome, with the message when it is not `expected`.
async fn apply_one(w: &mut World, kind: Kind, expected: Outcome) -> ChangeResult {
    let result = apply(&mut w.client, vec![change("c", kind)], false)
        .await
        .remove(0);
    assert_eq!(result.outcome(), expected, "{}", result.message);
    result
}

async fn observe(
    client: &mut MatrixAgentClient<Authed>,
    request: MatrixObserveRequest,
) -> MatrixObserveResponse {
    client.observe(request).await.unwrap().into_inner()
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

#[tokio::test]
async fn observe_shows_the_members_and_children_synapse_lists() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await;
    w.synapse.invite(&w.bot, &room, &alice.user_id).await;
    w.synapse.join(&alice, &room).await;
    let carol = w.synapse.user_id("carol");
    w.synapse.register("carol", false).await;
    w.synapse.invite(&w.bot, &room, &carol).await;
    let space = w
        .synapse
        .create_room(
            &w.bot,
            RoomSpec {
                space: true,
                ..RoomSpec::default()
            },
        )
        .await;
    w.synapse.add_space_child(&w.bot, &space, &room).await;
    let alias = format!("#team:{}", w.synapse.server_name());
    let unknown = format!("!unknown:{}", w.synapse.server_name());

    let seen = observe(
        &mut w.client,
        MatrixObserveRequest {
            rooms: vec![alias.clone(), unknown.clone(), space.clone()],
            include_children: true,
            users: vec![alice.user_id.clone(), w.synapse.user_id("nobody")],
            external_ids: vec![],
        },
    )
    .await;
    assert_eq!(seen.bot_user_id, w.bot.user_id);
    assert!(!seen.server_version.is_empty());
    assert!(seen.unavailable.is_none(), "{:?}", seen.unavailable);
    // The child is the room already listed by its alias: read once.
    let rooms: Vec<&str> = seen.rooms.iter().map(|r| r.room.as_str()).collect();
    assert_eq!(
        rooms,
        vec![alias.as_str(), unknown.as_str(), space.as_str()]
    );
    let team = &seen.rooms[0];
    assert_eq!(team.room_id, room);
    assert_eq!(
        sorted(team.joined.clone()),
        sorted(w.synapse.joined_members(&room).await)
    );
    assert!(team.joined.contains(&alice.user_id), "{team:?}");
    assert_eq!(team.invited, vec![carol]);
    assert!(team.bot_joined && team.bot_can_invite && team.bot_can_kick && team.bot_can_ban);
    assert!(team.bot_can_set_power_levels, "{team:?}");
    // The bot created the room: 100, or unlimited (`i64::MAX`) as a
    // creator in a room of version 12 or later, which Synapse makes now.
    assert!(team.bot_power_level >= 100, "{team:?}");
    let error = seen.rooms[1]
        .error
        .clone()
        .expect("the unknown room's error");
    assert_eq!(error.outcome(), Outcome::Permanent, "{}", error.reason);
    assert_eq!(seen.rooms[2].space_children, vec![room.clone()]);
    let users: Vec<(&str, MatrixAccount)> = seen
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u.account()))
        .collect();
    let nobody = w.synapse.user_id("nobody");
    assert_eq!(
        users,
        vec![
            (alice.user_id.as_str(), MatrixAccount::Active),
            (nobody.as_str(), MatrixAccount::Absent)
        ]
    );
}

#[tokio::test]
async fn force_join_joins_once_and_the_same_apply_again_sends_nothing() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await;

    let dry = apply(
        &mut w.client,
        vec![change("dry", force_join(&room, &alice.user_id))],
        true,
    )
    .await;
    assert_eq!(dry[0].outcome(), Outcome::DryRun, "{}", dry[0].message);
    assert!(
        !w.synapse
            .joined_members(&room)
            .await
            .contains(&alice.user_id)
    );

    apply_one(&mut w, force_join(&room, &alice.user_id), Outcome::Applied).await;
    assert!(
        w.synapse
            .joined_members(&room)
            .await
            .contains(&alice.user_id)
    );
    let before = w.synapse.state_event_ids(&room).await;
    apply_one(
        &mut w,
        force_join(&room, &alice.user_id),
        Outcome::Unchanged,
    )
    .await;
    assert_eq!(w.synapse.state_event_ids(&room).await, before);
}

#[tokio::test]
async fn invite_kick_ban_and_unban_are_what_synapse_shows() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let bob = w.synapse.register("bob", false).await.user_id;
    let member = |kind: fn(String, String, String) -> Kind, reason: &str| {
        kind(room.clone(), bob.clone(), reason.to_owned())
    };
    let invite = |room, user_id, reason| {
        Kind::Invite(MatrixInvite {
            room,
            user_id,
            reason,
        })
    };
    let kick = |room, user_id, reason| {
        Kind::Kick(MatrixKick {
            room,
            user_id,
            reason,
        })
    };
    let ban = |room, user_id, reason| {
        Kind::Ban(MatrixBan {
            room,
            user_id,
            reason,
        })
    };
    let unban = |room, user_id, reason| {
        Kind::Unban(MatrixUnban {
            room,
            user_id,
            reason,
        })
    };

    apply_one(&mut w, member(invite, ""), Outcome::Applied).await;
    assert_eq!(
        w.synapse.membership(&room, &bob).await.as_deref(),
        Some("invite")
    );
    let before = w.synapse.state_event_ids(&room).await;
    apply_one(&mut w, member(invite, ""), Outcome::Unchanged).await;
    assert_eq!(
        w.synapse.state_event_ids(&room).await,
        before,
        "no second invite"
    );

    apply_one(&mut w, member(kick, "left group team"), Outcome::Applied).await;
    let event = w.synapse.member_event(&room, &bob).await.unwrap();
    assert_eq!(event["membership"], "leave");
    assert_eq!(event["reason"], "left group team");
    apply_one(&mut w, member(kick, "left group team"), Outcome::Unchanged).await;

    apply_one(&mut w, member(ban, "left group team"), Outcome::Applied).await;
    let event = w.synapse.member_event(&room, &bob).await.unwrap();
    assert_eq!(event["membership"], "ban");
    assert_eq!(event["reason"], "left group team");
    apply_one(&mut w, member(ban, "left group team"), Outcome::Unchanged).await;

    apply_one(
        &mut w,
        member(unban, "back in group team"),
        Outcome::Applied,
    )
    .await;
    assert_eq!(
        w.synapse.membership(&room, &bob).await.as_deref(),
        Some("leave")
    );
    apply_one(
        &mut w,
        member(unban, "back in group team"),
        Outcome::Unchanged,
    )
    .await;
}

#[tokio::test]
async fn power_levels_and_linked_accounts_are_what_synapse_shows() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await.user_id;
    let level = |level| {
        Kind::SetPowerLevel(MatrixSetPowerLevel {
            room: room.clone(),
            user_id: alice.clone(),
            level,
        })
    };
    apply_one(&mut w, level(Some(50)), Outcome::Applied).await;
    assert_eq!(
        w.synapse.power_levels(&room).await["users"][&alice],
        json!(50)
    );
    apply_one(&mut w, level(Some(50)), Outcome::Unchanged).await;
    apply_one(&mut w, level(None), Outcome::Applied).await;
    assert!(
        w.synapse.power_levels(&room).await["users"]
            .get(&alice)
            .is_none()
    );

    let create = Kind::CreateUser(MatrixCreateUser {
        localpart: "dave".into(),
        auth_provider: "oidc-authentik".into(),
        external_id: "uid-dave".into(),
        displayname: "Dave".into(),
    });
    let made = apply_one(&mut w, create.clone(), Outcome::Applied).await;
    let dave = w.synapse.user_id("dave");
    assert_eq!(made.remote_id, dave);
    assert_eq!(
        w.synapse.external_ids(&dave).await,
        Some(vec![("oidc-authentik".to_owned(), "uid-dave".to_owned())])
    );
    apply_one(&mut w, create, Outcome::Unchanged).await;
    let seen = observe(
        &mut w.client,
        MatrixObserveRequest {
            external_ids: vec![MatrixExternalId {
                auth_provider: "oidc-authentik".into(),
                external_id: "uid-dave".into(),
            }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seen.external_ids[0].user_id, dave);
}

#[tokio::test]
async fn an_unknown_room_fails_its_own_change_and_the_others_apply() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await.user_id;
    let server = w.synapse.server_name().to_owned();
    let results = apply(
        &mut w.client,
        vec![
            change(
                "unknown-id",
                force_join(&format!("!unknown:{server}"), &alice),
            ),
            change(
                "unknown-alias",
                force_join(&format!("#unknown:{server}"), &alice),
            ),
            change("known", force_join(&room, &alice)),
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
            ("unknown-id", Outcome::Permanent),
            ("unknown-alias", Outcome::Permanent),
            ("known", Outcome::Applied),
        ],
        "{results:?}"
    );
    assert!(
        results[1].message.contains("M_NOT_FOUND"),
        "{}",
        results[1].message
    );
    assert!(w.synapse.joined_members(&room).await.contains(&alice));
}

#[tokio::test]
async fn a_refused_token_is_config_and_a_stopped_synapse_transient() {
    let mut w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await.user_id;

    // The agent starts with a token Synapse refuses, and says so per call.
    let dir = tempfile::tempdir().unwrap();
    let (mut wrong, _, mut wrong_client) = agent(&w.synapse, "syt_wrong", &dir).await;
    let seen = observe(&mut wrong_client, MatrixObserveRequest::default()).await;
    let unavailable = seen.unavailable.expect("unavailable");
    assert_eq!(
        unavailable.outcome(),
        Outcome::Config,
        "{}",
        unavailable.reason
    );
    let results = apply(
        &mut wrong_client,
        vec![change("c", force_join(&room, &alice))],
        false,
    )
    .await;
    assert_eq!(
        results[0].outcome(),
        Outcome::Config,
        "{}",
        results[0].message
    );
    assert!(
        !wrong.logs().contains("syt_wrong"),
        "the token is never printed"
    );
    wrong.kill();

    w.synapse.stop();
    let results = apply(
        &mut w.client,
        vec![change("c", force_join(&room, &alice))],
        false,
    )
    .await;
    assert_eq!(
        results[0].outcome(),
        Outcome::Transient,
        "{}",
        results[0].message
    );
    let seen = observe(&mut w.client, MatrixObserveRequest::default()).await;
    assert_eq!(seen.unavailable.unwrap().outcome(), Outcome::Transient);
    assert!(w.agent.is_running());
}

#[tokio::test]
async fn the_agent_checks_synapse_at_start_and_applies_the_exemption() {
    let synapse = Synapse::start().await;
    let bot = synapse.register("reconciler", true).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("matrix-token");
    std::fs::write(&token_file, format!("{}\n", bot.access_token)).unwrap();
    let token_file = token_file.display().to_string();
    let env = [
        ("MATRIX_HOMESERVER_URL".to_owned(), synapse.url()),
        ("MATRIX_ACCESS_TOKEN_FILE".to_owned(), token_file),
        ("MATRIX_EXEMPT_RATELIMIT".to_owned(), "true".to_owned()),
    ];
    // Listening means the start-up checks are done: they come first.
    let (agent, _) = start_agent("matrix-agent", &env, dir.path(), Duration::from_secs(30)).await;
    let logs = agent.logs();
    assert!(logs.contains("Synapse accepts the bot's token"), "{logs}");
    assert!(
        !logs.contains(&bot.access_token),
        "the token is never printed"
    );
    assert_eq!(
        synapse.rate_limit_override(&bot.user_id).await,
        json!({"messages_per_second": 0, "burst_count": 0})
    );
}

/// The README's matrix-agent grpcurl lines, run as written: only the host
/// is this agent's. Rooms and users there are example.org's, unknown here,
/// so they come back as per-room and per-change errors inside answers that
/// grpcurl prints: every line must succeed.
#[tokio::test]
async fn the_readmes_matrix_grpcurl_examples_run_as_written() {
    let w = world().await;
    // The README reaches the agent over mutual TLS (`$TLS`): a second
    // matrix-agent for the same Synapse and bot, serving with certificates.
    let certs = CertDir::temporary(&["matrix-agent"]);
    let mut env = vec![
        ("MATRIX_HOMESERVER_URL".to_owned(), w.synapse.url()),
        ("MATRIX_ACCESS_TOKEN".to_owned(), w.bot.access_token.clone()),
    ];
    env.extend(certs.agent_env("matrix-agent"));
    let (_tls_agent, tls_addr) =
        start_agent("matrix-agent", &env, &certs.dir, Duration::from_secs(30)).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split("### matrix-agent with grpcurl")
        .nth(1)
        .expect("the matrix-agent grpcurl section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .collect();
    assert!(lines.len() >= 5, "{lines:?}");
    let grpcurl = reconciler_testkit::harness::grpcurl();
    let mut outputs = String::new();
    for line in lines {
        let command = line
            .replacen("grpcurl", &grpcurl, 1)
            .replace("synapse-host:50054", &tls_addr);
        let out = tokio::process::Command::new("bash")
            .args(["-c", &command])
            .env("AGENT", format!("authorization: Bearer {AGENT_TOKEN}"))
            .env("TLS", certs.grpcurl_flags())
            .output()
            .await
            .expect("run bash");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{line}\n{text}");
        outputs.push_str(&text);
    }
    assert!(outputs.contains("SERVING"), "{outputs}");
    assert!(outputs.contains(&w.bot.user_id), "whoami: {outputs}");
    assert!(outputs.contains("OUTCOME_PERMANENT"), "{outputs}");
}
