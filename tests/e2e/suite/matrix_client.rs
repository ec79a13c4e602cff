//! The matrix-agent's Synapse client against a real Synapse (PyPI
//! `matrix-synapse`, private per test, `harness::Synapse`): each call does
//! what it says, observed through Synapse itself (the harness's own admin
//! reads members and state), and each kind of failure comes back in the
//! class the reconciler acts on.

use matrix_agent::error::ErrorClass;
use matrix_agent::synapse::{
    Account, Change, ClientConfig, ForceJoin, Kick, LinkedAccount, Membership, RateLimitPolicy,
};
use matrix_agent::{MatrixApi, SynapseClient};
use reconciler_runtime::secrets::Secret;
use reconciler_testkit::harness::{MatrixUser, RateLimits, RoomSpec, Synapse};

struct World {
    synapse: Synapse,
    /// The reconciler's bot: a server admin.
    bot: MatrixUser,
    client: SynapseClient,
}

async fn world() -> World {
    world_with(RateLimits::Generous).await
}

async fn world_with(rate_limits: RateLimits) -> World {
    let synapse = Synapse::start_with(rate_limits).await;
    eprintln!("Synapse answered {:?} after spawn", synapse.started_in);
    let bot = synapse.register("reconciler", true).await;
    let client = client(&synapse, &bot.access_token);
    World {
        synapse,
        bot,
        client,
    }
}

fn client(synapse: &Synapse, token: &str) -> SynapseClient {
    let config = ClientConfig::new(
        &synapse.url(),
        Secret::new(token),
        RateLimitPolicy::default(),
    )
    .unwrap();
    SynapseClient::new(&config).unwrap()
}

/// A room the bot created (so it holds every power), with a local alias.
async fn bot_room(w: &World, alias: &str) -> String {
    let spec = RoomSpec {
        alias: Some(alias.to_owned()),
        ..RoomSpec::default()
    };
    w.synapse.create_room(&w.bot, spec).await
}

#[tokio::test]
async fn whoami_and_server_version_name_the_bot_and_synapse() {
    let w = world().await;
    assert_eq!(w.client.whoami().await.unwrap(), w.bot.user_id);
    let version = w.client.server_version().await.unwrap();
    assert!(
        version.split('.').count() >= 3,
        "a version like 1.163.2: {version}"
    );
}

#[tokio::test]
async fn an_alias_resolves_and_force_join_joins_once() {
    let w = world().await;
    let room = bot_room(&w, "team").await;
    let alice = w.synapse.register("alice", false).await;

    let alias = format!("#team:{}", w.synapse.server_name());
    assert_eq!(w.client.room_id(&alias).await.unwrap(), room);
    assert_eq!(w.client.room_id(&room).await.unwrap(), room);

    let joined = w.client.force_join(&room, &alice.user_id).await.unwrap();
    assert_eq!(joined, ForceJoin::Joined);
    let members = w.synapse.joined_members(&room).await;
    assert_eq!(members, sorted([&alice.user_id, &w.bot.user_id]));
    assert_eq!(
        sorted(w.client.joined_members(&room).await.unwrap()),
        members
    );

    // Synapse answers a second admin join with 403 "already in the room".
    let again = w.client.force_join(&room, &alice.user_id).await.unwrap();
    assert_eq!(again, ForceJoin::AlreadyJoined);
    assert_eq!(w.synapse.joined_members(&room).await, members);
}

#[tokio::test]
async fn an_invite_is_held_and_inviting_again_changes_nothing() {
    let w = world().await;
    let room = bot_room(&w, "invited").await;
    let bob = w.synapse.register("bob", false).await;

    w.client.invite(&room, &bob.user_id, None).await.unwrap();
    assert_eq!(
        w.synapse.membership(&room, &bob.user_id).await.as_deref(),
        Some("invite")
    );
    let state = w.client.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&bob.user_id), Some(&Membership::Invite));
    assert_eq!(state.members[&bob.user_id].sender, w.bot.user_id);

    let before = w.synapse.state_event_ids(&room).await;
    w.client.invite(&room, &bob.user_id, None).await.unwrap();
    let after = w.synapse.state_event_ids(&room).await;
    assert_eq!(after, before, "no new member event");
    assert!(!w.synapse.joined_members(&room).await.contains(&bob.user_id));
}

#[tokio::test]
async fn kick_ban_and_unban_change_membership_with_their_reason() {
    let w = world().await;
    let room = bot_room(&w, "staff").await;
    let alice = w.synapse.register("alice", false).await;
    w.client.force_join(&room, &alice.user_id).await.unwrap();

    let kicked = w
        .client
        .kick(&room, &alice.user_id, "left group staff")
        .await
        .unwrap();
    assert_eq!(kicked, Kick::Kicked);
    let event = w.synapse.member_event(&room, &alice.user_id).await.unwrap();
    assert_eq!(event["membership"], "leave");
    assert_eq!(event["reason"], "left group staff");
    assert!(
        !w.synapse
            .joined_members(&room)
            .await
            .contains(&alice.user_id)
    );
    let again = w.client.kick(&room, &alice.user_id, "again").await.unwrap();
    assert_eq!(again, Kick::NotInRoom);

    w.client
        .ban(&room, &alice.user_id, "left group staff")
        .await
        .unwrap();
    let event = w.synapse.member_event(&room, &alice.user_id).await.unwrap();
    assert_eq!(event["membership"], "ban");
    assert_eq!(event["reason"], "left group staff");
    let state = w.client.room_state(&room).await.unwrap();
    assert_eq!(state.membership(&alice.user_id), Some(&Membership::Ban));
    // A banned user cannot be joined: permanent, with Synapse's reason.
    let refused = w
        .client
        .force_join(&room, &alice.user_id)
        .await
        .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Permanent, "{refused}");

    w.client
        .unban(&room, &alice.user_id, "back in group staff")
        .await
        .unwrap();
    let event = w.synapse.member_event(&room, &alice.user_id).await.unwrap();
    assert_eq!(event["membership"], "leave");
    assert_eq!(event["reason"], "back in group staff");
    assert_eq!(
        w.client.force_join(&room, &alice.user_id).await.unwrap(),
        ForceJoin::Joined
    );
    assert!(
        w.synapse
            .joined_members(&room)
            .await
            .contains(&alice.user_id)
    );
}

#[tokio::test]
async fn a_power_level_is_set_and_removed_keeping_the_rest() {
    let w = world().await;
    let room = bot_room(&w, "levels").await;
    let alice = w.synapse.register("alice", false).await;
    let carol = w.synapse.register("carol", false).await;
    for user in [&alice, &carol] {
        w.client.force_join(&room, &user.user_id).await.unwrap();
    }
    // An entry a room admin set by hand, which must survive our writes.
    w.synapse
        .set_power_level(&w.bot, &room, &carol.user_id, 20)
        .await;
    let before = w.synapse.power_levels(&room).await;

    let set = w.client.set_power_level(&room, &alice.user_id, Some(50));
    assert_eq!(set.await.unwrap(), Change::Changed);
    let levels = w.synapse.power_levels(&room).await;
    assert_eq!(levels["users"][&alice.user_id], 50);
    assert_eq!(levels["users"][&carol.user_id], 20);
    for key in ["ban", "kick", "invite", "events", "state_default"] {
        assert_eq!(levels[key], before[key], "{key} kept");
    }
    let state = w.client.room_state(&room).await.unwrap();
    assert_eq!(state.power_levels.user_level(&alice.user_id), 50);

    let again = w.client.set_power_level(&room, &alice.user_id, Some(50));
    assert_eq!(again.await.unwrap(), Change::Unchanged);

    let reset = w.client.set_power_level(&room, &alice.user_id, None);
    assert_eq!(reset.await.unwrap(), Change::Changed);
    let levels = w.synapse.power_levels(&room).await;
    assert!(levels["users"].get(&alice.user_id).is_none(), "{levels}");
    assert_eq!(levels["users"][&carol.user_id], 20);
}

#[tokio::test]
async fn a_space_lists_its_child_rooms() {
    let w = world().await;
    let space_spec = RoomSpec {
        space: true,
        ..RoomSpec::default()
    };
    let space = w.synapse.create_room(&w.bot, space_spec).await;
    let first = bot_room(&w, "child-one").await;
    let second = bot_room(&w, "child-two").await;
    for child in [&first, &second] {
        w.synapse.add_space_child(&w.bot, &space, child).await;
    }

    let children = w.client.space_children(&space).await.unwrap();
    assert_eq!(children, sorted([&first, &second]));
    assert!(w.client.space_children(&first).await.unwrap().is_empty());
}

#[tokio::test]
async fn accounts_are_found_by_external_id_and_created_linked() {
    let w = world().await;
    let alice = w.synapse.register("alice", false).await;
    const PROVIDER: &str = "oidc-authentik";

    assert_eq!(
        w.client.account(&alice.user_id).await.unwrap(),
        Account::Active
    );
    let erin = w.synapse.user_id("erin");
    assert_eq!(w.client.account(&erin).await.unwrap(), Account::Absent);
    let lookup = w.client.user_by_external_id(PROVIDER, "uid-erin");
    assert_eq!(lookup.await.unwrap(), None);

    let created = w
        .client
        .create_linked_account(&erin, PROVIDER, "uid-erin", Some("Erin"))
        .await
        .unwrap();
    assert_eq!(created, LinkedAccount::Created);
    assert_eq!(
        w.synapse.external_ids(&erin).await.unwrap(),
        vec![(PROVIDER.to_owned(), "uid-erin".to_owned())]
    );
    let found = w.client.user_by_external_id(PROVIDER, "uid-erin");
    assert_eq!(found.await.unwrap(), Some(erin.clone()));
    assert_eq!(w.client.account(&erin).await.unwrap(), Account::Active);

    // An existing account is linked, not replaced.
    let linked = w
        .client
        .create_linked_account(&alice.user_id, PROVIDER, "uid/alice ä", None)
        .await
        .unwrap();
    assert_eq!(linked, LinkedAccount::Linked);
    let found = w.client.user_by_external_id(PROVIDER, "uid/alice ä");
    assert_eq!(found.await.unwrap(), Some(alice.user_id.clone()));
    // The whole ID is one segment: a prefix of it finds nobody.
    let prefix = w.client.user_by_external_id(PROVIDER, "uid");
    assert_eq!(prefix.await.unwrap(), None);
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_the_exemption_lifts_them() {
    // Two events, then one a second: membership events count.
    let w = world_with(RateLimits::TightMessages {
        per_second: 1.0,
        burst_count: 2,
    })
    .await;
    let room = bot_room(&w, "busy").await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(w.synapse.register(&format!("user{n}"), false).await);
    }

    for user in &users[..4] {
        w.client.invite(&room, &user.user_id, None).await.unwrap();
    }
    let stats = w.client.stats();
    eprintln!("rate limits met: {stats:?}");
    assert!(stats.rate_limit_waits >= 1, "{stats:?}");
    for user in &users[..4] {
        let membership = w.synapse.membership(&room, &user.user_id).await;
        assert_eq!(membership.as_deref(), Some("invite"));
    }

    w.client
        .exempt_from_rate_limits(&w.bot.user_id)
        .await
        .unwrap();
    for user in &users[4..] {
        w.client.invite(&room, &user.user_id, None).await.unwrap();
    }
    assert_eq!(w.client.stats().rate_limit_waits, stats.rate_limit_waits);
    for user in &users[4..] {
        let membership = w.synapse.membership(&room, &user.user_id).await;
        assert_eq!(membership.as_deref(), Some("invite"));
    }
}

#[tokio::test]
async fn unknown_rooms_and_too_little_power_are_permanent() {
    let w = world().await;
    let unknown = format!("!nowhere:{}", w.synapse.server_name());
    let error = w.client.joined_members(&unknown).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    let error = w.client.room_state(&unknown).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    let alias = format!("#nowhere:{}", w.synapse.server_name());
    let error = w.client.room_id(&alias).await.unwrap_err();
    assert_eq!(error.errcode(), Some("M_NOT_FOUND"), "{error}");

    // A room alice owns, where the bot is a member at level 0.
    let alice = w.synapse.register("alice", false).await;
    let carol = w.synapse.register("carol", false).await;
    let room = w.synapse.create_room(&alice, RoomSpec::default()).await;
    for user in [&w.bot.user_id, &carol.user_id] {
        w.synapse.invite(&alice, &room, user).await;
    }
    w.synapse.join(&w.bot, &room).await;
    w.synapse.join(&carol, &room).await;

    let error = w.client.kick(&room, &carol.user_id, "r").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    assert_eq!(error.errcode(), Some("M_FORBIDDEN"));
    assert!(!error.reason().unwrap_or_default().is_empty());
    let error = w.client.ban(&room, &carol.user_id, "r").await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    let error = w
        .client
        .set_power_level(&room, &carol.user_id, Some(10))
        .await
        .unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent, "{error}");
    assert!(
        w.synapse
            .joined_members(&room)
            .await
            .contains(&carol.user_id)
    );
}

#[tokio::test]
async fn bad_tokens_are_configuration_errors_and_a_stopped_synapse_is_transient() {
    let mut w = world().await;
    let stranger = client(&w.synapse, "syt_not_a_token");
    let error = stranger.whoami().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Config, "{error}");
    assert!(!error.to_string().contains("syt_not_a_token"));

    // A valid token of a user who is not a server admin.
    let alice = w.synapse.register("alice", false).await;
    let room = bot_room(&w, "admins-only").await;
    let not_admin = client(&w.synapse, &alice.access_token);
    let error = not_admin.joined_members(&room).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Config, "{error}");

    w.synapse.stop();
    let error = w.client.whoami().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    let error = w.client.joined_members(&room).await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
}

fn sorted<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_owned()).collect();
    items.sort();
    items
}
