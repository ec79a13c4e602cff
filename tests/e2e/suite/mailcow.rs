//! End to end: the real coordinator and mailcow-agent binaries against the
//! Authentik and Mailcow simulators. Every assertion reads the simulator's
//! state (what Mailcow would hold), never the coordinator's opinion of it.

use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";

/// Mailcow with a domain, alice's and bob's mailboxes, the shared `info@`,
/// plus things a person made by hand on the same mailboxes.
fn seed_mailcow(stack: &Stack) {
    let m = &stack.mailcow;
    m.add_domain("example.com");
    for mbox in [
        INFO,
        ALICE,
        "bob@example.com",
        "carol@example.com",
        "sales@example.com",
    ] {
        m.add_mailbox(mbox);
    }
    // A person gave alice send-as for sales@ and made an app password on info@.
    m.add_sender_acl_row(ALICE, "sales@example.com", false);
    m.add_app_password(INFO, "Thunderbird on the front desk", "front-desk-Secret-1");
}

fn support_attributes() -> serde_json::Value {
    json!({"reconciler": {"shared_mailbox": INFO, "access": "readwrite", "send_as": true, "nextcloud_mail": true}})
}

fn our_app_passwords(stack: &Stack, mailbox: &str) -> Vec<String> {
    stack
        .mailcow
        .app_passwords(mailbox)
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("authentik-sync:"))
        .collect()
}

#[tokio::test]
async fn join_grants_and_leave_revokes_only_ours() {
    let stack = Stack::start(StackOptions::default()).await;
    seed_mailcow(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group("support", support_attributes());

    stack.authentik.add_member(&group, alice);
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-join"))
        .await;
    stack.expect_done(&job).await;

    let acl = stack.mailcow.sender_acl(ALICE);
    assert!(acl.contains(&INFO.to_owned()), "send-as granted: {acl:?}");
    assert!(
        acl.contains(&"sales@example.com".to_owned()),
        "person's entry kept: {acl:?}"
    );
    // No nextcloud-agent in this stack: an app password would have no
    // account to use it, so none is made, and the summary says why.
    // (tests/e2e/suite/nextcloud.rs covers them with a nextcloud-agent.)
    assert!(our_app_passwords(&stack, INFO).is_empty());
    assert!(
        job["summary"]
            .to_string()
            .contains("1 app password(s) for Nextcloud Mail not created: no nextcloud-agent"),
        "{job}"
    );

    stack.authentik.remove_member(&group, alice);
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-leave"))
        .await;
    stack.expect_done(&job).await;

    assert_eq!(
        stack.mailcow.sender_acl(ALICE),
        vec!["sales@example.com".to_owned()]
    );
    let names: Vec<_> = stack
        .mailcow
        .app_passwords(INFO)
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["Thunderbird on the front desk".to_owned()]);
}

#[tokio::test]
async fn second_sweep_over_an_in_sync_world_writes_nothing() {
    let stack = Stack::start(StackOptions::default()).await;
    seed_mailcow(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", "bob@example.com");
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "nextcloud_mail": true, "alias": "support-team@example.com"}}),
    );
    stack.authentik.add_member(&group, alice);
    stack.authentik.add_member(&group, bob);

    let first = stack.sweep().await;
    stack.expect_done(&first).await;
    assert!(
        stack.mailcow.write_count() > 0,
        "the first sweep did the work"
    );

    stack.mailcow.reset_counts();
    let second = stack.sweep().await;
    stack.expect_done(&second).await;
    assert_eq!(
        stack.mailcow.write_count(),
        0,
        "writes: {:?}",
        stack.mailcow.counts()
    );
    assert!(
        stack.mailcow.counts().keys().any(|k| k.starts_with("read")),
        "the second sweep did observe Mailcow: {:?}",
        stack.mailcow.counts()
    );
}

#[tokio::test]
async fn nested_members_get_parent_grants_and_alias_targets() {
    let stack = Stack::start(StackOptions::default()).await;
    seed_mailcow(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", "bob@example.com");
    let parent = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "alias": "support-team@example.com"}}),
    );
    let child = stack.authentik.add_group("support-tier2", json!({}));
    let grandchild = stack.authentik.add_group("support-tier3", json!({}));
    stack.authentik.set_group_parents(&child, &[&parent]);
    stack.authentik.set_group_parents(&grandchild, &[&child]);
    stack.authentik.add_member(&parent, alice);
    stack.authentik.add_member(&grandchild, bob);

    let job = stack.sweep().await;
    stack.expect_done(&job).await;

    assert!(
        stack
            .mailcow
            .sender_acl("bob@example.com")
            .contains(&INFO.to_owned())
    );
    let alias = stack
        .mailcow
        .aliases()
        .into_iter()
        .find(|a| a.address == "support-team@example.com")
        .expect("group alias created");
    let mut goto = alias.goto.clone();
    goto.sort();
    assert_eq!(goto, vec![ALICE.to_owned(), "bob@example.com".to_owned()]);
    assert!(alias.active && alias.sogo_visible && alias.sender_allowed);
    assert!(alias.private_comment.starts_with("[authentik-reconciler]"));
}

#[tokio::test]
async fn deactivated_user_loses_grants() {
    let stack = Stack::start(StackOptions::default()).await;
    seed_mailcow(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group("support", support_attributes());
    stack.authentik.add_member(&group, alice);
    stack.expect_done(&stack.sweep().await).await;
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));

    stack.authentik.set_user_active(alice, false);
    let job = stack
        .webhook_and_wait(&Stack::user_event(alice, "evt-deactivate"))
        .await;
    stack.expect_done(&job).await;

    assert!(!stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
}

#[tokio::test]
async fn renamed_or_removed_alias_attribute_cleans_up_our_alias_only() {
    let stack = Stack::start(StackOptions::default()).await;
    seed_mailcow(&stack);
    // A person's alias, which must never be touched.
    stack
        .mailcow
        .add_alias("hand-made@example.com", &[ALICE], true, "made in the UI");
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack
        .authentik
        .add_group("team", json!({"reconciler": {"alias": "team@example.com"}}));
    stack.authentik.add_member(&group, alice);
    stack.expect_done(&stack.sweep().await).await;
    let addresses = |stack: &Stack| {
        let mut a: Vec<_> = stack
            .mailcow
            .aliases()
            .into_iter()
            .map(|a| a.address)
            .collect();
        a.sort();
        a
    };
    assert_eq!(
        addresses(&stack),
        vec!["hand-made@example.com", "team@example.com"]
    );

    stack
        .authentik
        .set_group_attributes(&group, json!({"reconciler": {"alias": "crew@example.com"}}));
    stack
        .expect_done(
            &stack
                .webhook_and_wait(&Stack::group_event(&group, "evt-rename"))
                .await,
        )
        .await;
    assert_eq!(
        addresses(&stack),
        vec!["crew@example.com", "hand-made@example.com"]
    );

    stack.authentik.set_group_attributes(&group, json!({}));
    stack
        .expect_done(
            &stack
                .webhook_and_wait(&Stack::group_event(&group, "evt-remove"))
                .await,
        )
        .await;
    assert_eq!(addresses(&stack), vec!["hand-made@example.com"]);
    let hand_made = stack.mailcow.aliases().into_iter().next().unwrap();
    assert_eq!(hand_made.goto, vec![ALICE.to_owned()]);
    assert_eq!(hand_made.private_comment, "made in the UI");
}

/// Alice is granted, then leaves the group while Authentik misbehaves: no
/// removal may happen.
async fn granted_then_left(stack: &Stack) -> String {
    seed_mailcow(stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", "bob@example.com");
    let group = stack.authentik.add_group("support", support_attributes());
    stack.authentik.add_member(&group, alice);
    stack.authentik.add_member(&group, bob);
    stack.expect_done(&stack.sweep().await).await;
    stack.authentik.remove_member(&group, alice);
    stack.mailcow.reset_counts();
    group
}

#[tokio::test]
async fn authentik_5xx_during_a_sweep_removes_nothing() {
    let stack = Stack::start(StackOptions {
        max_attempts: 2,
        ..StackOptions::default()
    })
    .await;
    granted_then_left(&stack).await;
    stack.authentik.fail_next(1_000);

    let job = stack.sweep().await;
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Authentik"),
        "{job}"
    );
    assert_eq!(stack.mailcow.write_count(), 0);
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
}

#[tokio::test]
async fn empty_user_list_during_a_sweep_removes_nothing() {
    let stack = Stack::start(StackOptions::default()).await;
    granted_then_left(&stack).await;
    stack.authentik.set_hide_users(true);

    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    assert!(job["summary"].to_string().contains("held"), "{job}");
    assert_eq!(
        stack.mailcow.write_count(),
        0,
        "{:?}",
        stack.mailcow.counts()
    );
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));

    // Once Authentik is healthy again, the removal goes through.
    stack.authentik.set_hide_users(false);
    stack.expect_done(&stack.sweep().await).await;
    assert!(!stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
    assert!(
        stack
            .mailcow
            .sender_acl("bob@example.com")
            .contains(&INFO.to_owned())
    );
}

#[tokio::test]
async fn bad_input_is_rejected_and_enqueues_nothing() {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let body = Stack::user_event(1, "evt-1").to_string();

    let (status, _) = stack
        .post(
            "/reconcile",
            &[("X-Authentik-Webhook-Token", "wrong")],
            body.clone(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = stack.post("/reconcile", &[], body.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .post(
            "/reconcile",
            &[("Authorization", "Bearer wrong")],
            body.clone(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .post(
            "/reconcile-all",
            &[("X-Reconciler-Admin-Token", "wrong")],
            String::new(),
        )
        .await;
    assert_eq!(status, 401);
    let (status, reply) = stack
        .post(
            "/reconcile",
            &[(
                "X-Authentik-Webhook-Token",
                reconciler_testkit::harness::WEBHOOK_TOKEN_FOR_TESTS,
            )],
            "{not json".into(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        reply["error"].as_str().unwrap_or_default().contains("JSON"),
        "{reply}"
    );

    // Nothing above created a job: the first accepted one is job 1.
    let (status, reply) = stack.webhook(&Stack::user_event(1, "evt-1")).await;
    assert_eq!(status, 202);
    assert_eq!(reply["job_id"], 1, "{reply}");
    assert_eq!(reply["deduplicated"], false);

    // Authentik redelivers the same event: still one job.
    let (status, again) = stack.webhook(&Stack::user_event(1, "evt-1")).await;
    assert_eq!(status, 202);
    assert_eq!(again["job_id"], 1);
    assert_eq!(again["deduplicated"], true);
    let job2 = stack.job(2).await;
    assert!(job2["error"].is_string(), "no second job exists: {job2}");

    // The other accepted shapes.
    let (status, _) = stack
        .webhook(&json!({"body": "model_updated: {}", "severity": "notice", "user_email": "a@b.c", "user_username": "akadmin"}))
        .await;
    assert_eq!(status, 202);
    let (status, _) = stack.webhook(&json!({"user": "alice"})).await;
    assert_eq!(status, 202);
    let (status, _) = stack
        .post(
            "/reconcile",
            &[(
                "Authorization",
                &format!(
                    "Bearer {}",
                    reconciler_testkit::harness::WEBHOOK_TOKEN_FOR_TESTS
                ),
            )],
            json!({"user": ALICE}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_job_accepted_before_a_crash_runs_after_restart() {
    let mut stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    seed_mailcow(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group("support", support_attributes());
    stack.authentik.add_member(&group, alice);

    let (status, reply) = stack
        .webhook(&Stack::group_event(&group, "evt-crash"))
        .await;
    assert_eq!(status, 202);
    let job_id = reply["job_id"].as_i64().unwrap();
    // No worker ran it: nothing changed yet.
    assert_eq!(stack.mailcow.write_count(), 0);

    stack.coordinator.kill();
    stack.start_coordinator(2).await;
    let job = stack.wait_job(job_id).await;
    stack.expect_done(&job).await;
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
}

/// Webhooks arrive while a sweep writes its ledger and audit rows. Every one
/// must be stored and answered 202, not lost to SQLite lock conflicts, and
/// every job must run.
#[tokio::test]
async fn webhooks_during_a_sweep_are_all_accepted_and_run() {
    let stack = Stack::start(StackOptions {
        authentik_max_page_size: 100,
        ..StackOptions::default()
    })
    .await;
    seed_mailcow(&stack);
    let group = stack.authentik.add_group("support", support_attributes());
    let mut pks = Vec::new();
    for i in 0..60 {
        let email = format!("user{i}@example.com");
        stack.mailcow.add_mailbox(&email);
        let pk = stack.authentik.add_user(&format!("user{i}"), &email);
        stack.authentik.add_member(&group, pk);
        pks.push(pk);
    }
    let sweep = stack.request_sweep().await;
    let events: Vec<_> = pks
        .iter()
        .map(|pk| Stack::user_event(*pk, &format!("evt-user-{pk}")))
        .collect();
    let replies = futures::future::join_all(events.iter().map(|e| stack.webhook(e))).await;
    for (status, body) in &replies {
        assert_eq!(*status, 202, "{body}");
    }
    let sweep = stack.wait_job(sweep).await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    for (_, body) in replies {
        let job = stack
            .wait_job(body["job_id"].as_i64().expect("job_id"))
            .await;
        assert_eq!(job["state"], "done", "{job}");
    }
    for i in 0..60 {
        let acl = stack.mailcow.sender_acl(&format!("user{i}@example.com"));
        assert_eq!(acl, vec![INFO.to_owned()], "user{i}");
    }
}
