//! §2: mailbox details and `edit/mailbox` sender_acl (§9 item 5).

use serde_json::{Value, json};

use super::{Sim, config};
use crate::mailcow_sim::MailcowSimConfig;

const ALICE: &str = "alice@example.com";

async fn set(sim: &Sim, acl: Value) -> super::Answer {
    sim.post_json(
        "/api/v1/edit/mailbox",
        json!({"items": [ALICE], "attr": {"sender_acl": acl}}),
    )
    .await
}

async fn read(sim: &Sim) -> Value {
    sim.get(&format!("/api/v1/get/mailbox/{ALICE}"))
        .await
        .json()["sender_acl"]
        .clone()
}

#[tokio::test]
async fn full_replacement_with_normalised_domains() {
    let sim = Sim::seeded().await;
    sim.sim.add_domain("other.org");
    sim.sim
        .add_alias("team@example.com", &["bob@example.com"], true, "");
    let answer = set(
        &sim,
        json!(["info@example.com", "other.org", "team@example.com"]),
    )
    .await;
    assert_eq!(answer.msgs(), vec![json!(["mailbox_modified", ALICE])]);
    assert_eq!(
        read(&sim).await,
        json!(["info@example.com", "@other.org", "team@example.com"])
    );

    set(&sim, json!(["@other.org"])).await;
    assert_eq!(sim.sim.sender_acl(ALICE), vec!["@other.org"]);
    for clear in [json!([]), json!(["default"])] {
        set(&sim, json!(["info@example.com"])).await;
        let answer = set(&sim, clear).await;
        assert_eq!(answer.types(), vec!["success"]);
        assert!(sim.sim.sender_acl(ALICE).is_empty());
    }
    // "" clears as well, with a danger message.
    set(&sim, json!(["info@example.com"])).await;
    let empty = set(&sim, json!("")).await;
    assert_eq!(
        empty.msgs(),
        vec![
            json!(["sender_acl_invalid", ""]),
            json!(["mailbox_modified", ALICE])
        ]
    );
    assert!(sim.sim.sender_acl(ALICE).is_empty());
}

#[tokio::test]
async fn star_collapses_and_default_is_dropped() {
    let sim = Sim::seeded().await;
    set(&sim, json!(["info@example.com", "*", "example.com"])).await;
    assert_eq!(sim.sim.sender_acl(ALICE), vec!["*"]);
    set(&sim, json!(["default", "info@example.com"])).await;
    assert_eq!(sim.sim.sender_acl(ALICE), vec!["info@example.com"]);
}

#[tokio::test]
async fn invalid_entries_are_reported_and_the_rest_is_saved() {
    let sim = Sim::seeded().await;
    sim.sim.add_alias_domain("alias.example.net", "example.com");
    let answer = set(
        &sim,
        json!([
            "nobody@example.com",
            "unknown.org",
            "not an address",
            "bob@alias.example.net",
            "alias.example.net",
            "bob@example.com"
        ]),
    )
    .await;
    assert_eq!(
        answer.msgs(),
        vec![
            json!(["sender_acl_invalid", "nobody@example.com"]),
            json!(["sender_acl_invalid", "unknown.org"]),
            json!(["sender_acl_invalid", "not an address"]),
            json!(["sender_acl_invalid", "bob@alias.example.net"]),
            json!(["mailbox_modified", ALICE]),
        ]
    );
    assert_eq!(answer.types()[0], "danger");
    assert_eq!(
        sim.sim.sender_acl(ALICE),
        vec!["@alias.example.net", "bob@example.com"]
    );
    // A nested array reaches ltrim(): TypeError, empty 200.
    let nested = set(&sim, json!([["x"]])).await;
    assert_eq!((nested.status, nested.body.as_str()), (200, ""));
}

#[tokio::test]
async fn addresses_already_allowed_by_the_alias_table_are_silently_dropped() {
    let sim = Sim::seeded().await;
    sim.sim
        .add_alias("support@example.com", &[ALICE, "bob@example.com"], true, "");
    sim.sim.add_alias("sales@example.com", &[ALICE], false, "");
    let answer = set(
        &sim,
        json!([
            ALICE,
            "support@example.com",
            "sales@example.com",
            "info@example.com"
        ]),
    )
    .await;
    assert_eq!(answer.types(), vec!["success"], "no message for the drop");
    // Her own address and support@ (sender_allowed=1, goto has her) are not
    // stored; sales@ has sender_allowed=0, so it is.
    assert_eq!(
        read(&sim).await,
        json!(["sales@example.com", "info@example.com"])
    );
}

#[tokio::test]
async fn grants_the_caller_cannot_manage_survive_a_replacement() {
    let sim = Sim::seeded().await;
    sim.sim.add_sender_acl_row(ALICE, "gone@example.com", false);
    sim.sim.add_sender_acl_row(ALICE, "@retired.org", false);
    sim.sim.add_sender_acl_row(ALICE, "@ext.test", true);
    set(&sim, json!(["info@example.com"])).await;
    assert_eq!(
        sim.sim.sender_acl(ALICE),
        vec!["info@example.com", "@retired.org", "gone@example.com"]
    );
    assert_eq!(
        read(&sim).await,
        json!(["info@example.com", "@retired.org", "gone@example.com"])
    );
    assert_eq!(sim.sim.external_sender_acl(ALICE), vec!["@ext.test"]);
}

#[tokio::test]
async fn extended_sender_acl_is_a_string_of_external_senders() {
    let sim = Sim::seeded().await;
    let answer = sim
        .post_json(
            "/api/v1/edit/mailbox",
            json!({"items": [ALICE], "attr": {"extended_sender_acl": "x@ext.test, @ext2.test example.com"}}),
        )
        .await;
    // The hosted domain is refused, reported with a variable only the
    // address branch sets: here the previous entry's domain.
    assert_eq!(
        answer.msgs(),
        vec![
            json!(["extra_acl_invalid_domain", "ext.test"]),
            json!(["mailbox_modified", ALICE])
        ]
    );
    assert_eq!(
        sim.sim.external_sender_acl(ALICE),
        vec!["x@ext.test", "@ext2.test"]
    );
    assert!(
        read(&sim).await.as_array().is_some_and(Vec::is_empty),
        "never returned"
    );
    let array = sim
        .post_json(
            "/api/v1/edit/mailbox",
            json!({"items": [ALICE], "attr": {"extended_sender_acl": ["x@ext.test"]}}),
        )
        .await;
    assert_eq!((array.status, array.body.as_str()), (200, ""));
}

#[tokio::test]
async fn mailbox_details_and_listings() {
    let sim = Sim::seeded().await;
    sim.sim.add_sender_acl_row(ALICE, "info@example.com", false);
    let details = sim
        .get(&format!("/api/v1/get/mailbox/{ALICE}"))
        .await
        .json();
    assert_eq!(details["username"], ALICE);
    assert_eq!(details["active"], 1);
    assert_eq!(details["attributes"]["imap_access"], "1");
    assert_eq!(details["custom_attributes"], json!([]));
    assert_eq!(details["sender_acl"], json!(["info@example.com"]));
    let all = sim.get("/api/v1/get/mailbox/all").await.json();
    let users: Vec<_> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["username"].clone())
        .collect();
    assert_eq!(
        users,
        vec![
            json!(ALICE),
            json!("bob@example.com"),
            json!("info@example.com")
        ]
    );
    assert_eq!(all[0]["sender_acl"], json!(["info@example.com"]));
    let reduced = sim.get("/api/v1/get/mailbox/reduced").await.json();
    assert!(reduced[0].get("sender_acl").is_none());
    // A domain the caller cannot see falls through to every mailbox.
    let typo = sim.get("/api/v1/get/mailbox/all/exmaple.com").await.json();
    assert_eq!(typo.as_array().map(Vec::len), Some(3));
    // Editing records recovery_email in the attributes.
    set(&sim, json!([])).await;
    let after = sim
        .get(&format!("/api/v1/get/mailbox/{ALICE}"))
        .await
        .json();
    assert_eq!(after["attributes"]["recovery_email"], Value::Null);
    assert!(after["attributes"].get("recovery_email").is_some());
}

#[tokio::test]
async fn servers_before_2026_07a_have_no_sender_acl_key() {
    let sim = Sim::with(MailcowSimConfig {
        omit_sender_acl: true,
        ..config()
    })
    .await;
    sim.sim.add_mailbox(ALICE);
    let details = sim
        .get(&format!("/api/v1/get/mailbox/{ALICE}"))
        .await
        .json();
    assert_eq!(details["username"], ALICE);
    assert!(details.get("sender_acl").is_none());
}

#[tokio::test]
async fn edit_errors_per_mailbox() {
    let sim = Sim::seeded().await;
    let answer = sim
        .post_json(
            "/api/v1/edit/mailbox",
            json!({"items": ["not-an-address", "ghost@example.com", ALICE], "attr": {"sender_acl": []}}),
        )
        .await;
    assert_eq!(
        answer.msgs(),
        vec![
            json!(["username_invalid", "not-an-address"]),
            json!("access_denied"),
            json!(["mailbox_modified", ALICE]),
        ]
    );
    // An over-allocated domain fails the quota check before sender_acl.
    sim.sim.set_domain_limits("example.com", 400, 1024);
    let quota = set(&sim, json!(["info@example.com"])).await;
    assert_eq!(quota.msgs()[0][0], "mailbox_quota_left_exceeded");
    assert!(sim.sim.sender_acl(ALICE).is_empty());
}
