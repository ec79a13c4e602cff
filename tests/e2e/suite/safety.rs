//! End to end, the safety promises under hostile input and partial
//! failure: the real coordinator and mailcow-agent against the Authentik and
//! Mailcow simulators. Every assertion reads what Mailcow would hold.

use reconciler_testkit::harness::{Stack, StackOptions};
use reconciler_testkit::mailcow_sim::FailMode;
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const OTHER: &str = "other@example.com";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn seed(stack: &Stack) {
    let m = &stack.mailcow;
    m.add_domain("example.com");
    for mbox in [INFO, OTHER, ALICE, BOB, "sales@example.com"] {
        m.add_mailbox(mbox);
    }
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

/// App passwords on `mailbox` as `(id, name)`.
fn app_passwords(stack: &Stack, mailbox: &str) -> Vec<(i64, String)> {
    stack
        .mailcow
        .app_passwords(mailbox)
        .into_iter()
        .map(|p| (p.id, p.name))
        .collect()
}

#[tokio::test]
async fn hostile_attribute_values_are_errors_for_their_group_only() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    // Other people's objects on another mailbox, which a path like
    // `x@example.com/../other@example.com` would have reached.
    let phone = stack.mailcow.add_app_password(
        OTHER,
        "authentik-sync:bob:other@example.com",
        "Phone-Secret-1",
    );
    stack.mailcow.add_sender_acl_row(BOB, OTHER, false);
    let alice = stack.authentik.add_user("alice", ALICE);
    // A group that granted sales@ before its value was broken keeps it.
    let was_valid = stack.authentik.add_group(
        "sales",
        json!({"reconciler": {"shared_mailbox": "sales@example.com", "send_as": true}}),
    );
    stack.authentik.add_member(&was_valid, alice);
    stack.expect_done(&stack.sweep().await).await;
    assert!(
        stack
            .mailcow
            .sender_acl(ALICE)
            .contains(&"sales@example.com".to_owned())
    );

    let hostile = [
        "x@example.com/../other@example.com",
        "x@example.com%2F..%2Fother@example.com",
        "other@example.com/..",
        "x@example.com?username=other@example.com",
        "x@example.com#other",
        "x@example.com\nother@example.com",
        "-x@example.com",
        "x..y@example.com",
        "x@example.com/",
    ];
    for (n, value) in hostile.iter().enumerate() {
        let group = stack.authentik.add_group(
            &format!("hostile-mailbox-{n}"),
            json!({"reconciler": {"shared_mailbox": value, "send_as": true, "nextcloud_mail": true}}),
        );
        stack.authentik.add_member(&group, alice);
        let group = stack.authentik.add_group(
            &format!("hostile-alias-{n}"),
            json!({"reconciler": {"alias": value}}),
        );
        stack.authentik.add_member(&group, alice);
    }
    stack.authentik.set_group_attributes(
        &was_valid,
        json!({"reconciler": {"shared_mailbox": "sales@example.com/../other@example.com", "send_as": true}}),
    );
    // And one healthy group, which must be reconciled as usual.
    let good = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "alias": "team@example.com"}}),
    );
    stack.authentik.add_member(&good, alice);

    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    let warnings = warnings(&job);
    let rejected = warnings
        .iter()
        .filter(|w| w.contains("is not an email address we can manage"))
        .count();
    assert_eq!(rejected, 2 * hostile.len() + 1, "{warnings:#?}");

    let acl = stack.mailcow.sender_acl(ALICE);
    assert!(
        acl.contains(&INFO.to_owned()),
        "healthy group granted: {acl:?}"
    );
    assert!(
        acl.contains(&"sales@example.com".to_owned()),
        "the broken group keeps what it granted: {acl:?}"
    );
    let team: Vec<_> = stack
        .mailcow
        .aliases()
        .into_iter()
        .filter(|a| a.address == "team@example.com")
        .collect();
    assert_eq!(team.len(), 1);
    assert_eq!(team[0].goto, vec![ALICE.to_owned()]);
    // Nothing of other@ was touched, and no alias came of a hostile value.
    assert_eq!(
        app_passwords(&stack, OTHER),
        vec![(phone, "authentik-sync:bob:other@example.com".to_owned())]
    );
    assert_eq!(stack.mailcow.sender_acl(BOB), vec![OTHER.to_owned()]);
    assert_eq!(
        stack.mailcow.aliases().len(),
        1,
        "{:?}",
        stack.mailcow.aliases()
    );

    // Stable: the next sweep writes nothing at all.
    stack.mailcow.reset_counts();
    stack.expect_done(&stack.sweep().await).await;
    assert_eq!(
        stack.mailcow.write_count(),
        0,
        "{:?}",
        stack.mailcow.counts()
    );
}

#[tokio::test]
async fn an_international_alias_is_stable_over_sweeps() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    stack.mailcow.add_domain("bücher.example");
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", "Bob@Example.COM");
    let group = stack.authentik.add_group(
        "team",
        json!({"reconciler": {"alias": "Team@Bücher.example"}}),
    );
    stack.authentik.add_member(&group, alice);
    stack.authentik.add_member(&group, bob);

    stack.expect_done(&stack.sweep().await).await;
    let stored = stack.mailcow.aliases();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].address, "team@xn--bcher-kva.example");
    let id = stored[0].id;
    for sweep in 2..=3 {
        stack.mailcow.reset_counts();
        stack.expect_done(&stack.sweep().await).await;
        assert_eq!(
            stack.mailcow.write_count(),
            0,
            "sweep {sweep}: {:?}",
            stack.mailcow.counts()
        );
        let stored = stack.mailcow.aliases();
        assert_eq!(stored.len(), 1, "{stored:?}");
        assert_eq!(stored[0].id, id, "the same alias, never re-created");
    }
}

#[tokio::test]
async fn a_persons_app_password_with_our_name_survives_entitle_and_leave() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let name = "authentik-sync:alice:info@example.com";
    let theirs = stack
        .mailcow
        .add_app_password(INFO, name, "Their-Own-Secret-1");
    let before = stack.mailcow.app_passwords(INFO);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "nextcloud_mail": true}}),
    );

    stack.authentik.add_member(&group, alice);
    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    assert_eq!(
        stack.mailcow.app_passwords(INFO),
        before,
        "entitled: untouched"
    );
    assert!(
        warnings(&job).iter().any(|w| w.contains("not made by us")),
        "{job}"
    );

    stack.authentik.remove_member(&group, alice);
    stack.expect_done(&stack.sweep().await).await;
    stack.expect_done(&stack.sweep().await).await;
    assert_eq!(
        stack.mailcow.app_passwords(INFO),
        before,
        "after leaving: untouched"
    );
    assert!(
        stack
            .mailcow
            .verify_app_password(INFO, name, "Their-Own-Secret-1")
    );
    assert_eq!(app_passwords(&stack, INFO)[0].0, theirs);
}

#[tokio::test]
async fn a_write_reported_failed_but_applied_is_revoked_when_the_user_leaves() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    stack.authentik.add_member(&group, alice);
    // Mailcow applies the sender_acl edit, then answers with an error.
    stack.mailcow.fail_next(1, FailMode::ErrorAfterWrite);
    let job = stack.sweep().await;
    assert!(
        job["summary"]
            .to_string()
            .contains("sender_acl.create.permanent"),
        "{job}"
    );
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));

    // The next sweep sees it there and takes it for ours...
    stack.expect_done(&stack.sweep().await).await;
    // ...so leaving revokes it.
    stack.authentik.remove_member(&group, alice);
    stack.expect_done(&stack.sweep().await).await;
    assert!(
        !stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()),
        "{:?}",
        stack.mailcow.sender_acl(ALICE)
    );
}

#[tokio::test]
async fn a_change_the_target_refuses_for_good_backs_off_until_its_input_changes() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    // A valid address in a domain this Mailcow does not serve: only Mailcow
    // can say no (domain_not_found), and it always will.
    let group = stack.authentik.add_group(
        "team",
        json!({"reconciler": {"alias": "team@elsewhere.example"}}),
    );
    stack.authentik.add_member(&group, alice);
    let job = stack.sweep().await;
    assert!(
        job["summary"]
            .to_string()
            .contains("alias.create.permanent"),
        "{job}"
    );
    stack.mailcow.reset_counts();
    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    assert_eq!(
        stack.mailcow.write_count(),
        0,
        "{:?}",
        stack.mailcow.counts()
    );
    assert!(
        warnings(&job)
            .iter()
            .any(|w| w.contains("1 change(s) not sent")),
        "{job}"
    );

    // The input changes (another member): tried again at once.
    let bob = stack.authentik.add_user("bob", BOB);
    stack.authentik.add_member(&group, bob);
    stack.mailcow.reset_counts();
    stack.sweep().await;
    assert_eq!(
        stack.mailcow.write_count(),
        1,
        "{:?}",
        stack.mailcow.counts()
    );
    // And a fixed value goes through.
    stack
        .authentik
        .set_group_attributes(&group, json!({"reconciler": {"alias": "team@example.com"}}));
    stack.expect_done(&stack.sweep().await).await;
    assert_eq!(stack.mailcow.aliases().len(), 1);
}

#[tokio::test]
async fn a_lost_state_db_is_reported_loudly() {
    let mut stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", BOB);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    stack.authentik.add_member(&group, alice);
    stack.authentik.add_member(&group, bob);
    stack.expect_done(&stack.sweep().await).await;

    stack.coordinator.kill();
    let db = stack.state_db();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    stack.start_coordinator(2).await;
    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    let loud: Vec<_> = warnings(&job)
        .into_iter()
        .filter(|w| w.starts_with("LEDGER EMPTY"))
        .collect();
    assert_eq!(loud.len(), 1, "{job}");
    assert!(loud[0].contains(" 2 object(s)"), "{}", loud[0]);
}

/// A member's Authentik email that stops being a usable address is not a
/// leave: they keep their send-as right, the group's alias keeps them, and
/// the job says why. Once fixed, pending removals go through.
#[tokio::test]
async fn a_member_whose_email_breaks_keeps_what_they_had_and_is_reported() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", BOB);
    let desk = stack.authentik.add_group(
        "desk",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "alias": "team@example.com"}}),
    );
    stack.authentik.add_member(&desk, alice);
    stack.authentik.add_member(&desk, bob);
    stack.expect_done(&stack.sweep().await).await;
    let goto = |stack: &Stack| -> Vec<String> {
        stack
            .mailcow
            .aliases()
            .into_iter()
            .find(|a| a.address == "team@example.com")
            .map(|a| a.goto)
            .unwrap_or_default()
    };
    assert_eq!(goto(&stack), [ALICE, BOB]);

    stack
        .authentik
        .set_user_email(alice, "alice@example.com/../bob@example.com");
    stack.authentik.remove_member(&desk, bob);
    let job = stack.sweep().await;
    stack.expect_done(&job).await;
    assert_eq!(
        stack.mailcow.sender_acl(ALICE),
        [INFO],
        "alice keeps send-as"
    );
    assert!(
        goto(&stack).contains(&ALICE.to_owned()),
        "the alias keeps alice"
    );
    assert!(
        stack.mailcow.sender_acl(BOB).is_empty(),
        "bob's leave is applied"
    );
    let warnings = warnings(&job);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("user `alice`") && w.contains("not a usable address")),
        "{warnings:?}"
    );

    stack.authentik.set_user_email(alice, ALICE);
    stack.expect_done(&stack.sweep().await).await;
    assert_eq!(
        goto(&stack),
        [ALICE],
        "with the address fixed, bob leaves the alias"
    );
    assert_eq!(stack.mailcow.sender_acl(ALICE), vec![INFO.to_owned()]);
}

/// Failures with one cause are one warning with a count and the likely
/// fix, not one line per object (issue 13): a domain whose quota is
/// over-allocated refuses every mailbox edit.
#[tokio::test]
async fn failures_with_one_cause_are_one_warning_with_the_likely_fix() {
    let stack = Stack::start(StackOptions::default()).await;
    seed(&stack);
    let alice = stack.authentik.add_user("alice", ALICE);
    let bob = stack.authentik.add_user("bob", BOB);
    let desk = stack.authentik.add_group(
        "desk",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    stack.authentik.add_member(&desk, alice);
    stack.authentik.add_member(&desk, bob);
    // Five 3 GiB mailboxes in a domain now allowed 1 GiB in all.
    stack.mailcow.set_domain_limits("example.com", 400, 1024);
    let job = stack.sweep().await;
    let warnings = warnings(&job);
    let quota: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("mailbox_quota_left_exceeded"))
        .collect();
    assert_eq!(quota.len(), 1, "one warning for one cause: {warnings:?}");
    assert!(
        quota[0].starts_with("2 sender_acl.create change(s) failed")
            && quota[0].contains("the domain's quota is over-allocated"),
        "{quota:?}"
    );
    assert!(stack.mailcow.sender_acl(ALICE).is_empty());
}
