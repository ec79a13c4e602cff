//! The stalwart-agent binary against the Stalwart 0.16 simulator (in this
//! process, over real HTTP): called over gRPC as the coordinator calls it,
//! every change is checked in what the simulator then holds (its state,
//! sign-ins and call counts), and every failure arrives in its class.

use std::time::Duration;

use reconciler_proto::agent::stalwart_agent_client::StalwartAgentClient;
use reconciler_proto::agent::{
    ChangeResult, Outcome, StalwartAccountCreate, StalwartAccountDestroy, StalwartAccountResume,
    StalwartAccountSuspend, StalwartAccountType, StalwartApplyRequest, StalwartChange,
    StalwartDomainCreate, StalwartListCreate, StalwartListDestroy, StalwartObserveRequest,
    StalwartObserveResponse, stalwart_change::Kind,
};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::secrets::Secret;
use reconciler_testkit::harness::{Authed, Service, Stack, start_agent};
use reconciler_testkit::stalwart_sim::{ObjectType, SignIn, StalwartSim, StalwartSimConfig};
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const ALICE: &str = "alice@example.com";
const TEAM: &str = "team@example.com";
/// The `/set` calls the simulator counts: every write the agent can make.
const SETS: [&str; 3] = ["x:Domain/set", "x:Account/set", "x:MailingList/set"];

struct World {
    sim: StalwartSim,
    agent: Service,
    addr: String,
    client: StalwartAgentClient<Authed>,
    _dir: tempfile::TempDir,
}

async fn sim(config: StalwartSimConfig) -> StalwartSim {
    StalwartSim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// The agent binary for `sim`, presenting `api_key`.
async fn world_with(sim: StalwartSim, api_key: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("STALWART_URL".to_owned(), sim.base_url()),
        ("STALWART_API_KEY".to_owned(), api_key.to_owned()),
    ];
    let (agent, addr) =
        start_agent("stalwart-agent", &env, dir.path(), Duration::from_secs(30)).await;
    let client = Stack::stalwart_agent_client(&addr).await;
    World {
        sim,
        agent,
        addr,
        client,
        _dir: dir,
    }
}

async fn world() -> World {
    let sim = sim(StalwartSimConfig::default()).await;
    let key = sim.api_key().to_owned();
    world_with(sim, &key).await
}

fn domain_create(name: &str) -> Kind {
    Kind::DomainCreate(StalwartDomainCreate { name: name.into() })
}

fn account_create(address: &str, aliases: &[&str], disk_quota: Option<u64>) -> Kind {
    Kind::AccountCreate(StalwartAccountCreate {
        address: address.into(),
        r#type: StalwartAccountType::User as i32,
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        disk_quota,
        description: String::new(),
    })
}

fn list_create(address: &str, recipients: &[&str]) -> Kind {
    Kind::ListCreate(StalwartListCreate {
        address: address.into(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        description: String::new(),
    })
}

fn suspend(expected_id: &str) -> Kind {
    Kind::AccountSuspend(StalwartAccountSuspend {
        address: ALICE.into(),
        expected_id: expected_id.into(),
    })
}

fn resume(expected_id: &str) -> Kind {
    Kind::AccountResume(StalwartAccountResume {
        address: ALICE.into(),
        expected_id: expected_id.into(),
    })
}

async fn apply(w: &mut World, kinds: Vec<Kind>, dry_run: bool) -> Vec<ChangeResult> {
    let changes = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| StalwartChange {
            id: format!("c{i}"),
            kind: Some(kind),
        })
        .collect();
    let request = StalwartApplyRequest { changes, dry_run };
    w.client.apply(request).await.unwrap().into_inner().results
}

async fn apply_one(w: &mut World, kind: Kind, expected: Outcome) -> ChangeResult {
    let result = apply(w, vec![kind], false).await.remove(0);
    assert_eq!(result.outcome(), expected, "{}", result.message);
    result
}

async fn observe(w: &mut World, request: StalwartObserveRequest) -> StalwartObserveResponse {
    w.client.observe(request).await.unwrap().into_inner()
}

fn outcomes(results: &[ChangeResult]) -> Vec<Outcome> {
    results.iter().map(ChangeResult::outcome).collect()
}

fn writes(sim: &StalwartSim) -> u64 {
    SETS.iter().map(|m| sim.count(m)).sum()
}

/// The agent's overall `grpc.health.v1` status (no token needed).
async fn health(addr: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// A domain, an account with an alias and a quota, and a list.
fn provisioning() -> Vec<Kind> {
    vec![
        domain_create("example.com"),
        account_create(ALICE, &["info@example.com"], Some(5 << 30)),
        list_create(TEAM, &[ALICE, "bob@example.net"]),
    ]
}

/// A shared (group) account.
fn group_create(address: &str) -> Kind {
    Kind::AccountCreate(StalwartAccountCreate {
        address: address.into(),
        r#type: StalwartAccountType::Group as i32,
        description: "Shared mailbox".into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn provisioning_applies_once_and_the_same_apply_again_writes_nothing() {
    let mut w = world().await;
    let first = apply(&mut w, provisioning(), false).await;
    assert_eq!(outcomes(&first), vec![Outcome::Applied; 3], "{first:?}");

    let state = w.sim.state();
    let domain = &state["domains"][0];
    assert_eq!(domain["name"], "example.com");
    assert_eq!(first[0].remote_id, domain["id"].as_str().unwrap());
    let alice = w.sim.find(ObjectType::Account, ALICE).unwrap();
    assert_eq!(first[1].remote_id, alice["id"].as_str().unwrap());
    assert_eq!(alice["@type"], "User");
    assert_eq!(alice["aliases"]["0"]["name"], "info");
    assert_eq!(alice["aliases"]["0"]["domainId"], domain["id"]);
    assert_eq!(alice["quotas"]["maxDiskQuota"], 5u64 << 30);
    // No password: sign-in is the directory's (OIDC) alone.
    assert_eq!(alice["credentials"], serde_json::json!({}));
    assert_eq!(w.sim.sign_in(ALICE, None), SignIn::Allowed);
    let team = w.sim.find(ObjectType::MailingList, TEAM).unwrap();
    assert_eq!(first[2].remote_id, team["id"].as_str().unwrap());
    assert_eq!(
        team["recipients"],
        serde_json::json!({ALICE: true, "bob@example.net": true})
    );

    w.sim.reset_counts();
    let again = apply(&mut w, provisioning(), false).await;
    assert_eq!(outcomes(&again), vec![Outcome::Unchanged; 3], "{again:?}");
    let ids = |r: &[ChangeResult]| r.iter().map(|c| c.remote_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    assert_eq!(writes(&w.sim), 0, "{:?}", w.sim.counts());
    // Reads only: the domains, alice by name, the lists.
    assert!(w.sim.count("POST /jmap") <= 3, "{:?}", w.sim.counts());

    let seen = observe(
        &mut w,
        StalwartObserveRequest {
            domains: vec!["example.com".into()],
            accounts: vec![ALICE.into(), "nobody@example.com".into()],
            lists: vec![TEAM.into()],
        },
    )
    .await;
    assert!(seen.unavailable.is_none(), "{:?}", seen.unavailable);
    assert_eq!(seen.username, "admin");
    assert_eq!(seen.domains[0].id, first[0].remote_id);
    let account = &seen.accounts[0];
    assert_eq!(account.id, first[1].remote_id);
    assert_eq!(account.r#type(), StalwartAccountType::User);
    assert_eq!(account.aliases[0].address, "info@example.com");
    assert_eq!(account.disk_quota, Some(5 << 30));
    assert!(!account.suspended);
    assert!(seen.accounts[1].id.is_empty(), "{seen:?}");
    assert_eq!(seen.lists[0].recipients, vec![ALICE, "bob@example.net"]);
    assert_eq!(writes(&w.sim), 0);
    let logs = w.agent.logs();
    assert!(logs.contains("created account alice@example.com"), "{logs}");
    assert!(
        !logs.contains(w.sim.api_key()),
        "the API key is never logged"
    );
}

#[tokio::test]
async fn a_group_account_is_created_as_a_group_once() {
    let mut w = world().await;
    w.sim.add_domain("example.com");
    let created = apply_one(&mut w, group_create("staff@example.com"), Outcome::Applied).await;
    let staff = w
        .sim
        .find(ObjectType::Account, "staff@example.com")
        .unwrap();
    assert_eq!(staff["@type"], "Group");
    assert_eq!(staff["description"], "Shared mailbox");
    assert_eq!(created.remote_id, staff["id"].as_str().unwrap());
    w.sim.reset_counts();
    apply_one(
        &mut w,
        group_create("staff@example.com"),
        Outcome::Unchanged,
    )
    .await;
    assert_eq!(writes(&w.sim), 0);
    // A user asked for where a group is: not as asked, left alone.
    let r = apply_one(
        &mut w,
        account_create("staff@example.com", &[], None),
        Outcome::Permanent,
    )
    .await;
    assert_eq!(r.remote_id, created.remote_id);
    let seen = observe(
        &mut w,
        StalwartObserveRequest {
            accounts: vec!["staff@example.com".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seen.accounts[0].r#type(), StalwartAccountType::Group);
}

#[tokio::test]
async fn a_server_demanding_a_password_gets_one_nobody_learns() {
    let mut w = world().await;
    w.sim.add_domain("example.com");
    w.sim.set_require_password(true);
    let r = apply_one(&mut w, account_create(ALICE, &[], None), Outcome::Applied).await;
    assert!(r.secret.is_empty(), "never returned");
    let alice = w.sim.get(ObjectType::Account, &r.remote_id).unwrap();
    assert_eq!(alice["credentials"]["0"]["@type"], "Password");
    // Sign-in is still the directory's: the password is known to no one.
    assert_eq!(w.sim.sign_in(ALICE, None), SignIn::Allowed);
    assert_eq!(w.sim.sign_in(ALICE, Some("")), SignIn::BadCredentials);
    assert!(
        !w.agent.logs().contains("\"secret\""),
        "no request body in the log"
    );
}

#[tokio::test]
async fn suspend_refuses_sign_in_keeps_the_account_and_resume_restores_it() {
    let mut w = world().await;
    w.sim.add_domain("example.com");
    let id = w.sim.add_user(ALICE, Some("Correct-Horse-Battery-9"));
    apply_one(&mut w, suspend(&id), Outcome::Applied).await;
    let suspended = w.sim.get(ObjectType::Account, &id).unwrap();
    assert_eq!(
        suspended["permissions"]["disabledPermissions"]["authenticate"],
        true
    );
    assert_eq!(w.sim.sign_in(ALICE, None), SignIn::Forbidden);
    assert_eq!(
        w.sim.sign_in(ALICE, Some("Correct-Horse-Battery-9")),
        SignIn::Forbidden
    );
    assert!(w.sim.get(ObjectType::Account, &id).is_some(), "kept");
    let seen = observe(
        &mut w,
        StalwartObserveRequest {
            accounts: vec![ALICE.into()],
            ..Default::default()
        },
    )
    .await;
    assert!(seen.accounts[0].suspended, "{seen:?}");

    w.sim.reset_counts();
    apply_one(&mut w, suspend(&id), Outcome::Unchanged).await;
    assert_eq!(writes(&w.sim), 0);
    apply_one(&mut w, resume(&id), Outcome::Applied).await;
    // Resumed as it was: the password survived.
    assert_eq!(
        w.sim.sign_in(ALICE, Some("Correct-Horse-Battery-9")),
        SignIn::Allowed
    );
    assert_eq!(
        w.sim.get(ObjectType::Account, &id).unwrap()["permissions"]["@type"],
        "Inherit"
    );
    apply_one(&mut w, resume(&id), Outcome::Unchanged).await;
}

#[tokio::test]
async fn destroy_removes_only_the_recorded_objects() {
    let mut w = world().await;
    let created = apply(&mut w, provisioning(), false).await;
    let (alice, team) = (created[1].remote_id.clone(), created[2].remote_id.clone());
    let destroy = |alice: &str, team: &str| {
        vec![
            Kind::AccountDestroy(StalwartAccountDestroy {
                address: ALICE.into(),
                expected_id: alice.into(),
            }),
            Kind::ListDestroy(StalwartListDestroy {
                address: TEAM.into(),
                expected_id: team.into(),
            }),
        ]
    };
    // Not the ids recorded: refused, nothing destroyed.
    let refused = apply(&mut w, destroy("other", "other"), false).await;
    assert_eq!(outcomes(&refused), vec![Outcome::Refused; 2], "{refused:?}");
    assert!(w.sim.get(ObjectType::Account, &alice).is_some());

    let done = apply(&mut w, destroy(&alice, &team), false).await;
    assert_eq!(outcomes(&done), vec![Outcome::Applied; 2], "{done:?}");
    assert!(w.sim.find(ObjectType::Account, ALICE).is_none());
    assert!(w.sim.find(ObjectType::MailingList, TEAM).is_none());
    let again = apply(&mut w, destroy(&alice, &team), false).await;
    assert_eq!(outcomes(&again), vec![Outcome::Unchanged; 2], "{again:?}");
    // The domain is never the agent's to destroy, and stays.
    assert_eq!(w.sim.state()["domains"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_set_error_arrives_as_permanent_with_its_type() {
    let mut w = world().await;
    w.sim.add_domain("example.com");
    // A list a person made holds the address.
    w.sim.add_list(TEAM, &[ALICE]);
    let taken = apply_one(&mut w, account_create(TEAM, &[], None), Outcome::Permanent).await;
    assert!(
        taken.message.contains("primaryKeyViolation"),
        "{}",
        taken.message
    );
    // A local part Stalwart refuses (consecutive dots).
    let bad = apply_one(
        &mut w,
        account_create("a..b@example.com", &[], None),
        Outcome::Permanent,
    )
    .await;
    assert!(bad.message.contains("invalidPatch"), "{}", bad.message);
    assert!(
        bad.message.contains("Invalid email local part"),
        "{}",
        bad.message
    );
    assert!(w.sim.find(ObjectType::Account, TEAM).is_none());
    assert_eq!(w.sim.state()["accounts"], serde_json::json!([]));
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let mut w = world().await;
    let before = w.sim.state();
    let results = apply(&mut w, provisioning(), true).await;
    assert_eq!(outcomes(&results), vec![Outcome::DryRun; 3], "{results:?}");
    assert!(
        results.iter().all(|r| r.message.starts_with("would ")),
        "{results:?}"
    );
    assert_eq!(writes(&w.sim), 0, "{:?}", w.sim.counts());
    assert_eq!(w.sim.state(), before);
}

#[tokio::test]
async fn a_wrong_agent_token_is_refused_before_stalwart_is_asked() {
    let w = world().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", w.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut wrong = StalwartAgentClient::new(InterceptedService::new(
        channel,
        SendToken::new(Secret::new("not-the-agent-token")),
    ));
    w.sim.reset_counts();
    let status = wrong
        .observe(StalwartObserveRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = wrong
        .apply(StalwartApplyRequest {
            changes: vec![StalwartChange {
                id: "c".into(),
                kind: Some(domain_create("example.com")),
            }],
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(w.sim.counts().is_empty(), "{:?}", w.sim.counts());
}

#[tokio::test]
async fn stalwart_down_is_transient_and_the_agent_recovers_with_it() {
    let mut w = world().await;
    assert_eq!(health(&w.addr).await, ServingStatus::Serving);
    w.sim.go_down().await;
    let seen = observe(&mut w, StalwartObserveRequest::default()).await;
    let unavailable = seen.unavailable.expect("Stalwart is down");
    assert_eq!(unavailable.outcome(), Outcome::Transient, "{unavailable:?}");
    assert_eq!(health(&w.addr).await, ServingStatus::NotServing);
    let results = apply(&mut w, provisioning(), false).await;
    assert_eq!(
        outcomes(&results),
        vec![Outcome::Transient; 3],
        "{results:?}"
    );

    w.sim.come_up().await.unwrap();
    let seen = observe(&mut w, StalwartObserveRequest::default()).await;
    assert!(seen.unavailable.is_none(), "{:?}", seen.unavailable);
    assert_eq!(health(&w.addr).await, ServingStatus::Serving);
    let results = apply(&mut w, provisioning(), false).await;
    assert_eq!(outcomes(&results), vec![Outcome::Applied; 3], "{results:?}");
    assert!(w.sim.find(ObjectType::Account, ALICE).is_some());
}

#[tokio::test]
async fn a_refused_key_or_a_server_before_0_16_is_a_configuration_error() {
    let mut refused = world_with(sim(StalwartSimConfig::default()).await, "wrong-key").await;
    assert_eq!(health(&refused.addr).await, ServingStatus::NotServing);
    let seen = observe(&mut refused, StalwartObserveRequest::default()).await;
    let unavailable = seen.unavailable.expect("the key is refused");
    assert_eq!(unavailable.outcome(), Outcome::Config, "{unavailable:?}");
    assert!(
        unavailable.reason.contains("STALWART_API_KEY"),
        "{unavailable:?}"
    );
    assert!(!unavailable.reason.contains("wrong-key"), "never the key");
    let results = apply(&mut refused, provisioning(), false).await;
    assert_eq!(outcomes(&results), vec![Outcome::Config; 3], "{results:?}");
    assert!(!refused.agent.logs().contains("wrong-key"), "never the key");

    let old = sim(StalwartSimConfig {
        management: false,
        ..StalwartSimConfig::default()
    })
    .await;
    let key = old.api_key().to_owned();
    let mut old = world_with(old, &key).await;
    let seen = observe(&mut old, StalwartObserveRequest::default()).await;
    let unavailable = seen.unavailable.expect("no JMAP management");
    assert_eq!(unavailable.outcome(), Outcome::Config, "{unavailable:?}");
    assert!(unavailable.reason.contains("0.16"), "{unavailable:?}");
    assert_eq!(health(&old.addr).await, ServingStatus::NotServing);
}
