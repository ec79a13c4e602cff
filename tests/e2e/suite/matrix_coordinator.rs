//! Matrix end to end: the real coordinator and matrix-agent against a real
//! Synapse (PyPI `matrix-synapse`, private per test), with the Authentik
//! simulator as the directory. Group attributes (`reconciler.matrix`) and
//! `MATRIX_MAPPINGS` become room memberships; every assertion reads what
//! Synapse itself holds (the harness's own admin: joined members, member
//! events, power levels, the room timeline, SSO links), and where it
//! matters the coordinator's own account of it (gRPC `Status`, the ledger
//! through `ListOwned`).

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reconciler_proto::coordinator::{
    Action, LedgerState, ListOwnedRequest, OwnedObject, PendingRemoval, PlanRequest, Resource,
    StatusRequest,
};
use reconciler_testkit::harness::{MatrixUser, RateLimits, RoomSpec, Stack, StackOptions, Synapse};
use serde_json::{Value, json};

/// How long a condition may take to come true before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

struct World {
    synapse: Synapse,
    /// The reconciler's bot: a server admin, creator of the test rooms.
    bot: MatrixUser,
    stack: Stack,
    /// Alice in Authentik (pk) and in Synapse (`@alice`).
    alice: i64,
    alice_mx: MatrixUser,
}

/// Synapse, the bot and alice's account, then the stack with a
/// matrix-agent holding the bot's token and the coordinator pointed at it
/// (`env` adds coordinator settings).
async fn world_with(rate_limits: RateLimits, max_attempts: u32, env: &[(&str, &str)]) -> World {
    let synapse = Synapse::start_with(rate_limits).await;
    let bot = synapse.register("reconciler", true).await;
    let alice_mx = synapse.register("alice", false).await;
    let mut coordinator_env = vec![("GRACE_POLL_SECONDS".to_owned(), "1".to_owned())];
    coordinator_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let stack = Stack::start(StackOptions {
        matrix_agent_env: Some(vec![
            ("MATRIX_HOMESERVER_URL".into(), synapse.url()),
            ("MATRIX_ACCESS_TOKEN".into(), bot.access_token.clone()),
        ]),
        coordinator_env,
        max_attempts,
        ..StackOptions::default()
    })
    .await;
    let alice = stack.authentik.add_user("alice", "alice@example.com");
    World {
        synapse,
        bot,
        stack,
        alice,
        alice_mx,
    }
}

async fn world() -> World {
    world_with(RateLimits::Generous, 3, &[]).await
}

impl World {
    /// A room the bot created (so it holds every power), with a local
    /// alias; returns its id.
    async fn room(&self, alias: &str) -> String {
        let spec = RoomSpec {
            alias: Some(alias.to_owned()),
            ..RoomSpec::default()
        };
        self.synapse.create_room(&self.bot, spec).await
    }

    /// A group whose `reconciler.matrix` attribute is `matrix`.
    fn group(&self, name: &str, matrix: Value) -> String {
        self.stack
            .authentik
            .add_group(name, json!({"reconciler": {"matrix": matrix}}))
    }

    /// Adds `user` to `group` and delivers the webhook; the finished job.
    async fn add(&self, group: &str, user: i64, event: &str) -> Value {
        self.stack.authentik.add_member(group, user);
        self.deliver(group, event).await
    }

    /// Removes `user` from `group` and delivers the webhook.
    async fn remove(&self, group: &str, user: i64, event: &str) -> Value {
        self.stack.authentik.remove_member(group, user);
        self.deliver(group, event).await
    }

    async fn deliver(&self, group: &str, event: &str) -> Value {
        let job = self
            .stack
            .webhook_and_wait(&Stack::group_event(group, event))
            .await;
        self.expect_done(&job);
        job
    }

    async fn sweep(&self) -> Value {
        let job = self.stack.sweep().await;
        self.expect_done(&job);
        job
    }

    fn expect_done(&self, job: &Value) {
        assert_eq!(
            job["state"],
            "done",
            "job failed: {job}\ncoordinator log:\n{}\nmatrix-agent log:\n{}",
            self.stack.coordinator.logs(),
            self.agent_logs()
        );
    }

    fn agent_logs(&self) -> String {
        self.stack
            .matrix_agent
            .as_ref()
            .map(|a| a.logs())
            .unwrap_or_default()
    }

    async fn pending(&self) -> Vec<PendingRemoval> {
        let mut client = self.stack.coordinator_client().await;
        client
            .status(StatusRequest { job_id: 0 })
            .await
            .expect("status")
            .into_inner()
            .pending_removals
    }

    async fn owned(&self, resource: Resource) -> Vec<OwnedObject> {
        let mut client = self.stack.coordinator_client().await;
        client
            .list_owned(ListOwnedRequest {
                resource: resource as i32,
            })
            .await
            .expect("list_owned")
            .into_inner()
            .objects
    }

    async fn is_joined(&self, room: &str, user_id: &str) -> bool {
        self.synapse
            .joined_members(room)
            .await
            .iter()
            .any(|m| m == user_id)
    }

    async fn membership(&self, room: &str, user_id: &str) -> Option<String> {
        self.synapse.membership(room, user_id).await
    }

    /// `user_id`'s explicit entry in the room's power levels.
    async fn power_level(&self, room: &str, user_id: &str) -> Option<i64> {
        self.synapse.power_levels(room).await["users"][user_id].as_i64()
    }

    /// Polls `check` until it holds; fails with `what` after [`DEADLINE`].
    async fn until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        while !check().await {
            assert!(
                start.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}\ncoordinator log:\n{}\nmatrix-agent log:\n{}",
                self.stack.coordinator.logs(),
                self.agent_logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn summary(job: &Value) -> &Value {
    &job["summary"]
}

fn warnings(job: &Value) -> Vec<String> {
    summary(job)["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The Matrix outcomes a run counted (`matrix_membership.create.applied`…).
fn matrix_outcomes(job: &Value) -> Vec<(String, u64)> {
    summary(job)["outcomes"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.starts_with("matrix_"))
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn count(job: &Value, outcome: &str) -> u64 {
    summary(job)["outcomes"][outcome].as_u64().unwrap_or(0)
}

fn failures(job: &Value) -> (u64, u64) {
    let s = summary(job);
    (
        s["transient_failures"].as_u64().unwrap_or(0),
        s["permanent_failures"].as_u64().unwrap_or(0),
    )
}

/// A ledger key's user part: `room_id|user_id`.
fn key_of(room_id: &str, user_id: &str) -> String {
    format!("{room_id}|{user_id}")
}

#[tokio::test]
async fn join_by_force_or_invite_and_a_second_sweep_sends_nothing() {
    let w = world().await;
    let forced = w.room("forced").await;
    let invited = w.room("invited").await;
    let force_group = w.group("force-team", json!({"rooms": [forced], "join": "force"}));
    // By alias: the coordinator has Synapse resolve it.
    let invite_group = w.group(
        "invite-team",
        json!({"rooms": ["#invited:matrix.test"], "join": "invite"}),
    );
    let alice = &w.alice_mx.user_id;

    // A dry run first (gRPC Plan): both memberships planned, nothing sent.
    w.stack.authentik.add_member(&force_group, w.alice);
    w.stack.authentik.add_member(&invite_group, w.alice);
    let before = w.synapse.state_event_ids(&forced).await;
    let mut client = w.stack.coordinator_client().await;
    let plan = client
        .plan(PlanRequest { subject: None })
        .await
        .expect("plan")
        .into_inner();
    let mut planned: Vec<(Action, Resource, String)> = plan
        .changes
        .iter()
        .map(|c| (c.action(), c.resource(), c.key.clone()))
        .collect();
    planned.sort();
    let mut expected = vec![
        (
            Action::Create,
            Resource::MatrixMembership,
            key_of(&forced, alice),
        ),
        (
            Action::Create,
            Resource::MatrixMembership,
            key_of(&invited, alice),
        ),
    ];
    expected.sort();
    assert_eq!(planned, expected, "{plan:?}");
    assert_eq!(w.synapse.state_event_ids(&forced).await, before);
    assert_eq!(w.membership(&invited, alice).await, None);

    let job = w.deliver(&force_group, "evt-join-force").await;
    assert!(
        w.is_joined(&forced, alice).await,
        "forced: {:?}\n{job}",
        w.synapse.joined_members(&forced).await,
    );
    assert_eq!(
        w.membership(&invited, alice).await.as_deref(),
        Some("invite")
    );
    assert!(!w.is_joined(&invited, alice).await);

    let mut owned: Vec<(String, LedgerState)> = w
        .owned(Resource::MatrixMembership)
        .await
        .into_iter()
        .map(|o| (o.key.clone(), o.state()))
        .collect();
    owned.sort();
    let mut expected = vec![
        (key_of(&forced, alice), LedgerState::Created),
        (key_of(&invited, alice), LedgerState::Created),
    ];
    expected.sort();
    assert_eq!(owned, expected, "both memberships are ours");

    // In line: the next sweep sends Synapse nothing, and the invite is
    // not sent again.
    let before = (
        w.synapse.state_event_ids(&forced).await,
        w.synapse.state_event_ids(&invited).await,
    );
    let job = w.sweep().await;
    let after = (
        w.synapse.state_event_ids(&forced).await,
        w.synapse.state_event_ids(&invited).await,
    );
    assert_eq!(before, after, "no membership event was sent: {job}");
    assert_eq!(summary(&job)["planned"], 0, "{job}");
    assert_eq!(matrix_outcomes(&job), Vec::<(String, u64)>::new(), "{job}");
    assert_eq!(
        w.synapse.membership_history(&invited, alice).await,
        ["invite"],
        "one invite, ever"
    );

    // She accepts the invite: still in line, nothing is sent.
    w.synapse.join(&w.alice_mx, &invited).await;
    let before = w.synapse.state_event_ids(&invited).await;
    let job = w.sweep().await;
    assert_eq!(w.synapse.state_event_ids(&invited).await, before, "{job}");
    assert_eq!(summary(&job)["planned"], 0, "{job}");

    // She leaves the invite group only (grace period 0, the default): out
    // of that room, still in the other.
    w.remove(&invite_group, w.alice, "evt-leave-invite").await;
    assert_eq!(
        w.membership(&invited, alice).await.as_deref(),
        Some("leave")
    );
    assert!(w.is_joined(&forced, alice).await);
}

#[tokio::test]
async fn leaving_waits_out_the_grace_period_and_a_restart_mid_grace_removes_once() {
    let mut w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": "5s"}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &alice).await);

    let left_at = now_ms();
    let job = w.remove(&group, w.alice, "evt-leave").await;
    assert_eq!(count(&job, "matrix_membership.defer.ok"), 1, "{job}");
    assert!(
        w.is_joined(&room, &alice).await,
        "still in the room during the grace period"
    );
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let removal = &pending[0];
    assert_eq!(removal.resource(), Resource::MatrixMembership);
    assert_eq!(removal.key, key_of(&room, &alice));
    assert_eq!(removal.user, "alice");
    assert!(
        removal.due_at_ms >= left_at + 4_000 && removal.due_at_ms <= now_ms() + 5_000,
        "due 5 s after she left: {removal:?} (left at {left_at})"
    );
    let due = removal.due_at_ms;

    // The coordinator stops mid-grace and comes back: the removal is in
    // the state DB, not in its memory.
    w.stack.coordinator.kill();
    w.stack.start_coordinator(2).await;
    assert!(
        now_ms() < due,
        "restarted before the due time (the test needs a longer grace period)"
    );
    assert_eq!(w.pending().await, pending, "the restart kept it");
    assert!(w.is_joined(&room, &alice).await);

    // No webhook, no sweep: the grace timer runs the removal when due.
    let (world, room_ref, alice_ref) = (&w, &room, &alice);
    w.until(
        "alice kicked once the grace period is over",
        || async move { world.membership(room_ref, alice_ref).await.as_deref() == Some("leave") },
    )
    .await;
    assert!(now_ms() >= due, "not before it was due");
    let event = w.synapse.member_event(&room, &alice).await.unwrap();
    assert!(
        event["reason"].as_str().unwrap_or("").contains("team"),
        "the reason names the group: {event}"
    );
    w.until("the pending removal gone", || async move {
        world.pending().await.is_empty()
    })
    .await;
    assert!(w.owned(Resource::MatrixMembership).await.is_empty());

    // Once: another sweep and another restart send nothing more.
    w.sweep().await;
    w.stack.coordinator.kill();
    w.stack.start_coordinator(2).await;
    w.sweep().await;
    assert_eq!(
        w.synapse.membership_history(&room, &alice).await,
        ["invite", "join", "leave"],
        "force-joined (Synapse invites first), kicked once"
    );
}

#[tokio::test]
async fn a_removal_that_fell_due_while_the_coordinator_was_down_happens_at_start() {
    let mut w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": "2s"}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    w.remove(&group, w.alice, "evt-leave").await;
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let due = pending[0].due_at_ms;

    w.stack.coordinator.kill();
    w.until(
        "the due time passed while the coordinator is down",
        || async move { now_ms() > due },
    )
    .await;
    assert!(w.is_joined(&room, &alice).await);
    // Started again: no webhook, no sweep; the grace timer finds it due.
    w.stack.start_coordinator(2).await;
    let (world, room_ref, alice_ref) = (&w, &room, &alice);
    w.until("alice kicked after the start", || async move {
        world.membership(room_ref, alice_ref).await.as_deref() == Some("leave")
    })
    .await;
    w.until("the pending removal gone", || async move {
        world.pending().await.is_empty()
    })
    .await;
    assert_eq!(
        w.synapse.membership_history(&room, &alice).await,
        ["invite", "join", "leave"]
    );
}

#[tokio::test]
async fn re_added_during_the_grace_period_is_never_removed() {
    let w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": "3s"}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    w.remove(&group, w.alice, "evt-leave").await;
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let due = pending[0].due_at_ms;

    let job = w.add(&group, w.alice, "evt-back").await;
    assert_eq!(count(&job, "matrix_membership.cancel.ok"), 1, "{job}");
    assert!(w.pending().await.is_empty(), "the removal is called off");

    // Past the old due time, and a sweep on top: she stays.
    w.until("the old due time passed", || async move {
        now_ms() > due + 1_000
    })
    .await;
    w.sweep().await;
    assert!(w.is_joined(&room, &alice).await);
    assert_eq!(
        w.synapse.membership_history(&room, &alice).await,
        ["invite", "join"],
        "never removed"
    );
    assert_eq!(
        w.owned(Resource::MatrixMembership).await[0].state(),
        LedgerState::Created
    );
}

#[tokio::test]
async fn on_leave_ban_is_recorded_and_lifted_when_entitled_again() {
    let w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "on_leave": "ban", "grace_period": 0}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &alice).await);

    w.remove(&group, w.alice, "evt-leave").await;
    assert_eq!(w.membership(&room, &alice).await.as_deref(), Some("ban"));
    let event = w.synapse.member_event(&room, &alice).await.unwrap();
    assert!(
        event["reason"].as_str().unwrap_or("").contains("team"),
        "{event}"
    );
    let bans = w.owned(Resource::MatrixBan).await;
    assert_eq!(bans.len(), 1, "the ban is ours: {bans:?}");
    assert_eq!(bans[0].key, key_of(&room, &alice));

    w.add(&group, w.alice, "evt-back").await;
    assert!(
        w.is_joined(&room, &alice).await,
        "unbanned, then joined: {:?}",
        w.synapse.membership_history(&room, &alice).await
    );
    let history = w.synapse.membership_history(&room, &alice).await;
    assert_eq!(
        history[..3],
        ["invite", "join", "ban"],
        "joined, banned: {history:?}"
    );
    assert_eq!(
        history[3], "leave",
        "the ban was lifted (unban) before the join: {history:?}"
    );
    assert_eq!(history.last().map(String::as_str), Some("join"));
    assert!(w.owned(Resource::MatrixBan).await.is_empty());
}

#[tokio::test]
async fn a_member_without_an_account_waits_quietly_until_it_exists() {
    let w = world().await;
    let room = w.room("team").await;
    let group = w.group("team", json!({"rooms": [room], "join": "force"}));
    // Bob has never logged in to Matrix: no `@bob` yet.
    let bob = w.stack.authentik.add_user("bob", "bob@example.com");
    w.stack.authentik.add_member(&group, bob);
    let job = w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &w.alice_mx.user_id).await);
    assert_eq!(failures(&job), (0, 0), "{job}");
    assert_eq!(warnings(&job), Vec::<String>::new(), "quietly: {job}");
    assert_eq!(
        w.synapse.external_ids(&w.synapse.user_id("bob")).await,
        None
    );

    // His first login makes the account; the next sweep brings him in.
    let bob_mx = w.synapse.register("bob", false).await;
    w.sweep().await;
    assert!(w.is_joined(&room, &bob_mx.user_id).await);
}

#[tokio::test]
async fn a_member_a_room_admin_invited_by_hand_survives_join_leave_and_sweep() {
    let w = world().await;
    let room = w.room("team").await;
    // Bob was invited by hand (the bot's account is the room admin here)
    // and joined; carol, who is not in Authentik at all, too.
    let bob_mx = w.synapse.register("bob", false).await;
    let carol_mx = w.synapse.register("carol", false).await;
    for user in [&bob_mx, &carol_mx] {
        w.synapse.invite(&w.bot, &room, &user.user_id).await;
        w.synapse.join(user, &room).await;
    }
    let bob = w.stack.authentik.add_user("bob", "bob@example.com");
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": 0}),
    );
    w.stack.authentik.add_member(&group, bob);
    w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &w.alice_mx.user_id).await);
    let states: Vec<(String, LedgerState)> = w
        .owned(Resource::MatrixMembership)
        .await
        .into_iter()
        .map(|o| (o.key.clone(), o.state()))
        .collect();
    assert!(
        states.contains(&(key_of(&room, &bob_mx.user_id), LedgerState::Foreign)),
        "bob's membership is a person's: {states:?}"
    );

    w.stack.authentik.remove_member(&group, bob);
    w.remove(&group, w.alice, "evt-leave").await;
    w.sweep().await;
    assert_eq!(
        w.membership(&room, &w.alice_mx.user_id).await.as_deref(),
        Some("leave"),
        "ours is removed"
    );
    let members = w.synapse.joined_members(&room).await;
    assert!(
        members.contains(&bob_mx.user_id) && members.contains(&carol_mx.user_id),
        "hand-made members stay: {members:?}"
    );
    assert_eq!(
        w.synapse.membership_history(&room, &bob_mx.user_id).await,
        ["invite", "join"]
    );
    assert!(w.owned(Resource::MatrixMembership).await.is_empty());
}

#[tokio::test]
async fn include_children_puts_members_into_every_child_room_of_a_space() {
    let w = world().await;
    let space = w
        .synapse
        .create_room(
            &w.bot,
            RoomSpec {
                space: true,
                alias: Some("hq".into()),
                public: false,
            },
        )
        .await;
    let children = [w.room("hq-general").await, w.room("hq-random").await];
    for child in &children {
        w.synapse.add_space_child(&w.bot, &space, child).await;
    }
    // A room outside the space is not touched.
    let outside = w.room("elsewhere").await;
    let group = w.group(
        "hq",
        json!({"rooms": ["#hq:matrix.test"], "include_children": true, "join": "force",
               "grace_period": 0}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    for room in std::iter::once(&space).chain(&children) {
        assert!(
            w.is_joined(room, &alice).await,
            "{room}: {:?}",
            w.synapse.joined_members(room).await
        );
    }
    assert_eq!(w.membership(&outside, &alice).await, None);
    assert_eq!(w.owned(Resource::MatrixMembership).await.len(), 3);

    w.remove(&group, w.alice, "evt-leave").await;
    for room in std::iter::once(&space).chain(&children) {
        assert_eq!(
            w.membership(room, &alice).await.as_deref(),
            Some("leave"),
            "{room}"
        );
    }
}

#[tokio::test]
async fn power_levels_are_granted_and_reset_only_when_ours() {
    let w = world().await;
    let kept = w.room("kept").await;
    let changed = w.room("changed").await;
    let bob = w.synapse.register("bob", false).await;
    // A level a room admin gave someone else by hand.
    w.synapse
        .set_power_level(&w.bot, &kept, &bob.user_id, 20)
        .await;
    let members = w.group(
        "members",
        json!({"rooms": [kept, changed], "join": "force"}),
    );
    let mods = w.group("mods", json!({"rooms": [kept, changed], "power_level": 50}));
    let alice = w.alice_mx.user_id.clone();
    w.stack.authentik.add_member(&members, w.alice);
    w.add(&mods, w.alice, "evt-join").await;
    for room in [&kept, &changed] {
        assert!(w.is_joined(room, &alice).await, "{room}");
        assert_eq!(w.power_level(room, &alice).await, Some(50), "{room}");
    }
    assert_eq!(w.owned(Resource::MatrixPowerLevel).await.len(), 2);

    // The group's level changes: ours follows, and the ledger with it.
    w.stack.authentik.set_group_attributes(
        &mods,
        json!({"reconciler": {"matrix": {"rooms": [kept, changed], "power_level": 60}}}),
    );
    w.deliver(&mods, "evt-raise").await;
    for room in [&kept, &changed] {
        assert_eq!(w.power_level(room, &alice).await, Some(60), "{room}");
    }
    let levels: Vec<String> = w
        .owned(Resource::MatrixPowerLevel)
        .await
        .into_iter()
        .map(|o| o.remote_id)
        .collect();
    assert_eq!(levels, ["60", "60"]);

    // A room admin raises her by hand in one room: that level is theirs.
    w.synapse
        .set_power_level(&w.bot, &changed, &alice, 75)
        .await;
    w.sweep().await;
    assert_eq!(w.power_level(&changed, &alice).await, Some(75));

    // She leaves the moderators but stays a member.
    let job = w.remove(&mods, w.alice, "evt-demote").await;
    assert!(w.is_joined(&kept, &alice).await && w.is_joined(&changed, &alice).await);
    assert_eq!(
        w.power_level(&kept, &alice).await,
        None,
        "ours is reset to the room default: {}",
        w.synapse.power_levels(&kept).await
    );
    assert_eq!(
        w.power_level(&changed, &alice).await,
        Some(75),
        "a level set by hand stays"
    );
    assert_eq!(w.power_level(&kept, &bob.user_id).await, Some(20));
    let owned = w.owned(Resource::MatrixPowerLevel).await;
    assert!(owned.is_empty(), "{owned:?}\n{job}");

    // Stable: nothing more is sent.
    let before = w.synapse.state_event_ids(&kept).await;
    let job = w.sweep().await;
    assert_eq!(w.synapse.state_event_ids(&kept).await, before, "{job}");
}

#[tokio::test]
async fn tight_rate_limits_converge_without_failures() {
    // No exemption (MATRIX_EXEMPT_RATELIMIT unset): every invite the bot
    // sends counts against a burst of 3 at 2 a second.
    let w = world_with(
        RateLimits::TightMessages {
            per_second: 2.0,
            burst_count: 3,
        },
        3,
        &[],
    )
    .await;
    assert_eq!(
        w.synapse.rate_limit_override(&w.bot.user_id).await,
        json!({}),
        "the bot is not exempt"
    );
    let room = w.room("crowd").await;
    let group = w.group("crowd", json!({"rooms": [room], "join": "invite"}));
    let mut people = vec![w.alice_mx.user_id.clone()];
    w.stack.authentik.add_member(&group, w.alice);
    for n in 0..8 {
        let name = format!("user{n}");
        people.push(w.synapse.register(&name, false).await.user_id);
        let pk = w
            .stack
            .authentik
            .add_user(&name, &format!("{name}@example.com"));
        w.stack.authentik.add_member(&group, pk);
    }

    let job = w.sweep().await;
    assert_eq!(failures(&job), (0, 0), "{job}");
    assert_eq!(job["attempts"], 1, "converged in one run: {job}");
    assert_eq!(count(&job, "matrix_membership.create.applied"), 9, "{job}");
    for user in &people {
        assert_eq!(
            w.membership(&room, user).await.as_deref(),
            Some("invite"),
            "{user}"
        );
    }
    // The limit was met (and waited out), not avoided: Synapse answered
    // 429 and the agent waited.
    let logs = w.agent_logs();
    assert!(
        logs.contains("Synapse rate limit: waiting"),
        "Synapse limited the bot: {logs}"
    );
}

#[tokio::test]
async fn an_unknown_room_and_a_room_without_power_fail_alone() {
    let w = world().await;
    let good = w.room("good").await;
    // Eve's public room: the bot may join it, but holds power 0 there and
    // inviting needs 50.
    let eve = w.synapse.register("eve", false).await;
    let powerless = w
        .synapse
        .create_room(
            &eve,
            RoomSpec {
                alias: Some("eves".into()),
                public: true,
                ..RoomSpec::default()
            },
        )
        .await;
    w.synapse.join(&w.bot, &powerless).await;
    // And eve's private room, which the bot is not in at all.
    let outside = w
        .synapse
        .create_room(
            &eve,
            RoomSpec {
                alias: Some("eves-private".into()),
                ..RoomSpec::default()
            },
        )
        .await;
    let group = w.group(
        "team",
        json!({"rooms": ["#nowhere:matrix.test", powerless, outside, good], "join": "invite"}),
    );
    let alice = w.alice_mx.user_id.clone();
    let job = w.add(&group, w.alice, "evt-join").await;

    assert_eq!(
        w.membership(&good, &alice).await.as_deref(),
        Some("invite"),
        "the good room is applied: {job}"
    );
    assert_eq!(w.membership(&powerless, &alice).await, None);
    assert_eq!(w.membership(&outside, &alice).await, None);
    let warnings = warnings(&job);
    assert!(
        warnings.iter().any(|w| w.contains("#nowhere:matrix.test")),
        "the unknown room is named: {warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("M_FORBIDDEN") || w.contains(&powerless)),
        "the refusal in eve's room is reported: {warnings:#?}"
    );
    let (_, permanent) = failures(&job);
    assert_eq!(
        permanent, 2,
        "one change refused in each of eve's rooms: {job}"
    );
    let owned: Vec<String> = w
        .owned(Resource::MatrixMembership)
        .await
        .into_iter()
        .filter(|o| o.state() == LedgerState::Created)
        .map(|o| o.key)
        .collect();
    assert_eq!(owned, [key_of(&good, &alice)]);
}

#[tokio::test]
async fn synapse_down_is_transient_and_the_run_converges_after_restart() {
    let mut w = world_with(RateLimits::Generous, 100, &[]).await;
    let room = w.room("team").await;
    let group = w.group("team", json!({"rooms": [room], "join": "force"}));
    let alice = w.alice_mx.user_id.clone();
    w.synapse.stop();

    w.stack.authentik.add_member(&group, w.alice);
    let (status, reply) = w
        .stack
        .webhook(&Stack::group_event(&group, "evt-join-while-down"))
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["job_id"].as_i64().unwrap();
    let failed = w.stack.wait_for_failed_attempt(id, "Synapse is down").await;
    assert_eq!(
        failed["state"], "queued",
        "a transient failure is retried: {failed}"
    );
    assert!(
        w.owned(Resource::MatrixMembership)
            .await
            .iter()
            .all(|o| o.state() != LedgerState::Created),
        "nothing recorded as done while Synapse is down"
    );

    w.synapse.restart().await;
    let job = w.stack.wait_job(id).await;
    w.expect_done(&job);
    assert!(w.is_joined(&room, &alice).await, "{job}");
}

/// The users holding an invite to `room`, as its state shows.
async fn invited(synapse: &Synapse, room: &str) -> Vec<String> {
    let mut users: Vec<String> = synapse
        .state(room)
        .await
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect();
    users.sort();
    users
}

#[tokio::test]
async fn synapse_stopped_mid_sweep_is_transient_and_converges_after_restart() {
    // Tight limits space the run's invites out (2 at once, then 1 a
    // second), so Synapse can be stopped between two of them.
    let mut w = world_with(
        RateLimits::TightMessages {
            per_second: 1.0,
            burst_count: 2,
        },
        100,
        &[],
    )
    .await;
    let room = w.room("crowd").await;
    let group = w.group("crowd", json!({"rooms": [room], "join": "invite"}));
    let mut people = vec![w.alice_mx.user_id.clone()];
    w.stack.authentik.add_member(&group, w.alice);
    for n in 0..5 {
        let name = format!("user{n}");
        people.push(w.synapse.register(&name, false).await.user_id);
        let pk = w
            .stack
            .authentik
            .add_user(&name, &format!("{name}@example.com"));
        w.stack.authentik.add_member(&group, pk);
    }
    people.sort();

    let id = w.stack.request_sweep().await;
    let (synapse, room_ref) = (&w.synapse, &room);
    // Two invites in the room state: the agent sends one room's changes one
    // after another, so it had Synapse's answer to the first.
    w.until("the sweep's first invites in the room", || async move {
        invited(synapse, room_ref).await.len() >= 2
    })
    .await;
    w.synapse.stop();
    let failed = w
        .stack
        .wait_for_failed_attempt(id, "Synapse stopped mid-sweep")
        .await;
    let done: Vec<OwnedObject> = w
        .owned(Resource::MatrixMembership)
        .await
        .into_iter()
        .filter(|o| o.state() == LedgerState::Created)
        .collect();
    assert!(
        !done.is_empty() && done.len() < people.len(),
        "stopped mid-sweep: some invites done, some not: {done:?}\n{failed}"
    );
    let (transient, permanent) = failures(&failed);
    assert!(
        transient > 0 && permanent == 0,
        "the rest failed transiently: {failed}"
    );

    w.synapse.restart().await;
    let job = w.stack.wait_job(id).await;
    w.expect_done(&job);
    assert_eq!(invited(&w.synapse, &room).await, people, "{job}");
    for user in &people {
        assert_eq!(
            w.synapse.membership_history(&room, user).await,
            ["invite"],
            "{user}: invited once, the retry sent only what was missing"
        );
    }
}

#[tokio::test]
async fn users_are_found_by_their_sso_link_and_created_linked_when_missing() {
    const PROVIDER: &str = "oidc-authentik";
    let w = world_with(
        RateLimits::Generous,
        3,
        &[
            ("MATRIX_OIDC_PROVIDER", PROVIDER),
            ("MATRIX_CREATE_USERS", "true"),
        ],
    )
    .await;
    let room = w.room("team").await;
    let carol = w.stack.authentik.add_user("carol", "carol@example.com");
    let dave = w.stack.authentik.add_user("dave", "dave@example.com");
    let carol_uid = w.stack.authentik.user_uid(carol);
    let dave_uid = w.stack.authentik.user_uid(dave);
    // Carol logged in by SSO once and got `@carol.m` (say `@carol` was
    // taken, by the account registered here).
    let carol_linked = w
        .synapse
        .create_linked_user("carol.m", PROVIDER, &carol_uid)
        .await;
    let carol_other = w.synapse.register("carol", false).await;
    // Unlinked, by Synapse's localpart rule: `Dora.Smith` is `@dora.smith`.
    let dora = w.stack.authentik.add_user("Dora.Smith", "dora@example.com");
    let dora_mx = w.synapse.register("dora.smith", false).await;
    assert_eq!(
        w.synapse.external_ids(&w.synapse.user_id("dave")).await,
        None
    );

    let group = w.group("team", json!({"rooms": [room], "join": "force"}));
    w.stack.authentik.add_member(&group, carol);
    w.stack.authentik.add_member(&group, dave);
    w.stack.authentik.add_member(&group, dora);
    w.add(&group, w.alice, "evt-join").await;

    let members = w.synapse.joined_members(&room).await;
    assert!(
        members.contains(&carol_linked),
        "carol by her link: {members:?}"
    );
    assert!(
        !members.contains(&carol_other.user_id),
        "not the unlinked namesake: {members:?}"
    );
    assert!(
        members.contains(&w.alice_mx.user_id) && members.contains(&dora_mx.user_id),
        "alice and dora, unlinked, by their usernames: {members:?}"
    );
    let dave_id = w.synapse.user_id("dave");
    assert!(
        members.contains(&dave_id),
        "dave's new account: {members:?}"
    );
    assert_eq!(
        w.synapse.external_ids(&dave_id).await,
        Some(vec![(PROVIDER.to_owned(), dave_uid.clone())]),
        "created linked to his Authentik uid"
    );
    assert_eq!(
        w.synapse.user_by_external_id(PROVIDER, &dave_uid).await,
        Some(dave_id.clone()),
        "the ID lookup returns it"
    );
    let accounts: Vec<String> = w
        .owned(Resource::MatrixAccount)
        .await
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(accounts, [dave_id], "the account we made is on the ledger");
}

#[tokio::test]
async fn authentik_looking_wrong_kicks_nobody() {
    let w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": 0}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &alice).await);

    // An empty user list after a full one (a token that lost view_user):
    // a sweep, and a webhook for alice, whom Authentik now says it does
    // not know.
    w.stack.authentik.set_hide_users(true);
    let job = w.stack.sweep().await;
    assert!(w.is_joined(&room, &alice).await, "{job}");
    let job = w
        .stack
        .webhook_and_wait(&Stack::user_event(w.alice, "evt-hidden"))
        .await;
    assert!(w.is_joined(&room, &alice).await, "{job}");
    assert!(w.pending().await.is_empty(), "no removal waits either");
    w.stack.authentik.set_hide_users(false);

    // Authentik answering 5xx, for every attempt.
    w.stack.authentik.fail_next(1_000);
    let job = w.stack.sweep().await;
    assert!(w.is_joined(&room, &alice).await, "{job}");
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-5xx"))
        .await;
    assert!(w.is_joined(&room, &alice).await, "{job}");
    assert!(w.pending().await.is_empty());
    assert_eq!(
        w.synapse.membership_history(&room, &alice).await,
        ["invite", "join"],
        "nobody was kicked"
    );
    assert_eq!(
        w.owned(Resource::MatrixMembership).await[0].state(),
        LedgerState::Created
    );
}

#[tokio::test]
async fn a_mass_leave_with_a_grace_period_is_held_like_one_without() {
    // The removal guard trips above 2 removals (and half of what we own).
    let w = world_with(RateLimits::Generous, 3, &[("REMOVAL_GUARD_MIN", "2")]).await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": "2s"}),
    );
    let mut members = vec![(w.alice, w.alice_mx.user_id.clone())];
    for n in 0..3 {
        let name = format!("user{n}");
        let user_id = w.synapse.register(&name, false).await.user_id;
        let pk = w
            .stack
            .authentik
            .add_user(&name, &format!("{name}@example.com"));
        members.push((pk, user_id));
    }
    for (pk, _) in &members {
        w.stack.authentik.add_member(&group, *pk);
    }
    w.deliver(&group, "evt-join").await;
    for (_, user_id) in &members {
        assert!(w.is_joined(&room, user_id).await, "{user_id}");
    }

    // The whole group emptied at once (a mistake in Authentik): four
    // removals, put off or not, are held.
    for (pk, _) in &members {
        w.stack.authentik.remove_member(&group, *pk);
    }
    let left_at = now_ms();
    let job = w.deliver(&group, "evt-emptied").await;
    let warnings = warnings(&job);
    assert!(
        warnings.iter().any(|w| w.contains("exceed the guard")),
        "held: {warnings:#?}"
    );
    assert_eq!(w.pending().await, vec![], "no grace period started: {job}");
    // Past the time the grace period would have ended, and a sweep: still
    // nobody removed.
    w.until("the grace period would have ended", || async move {
        now_ms() > left_at + 3_000
    })
    .await;
    w.sweep().await;
    for (_, user_id) in &members {
        assert!(w.is_joined(&room, user_id).await, "{user_id}");
        assert_eq!(
            w.synapse.membership_history(&room, user_id).await,
            ["invite", "join"],
            "{user_id}"
        );
    }
}

#[tokio::test]
async fn a_group_whose_matrix_attribute_breaks_keeps_what_it_granted() {
    let w = world().await;
    let room = w.room("team").await;
    let group = w.group(
        "team",
        json!({"rooms": [room], "join": "force", "grace_period": 0}),
    );
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    assert!(w.is_joined(&room, &alice).await);

    w.stack.authentik.set_group_attributes(
        &group,
        json!({"reconciler": {"matrix": {"rooms": [room], "join": "knock"}}}),
    );
    let job = w.deliver(&group, "evt-broken").await;
    let warnings = warnings(&job);
    assert!(
        warnings.iter().any(|w| w.contains("not a join method")),
        "the error is reported: {warnings:#?}"
    );
    assert!(w.is_joined(&room, &alice).await, "kept: {job}");
    assert!(w.pending().await.is_empty(), "no removal waits either");
    w.sweep().await;
    assert!(w.is_joined(&room, &alice).await);
    assert_eq!(
        w.owned(Resource::MatrixMembership).await[0].state(),
        LedgerState::Created,
        "still ours, for when the group is fixed"
    );
}

#[tokio::test]
async fn matrix_mappings_grant_like_the_attribute() {
    let mappings = r##"[{"group": "legacy", "space": "#legacy:matrix.test", "method": "force"}]"##;
    let w = world_with(RateLimits::Generous, 3, &[("MATRIX_MAPPINGS", mappings)]).await;
    let room = w.room("legacy").await;
    // No attribute: the mapping alone grants the room.
    let group = w.stack.authentik.add_group("legacy", json!({}));
    let alice = w.alice_mx.user_id.clone();
    w.add(&group, w.alice, "evt-join").await;
    assert!(
        w.is_joined(&room, &alice).await,
        "force-joined as the mapping says"
    );
    assert_eq!(
        w.owned(Resource::MatrixMembership).await[0].key,
        key_of(&room, &alice)
    );

    w.remove(&group, w.alice, "evt-leave").await;
    assert_eq!(w.membership(&room, &alice).await.as_deref(), Some("leave"));
}
