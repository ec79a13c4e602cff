//! End to end for Stalwart provisioning: the real coordinator and
//! stalwart-agent binaries (and the mailcow-agent every stack has) against
//! the Authentik simulator and the Stalwart 0.16 simulator (in this
//! process, over real HTTP). Every assertion reads what the Stalwart
//! simulator holds (its objects, its call counts, a sign-in attempt) and,
//! where the coordinator promises it, its gRPC `Status` and `ListOwned`.

use std::time::{Duration, Instant};

use reconciler_proto::coordinator::{
    LedgerState, ListOwnedRequest, OwnedObject, PendingRemoval, Resource, StatusRequest,
};
use reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN;
use reconciler_testkit::harness::{Stack, StackOptions};
use reconciler_testkit::stalwart_sim::{ObjectType, SignIn, StalwartSim, StalwartSimConfig};
use serde_json::{Value, json};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const TEAM: &str = "team@example.com";
/// The `/set` calls the simulator counts: every write the agent can make.
const SETS: [&str; 3] = ["x:Domain/set", "x:Account/set", "x:MailingList/set"];
/// How long a test waits for something the coordinator does by itself.
const PATIENCE: Duration = Duration::from_secs(30);

struct World {
    sim: StalwartSim,
    stack: Stack,
}

/// The settings a world is started with.
struct Setup {
    /// Extra coordinator environment (`STALWART_DELETE_AFTER`, …).
    coordinator: Vec<(&'static str, &'static str)>,
    /// The key the stalwart-agent presents; `None` is the simulator's own.
    api_key: Option<&'static str>,
    max_attempts: u32,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            coordinator: Vec::new(),
            api_key: None,
            max_attempts: 3,
        }
    }
}

/// The Stalwart simulator, seeded by `seed` as a person would, then the
/// stack with a stalwart-agent pointed at it. `example.com` and
/// `example.org` are the managed domains.
async fn world_with(setup: Setup, seed: impl FnOnce(&StalwartSim)) -> World {
    let sim = StalwartSim::start(StalwartSimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    seed(&sim);
    let key = setup.api_key.unwrap_or(sim.api_key()).to_owned();
    let mut coordinator_env: Vec<(String, String)> = vec![
        ("STALWART_DOMAINS".into(), "example.com,example.org".into()),
        ("GRACE_POLL_SECONDS".into(), "1".into()),
    ];
    coordinator_env.extend(
        setup
            .coordinator
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let stack = Stack::start(StackOptions {
        max_attempts: setup.max_attempts,
        coordinator_env,
        stalwart_agent_env: Some(vec![
            ("STALWART_URL".into(), sim.base_url()),
            ("STALWART_API_KEY".into(), key),
        ]),
        ..StackOptions::default()
    })
    .await;
    World { sim, stack }
}

async fn world() -> World {
    world_with(Setup::default(), |_| {}).await
}

fn mailbox_group(quota: Option<&str>) -> Value {
    match quota {
        Some(q) => json!({"reconciler": {"stalwart": {"mailbox": true, "quota": q}}}),
        None => json!({"reconciler": {"stalwart": {"mailbox": true}}}),
    }
}

fn aliases_attribute(aliases: &[&str]) -> Value {
    json!({"reconciler": {"mail_aliases": aliases}})
}

fn warnings(job: &Value) -> Vec<String> {
    job["summary"]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The outcome counter `key` of the job's report (0 when absent).
fn outcome(job: &Value, key: &str) -> u64 {
    job["summary"]["outcomes"][key].as_u64().unwrap_or(0)
}

impl World {
    fn writes(&self) -> u64 {
        SETS.iter().map(|m| self.sim.count(m)).sum()
    }

    fn account(&self, address: &str) -> Option<Value> {
        self.sim.find(ObjectType::Account, address)
    }

    fn list(&self, address: &str) -> Option<Value> {
        self.sim.find(ObjectType::MailingList, address)
    }

    fn domain_names(&self) -> Vec<String> {
        self.sim.state()["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The addresses of `account`'s aliases (`name@<its domain>`).
    fn aliases(&self, address: &str) -> Vec<String> {
        let account = self.account(address).expect("account");
        let domains = self.sim.state()["domains"].as_array().unwrap().clone();
        let domain_name = |id: &Value| {
            domains
                .iter()
                .find(|d| d["id"] == *id)
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let mut out: Vec<String> = account["aliases"]
            .as_object()
            .map(|m| {
                m.values()
                    .map(|a| {
                        format!(
                            "{}@{}",
                            a["name"].as_str().unwrap(),
                            domain_name(&a["domainId"])
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Is sign-in through the directory (OIDC) allowed?
    fn signs_in(&self, address: &str) -> bool {
        self.sim.sign_in(address, None) == SignIn::Allowed
    }

    async fn sweep_done(&self) -> Value {
        let job = self.stack.sweep().await;
        self.expect_done(&job);
        job
    }

    fn expect_done(&self, job: &Value) {
        assert_eq!(
            job["state"],
            "done",
            "job failed: {job}\ncoordinator log:\n{}\nstalwart-agent log:\n{}",
            self.stack.coordinator.logs(),
            self.stack.stalwart_agent.as_ref().unwrap().logs()
        );
    }

    /// Sends the user webhook for `pk` and waits for its job to be done.
    async fn user_changed(&self, pk: i64, event: &str) -> Value {
        let job = self
            .stack
            .webhook_and_wait(&Stack::user_event(pk, event))
            .await;
        self.expect_done(&job);
        job
    }

    /// Sends the group webhook for `group` and waits for its job.
    async fn group_changed(&self, group: &str, event: &str) -> Value {
        let job = self
            .stack
            .webhook_and_wait(&Stack::group_event(group, event))
            .await;
        self.expect_done(&job);
        job
    }

    async fn pending(&self) -> Vec<PendingRemoval> {
        let mut client = self.stack.coordinator_client().await;
        client
            .status(StatusRequest { job_id: 0 })
            .await
            .unwrap()
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
            .unwrap()
            .into_inner()
            .objects
    }

    /// The ledger row of ours for `address` under `resource`, if any.
    async fn owned_row(&self, resource: Resource, address: &str) -> Option<OwnedObject> {
        self.owned(resource)
            .await
            .into_iter()
            .find(|o| o.key.contains(address))
    }

    /// Polls until `done` holds, failing with `what` after [`PATIENCE`].
    async fn until(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < PATIENCE,
                "{what} did not happen\ncoordinator log:\n{}",
                self.stack.coordinator.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Milliseconds since the Unix epoch, as `PendingRemoval` counts them.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn members_get_accounts_with_their_aliases_lists_their_effective_members_and_domains_once() {
    let w = world().await;
    assert!(w.domain_names().is_empty(), "no domain yet");
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    a.set_user_attributes(
        alice,
        aliases_attribute(&["a.smith@example.com", "Alice.S@example.org"]),
    );
    let eve = a.add_user("eve", "eve@elsewhere.net");
    let mail = a.add_group("mail", mailbox_group(Some("5G")));
    a.add_member(&mail, alice);
    a.add_member(&mail, eve);
    // The list of `team` counts the members of its child group too.
    let bob = a.add_user("bob", BOB);
    let carol = a.add_user("carol", CAROL);
    let team = a.add_group("team", json!({"reconciler": {"stalwart": {"list": TEAM}}}));
    let backend = a.add_group("team-backend", json!({}));
    a.set_group_parents(&backend, &[&team]);
    a.add_member(&team, bob);
    a.add_member(&backend, carol);

    let job = w.sweep_done().await;
    // Both managed domains are needed (alice's alias is in example.org).
    let mut domains = w.domain_names();
    domains.sort();
    assert_eq!(domains, ["example.com", "example.org"], "{job}");

    let account = w.account(ALICE).expect("alice's account");
    assert_eq!(account["@type"], "User");
    assert_eq!(account["quotas"]["maxDiskQuota"], 5u64 << 30);
    assert_eq!(account["credentials"], json!({}), "no usable password");
    assert_eq!(
        w.aliases(ALICE),
        ["a.smith@example.com", "alice.s@example.org"]
    );
    assert!(w.signs_in(ALICE), "sign-in through the directory works");
    // Eve's address is in no managed domain: reported, not provisioned.
    assert!(w.account("eve@elsewhere.net").is_none());
    assert!(
        warnings(&job)
            .iter()
            .any(|m| m.contains("eve") && m.contains("not in a managed Stalwart domain")),
        "{job}"
    );
    // Only the list members, no accounts for them (their group has no mailbox).
    assert!(w.account(BOB).is_none());
    let list = w.list(TEAM).expect("the team list");
    assert_eq!(list["recipients"], json!({BOB: true, CAROL: true}));

    // What the ledger says is ours, with Stalwart's ids.
    let row = w
        .owned_row(Resource::StalwartAccount, ALICE)
        .await
        .expect("alice's account is ours");
    assert_eq!(row.state(), LedgerState::Created);
    assert_eq!(row.remote_id, account["id"].as_str().unwrap());
    assert_eq!(row.user, "alice");
    assert_eq!(w.owned(Resource::StalwartAlias).await.len(), 2);
    assert_eq!(w.owned(Resource::StalwartDomain).await.len(), 2);
    assert!(w.owned_row(Resource::StalwartList, TEAM).await.is_some());

    // Nothing changed: a second sweep reads and writes nothing.
    w.sim.reset_counts();
    let again = w.sweep_done().await;
    assert_eq!(w.writes(), 0, "{:?}\n{again}", w.sim.counts());
    assert_eq!(again["summary"]["planned"], 0, "{again}");

    // A broken `mail_aliases` is reported and takes nothing away.
    a.set_user_attributes(
        alice,
        json!({"reconciler": {"mail_aliases": "a.smith@example.com"}}),
    );
    let job = w.user_changed(alice, "evt-broken-aliases").await;
    assert!(
        warnings(&job)
            .iter()
            .any(|m| m.contains("mail_aliases") && m.contains("stay")),
        "{job}"
    );
    assert_eq!(
        w.aliases(ALICE),
        ["a.smith@example.com", "alice.s@example.org"]
    );

    // A new member of the child group joins the list; nothing else moves.
    a.add_member(&backend, alice);
    w.group_changed(&backend, "evt-backend").await;
    let list = w.list(TEAM).unwrap();
    assert_eq!(
        list["recipients"],
        json!({ALICE: true, BOB: true, CAROL: true})
    );

    // The group stops naming the list: ours is destroyed, the domain stays.
    a.set_group_attributes(&team, json!({}));
    w.group_changed(&team, "evt-no-list").await;
    assert!(w.list(TEAM).is_none());
    assert!(w.owned_row(Resource::StalwartList, TEAM).await.is_none());
    assert_eq!(w.domain_names().len(), 2);
}

#[tokio::test]
async fn a_deactivated_user_is_suspended_with_the_mailbox_kept_and_resumed_when_reactivated() {
    let w = world().await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    w.sweep_done().await;
    let id = w.account(ALICE).unwrap()["id"].clone();
    assert!(w.signs_in(ALICE));

    a.set_user_active(alice, false);
    let job = w.user_changed(alice, "evt-deactivate").await;
    assert_eq!(
        w.sim.sign_in(ALICE, None),
        SignIn::Forbidden,
        "sign-in refused: {job}"
    );
    let account = w.account(ALICE).expect("the mailbox is kept");
    assert_eq!(account["id"], id);
    assert_eq!(
        account["permissions"]["disabledPermissions"]["authenticate"],
        true
    );
    let suspension = w
        .owned_row(Resource::StalwartSuspension, ALICE)
        .await
        .expect("the suspension is ours");
    assert_eq!(suspension.state(), LedgerState::Created);
    assert!(w.pending().await.is_empty(), "deactivated is not a leave");

    // A sweep while she is deactivated changes nothing.
    w.sim.reset_counts();
    w.sweep_done().await;
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());

    a.set_user_active(alice, true);
    w.user_changed(alice, "evt-reactivate").await;
    assert!(w.signs_in(ALICE), "resumed");
    let account = w.account(ALICE).unwrap();
    assert_eq!(account["id"], id, "the same account, as it was");
    assert_eq!(account["permissions"]["@type"], "Inherit");
    assert!(
        w.owned_row(Resource::StalwartSuspension, ALICE)
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_leaver_is_suspended_at_once_and_destroyed_after_the_delete_after_period() {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "2s")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    a.set_user_attributes(alice, aliases_attribute(&["a.smith@example.com"]));
    let bob = a.add_user("bob", BOB);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    a.add_member(&mail, bob);
    w.sweep_done().await;
    assert!(w.account(ALICE).is_some());

    a.remove_member(&mail, alice);
    let left = Instant::now();
    let job = w.group_changed(&mail, "evt-leave").await;
    assert_eq!(
        w.sim.sign_in(ALICE, None),
        SignIn::Forbidden,
        "suspended at once: {job}"
    );
    assert!(w.account(ALICE).is_some(), "not destroyed yet");
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let removal = &pending[0];
    assert_eq!(removal.resource(), Resource::StalwartAccount);
    assert!(removal.key.contains(ALICE), "{removal:?}");
    assert_eq!(removal.user, "alice");
    let wait = removal.due_at_ms - removal.since_ms;
    assert!((1900..=2100).contains(&wait), "due 2s after: {removal:?}");

    // Destroyed by the grace timer, without another trigger.
    w.until("alice's account destroyed", |w| w.account(ALICE).is_none())
        .await;
    assert!(
        left.elapsed() >= Duration::from_millis(1900),
        "not before STALWART_DELETE_AFTER: {:?}",
        left.elapsed()
    );
    let start = Instant::now();
    while !w.pending().await.is_empty() {
        assert!(start.elapsed() < PATIENCE, "the pending removal stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        w.owned_row(Resource::StalwartAccount, ALICE)
            .await
            .is_none()
    );
    // The next run forgets her suspension and alias with the account.
    w.sweep_done().await;
    for resource in [Resource::StalwartSuspension, Resource::StalwartAlias] {
        let row = w.owned_row(resource, ALICE).await;
        assert!(row.is_none(), "{resource:?} left over: {row:?}");
    }
    // Bob, still a member, is untouched; the domain stays.
    assert!(w.signs_in(BOB));
    assert_eq!(w.domain_names(), ["example.com"]);
}

#[tokio::test]
async fn a_pending_destroy_survives_a_coordinator_restart() {
    let mut w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "2s")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    w.sweep_done().await;
    a.remove_member(&mail, alice);
    w.group_changed(&mail, "evt-leave").await;
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let due = pending[0].due_at_ms;

    // The coordinator is down when the removal falls due.
    w.stack.coordinator.kill();
    while now_ms() < due + 500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.account(ALICE).is_some(), "nobody destroyed it meanwhile");
    w.stack.start_coordinator(2).await;
    w.until("destroyed after the restart", |w| {
        w.account(ALICE).is_none()
    })
    .await;
}

#[tokio::test]
async fn a_user_deleted_in_authentik_is_suspended_and_without_delete_after_never_destroyed() {
    let w = world().await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let bob = a.add_user("bob", BOB);
    // Enough people that one deletion is not a drop the guard distrusts.
    for name in ["carol", "dave", "erin"] {
        a.add_user(name, &format!("{name}@example.com"));
    }
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    a.add_member(&mail, bob);
    w.sweep_done().await;
    let id = w.account(ALICE).unwrap()["id"].clone();

    a.delete_user(alice);
    let job = w.user_changed(alice, "evt-deleted").await;
    assert_eq!(
        w.sim.sign_in(ALICE, None),
        SignIn::Forbidden,
        "suspended: {job}"
    );
    assert!(w.pending().await.is_empty(), "STALWART_DELETE_AFTER unset");
    // Sweeps after that keep the account, suspended, and write nothing.
    w.sim.reset_counts();
    w.sweep_done().await;
    w.sweep_done().await;
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());
    let account = w.account(ALICE).expect("never destroyed");
    assert_eq!(account["id"], id);
    assert_eq!(w.sim.sign_in(ALICE, None), SignIn::Forbidden);
    assert!(w.signs_in(BOB));
}

#[tokio::test]
async fn a_member_entitled_again_before_the_period_ends_is_resumed_and_never_destroyed() {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "4s")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    w.sweep_done().await;
    let id = w.account(ALICE).unwrap()["id"].clone();

    a.remove_member(&mail, alice);
    w.group_changed(&mail, "evt-leave").await;
    assert_eq!(w.sim.sign_in(ALICE, None), SignIn::Forbidden);
    let pending = w.pending().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let due = pending[0].due_at_ms;

    // Another group grants her a mailbox again.
    let other = a.add_group("mail-2", mailbox_group(None));
    a.add_member(&other, alice);
    w.group_changed(&other, "evt-rejoin").await;
    assert!(now_ms() < due, "re-entitled before the due time");
    assert!(w.pending().await.is_empty(), "the removal is cancelled");
    assert!(w.signs_in(ALICE), "resumed");

    // Past the old due time, the grace timer and a sweep leave it alone.
    while now_ms() < due + 1500 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.sweep_done().await;
    let account = w.account(ALICE).expect("never destroyed");
    assert_eq!(account["id"], id);
    assert!(w.signs_in(ALICE));
}

/// Alice and bob provisioned, with a short `STALWART_DELETE_AFTER`.
async fn two_members() -> World {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "1s")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let bob = a.add_user("bob", BOB);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    a.add_member(&mail, bob);
    w.sweep_done().await;
    assert!(w.signs_in(ALICE) && w.signs_in(BOB));
    w
}

#[tokio::test]
async fn authentik_failing_suspends_and_destroys_nothing() {
    let w = two_members().await;
    let before = w.sim.state();
    w.sim.reset_counts();
    w.stack.authentik.fail_next(1_000);
    let job = w.stack.sweep().await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Authentik"),
        "{job}"
    );
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());
    assert!(w.pending().await.is_empty(), "no destroy is scheduled");
    assert!(w.signs_in(ALICE) && w.signs_in(BOB));
    assert_eq!(w.sim.state(), before);
}

#[tokio::test]
async fn an_empty_user_list_after_a_full_one_suspends_and_destroys_nothing() {
    let w = two_members().await;
    let before = w.sim.state();
    w.stack.authentik.set_hide_users(true);
    w.sim.reset_counts();
    let job = w.sweep_done().await;
    assert!(
        warnings(&job).iter().any(|m| m.contains("removal(s) held")),
        "{job}"
    );
    assert_eq!(w.writes(), 0, "no suspension: {:?}", w.sim.counts());
    assert!(w.pending().await.is_empty(), "no destroy is scheduled");
    assert!(w.signs_in(ALICE) && w.signs_in(BOB));
    assert_eq!(w.sim.state(), before);

    // Authentik looks right again: nothing was lost on either side.
    w.stack.authentik.set_hide_users(false);
    w.sweep_done().await;
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());
    assert_eq!(w.sim.state(), before);
}

#[tokio::test]
async fn a_mass_leave_suspends_nothing_until_a_forced_sweep() {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "1h")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let mail = a.add_group("mail", mailbox_group(None));
    let people: Vec<String> = (0..12).map(|n| format!("user{n}@example.com")).collect();
    for address in &people {
        let pk = a.add_user(address.split('@').next().unwrap(), address);
        a.add_member(&mail, pk);
    }
    w.sweep_done().await;
    assert!(people.iter().all(|p| w.signs_in(p)));

    // The group's attribute is dropped by mistake: every account would go.
    a.set_group_attributes(&mail, json!({}));
    w.sim.reset_counts();
    let job = w.group_changed(&mail, "evt-attribute-dropped").await;
    assert!(
        warnings(&job)
            .iter()
            .any(|m| m.contains("exceed the guard")),
        "{job}"
    );
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());
    assert!(people.iter().all(|p| w.signs_in(p)));
    assert!(w.pending().await.is_empty(), "no destroy clock started");

    // An operator who means it forces a sweep.
    let (status, body) = w
        .stack
        .post(
            "/reconcile-all",
            &[
                ("X-Reconciler-Admin-Token", ADMIN_TOKEN),
                ("X-Reconciler-Force", "true"),
            ],
            String::new(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let job = w.stack.wait_job(body["job_id"].as_i64().unwrap()).await;
    w.expect_done(&job);
    assert!(people.iter().all(|p| !w.signs_in(p)), "{job}");
    assert_eq!(w.pending().await.len(), people.len());
}

#[tokio::test]
async fn objects_a_person_made_survive_every_sweep() {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "1s")],
            ..Setup::default()
        },
        |sim| {
            sim.add_domain("example.com");
            // A person's own account, with a password, and their alias.
            let human = sim.add_user("helpdesk@example.com", Some("Correct-Horse-Battery-9"));
            sim.add_alias(ObjectType::Account, &human, "support@example.com");
            // A person's account at a member's address.
            sim.add_user(BOB, Some("Bobs-Own-Passw0rd!"));
            // A person's list at the address a group names.
            sim.add_list(TEAM, &["someone@example.net"]);
        },
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    a.set_user_attributes(alice, aliases_attribute(&["a.smith@example.com"]));
    let bob = a.add_user("bob", BOB);
    let mail = a.add_group(
        "mail",
        json!({"reconciler": {"stalwart": {"mailbox": true, "quota": "1G", "list": TEAM}}}),
    );
    a.add_member(&mail, alice);
    a.add_member(&mail, bob);
    let job = w.sweep_done().await;
    let warned = warnings(&job);
    assert!(
        warned
            .iter()
            .any(|m| m.contains(BOB) && m.contains("not made by us")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|m| m.contains(TEAM) && m.contains("not made by us")),
        "{warned:?}"
    );
    assert!(w.account(ALICE).is_some());
    // A person adds an alias to our account.
    let alice_id = w.account(ALICE).unwrap()["id"].as_str().unwrap().to_owned();
    w.sim
        .add_alias(ObjectType::Account, &alice_id, "alice.desk@example.com");
    let humans = |w: &World| {
        (
            w.account("helpdesk@example.com"),
            w.account(BOB),
            w.list(TEAM),
        )
    };
    let made = humans(&w);
    assert_eq!(made.1.as_ref().unwrap()["quotas"], json!({}), "not ours");
    assert_eq!(
        made.2.as_ref().unwrap()["recipients"],
        json!({"someone@example.net": true})
    );

    // Sweeps, alice's own alias dropped from her attribute, bob leaving:
    // only what we made moves.
    w.sim.reset_counts();
    w.sweep_done().await;
    assert_eq!(w.writes(), 0, "{:?}", w.sim.counts());
    a.set_user_attributes(alice, aliases_attribute(&[]));
    w.user_changed(alice, "evt-aliases").await;
    assert_eq!(w.aliases(ALICE), ["alice.desk@example.com"]);
    a.remove_member(&mail, bob);
    w.group_changed(&mail, "evt-bob-leaves").await;
    assert_eq!(
        w.sim.sign_in(BOB, Some("Bobs-Own-Passw0rd!")),
        SignIn::Allowed,
        "a person's account is never suspended"
    );
    assert!(w.pending().await.is_empty(), "nor scheduled for destroy");
    w.sweep_done().await;
    assert_eq!(humans(&w), made);
    assert_eq!(
        w.sim
            .sign_in("helpdesk@example.com", Some("Correct-Horse-Battery-9")),
        SignIn::Allowed
    );
}

#[tokio::test]
async fn with_adopt_existing_a_same_named_account_is_adopted_and_then_managed() {
    let w = world_with(
        Setup {
            coordinator: vec![
                ("STALWART_ADOPT_EXISTING", "true"),
                ("STALWART_DELETE_AFTER", "1s"),
            ],
            ..Setup::default()
        },
        |sim| {
            sim.add_domain("example.com");
            sim.add_user(ALICE, Some("Alices-Old-Passw0rd!"));
        },
    )
    .await;
    let id = w.account(ALICE).unwrap()["id"].as_str().unwrap().to_owned();
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    a.set_user_attributes(alice, aliases_attribute(&["a.smith@example.com"]));
    let mail = a.add_group("mail", mailbox_group(Some("2G")));
    a.add_member(&mail, alice);
    let job = w.sweep_done().await;
    let row = w
        .owned_row(Resource::StalwartAccount, ALICE)
        .await
        .unwrap_or_else(|| panic!("adopted: {job}"));
    assert_eq!(row.state(), LedgerState::Created);
    assert_eq!(row.remote_id, id);
    // Managed from now on: the group's quota and her aliases.
    let account = w.account(ALICE).unwrap();
    assert_eq!(account["id"], id, "adopted, not re-created");
    assert_eq!(account["quotas"]["maxDiskQuota"], 2u64 << 30);
    assert_eq!(w.aliases(ALICE), ["a.smith@example.com"]);

    // ... suspended when deactivated, and removed like ours when she leaves.
    a.set_user_active(alice, false);
    w.user_changed(alice, "evt-deactivate").await;
    assert_eq!(
        w.sim.sign_in(ALICE, Some("Alices-Old-Passw0rd!")),
        SignIn::Forbidden
    );
    a.set_user_active(alice, true);
    a.remove_member(&mail, alice);
    w.user_changed(alice, "evt-leave").await;
    w.until("the adopted account destroyed", |w| {
        w.account(ALICE).is_none()
    })
    .await;
}

#[tokio::test]
async fn a_domain_still_in_use_is_never_destroyed() {
    let w = world_with(
        Setup {
            coordinator: vec![("STALWART_DELETE_AFTER", "1s")],
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let olga = a.add_user("olga", "olga@example.org");
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    a.add_member(&mail, olga);
    w.sweep_done().await;
    let mut domains = w.domain_names();
    domains.sort();
    assert_eq!(domains, ["example.com", "example.org"]);
    let domain_sets = w.sim.count("x:Domain/set");

    // Olga leaves: her account goes after the period; alice still uses
    // example.com, and example.org, which we created, stays too.
    a.remove_member(&mail, olga);
    w.group_changed(&mail, "evt-olga-leaves").await;
    w.until("olga's account destroyed", |w| {
        w.account("olga@example.org").is_none()
    })
    .await;
    w.sweep_done().await;
    let mut domains = w.domain_names();
    domains.sort();
    assert_eq!(domains, ["example.com", "example.org"]);
    assert_eq!(
        w.sim.count("x:Domain/set"),
        domain_sets,
        "no domain write after they were created"
    );
    assert!(w.signs_in(ALICE));
    assert_eq!(w.owned(Resource::StalwartDomain).await.len(), 2);
}

#[tokio::test]
async fn a_set_error_fails_its_change_only_and_is_reported_with_its_type() {
    let w = world_with(Setup::default(), |sim| {
        sim.add_domain("example.com");
        // A person's account holds the list's address and alice's alias.
        sim.add_user(TEAM, None);
        sim.add_user("helpdesk@example.com", None);
    })
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    a.set_user_attributes(
        alice,
        aliases_attribute(&["helpdesk@example.com", "a.smith@example.com"]),
    );
    let mail = a.add_group(
        "mail",
        json!({"reconciler": {"stalwart": {"mailbox": true, "list": TEAM}}}),
    );
    a.add_member(&mail, alice);
    let job = w.sweep_done().await;
    let warned = warnings(&job);
    assert!(
        warned
            .iter()
            .any(|m| m.contains("stalwart_list.create") && m.contains("primaryKeyViolation")),
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|m| m.contains("stalwart_alias.create") && m.contains("primaryKeyViolation")),
        "{warned:?}"
    );
    assert!(
        job["summary"]["permanent_failures"].as_u64().unwrap() >= 2,
        "{job}"
    );
    // The rest is done.
    assert!(w.account(ALICE).is_some());
    assert_eq!(w.aliases(ALICE), ["a.smith@example.com"]);
    assert!(w.list(TEAM).is_none());
    // Not recorded as ours (an intent at most, settled by a later run).
    let row = w.owned_row(Resource::StalwartList, TEAM).await;
    assert!(
        row.as_ref()
            .is_none_or(|r| r.state() != LedgerState::Created),
        "{row:?}"
    );
}

#[tokio::test]
async fn stalwart_down_is_transient_and_the_run_converges_once_it_is_back() {
    let w = world_with(
        Setup {
            max_attempts: 20,
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    w.sim.go_down().await;
    let id = w.stack.request_sweep().await;
    let failed = w
        .stack
        .wait_for_failed_attempt(id, "Stalwart is down")
        .await;
    assert!(
        outcome(&failed, "stalwart_account.observe.transient") > 0,
        "reported transient: {failed}"
    );
    assert!(
        warnings(&failed)
            .iter()
            .any(|m| m.contains("Stalwart unavailable")),
        "{failed}"
    );
    assert!(
        w.owned(Resource::StalwartAccount).await.is_empty(),
        "nothing recorded while Stalwart is down"
    );

    w.sim.come_up().await.unwrap();
    let job = w.stack.wait_job(id).await;
    w.expect_done(&job);
    assert!(w.account(ALICE).is_some());
    assert!(w.signs_in(ALICE));
}

#[tokio::test]
async fn a_refused_api_key_is_a_configuration_error() {
    let w = world_with(
        Setup {
            api_key: Some("not-the-api-key"),
            ..Setup::default()
        },
        |_| {},
    )
    .await;
    let a = &w.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let mail = a.add_group("mail", mailbox_group(None));
    a.add_member(&mail, alice);
    let job = w.stack.sweep().await;
    assert!(w.sim.count("unauthorized") > 0, "{:?}", w.sim.counts());
    assert_eq!(w.writes(), 0);
    assert!(w.account(ALICE).is_none());
    assert!(
        warnings(&job)
            .iter()
            .any(|m| m.contains("configuration") && m.contains("STALWART_API_KEY")),
        "{job}"
    );
    assert_eq!(outcome(&job, "stalwart_account.observe.transient"), 0);
    assert!(
        !job.to_string().contains("not-the-api-key"),
        "never the key"
    );
    assert_eq!(
        job["attempts"], 1,
        "a configuration error is not retried: {job}"
    );
    let mut client = w.stack.coordinator_client().await;
    let status = client
        .status(StatusRequest { job_id: 0 })
        .await
        .unwrap()
        .into_inner();
    let component = status
        .components
        .iter()
        .find(|c| c.name.contains("stalwart"))
        .expect("a stalwart component");
    assert!(!component.healthy, "{component:?}");
}
