//! Counters, fault injection and the `/__sim/*` control API.

use reqwest::Method;
use serde_json::json;

use super::Sim;
use crate::mailcow_sim::FailMode;

#[tokio::test]
async fn counts_reads_writes_and_rejections_by_route() {
    let sim = Sim::seeded().await;
    sim.get("/api/v1/get/mailbox/alice@example.com").await;
    sim.post_json(
        "/api/v1/edit/mailbox",
        json!({"items": ["alice@example.com"], "attr": {"sender_acl": []}}),
    )
    .await;
    sim.post_json("/api/v1/delete/app-passwd", json!([1])).await;
    sim.request(Method::GET, "/api/v1/get/mailbox/all", &[], None)
        .await;
    let counts = sim.sim.counts();
    assert_eq!(counts.get("read get/mailbox"), Some(&1));
    assert_eq!(counts.get("write edit/mailbox"), Some(&1));
    assert_eq!(counts.get("write delete/app-passwd"), Some(&1));
    assert_eq!(counts.get("rejected get/mailbox"), Some(&1));
    assert_eq!(sim.sim.write_count(), 2);
    sim.sim.reset_counts();
    assert_eq!(sim.sim.write_count(), 0);
    assert!(sim.sim.counts().is_empty());
}

#[tokio::test]
async fn injected_faults_come_first_and_are_not_writes() {
    let sim = Sim::seeded().await;
    sim.sim.fail_next(1, FailMode::Http502);
    sim.sim.fail_next(1, FailMode::EmptyBody);
    let bad_gateway = sim.get("/api/v1/get/status/version").await;
    assert_eq!(bad_gateway.status, 502);
    assert!(bad_gateway.body.contains("502 Bad Gateway"));
    let empty = sim
        .post_json(
            "/api/v1/add/alias",
            json!({"address": "a@example.com", "goto": "alice@example.com"}),
        )
        .await;
    assert_eq!((empty.status, empty.body.as_str()), (200, ""));
    assert!(
        sim.sim.aliases().is_empty(),
        "the faulted request did nothing"
    );
    assert_eq!(sim.get("/api/v1/get/status/version").await.status, 200);
    assert_eq!(sim.sim.write_count(), 0);
    assert_eq!(sim.sim.counts().get("fault get/status"), Some(&1));
    assert_eq!(sim.sim.counts().get("fault add/alias"), Some(&1));
}

#[tokio::test]
async fn control_api_seeds_dumps_and_injects() {
    let sim = Sim::start().await;
    let seed = json!({
        "domains": ["example.com"],
        "mailboxes": ["info@example.com", "alice@example.com"],
        "aliases": [{"address": "hand-made@example.com", "goto": ["alice@example.com"], "sender_allowed": true}],
    });
    let control = |method: Method, path: &'static str, body: Option<String>| {
        let sim = &sim;
        async move {
            let headers = [("Content-Type", "application/json")];
            sim.request(method, path, &headers, body.as_deref()).await
        }
    };
    let seeded = control(Method::POST, "/__sim/seed", Some(seed.to_string())).await;
    assert_eq!(seeded.status, 200, "{seeded:?}");
    assert_eq!(seeded.json()["mailboxes"], 2);
    // Re-seeding the same document changes nothing.
    control(Method::POST, "/__sim/seed", Some(seed.to_string())).await;
    let state = control(Method::GET, "/__sim/state", None).await.json();
    assert_eq!(state["domains"], json!(["example.com"]));
    let aliases = state["aliases"].as_array().expect("aliases");
    assert_eq!(aliases.len(), 3, "two self-aliases and the seeded one");
    assert!(
        aliases
            .iter()
            .any(|a| a["address"] == "hand-made@example.com"
                && a["goto"] == "alice@example.com"
                && a["sender_allowed"] == 1)
    );
    assert_eq!(state["sender_acl"], json!([]));

    let bad = control(
        Method::POST,
        "/__sim/seed",
        Some(r#"{"mailboxes":["nope"]}"#.into()),
    )
    .await;
    assert_eq!(bad.status, 400);

    control(
        Method::POST,
        "/__sim/fail",
        Some(r#"{"n":1,"mode":"empty_body"}"#.into()),
    )
    .await;
    let faulted = sim.get("/api/v1/get/domain/all").await;
    assert_eq!((faulted.status, faulted.body.as_str()), (200, ""));
    let counts = control(Method::GET, "/__sim/counts", None).await.json();
    assert_eq!(counts["counts"]["fault get/domain"], 1);
    assert_eq!(counts["writes"], 0);
}

#[tokio::test]
async fn plus_in_a_path_reaches_php_as_a_space() {
    let sim = Sim::seeded().await;
    sim.sim
        .add_alias("a+b@example.com", &["alice@example.com"], true, "");
    // nginx does not re-escape the path it hands PHP as `query`.
    assert_eq!(
        sim.get("/api/v1/get/alias/a+b@example.com").await.body,
        "{}"
    );
    let escaped = sim
        .get("/api/v1/get/alias/a%252Bb@example.com")
        .await
        .json();
    assert_eq!(escaped["address"], "a+b@example.com");
}

#[tokio::test]
async fn encoded_dot_segments_are_resolved_after_decoding_like_nginx() {
    let sim = Sim::seeded().await;
    let bobs = sim
        .sim
        .add_app_password("bob@example.com", "Bob's phone", "phone-Secret-1");
    // `info@…/../bob@…` with the slashes encoded: nginx decodes, then
    // resolves the dot segment, so PHP is asked for bob's app passwords.
    let listed = sim
        .get("/api/v1/get/app-passwd/all/info@example.com%2F..%2Fbob@example.com")
        .await
        .json();
    assert_eq!(listed[0]["id"], bobs);
    assert_eq!(listed[0]["mailbox"], "bob@example.com");
    // Above the root is nginx's 400.
    let above = sim.get("/api/v1/..%2F..%2F..%2F..%2Fx").await;
    assert_eq!(above.status, 400);
}
