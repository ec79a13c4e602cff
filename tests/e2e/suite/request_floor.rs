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

    // One user's webhook: their own mailbox, not the listing.
    m.reset_counts();
    let job = stack
        .webhook_and_wait(&Stack::user_event(pks[0], "floor-1"))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        m.counts().get("read get/mailbox"),
        Some(&1),
        "{:?}",
        m.counts()
    );
    assert_eq!(m.write_count(), 0);
}
