//! The real mailcow-agent binary over gRPC against the Mailcow simulator:
//! the contract's safety rules (marker checks, dry run, error classes) are
//! asserted on what the simulator holds afterwards.

use reconciler_proto::agent::{
    AliasCreate, AliasDelete, AliasUpdate, AppPasswordCreate, AppPasswordDelete,
    AppPasswordProtocol, ChangeResult, MailcowApplyRequest as ApplyRequest,
    MailcowChange as Change, MailcowObserveRequest as ObserveRequest, ObserveError, Outcome,
    SenderAclDelta, mailcow_agent_client::MailcowAgentClient as AgentClient, mailcow_change::Kind,
};
use reconciler_proto::mailcow::markers::ALIAS_COMMENT;
use reconciler_testkit::harness::{Authed, Stack, StackOptions};
use reconciler_testkit::mailcow_sim::{FailMode, SlowMode};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";
const OURS: &str = "authentik-sync:alice:info@example.com";

async fn stack(options: StackOptions) -> (Stack, AgentClient<Authed>) {
    let stack = Stack::start(options).await;
    stack.mailcow.add_domain("example.com");
    for mbox in [INFO, ALICE, "bob@example.com"] {
        stack.mailcow.add_mailbox(mbox);
    }
    let client = Stack::mailcow_agent_client(&stack.agent_addr).await;
    (stack, client)
}

async fn apply(
    client: &mut AgentClient<Authed>,
    dry_run: bool,
    kinds: Vec<Kind>,
) -> Vec<ChangeResult> {
    let changes = kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| Change {
            id: i.to_string(),
            kind: Some(kind),
        })
        .collect();
    client
        .apply(ApplyRequest { changes, dry_run })
        .await
        .expect("apply")
        .into_inner()
        .results
}

fn outcome(r: &ChangeResult) -> Outcome {
    Outcome::try_from(r.outcome).expect("known outcome")
}

/// The Mailcow id a result names (Mailcow numbers its objects).
fn remote_id(r: &ChangeResult) -> i64 {
    r.remote_id.parse().expect("a numeric remote id")
}

fn create_app_password(name: &str) -> Kind {
    Kind::AppPasswordCreate(AppPasswordCreate {
        mailbox: INFO.into(),
        name: name.into(),
        protocols: vec![
            AppPasswordProtocol::Imap as i32,
            AppPasswordProtocol::Smtp as i32,
        ],
    })
}

#[tokio::test]
async fn dry_run_reports_every_change_and_writes_nothing() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    stack.mailcow.reset_counts();
    let results = apply(
        &mut client,
        true,
        vec![
            Kind::SenderAcl(SenderAclDelta {
                login: ALICE.into(),
                add: vec![INFO.into()],
                remove: vec![],
            }),
            create_app_password(OURS),
            Kind::AliasCreate(AliasCreate {
                address: "team@example.com".into(),
                goto: vec![ALICE.into()],
            }),
        ],
    )
    .await;
    assert!(
        results.iter().all(|r| outcome(r) == Outcome::DryRun),
        "{results:?}"
    );
    assert_eq!(stack.mailcow.write_count(), 0);
    assert!(stack.mailcow.sender_acl(ALICE).is_empty());
    assert!(stack.mailcow.app_passwords(INFO).is_empty());
}

#[tokio::test]
async fn app_password_secret_is_returned_once_and_verifies() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let first = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    assert_eq!(outcome(&first[0]), Outcome::Applied, "{first:?}");
    let secret = first[0].secret.clone();
    assert_eq!(secret.len(), 32);
    assert!(!secret.starts_with('{'));
    assert!(stack.mailcow.verify_app_password(INFO, OURS, &secret));
    let stored = stack.mailcow.app_passwords(INFO);
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].id,
        remote_id(&first[0]),
        "the id was learnt by re-listing"
    );

    // Asking again creates nothing and reveals nothing.
    stack.mailcow.reset_counts();
    let again = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    assert_eq!(outcome(&again[0]), Outcome::Unchanged);
    assert!(again[0].secret.is_empty());
    assert_eq!(remote_id(&again[0]), remote_id(&first[0]));
    assert_eq!(stack.mailcow.write_count(), 0);

    let delete = |id| {
        Kind::AppPasswordDelete(AppPasswordDelete {
            id,
            mailbox: INFO.into(),
            name: OURS.into(),
        })
    };
    let gone = apply(&mut client, false, vec![delete(remote_id(&first[0]))]).await;
    assert_eq!(outcome(&gone[0]), Outcome::Applied);
    assert!(stack.mailcow.app_passwords(INFO).is_empty());
    let twice = apply(&mut client, false, vec![delete(remote_id(&first[0]))]).await;
    assert_eq!(outcome(&twice[0]), Outcome::Unchanged);
}

#[tokio::test]
async fn objects_without_our_marker_are_refused_and_survive() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let hand_alias = stack.mailcow.add_alias(
        "sales@example.com",
        &["bob@example.com"],
        true,
        "made by Bob",
    );
    let hand_password = stack
        .mailcow
        .add_app_password(INFO, "front desk", "front-desk-Secret-1");
    stack.mailcow.reset_counts();

    let results = apply(
        &mut client,
        false,
        vec![
            // An alias a person made, by id.
            Kind::AliasDelete(AliasDelete {
                id: hand_alias,
                address: "sales@example.com".into(),
            }),
            Kind::AliasUpdate(AliasUpdate {
                id: hand_alias,
                address: "sales@example.com".into(),
                goto: vec![ALICE.into()],
            }),
            // A person's app password, by id, claimed under our name.
            Kind::AppPasswordDelete(AppPasswordDelete {
                id: hand_password,
                mailbox: INFO.into(),
                name: OURS.into(),
            }),
            // A name without our prefix is never ours.
            Kind::AppPasswordDelete(AppPasswordDelete {
                id: hand_password,
                mailbox: INFO.into(),
                name: "front desk".into(),
            }),
            // An address that is a mailbox cannot become our alias.
            Kind::AliasCreate(AliasCreate {
                address: ALICE.into(),
                goto: vec!["bob@example.com".into()],
            }),
        ],
    )
    .await;
    for r in &results {
        assert_eq!(outcome(r), Outcome::Refused, "{r:?}");
    }
    assert_eq!(
        stack
            .mailcow
            .counts()
            .keys()
            .filter(|k| k.starts_with("write "))
            .count(),
        1,
        "only the refused add/alias reached Mailcow: {:?}",
        stack.mailcow.counts()
    );
    let alias = stack
        .mailcow
        .aliases()
        .into_iter()
        .find(|a| a.id == hand_alias)
        .expect("hand-made alias survives");
    assert_eq!(alias.goto, vec!["bob@example.com".to_owned()]);
    assert!(
        stack
            .mailcow
            .app_passwords(INFO)
            .iter()
            .any(|p| p.id == hand_password)
    );
}

#[tokio::test]
async fn our_alias_is_created_with_explicit_flags_and_marker() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let created = apply(
        &mut client,
        false,
        vec![Kind::AliasCreate(AliasCreate {
            address: "team@example.com".into(),
            goto: vec![ALICE.into(), "bob@example.com".into()],
        })],
    )
    .await;
    assert_eq!(outcome(&created[0]), Outcome::Applied, "{created:?}");
    let alias = stack
        .mailcow
        .aliases()
        .into_iter()
        .find(|a| a.address == "team@example.com")
        .expect("alias exists");
    assert_eq!(alias.id, remote_id(&created[0]));
    assert!(alias.active && alias.sogo_visible && alias.sender_allowed);
    assert_eq!(alias.private_comment, ALIAS_COMMENT);

    // A retry after a lost answer finds our own alias instead of failing.
    let retry = apply(
        &mut client,
        false,
        vec![Kind::AliasCreate(AliasCreate {
            address: "team@example.com".into(),
            goto: vec![ALICE.into()],
        })],
    )
    .await;
    assert_eq!(outcome(&retry[0]), Outcome::Unchanged);
    assert_eq!(remote_id(&retry[0]), alias.id);
}

#[tokio::test]
async fn addresses_mailcow_drops_are_reported_not_looped_on() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    // A person's alias lets alice send as shared@ already.
    stack
        .mailcow
        .add_alias("shared@example.com", &[ALICE], true, "");
    let delta = || {
        Kind::SenderAcl(SenderAclDelta {
            login: ALICE.into(),
            add: vec!["shared@example.com".into(), INFO.into()],
            remove: vec![],
        })
    };
    let results = apply(&mut client, false, vec![delta()]).await;
    assert_eq!(outcome(&results[0]), Outcome::Applied, "{results:?}");
    assert_eq!(results[0].implicitly_allowed, vec!["shared@example.com"]);
    assert_eq!(stack.mailcow.sender_acl(ALICE), vec![INFO.to_owned()]);

    let observed = client
        .observe(ObserveRequest {
            sender_acl_logins: vec![ALICE.into()],
            ..Default::default()
        })
        .await
        .expect("observe")
        .into_inner();
    let state = &observed.sender_acls[0];
    assert!(state.mailbox_exists);
    assert!(
        state
            .implicitly_allowed
            .contains(&"shared@example.com".to_owned())
    );
}

#[tokio::test]
async fn mailcow_faults_map_to_retryable_outcomes_and_change_nothing() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    for mode in [FailMode::Http502, FailMode::EmptyBody] {
        stack.mailcow.fail_next(1, mode);
        let results = apply(&mut client, false, vec![create_app_password(OURS)]).await;
        assert_eq!(
            outcome(&results[0]),
            Outcome::Transient,
            "{mode:?}: {results:?}"
        );
        assert!(stack.mailcow.app_passwords(INFO).is_empty());
    }
}

#[tokio::test]
async fn a_rejected_api_key_is_a_configuration_error() {
    let (stack, mut client) = stack(StackOptions {
        agent_env: vec![("MAILCOW_API_KEY".into(), "WRONG-KEY".into())],
        ..StackOptions::default()
    })
    .await;
    let results = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    assert_eq!(outcome(&results[0]), Outcome::Config, "{results:?}");
    let status = client
        .observe(ObserveRequest {
            sender_acl_logins: vec![ALICE.into()],
            ..Default::default()
        })
        .await
        .expect_err("observe fails");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(stack.mailcow.app_passwords(INFO).is_empty());
}

/// Only the coordinator (holding AGENT_TOKEN) may call an agent: a caller
/// without the token cannot mint an app password or read anything.
#[tokio::test]
async fn callers_without_the_agent_token_are_refused() {
    let (stack, _) = stack(StackOptions::default()).await;
    let mut anonymous = AgentClient::connect(format!("http://{}", stack.agent_addr))
        .await
        .expect("connect");
    let status = anonymous
        .apply(ApplyRequest {
            changes: vec![Change {
                id: "1".into(),
                kind: Some(create_app_password(OURS)),
            }],
            dry_run: false,
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = anonymous
        .observe(ObserveRequest {
            app_password_mailboxes: vec![INFO.into()],
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(stack.mailcow.app_passwords(INFO).is_empty());
}

const BOB: &str = "bob@example.com";

/// Values a group attribute could carry that are not plain addresses.
/// Each is one subject's problem: refused, reported, and never read
/// through to whatever path a proxy would make of it.
const HOSTILE: [&str; 10] = [
    "info@example.com/../bob@example.com",
    "info@example.com%2F..%2Fbob@example.com",
    "info@example.com/..",
    "info@example.com?x=1",
    "info@example.com#x",
    "info@example.com\n",
    "-info@example.com",
    "info@example..com",
    "nobody@example.com/../../x",
    "info@example.com/../../../../../etc",
];

fn error_for<'a>(errors: &'a [ObserveError], resource: &str, subject: &str) -> &'a ObserveError {
    errors
        .iter()
        .find(|e| e.resource == resource && e.subject == subject)
        .unwrap_or_else(|| panic!("no {resource} error for {subject:?}: {errors:?}"))
}

#[tokio::test]
async fn a_crafted_mailbox_never_reads_another_mailboxs_objects() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let ours = stack.mailcow.add_app_password(INFO, OURS, "info-Secret-1");
    let bobs =
        stack
            .mailcow
            .add_app_password(BOB, "authentik-sync:bob:bob@example.com", "bob-Secret-1");
    stack.mailcow.add_sender_acl_row(BOB, INFO, false);

    // `info@…/../bob@…`: a reverse proxy decodes `%2F` and resolves `..`,
    // so encoding the slash alone still reads bob's objects.
    let crafted_mailbox = "info@example.com/../bob@example.com";
    let crafted_login = "alice@example.com/../bob@example.com";
    let observed = client
        .observe(ObserveRequest {
            app_password_mailboxes: vec![crafted_mailbox.into(), INFO.into()],
            sender_acl_logins: vec![crafted_login.into(), ALICE.into()],
            ..Default::default()
        })
        .await
        .expect("one bad subject does not fail the observation")
        .into_inner();

    assert!(
        observed.app_passwords.iter().all(|p| p.id != bobs),
        "bob's app password reported as another mailbox's: {:?}",
        observed.app_passwords
    );
    assert_eq!(
        observed
            .app_passwords
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        vec![ours],
        "info@'s own app password is still reported"
    );
    let logins: Vec<&str> = observed
        .sender_acls
        .iter()
        .map(|s| s.login.as_str())
        .collect();
    assert_eq!(logins, vec![ALICE], "only the valid login is reported");

    let app_error = error_for(&observed.errors, "app_password", crafted_mailbox);
    assert_eq!(
        app_error.outcome,
        Outcome::Permanent as i32,
        "{app_error:?}"
    );
    let acl_error = error_for(&observed.errors, "sender_acl", crafted_login);
    assert_eq!(
        acl_error.outcome,
        Outcome::Permanent as i32,
        "{acl_error:?}"
    );
    assert_eq!(observed.errors.len(), 2, "{:?}", observed.errors);

    // Nothing of bob's was touched on the way.
    assert_eq!(stack.mailcow.app_passwords(BOB).len(), 1);
    assert_eq!(stack.mailcow.sender_acl(BOB), vec![INFO.to_owned()]);
}

#[tokio::test]
async fn hostile_subjects_are_refused_one_by_one_and_write_nothing() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let ours = stack.mailcow.add_app_password(INFO, OURS, "info-Secret-1");
    for (i, mailbox) in [INFO, ALICE, BOB].iter().enumerate() {
        stack.mailcow.add_app_password(
            mailbox,
            &format!("authentik-sync:user{i}:{mailbox}"),
            "some-Secret-1",
        );
    }
    let before = stack.mailcow.state()["app_passwords"].clone();

    let mut mailboxes: Vec<String> = HOSTILE.iter().map(|s| s.to_string()).collect();
    mailboxes.push(INFO.into());
    let mut logins = mailboxes.clone();
    logins.push(ALICE.into());
    let observed = client
        .observe(ObserveRequest {
            app_password_mailboxes: mailboxes,
            sender_acl_logins: logins,
            ..Default::default()
        })
        .await
        .expect("hostile subjects do not fail the observation")
        .into_inner();
    for hostile in HOSTILE {
        for resource in ["app_password", "sender_acl"] {
            let e = error_for(&observed.errors, resource, hostile);
            assert_eq!(e.outcome, Outcome::Permanent as i32, "{e:?}");
        }
    }
    assert!(
        observed.app_passwords.iter().all(|p| p.mailbox == INFO),
        "only info@'s app passwords: {:?}",
        observed.app_passwords
    );
    assert!(observed.app_passwords.iter().any(|p| p.id == ours));
    let mut logins: Vec<&str> = observed
        .sender_acls
        .iter()
        .map(|s| s.login.as_str())
        .collect();
    logins.sort();
    assert_eq!(logins, vec![ALICE, INFO]);

    // Writes naming them are refused before anything reaches Mailcow.
    stack.mailcow.reset_counts();
    let mut changes = Vec::new();
    for hostile in HOSTILE {
        changes.push(Kind::AppPasswordCreate(AppPasswordCreate {
            mailbox: hostile.into(),
            name: OURS.into(),
            protocols: vec![AppPasswordProtocol::Imap as i32],
        }));
        changes.push(Kind::AppPasswordDelete(AppPasswordDelete {
            id: ours,
            mailbox: hostile.into(),
            name: OURS.into(),
        }));
        changes.push(Kind::SenderAcl(SenderAclDelta {
            login: hostile.into(),
            add: vec![INFO.into()],
            remove: vec![],
        }));
        changes.push(Kind::SenderAcl(SenderAclDelta {
            login: ALICE.into(),
            add: vec![hostile.into()],
            remove: vec![],
        }));
        changes.push(Kind::AliasCreate(AliasCreate {
            address: hostile.into(),
            goto: vec![ALICE.into()],
        }));
        changes.push(Kind::AliasCreate(AliasCreate {
            address: "team@example.com".into(),
            goto: vec![hostile.into()],
        }));
    }
    let results = apply(&mut client, false, changes).await;
    for r in &results {
        assert_eq!(outcome(r), Outcome::Permanent, "{r:?}");
    }
    assert!(
        stack.mailcow.counts().is_empty(),
        "no request reached Mailcow: {:?}",
        stack.mailcow.counts()
    );
    assert_eq!(stack.mailcow.state()["app_passwords"], before);
    assert!(stack.mailcow.aliases().is_empty());
}

/// An app password we named in the old raw form, which Mailcow has since
/// re-escaped (a person's edit without a name), is still ours under the
/// name we give it today: found on create, deletable by id.
#[tokio::test]
async fn old_and_re_escaped_names_are_recognised_as_ours() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let old = "authentik-sync:o'neil:info@example.com";
    let current = reconciler_proto::mailcow::markers::app_password_name("o'neil", INFO);
    assert_ne!(old, current);
    let id = stack.mailcow.add_app_password(INFO, old, "old-Secret-1");
    // Re-escape it twice through the API, as the Mailcow UI would.
    for _ in 0..2 {
        let edit = reqwest::Client::new()
            .post(format!(
                "{}/api/v1/edit/app-passwd",
                stack.mailcow.base_url()
            ))
            .header("X-API-Key", reconciler_testkit::harness::MAILCOW_KEY)
            .header("Content-Type", "application/json")
            .body(format!(
                r#"{{"items":[{id}],"attr":{{"username":"{INFO}"}}}}"#
            ))
            .send()
            .await
            .expect("edit")
            .text()
            .await
            .expect("body");
        assert!(edit.contains("object_modified"), "{edit}");
    }
    let stored = stack.mailcow.app_passwords(INFO)[0].name.clone();
    assert!(stored.contains("o&amp;amp;"), "escaped again: {stored}");

    stack.mailcow.reset_counts();
    let create = apply(&mut client, false, vec![create_app_password(&current)]).await;
    assert_eq!(outcome(&create[0]), Outcome::Unchanged, "{create:?}");
    assert_eq!(remote_id(&create[0]), id);
    assert_eq!(stack.mailcow.write_count(), 0);

    let delete = apply(
        &mut client,
        false,
        vec![Kind::AppPasswordDelete(AppPasswordDelete {
            id,
            mailbox: INFO.into(),
            name: current.clone(),
        })],
    )
    .await;
    assert_eq!(outcome(&delete[0]), Outcome::Applied, "{delete:?}");
    assert!(stack.mailcow.app_passwords(INFO).is_empty());
}

/// A stack whose agent gives Mailcow one second to answer.
async fn impatient_stack() -> (Stack, AgentClient<Authed>) {
    stack(StackOptions {
        agent_env: vec![("MAILCOW_TIMEOUT_SECONDS".into(), "1".into())],
        ..StackOptions::default()
    })
    .await
}

/// Waits (bounded) until the simulator has carried out every slow request.
async fn slow_requests_done(stack: &Stack) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stack.mailcow.slow_in_flight() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "slow request never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn named(stack: &Stack, name: &str) -> Vec<i64> {
    stack
        .mailcow
        .app_passwords(INFO)
        .into_iter()
        .filter(|p| p.name == name)
        .map(|p| p.id)
        .collect()
}

/// `add/app-passwd` is carried out only after the agent stopped waiting
/// (a slow PHP worker): the create finds it and adopts it, so the retry
/// that follows does not add a second one.
#[tokio::test]
async fn an_add_answered_after_the_timeout_leaves_one_app_password() {
    let (stack, mut client) = impatient_stack().await;
    stack.mailcow.slow_next(
        "add/app-passwd",
        std::time::Duration::from_millis(1600),
        SlowMode::BeforeApplying,
    );
    let first = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    // The coordinator retries a change that did not report success.
    let retry = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    slow_requests_done(&stack).await;

    let ids = named(&stack, OURS);
    assert_eq!(ids.len(), 1, "exactly one app password: {ids:?}");
    assert_eq!(outcome(&first[0]), Outcome::Applied, "{first:?}");
    assert_eq!(remote_id(&first[0]), ids[0]);
    assert!(
        stack
            .mailcow
            .verify_app_password(INFO, OURS, &first[0].secret),
        "the secret returned is the app password's"
    );
    assert_eq!(outcome(&retry[0]), Outcome::Unchanged, "{retry:?}");
    assert_eq!(remote_id(&retry[0]), ids[0]);
}

/// The add is carried out at once but its answer is lost to the timeout:
/// the create still reports what it made, with a secret that works.
#[tokio::test]
async fn an_add_whose_answer_is_lost_is_adopted_with_a_working_secret() {
    let (stack, mut client) = impatient_stack().await;
    stack.mailcow.slow_next(
        "add/app-passwd",
        std::time::Duration::from_millis(1500),
        SlowMode::AfterApplying,
    );
    let first = apply(&mut client, false, vec![create_app_password(OURS)]).await;
    slow_requests_done(&stack).await;
    let ids = named(&stack, OURS);
    assert_eq!(ids.len(), 1, "exactly one app password: {ids:?}");
    assert_eq!(outcome(&first[0]), Outcome::Applied, "{first:?}");
    assert_eq!(remote_id(&first[0]), ids[0]);
    assert!(
        stack
            .mailcow
            .verify_app_password(INFO, OURS, &first[0].secret)
    );
}

/// Many creates on one mailbox list its app passwords twice in all (before
/// and after the group), not twice per create: the cost stays linear as
/// the mailbox fills up. Every create still gets its own id and secret.
#[tokio::test]
async fn creates_on_one_mailbox_list_it_twice_in_all() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let existing = stack.mailcow.add_app_password(
        INFO,
        "authentik-sync:user0:info@example.com",
        "some-Secret-1",
    );
    let names: Vec<String> = (0..25)
        .map(|i| format!("authentik-sync:user{i}:info@example.com"))
        .collect();
    stack.mailcow.reset_counts();
    let results = apply(
        &mut client,
        false,
        names.iter().map(|n| create_app_password(n)).collect(),
    )
    .await;
    let counts = stack.mailcow.counts();
    assert_eq!(counts.get("read get/app-passwd"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("write add/app-passwd"), Some(&24), "{counts:?}");
    assert_eq!(outcome(&results[0]), Outcome::Unchanged);
    assert_eq!(remote_id(&results[0]), existing);
    let listed = stack.mailcow.app_passwords(INFO);
    let mut ids = std::collections::BTreeSet::new();
    for (name, result) in names.iter().zip(&results).skip(1) {
        assert_eq!(outcome(result), Outcome::Applied, "{}", result.message);
        assert!(!result.secret.is_empty());
        let id = remote_id(result);
        assert!(ids.insert(id), "each create names its own app password");
        let stored = listed.iter().find(|p| p.id == id).expect("listed");
        assert_eq!(&stored.name, name, "the id is the one made for this name");
    }
    // The same again: nothing written, one listing.
    stack.mailcow.reset_counts();
    let again = apply(
        &mut client,
        false,
        names.iter().map(|n| create_app_password(n)).collect(),
    )
    .await;
    assert!(again.iter().all(|r| outcome(r) == Outcome::Unchanged));
    assert_eq!(stack.mailcow.write_count(), 0);
    assert_eq!(stack.mailcow.counts().get("read get/app-passwd"), Some(&1));
}

/// Changes of one batch on several mailboxes and aliases, two sender_acl
/// deltas per login (each a read-modify-write of the whole list).
fn mixed_batch(logins: &[String]) -> Vec<Kind> {
    let mut kinds = Vec::new();
    for login in logins {
        for add in [INFO, "bob@example.com"] {
            kinds.push(Kind::SenderAcl(SenderAclDelta {
                login: login.clone(),
                add: vec![add.into()],
                remove: vec![],
            }));
        }
    }
    for i in 0..3 {
        kinds.push(create_app_password(&format!(
            "authentik-sync:user{i}:info@example.com"
        )));
    }
    for i in 0..6 {
        kinds.push(Kind::AliasCreate(AliasCreate {
            address: format!("team{i}@example.com"),
            goto: vec![ALICE.into()],
        }));
    }
    kinds
}

/// Applies [`mixed_batch`] with every Mailcow request costing 50 ms (spent
/// outside the simulator's lock, as a php-fpm worker waits on MariaDB) and
/// checks every change landed; returns (most writes in flight at once,
/// most on one object at once).
async fn apply_mixed_batch(options: StackOptions) -> (usize, usize) {
    let (stack, mut client) = stack(options).await;
    let m = &stack.mailcow;
    let logins: Vec<String> = (0..4).map(|i| format!("user{i}@example.com")).collect();
    for login in &logins {
        m.add_mailbox(login);
    }
    m.set_request_cost(std::time::Duration::from_millis(50));
    m.reset_counts();
    let results = apply(&mut client, false, mixed_batch(&logins)).await;
    for r in &results {
        assert_eq!(outcome(r), Outcome::Applied, "{r:?}");
    }
    for login in &logins {
        let mut acl = m.sender_acl(login);
        acl.sort();
        assert_eq!(acl, ["bob@example.com", INFO], "no delta lost on {login}");
    }
    assert_eq!(m.app_passwords(INFO).len(), 3);
    assert_eq!(m.aliases().len(), 6);
    (
        m.max_writes_in_flight(),
        m.max_writes_in_flight_per_object(),
    )
}

/// A cold batch writes side by side (`MAILCOW_CONCURRENCY`, default 8) but
/// never twice to one mailbox or alias at once, so both whole-list edits
/// of a login's sender_acl land.
#[tokio::test]
async fn a_batch_writes_side_by_side_but_never_twice_to_one_object_at_once() {
    let (overall, per_object) = apply_mixed_batch(StackOptions::default()).await;
    assert!(
        overall > 1 && overall <= 8,
        "writes in flight at once: {overall}"
    );
    assert_eq!(per_object, 1, "two writes at once on one object");
}

#[tokio::test]
async fn with_a_concurrency_of_one_writes_go_one_at_a_time() {
    let (overall, per_object) = apply_mixed_batch(StackOptions {
        agent_env: vec![("MAILCOW_CONCURRENCY".into(), "1".into())],
        ..StackOptions::default()
    })
    .await;
    assert_eq!((overall, per_object), (1, 1));
}

/// The re-check before each write reads one listing for the batch (one
/// `get/alias/all`, one `get/mailbox/all`) instead of each object, and
/// still refuses what is not ours.
#[tokio::test]
async fn the_re_check_before_writes_reads_one_listing_per_batch() {
    let (stack, mut client) = stack(StackOptions::default()).await;
    let m = &stack.mailcow;
    let ours: Vec<(String, i64)> = (0..8)
        .map(|i| {
            let address = format!("team{i}@example.com");
            let id = m.add_alias(&address, &[ALICE], true, ALIAS_COMMENT);
            (address, id)
        })
        .collect();
    let foreign = m.add_alias("hand-made@example.com", &[ALICE], true, "made by hand");
    let logins: Vec<String> = (0..4).map(|i| format!("user{i}@example.com")).collect();
    for login in &logins {
        m.add_mailbox(login);
    }
    let mut kinds: Vec<Kind> = ours[..5]
        .iter()
        .map(|(address, id)| {
            Kind::AliasUpdate(AliasUpdate {
                id: *id,
                address: address.clone(),
                goto: vec!["bob@example.com".into()],
            })
        })
        .collect();
    kinds.extend(ours[5..].iter().map(|(address, id)| {
        Kind::AliasDelete(AliasDelete {
            id: *id,
            address: address.clone(),
        })
    }));
    kinds.push(Kind::AliasUpdate(AliasUpdate {
        id: foreign,
        address: "hand-made@example.com".into(),
        goto: vec!["bob@example.com".into()],
    }));
    kinds.extend(logins.iter().map(|login| {
        Kind::SenderAcl(SenderAclDelta {
            login: login.clone(),
            add: vec![INFO.into()],
            remove: vec![],
        })
    }));
    m.reset_counts();
    let results = apply(&mut client, false, kinds).await;

    let counts = m.counts();
    assert_eq!(
        counts.get("read get/alias"),
        Some(&1),
        "one alias listing for 9 alias re-checks: {counts:?}"
    );
    // One listing for 4 re-checks, then each login's read-back.
    assert_eq!(counts.get("read get/mailbox"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("write edit/alias"), Some(&5), "{counts:?}");
    assert_eq!(counts.get("write delete/alias"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("write edit/mailbox"), Some(&4), "{counts:?}");
    let (applied, refused) = results.split_at(8);
    assert!(
        applied[..8].iter().all(|r| outcome(r) == Outcome::Applied),
        "{applied:?}"
    );
    assert_eq!(outcome(&refused[0]), Outcome::Refused, "{refused:?}");
    assert!(
        refused[1..].iter().all(|r| outcome(r) == Outcome::Applied),
        "{refused:?}"
    );
    let aliases = m.aliases();
    let hand_made = aliases.iter().find(|a| a.id == foreign).expect("kept");
    assert_eq!(hand_made.goto, [ALICE], "the hand-made alias is untouched");
    assert_eq!(aliases.len(), 6, "5 of ours updated, 3 deleted, 1 kept");
    for login in &logins {
        assert_eq!(m.sender_acl(login), [INFO]);
    }
}
