//! §3: app passwords (§9 items 4 and 6).

use serde_json::{Value, json};

use super::Sim;

const INFO: &str = "info@example.com";

fn add_body(name: &str, password: &str) -> Value {
    json!({
        "username": INFO, "app_name": name, "app_passwd": password, "app_passwd2": password,
        "active": 1, "protocols": ["imap_access", "smtp_access"],
    })
}

#[tokio::test]
async fn add_returns_no_id_and_stores_a_hash() {
    let sim = Sim::seeded().await;
    let answer = sim
        .post_json(
            "/api/v1/add/app-passwd",
            add_body(" sync:alice ", "s3cret-pass"),
        )
        .await;
    assert_eq!(answer.msgs(), vec![json!("app_passwd_added")]);
    let stored = sim.sim.app_passwords(INFO);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "sync:alice", "trimmed");
    assert!(stored[0].active);
    assert_eq!(stored[0].protocols, vec!["imap_access", "smtp_access"]);
    assert!(stored[0].password_hash.starts_with("{SSHA256}"));
    assert!(!stored[0].password_hash.contains("s3cret-pass"));
    assert!(
        sim.sim
            .verify_app_password(INFO, "sync:alice", "s3cret-pass")
    );
    assert!(!sim.sim.verify_app_password(INFO, "sync:alice", "wrong"));
    // The log masks both password fields.
    let log = &answer.json()[0]["log"];
    assert_eq!(log[0], "app_passwd");
    assert_eq!(log[2]["app_passwd"], "*");
    assert_eq!(log[2]["app_passwd2"], "*");
}

#[tokio::test]
async fn omitted_active_and_protocols_are_zero() {
    let sim = Sim::seeded().await;
    sim.post_json(
        "/api/v1/add/app-passwd",
        json!({"username": INFO, "app_name": "bare", "app_passwd": "abcdef", "app_passwd2": "abcdef"}),
    )
    .await;
    let stored = sim.sim.app_passwords(INFO).pop().expect("added");
    assert!(!stored.active);
    assert!(stored.protocols.is_empty());
}

#[tokio::test]
async fn owner_resolution_and_check_order() {
    let sim = Sim::seeded().await;
    let mut no_user = add_body("x", "abcdef");
    no_user.as_object_mut().map(|o| o.remove("username"));
    // Owner "API" has no domain.
    let answer = sim.post_json("/api/v1/add/app-passwd", no_user).await;
    assert_eq!(answer.msgs(), vec![json!("access_denied")]);
    let mut ghost = add_body("x", "abcdef");
    ghost["username"] = json!("ghost@example.com");
    assert_eq!(
        sim.post_json("/api/v1/add/app-passwd", ghost).await.msgs(),
        vec![json!("access_denied")]
    );
    let short = sim
        .post_json("/api/v1/add/app-passwd", add_body("x", "abc"))
        .await;
    assert_eq!(short.msgs(), vec![json!("password_complexity")]);
    assert_eq!(
        short.json()[0]["log"],
        json!(["password_check", null, null])
    );
    let mut mismatch = add_body("x", "abcdef");
    mismatch["app_passwd2"] = json!("abcdeg");
    assert_eq!(
        sim.post_json("/api/v1/add/app-passwd", mismatch)
            .await
            .msgs(),
        vec![json!("password_mismatch")]
    );
    // The name is checked last.
    let unnamed = sim
        .post_json("/api/v1/add/app-passwd", add_body("  ", "abcdef"))
        .await;
    assert_eq!(unnamed.msgs(), vec![json!("app_name_empty")]);
    assert!(sim.sim.app_passwords(INFO).is_empty());
}

#[tokio::test]
async fn prehashed_passwords_are_stored_as_given() {
    let sim = Sim::seeded().await;
    sim.post_json(
        "/api/v1/add/app-passwd",
        add_body("pre", "{PLAIN}opensesame"),
    )
    .await;
    let stored = sim.sim.app_passwords(INFO).pop().expect("added");
    assert_eq!(stored.password_hash, "{PLAIN}opensesame");
    assert!(sim.sim.verify_app_password(INFO, "pre", "opensesame"));
}

#[tokio::test]
async fn listing_shows_the_hash_and_escapes_the_name_again() {
    let sim = Sim::seeded().await;
    assert_eq!(
        sim.get(&format!("/api/v1/get/app-passwd/all/{INFO}"))
            .await
            .body,
        "{}"
    );
    sim.post_json("/api/v1/add/app-passwd", add_body("Tom & Jerry", "abcdef"))
        .await;
    assert_eq!(sim.sim.app_passwords(INFO)[0].name, "Tom &amp; Jerry");
    let list = sim
        .get(&format!("/api/v1/get/app-passwd/all/{INFO}"))
        .await
        .json();
    let row = &list[0];
    assert_eq!(row["name"], "Tom &amp;amp; Jerry");
    assert!(
        row["password"]
            .as_str()
            .is_some_and(|p| p.starts_with("{SSHA256}"))
    );
    assert_eq!(row["imap_access"], 1);
    assert_eq!(row["pop3_access"], 0);
    assert_eq!(row["mailbox"], INFO);
    // The by-id form is broken in PHP 8: TypeError, empty 200.
    let by_id = sim
        .get(&format!("/api/v1/get/app-passwd/{}", row["id"]))
        .await;
    assert_eq!((by_id.status, by_id.body.as_str()), (200, ""));
    // Without a mailbox the owner is "API", who has none.
    assert_eq!(sim.get("/api/v1/get/app-passwd/all").await.body, "{}");
}

#[tokio::test]
async fn edit_needs_the_username() {
    let sim = Sim::seeded().await;
    let id = sim.sim.add_app_password(INFO, "laptop", "front-desk-1");
    let without = sim
        .post_json(
            "/api/v1/edit/app-passwd",
            json!({"items": [id], "attr": {"active": 0}}),
        )
        .await;
    assert_eq!((without.status, without.body.as_str()), (200, ""));
    assert!(sim.sim.app_passwords(INFO)[0].active, "nothing changed");

    let with = sim
        .post_json(
            "/api/v1/edit/app-passwd",
            json!({"items": [id], "attr": {"username": INFO, "protocols": ["imap_access"]}}),
        )
        .await;
    assert_eq!(
        with.msgs(),
        vec![json!(["object_modified", id.to_string()])]
    );
    let stored = sim.sim.app_passwords(INFO).pop().expect("row");
    assert_eq!(stored.protocols, vec!["imap_access"], "full replacement");
    assert!(stored.active, "active kept when omitted");

    let unknown = sim
        .post_json(
            "/api/v1/edit/app-passwd",
            json!({"items": [999], "attr": {"username": INFO, "active": 0}}),
        )
        .await;
    assert_eq!(unknown.msgs(), vec![json!(["app_passwd_id_invalid", 999])]);
}

#[tokio::test]
async fn edit_can_change_the_password_and_re_escapes_names() {
    let sim = Sim::seeded().await;
    let id = sim.sim.add_app_password(INFO, "a&b", "old-password");
    sim.post_json(
        "/api/v1/edit/app-passwd",
        json!({"items": [id], "attr": {"username": INFO, "app_passwd": "new-password", "app_passwd2": "new-password"}}),
    )
    .await;
    // Without app_name the edit re-saves the escaped-on-read name, which
    // gets escaped once more on the way in.
    let stored = sim.sim.app_passwords(INFO).pop().expect("row");
    assert_eq!(stored.name, "a&amp;amp;amp;b");
    assert!(
        sim.sim
            .verify_app_password(INFO, &stored.name, "new-password")
    );
    assert!(
        !sim.sim
            .verify_app_password(INFO, &stored.name, "old-password")
    );
}

#[tokio::test]
async fn delete_takes_a_bare_array_and_stops_at_the_first_unknown_id() {
    let sim = Sim::seeded().await;
    let a = sim.sim.add_app_password(INFO, "a", "password-a");
    let b = sim.sim.add_app_password(INFO, "b", "password-b");
    let answer = sim
        .post_json("/api/v1/delete/app-passwd", json!([a, 999, b]))
        .await;
    assert_eq!(
        answer.msgs(),
        vec![
            json!(["app_passwd_removed", a.to_string()]),
            json!("app_passwd_id_invalid")
        ]
    );
    let left: Vec<_> = sim
        .sim
        .app_passwords(INFO)
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(left, vec![b]);
    let wrapped = sim
        .post_json("/api/v1/delete/app-passwd", json!({"items": [b]}))
        .await;
    assert_eq!(wrapped.msgs(), vec![json!("app_passwd_id_invalid")]);
    sim.sim.delete_app_password(b);
    assert!(sim.sim.app_passwords(INFO).is_empty());
}
