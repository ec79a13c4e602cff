//! The service over the in-memory Stalwart ([`crate::fake::FakeStalwart`]):
//! every outcome is checked against what the fake then holds.

use std::sync::Arc;

use reconciler_proto::agent::stalwart_agent_server::StalwartAgent as _;
use reconciler_proto::agent::{
    ChangeResult, Outcome, StalwartAccountCreate, StalwartAccountDestroy, StalwartAccountResume,
    StalwartAccountSuspend, StalwartAccountType, StalwartAccountUpdate, StalwartApplyRequest,
    StalwartChange, StalwartDomainCreate, StalwartListCreate, StalwartListDestroy,
    StalwartListUpdate, StalwartObserveRequest, StalwartObserveResponse, StalwartQuota,
    stalwart_change::Kind,
};
use tonic::Request;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health as _;
use tonic_health::server::{HealthReporter, HealthService};

use super::StalwartAgent;
use crate::error::Error;
use crate::fake::FakeStalwart;

const ALICE: &str = "alice@example.com";
const TEAM: &str = "team@example.com";

fn setup() -> (Arc<FakeStalwart>, StalwartAgent) {
    let fake = Arc::new(FakeStalwart::new());
    fake.add_domain("example.com");
    let agent = StalwartAgent::new(fake.clone());
    (fake, agent)
}

fn change(id: &str, kind: Kind) -> StalwartChange {
    StalwartChange {
        id: id.into(),
        kind: Some(kind),
    }
}

fn create_account(address: &str, aliases: &[&str], disk_quota: Option<u64>) -> Kind {
    Kind::AccountCreate(StalwartAccountCreate {
        address: address.into(),
        r#type: StalwartAccountType::User as i32,
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        disk_quota,
        description: String::new(),
    })
}

fn create_list(address: &str, recipients: &[&str]) -> Kind {
    Kind::ListCreate(StalwartListCreate {
        address: address.into(),
        recipients: recipients.iter().map(|r| (*r).to_owned()).collect(),
        description: String::new(),
    })
}

fn suspend(address: &str, expected_id: &str) -> Kind {
    Kind::AccountSuspend(StalwartAccountSuspend {
        address: address.into(),
        expected_id: expected_id.into(),
    })
}

fn resume(address: &str) -> Kind {
    Kind::AccountResume(StalwartAccountResume {
        address: address.into(),
        expected_id: String::new(),
    })
}

async fn apply(agent: &StalwartAgent, kinds: Vec<Kind>, dry_run: bool) -> Vec<ChangeResult> {
    let changes = kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| change(&format!("c{i}"), k))
        .collect();
    let request = Request::new(StalwartApplyRequest { changes, dry_run });
    agent.apply(request).await.unwrap().into_inner().results
}

async fn apply_one(agent: &StalwartAgent, kind: Kind, expected: Outcome) -> ChangeResult {
    let r = apply(agent, vec![kind], false).await.remove(0);
    assert_eq!(r.outcome(), expected, "{}", r.message);
    r
}

async fn observe(
    agent: &StalwartAgent,
    request: StalwartObserveRequest,
) -> StalwartObserveResponse {
    agent
        .observe(Request::new(request))
        .await
        .unwrap()
        .into_inner()
}

fn outcomes(results: &[ChangeResult]) -> Vec<Outcome> {
    results.iter().map(ChangeResult::outcome).collect()
}

#[tokio::test]
async fn creates_apply_once_then_are_unchanged_without_a_write() {
    let (fake, agent) = setup();
    let kinds = || {
        vec![
            Kind::DomainCreate(StalwartDomainCreate {
                name: "Example.org".into(),
            }),
            create_account("Alice@Example.com", &["info@example.org"], Some(5 << 30)),
            create_list(TEAM, &["bob@example.net", ALICE]),
        ]
    };
    let first = apply(&agent, kinds(), false).await;
    assert_eq!(outcomes(&first), vec![Outcome::Applied; 3], "{first:?}");
    // The account's alias lives in the domain created in the same call.
    let domain = fake.domain("example.org").unwrap();
    assert_eq!(first[0].remote_id, domain.id);
    let alice = fake.account(ALICE).unwrap();
    assert_eq!(first[1].remote_id, alice.id);
    assert_eq!(alice.aliases.len(), 1);
    assert_eq!(alice.aliases[0].domain_id, domain.id);
    assert_eq!(alice.disk_quota, Some(5 << 30));
    assert!(!alice.is_suspended());
    let team = fake.list(TEAM).unwrap();
    assert_eq!(first[2].remote_id, team.id);
    assert_eq!(team.recipients, vec![ALICE, "bob@example.net"]);

    let writes = fake.writes().len();
    let again = apply(&agent, kinds(), false).await;
    assert_eq!(outcomes(&again), vec![Outcome::Unchanged; 3], "{again:?}");
    let ids: Vec<&str> = again.iter().map(|r| r.remote_id.as_str()).collect();
    assert_eq!(ids, vec![domain.id.as_str(), &alice.id, &team.id]);
    assert_eq!(fake.writes().len(), writes, "{:?}", fake.writes());
}

#[tokio::test]
async fn a_dry_run_reads_and_diffs_but_writes_nothing() {
    let (fake, agent) = setup();
    let alice = fake.add_user(ALICE);
    let kinds = vec![
        Kind::DomainCreate(StalwartDomainCreate {
            name: "new.example".into(),
        }),
        create_account("bob@new.example", &[], None),
        suspend(ALICE, &alice),
        resume(ALICE),
        create_list(TEAM, &[ALICE]),
        Kind::AccountDestroy(StalwartAccountDestroy {
            address: "nobody@example.com".into(),
            expected_id: String::new(),
        }),
    ];
    let results = apply(&agent, kinds, true).await;
    assert_eq!(
        outcomes(&results),
        vec![
            Outcome::DryRun,
            Outcome::DryRun,
            Outcome::DryRun,
            // Not suspended (nothing was written): nothing to resume.
            Outcome::Unchanged,
            Outcome::DryRun,
            Outcome::Unchanged,
        ],
        "{results:?}"
    );
    assert!(
        results[2].message.starts_with("would suspend"),
        "{results:?}"
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(fake.domain("new.example").is_none());
}

#[tokio::test]
async fn suspend_refuses_sign_in_and_resume_restores_it_each_once() {
    let (fake, agent) = setup();
    let id = fake.add_user(ALICE);
    let r = apply_one(&agent, suspend(ALICE, &id), Outcome::Applied).await;
    assert_eq!(r.remote_id, id);
    assert!(fake.account(ALICE).unwrap().is_suspended());
    apply_one(&agent, suspend(ALICE, &id), Outcome::Unchanged).await;
    apply_one(&agent, resume(ALICE), Outcome::Applied).await;
    let alice = fake.account(ALICE).unwrap();
    assert!(!alice.is_suspended());
    assert_eq!(alice.permissions["@type"], "Inherit");
    apply_one(&agent, resume(ALICE), Outcome::Unchanged).await;
    assert_eq!(fake.writes().len(), 2, "{:?}", fake.writes());
}

#[tokio::test]
async fn two_changes_of_one_account_in_one_call_run_in_order() {
    let (fake, agent) = setup();
    let kinds = vec![create_account(ALICE, &[], None), suspend(ALICE, "")];
    let results = apply(&agent, kinds, false).await;
    assert_eq!(outcomes(&results), vec![Outcome::Applied; 2], "{results:?}");
    assert_eq!(results[0].remote_id, results[1].remote_id);
    assert!(fake.account(ALICE).unwrap().is_suspended());
}

#[tokio::test]
async fn an_update_changes_only_the_aliases_named_and_keeps_a_person_s() {
    let (fake, agent) = setup();
    let r = apply_one(
        &agent,
        create_account(ALICE, &["a.one@example.com"], None),
        Outcome::Applied,
    )
    .await;
    let id = r.remote_id;
    // Another alias, which no later change names (as one a person added).
    apply_one(
        &agent,
        Kind::AccountUpdate(StalwartAccountUpdate {
            address: ALICE.into(),
            expected_id: String::new(),
            add_aliases: vec!["by.hand@example.com".into()],
            ..Default::default()
        }),
        Outcome::Applied,
    )
    .await;
    let update = || {
        Kind::AccountUpdate(StalwartAccountUpdate {
            address: ALICE.into(),
            expected_id: id.clone(),
            add_aliases: vec!["a.two@example.com".into()],
            remove_aliases: vec!["a.one@example.com".into()],
            quota: Some(StalwartQuota {
                disk_quota: Some(1 << 30),
            }),
        })
    };
    apply_one(&agent, update(), Outcome::Applied).await;
    let alice = fake.account(ALICE).unwrap();
    let mut aliases: Vec<String> = alice.aliases.iter().map(|a| a.name.clone()).collect();
    aliases.sort();
    assert_eq!(aliases, vec!["a.two", "by.hand"]);
    assert_eq!(alice.disk_quota, Some(1 << 30));
    apply_one(&agent, update(), Outcome::Unchanged).await;
    // Quota removed: the message present, the value absent.
    apply_one(
        &agent,
        Kind::AccountUpdate(StalwartAccountUpdate {
            address: ALICE.into(),
            quota: Some(StalwartQuota { disk_quota: None }),
            ..Default::default()
        }),
        Outcome::Applied,
    )
    .await;
    assert_eq!(fake.account(ALICE).unwrap().disk_quota, None);
}

#[tokio::test]
async fn a_set_error_is_permanent_with_its_type_and_description() {
    let (fake, agent) = setup();
    apply_one(&agent, create_list(TEAM, &[ALICE]), Outcome::Applied).await;
    // An account at the list's address: Stalwart's unique address key.
    let r = apply_one(&agent, create_account(TEAM, &[], None), Outcome::Permanent).await;
    assert!(r.message.contains("primaryKeyViolation"), "{}", r.message);
    assert!(r.message.contains("Primary key violation"), "{}", r.message);
    assert!(fake.account(TEAM).is_none());
}

#[tokio::test]
async fn an_account_that_exists_otherwise_is_not_changed_by_a_create() {
    let (fake, agent) = setup();
    let id = fake.add_user(ALICE);
    let r = apply_one(
        &agent,
        create_account(ALICE, &["info@example.com"], None),
        Outcome::Permanent,
    )
    .await;
    assert_eq!(r.remote_id, id);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    // As asked (no aliases, no quota): adopted as UNCHANGED with its id.
    let r = apply_one(&agent, create_account(ALICE, &[], None), Outcome::Unchanged).await;
    assert_eq!(r.remote_id, id);
}

#[tokio::test]
async fn an_object_that_is_not_the_one_recorded_is_refused() {
    let (fake, agent) = setup();
    let id = fake.add_user(ALICE);
    let r = apply_one(&agent, suspend(ALICE, "a-recorded-id"), Outcome::Refused).await;
    assert_eq!(r.remote_id, id);
    let destroy = Kind::AccountDestroy(StalwartAccountDestroy {
        address: ALICE.into(),
        expected_id: "a-recorded-id".into(),
    });
    apply_one(&agent, destroy, Outcome::Refused).await;
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(fake.account(ALICE).is_some());
}

#[tokio::test]
async fn destroys_remove_what_they_name_and_absent_is_unchanged() {
    let (fake, agent) = setup();
    let alice = apply_one(&agent, create_account(ALICE, &[], None), Outcome::Applied).await;
    let team = apply_one(&agent, create_list(TEAM, &[ALICE]), Outcome::Applied).await;
    let destroy = || {
        vec![
            Kind::AccountDestroy(StalwartAccountDestroy {
                address: ALICE.into(),
                expected_id: alice.remote_id.clone(),
            }),
            Kind::ListDestroy(StalwartListDestroy {
                address: TEAM.into(),
                expected_id: team.remote_id.clone(),
            }),
        ]
    };
    let results = apply(&agent, destroy(), false).await;
    assert_eq!(outcomes(&results), vec![Outcome::Applied; 2], "{results:?}");
    assert!(fake.account(ALICE).is_none() && fake.list(TEAM).is_none());
    let results = apply(&agent, destroy(), false).await;
    assert_eq!(
        outcomes(&results),
        vec![Outcome::Unchanged; 2],
        "{results:?}"
    );
}

#[tokio::test]
async fn list_updates_set_the_recipients_exactly() {
    let (fake, agent) = setup();
    let team = apply_one(&agent, create_list(TEAM, &[ALICE]), Outcome::Applied).await;
    let update = || {
        Kind::ListUpdate(StalwartListUpdate {
            address: TEAM.into(),
            expected_id: team.remote_id.clone(),
            recipients: vec!["Bob@Example.com".into(), "carol@example.net".into()],
        })
    };
    apply_one(&agent, update(), Outcome::Applied).await;
    assert_eq!(
        fake.list(TEAM).unwrap().recipients,
        vec!["bob@example.com", "carol@example.net"]
    );
    apply_one(&agent, update(), Outcome::Unchanged).await;
    let missing = Kind::ListUpdate(StalwartListUpdate {
        address: "nolist@example.com".into(),
        ..Default::default()
    });
    apply_one(&agent, missing, Outcome::Permanent).await;
}

#[tokio::test]
async fn many_creates_are_one_batched_call() {
    let (fake, agent) = setup();
    let kinds = (0..50)
        .map(|i| create_account(&format!("user{i}@example.com"), &[], None))
        .collect();
    let results = apply(&agent, kinds, false).await;
    assert!(results.iter().all(|r| r.outcome() == Outcome::Applied));
    let creates = fake
        .calls()
        .iter()
        .filter(|c| **c == "create_accounts")
        .count();
    assert_eq!(creates, 1, "{:?}", fake.calls());
    // 50 accounts of one domain: the domain is listed once, not 50 lookups.
    let reads = fake.calls().iter().filter(|c| **c == "accounts").count();
    assert_eq!(reads, 1, "{:?}", fake.calls());
    assert!(
        !fake.calls().contains(&"accounts_named"),
        "{:?}",
        fake.calls()
    );
    // A few: looked up by name, together.
    let before = fake.calls().len();
    let kinds = (0..3)
        .map(|i| suspend(&format!("user{i}@example.com"), ""))
        .collect();
    let results = apply(&agent, kinds, false).await;
    assert!(results.iter().all(|r| r.outcome() == Outcome::Applied));
    let calls = fake.calls()[before..].to_vec();
    assert_eq!(
        calls,
        vec!["domains", "accounts_named", "update_accounts"],
        "one read of the three, one write of the three"
    );
}

#[tokio::test]
async fn malformed_changes_are_permanent_and_send_nothing() {
    let (fake, agent) = setup();
    let results = apply(
        &agent,
        vec![
            create_account("no-at-sign", &[], None),
            create_account("bob@unknown.example", &[], None),
            create_account(ALICE, &["x@unknown.example"], None),
        ],
        false,
    )
    .await;
    assert_eq!(
        outcomes(&results),
        vec![Outcome::Permanent; 3],
        "{results:?}"
    );
    assert!(
        results[1].message.contains("unknown.example"),
        "{results:?}"
    );
    let request = Request::new(StalwartApplyRequest {
        changes: vec![StalwartChange {
            id: "empty".into(),
            kind: None,
        }],
        dry_run: false,
    });
    let r = agent.apply(request).await.unwrap().into_inner().results;
    assert_eq!(r[0].outcome(), Outcome::Permanent);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn observe_reports_what_exists_and_what_does_not() {
    let (fake, agent) = setup();
    apply_one(
        &agent,
        create_account(ALICE, &["info@example.com"], Some(1000)),
        Outcome::Applied,
    )
    .await;
    apply_one(&agent, suspend(ALICE, ""), Outcome::Applied).await;
    apply_one(&agent, create_list(TEAM, &[ALICE]), Outcome::Applied).await;
    let seen = observe(
        &agent,
        StalwartObserveRequest {
            domains: vec!["Example.com".into(), "missing.example".into()],
            accounts: vec![ALICE.into(), "nobody@example.com".into(), "bad".into()],
            lists: vec![TEAM.into(), "other@missing.example".into()],
        },
    )
    .await;
    assert!(seen.unavailable.is_none(), "{:?}", seen.unavailable);
    assert_eq!(seen.username, "admin");
    let domains: Vec<(&str, bool)> = seen
        .domains
        .iter()
        .map(|d| (d.name.as_str(), !d.id.is_empty()))
        .collect();
    assert_eq!(
        domains,
        vec![("example.com", true), ("missing.example", false)]
    );
    let alice = &seen.accounts[0];
    assert_eq!(alice.id, fake.account(ALICE).unwrap().id);
    assert_eq!(alice.r#type(), StalwartAccountType::User);
    assert_eq!(alice.aliases.len(), 1);
    assert_eq!(alice.aliases[0].address, "info@example.com");
    assert!(alice.aliases[0].enabled);
    assert_eq!(alice.disk_quota, Some(1000));
    assert!(alice.suspended);
    assert_eq!(seen.accounts[1].address, "nobody@example.com");
    assert!(seen.accounts[1].id.is_empty());
    assert_eq!(seen.accounts.len(), 2);
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.errors[0].subject, "bad");
    assert_eq!(seen.errors[0].outcome(), Outcome::Permanent);
    assert_eq!(seen.lists[0].recipients, vec![ALICE]);
    assert!(seen.lists[1].id.is_empty());
}

#[tokio::test]
async fn stalwart_down_is_transient_everywhere_and_health_follows_the_session() {
    let (fake, agent) = setup();
    let reporter = HealthReporter::new();
    agent.health().attach(reporter.clone());
    let health = HealthService::from_health_reporter(reporter);
    let status = || async {
        health
            .check(Request::new(HealthCheckRequest {
                service: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .status()
    };

    fake.break_with(|| Error::Transient("connection refused".into()));
    let seen = observe(&agent, StalwartObserveRequest::default()).await;
    let unavailable = seen.unavailable.expect("unavailable");
    assert_eq!(unavailable.outcome(), Outcome::Transient);
    assert_eq!(status().await, ServingStatus::NotServing);
    let results = apply(
        &agent,
        vec![create_account(ALICE, &[], None), create_list(TEAM, &[])],
        false,
    )
    .await;
    assert_eq!(
        outcomes(&results),
        vec![Outcome::Transient; 2],
        "{results:?}"
    );

    fake.break_with(|| Error::Config("Stalwart does not accept STALWART_API_KEY".into()));
    let seen = observe(&agent, StalwartObserveRequest::default()).await;
    assert_eq!(seen.unavailable.unwrap().outcome(), Outcome::Config);

    fake.heal();
    let seen = observe(&agent, StalwartObserveRequest::default()).await;
    assert!(seen.unavailable.is_none());
    assert_eq!(status().await, ServingStatus::Serving);
    apply_one(&agent, create_account(ALICE, &[], None), Outcome::Applied).await;
}

#[tokio::test]
async fn a_read_that_fails_fails_only_its_subjects() {
    let (fake, agent) = setup();
    fake.break_call("accounts_named", || Error::Transient("timeout".into()));
    let seen = observe(
        &agent,
        StalwartObserveRequest {
            domains: vec!["example.com".into()],
            accounts: vec![ALICE.into()],
            lists: vec![TEAM.into()],
        },
    )
    .await;
    assert!(seen.unavailable.is_none());
    assert!(!seen.domains[0].id.is_empty());
    assert!(seen.accounts.is_empty(), "{seen:?}");
    assert_eq!(seen.errors.len(), 1, "{:?}", seen.errors);
    assert_eq!(seen.errors[0].resource, "account");
    assert_eq!(seen.errors[0].subject, ALICE);
    assert_eq!(seen.errors[0].outcome(), Outcome::Transient);
    assert!(
        seen.lists[0].id.is_empty(),
        "the list is absent, and said so"
    );

    // Apply: the accounts cannot be diffed, the list goes ahead.
    let results = apply(
        &agent,
        vec![
            create_account(ALICE, &[], None),
            create_list(TEAM, &[ALICE]),
        ],
        false,
    )
    .await;
    assert_eq!(
        outcomes(&results),
        vec![Outcome::Transient, Outcome::Applied],
        "{results:?}"
    );
    assert!(fake.account(ALICE).is_none() && fake.list(TEAM).is_some());
}

#[tokio::test]
async fn a_write_batch_that_fails_fails_only_its_changes() {
    let (fake, agent) = setup();
    fake.break_call("create_domains", || Error::Transient("502".into()));
    fake.break_call("create_lists", || Error::Config("forbidden".into()));
    let results = apply(
        &agent,
        vec![
            Kind::DomainCreate(StalwartDomainCreate {
                name: "example.org".into(),
            }),
            create_account("bob@example.org", &[], None),
            create_account(ALICE, &[], None),
            create_list(TEAM, &[ALICE]),
        ],
        false,
    )
    .await;
    assert_eq!(
        outcomes(&results),
        vec![
            Outcome::Transient,
            // Its domain was not created: the same class, not "no domain".
            Outcome::Transient,
            Outcome::Applied,
            Outcome::Config,
        ],
        "{results:?}"
    );
    assert!(results[1].message.contains("example.org"), "{results:?}");
    assert!(fake.account(ALICE).is_some());
    fake.heal();
    let again = apply(&agent, vec![create_account(ALICE, &[], None)], false).await;
    assert_eq!(outcomes(&again), vec![Outcome::Unchanged]);
}
