//! The requests a run makes, pinned (issue "Speed at 10,000 users"): an
//! in-sync sweep reads Mailcow at the floor (one mailbox listing, one
//! alias listing), and a webhook about one user reads only their mailbox.

use std::collections::BTreeMap;

use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

const USERS: usize = 20;

#[tokio::test]
async fn an_in_sync_sweep_reads_mailcow_at_the_floor_and_a_webhook_reads_one_mailbox() {
    let stack = Stack::start(StackOptions::default()).await;
    let m = &stack.mailcow;
    m.add_domain("example.com");
    m.add_mailbox("info@example.com");
    let a = &stack.authentik;
    let support = a.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": "info@example.com", "send_as": true,
                              "alias": "support-team@example.com"}}),
    );
    let mut pks = Vec::new();
    for i in 0..USERS {
        let email = format!("user{i}@example.com");
        m.add_mailbox(&email);
        let pk = a.add_user(&format!("user{i}"), &email);
        a.add_member(&support, pk);
        pks.push(pk);
    }
    let cold = stack.sweep().await;
    assert_eq!(cold["state"], "done", "{cold}");
    for i in 0..USERS {
        assert_eq!(
            m.sender_acl(&format!("user{i}@example.com")),
            ["info@example.com"]
        );
    }

    m.reset_counts();
    let in_sync = stack.sweep().await;
    assert_eq!(in_sync["state"], "done", "{in_sync}");
    assert_eq!(
        m.counts(),
        BTreeMap::from([
            ("read get/alias".to_owned(), 1),
            ("read get/mailbox".to_owned(), 1),
        ]),
        "the floor: one mailbox listing and one alias listing"
    );

    // One user's webhook: their own mailbox, not the listing, and their
    // own user object from Authentik, not every page of the directory.
    m.reset_counts();
    a.reset_counts();
    let job = stack
        .webhook_and_wait(&Stack::user_event(pks[0], "floor-1"))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        directory_reads(a.counts()),
        BTreeMap::from([("GET /api/v3/core/users/{pk}/".to_owned(), 1)]),
        "a webhook about one user reads that user"
    );
    assert_eq!(
        m.counts().get("read get/mailbox"),
        Some(&1),
        "{:?}",
        m.counts()
    );
    assert_eq!(m.write_count(), 0);
}

/// The Authentik requests that read users and groups (not the events
/// catch-up's).
fn directory_reads(counts: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    counts
        .into_iter()
        .filter(|(route, _)| route.contains("/core/"))
        .collect()
}

#[tokio::test]
async fn a_webhook_about_a_user_in_a_new_group_reads_the_user_and_that_group() {
    let stack = Stack::start(StackOptions::default()).await;
    let m = &stack.mailcow;
    m.add_domain("example.com");
    m.add_mailbox("info@example.com");
    m.add_mailbox("alice@example.com");
    let a = &stack.authentik;
    let alice = a.add_user("alice", "alice@example.com");
    // A directory without groups looks wrong to the guards, and a read
    // that looks wrong is never kept as the snapshot.
    a.add_group("staff", json!({}));
    let done = stack.sweep().await;
    assert_eq!(done["state"], "done", "{done}");

    // A group created after the sweep, nested under another new one that
    // carries the grant: the webhook reads alice and both groups.
    let parent = a.add_group(
        "desk",
        json!({"reconciler": {"shared_mailbox": "info@example.com", "send_as": true}}),
    );
    let child = a.add_group("desk-emea", json!({}));
    a.set_group_parents(&child, &[&parent]);
    a.add_member(&child, alice);
    a.reset_counts();
    let job = stack
        .webhook_and_wait(&Stack::user_event(alice, "new-group-1"))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(m.sender_acl("alice@example.com"), ["info@example.com"]);
    assert_eq!(
        directory_reads(a.counts()),
        BTreeMap::from([
            ("GET /api/v3/core/users/{pk}/".to_owned(), 1),
            ("GET /api/v3/core/groups/{uuid}/".to_owned(), 2),
        ]),
        "≤ 3 requests: the user and the two groups the snapshot lacked"
    );
}
