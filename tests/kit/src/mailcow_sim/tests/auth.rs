//! §0–§1: routing, API keys, IP allow-list, status codes and bodies.

use reqwest::Method;
use serde_json::json;

use super::{KEY, RO_KEY, Sim, config};
use crate::mailcow_sim::MailcowSimConfig;

const AUTH_FAILED: &str = r#"{"type":"error","msg":"authentication failed"}"#;
/// json_encode escapes the slash.
const RW_DENIED: &str = r#"{"type":"error","msg":"API read\/write access denied"}"#;

#[tokio::test]
async fn version_is_plain_json() {
    let sim = Sim::start().await;
    let answer = sim.get("/api/v1/get/status/version").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(answer.body, r#"{"version":"2026-07a"}"#);
}

#[tokio::test]
async fn unknown_or_inactive_key_is_401() {
    let sim = Sim::start().await;
    let answer = sim
        .request(
            Method::GET,
            "/api/v1/get/domain/all",
            &[("X-API-Key", "nope")],
            None,
        )
        .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body, AUTH_FAILED);
    // Printed before json_api.php sets its Content-Type.
    assert!(answer.content_type.starts_with("text/html"));
}

#[tokio::test]
async fn key_is_stripped_of_foreign_characters_and_matched_case_insensitively() {
    let sim = Sim::start().await;
    let messy = format!(" {}!\t", KEY.to_lowercase());
    let answer = sim
        .request(
            Method::GET,
            "/api/v1/get/status/version",
            &[("X-API-Key", &messy)],
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, r#"{"version":"2026-07a"}"#);
}

#[tokio::test]
async fn no_key_get_is_200_with_an_empty_body() {
    let sim = Sim::start().await;
    let none = sim
        .request(Method::GET, "/api/v1/get/domain/all", &[], None)
        .await;
    assert_eq!((none.status, none.body.as_str()), (200, ""));
    // `empty("0")` is true, so a key of "0" is no key at all.
    let zero = sim
        .request(
            Method::GET,
            "/api/v1/get/domain/all",
            &[("X-API-Key", "0")],
            None,
        )
        .await;
    assert_eq!((zero.status, zero.body.as_str()), (200, ""));
}

#[tokio::test]
async fn ip_allow_list_exact_cidr_and_skip() {
    let deny = Sim::with(MailcowSimConfig {
        allow_from: vec!["10.0.0.0/8, 192.168.1.1".into()],
        ..config()
    })
    .await;
    let answer = deny.get("/api/v1/get/status/version").await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.body,
        r#"{"type":"error","msg":"api access denied for ip 127.0.0.1"}"#
    );
    // A forwarded address is only believed from a private-range proxy.
    let forwarded = deny
        .request(
            Method::GET,
            "/api/v1/get/status/version",
            &[("X-API-Key", KEY), ("X-Forwarded-For", "10.1.2.3")],
            None,
        )
        .await;
    assert_eq!(forwarded.status, 401);

    let cidr = Sim::with(MailcowSimConfig {
        allow_from: vec!["127.0.0.0/8".into()],
        ..config()
    })
    .await;
    assert_eq!(cidr.get("/api/v1/get/status/version").await.status, 200);

    let skip = Sim::with(MailcowSimConfig {
        allow_from: vec![],
        skip_ip_check: true,
        ..config()
    })
    .await;
    assert_eq!(skip.get("/api/v1/get/status/version").await.status, 200);
}

#[tokio::test]
async fn read_only_key_reads_but_may_not_write() {
    let sim = Sim::seeded().await;
    let ro = |method: Method, path: &'static str, body: Option<&'static str>| {
        let sim = &sim;
        async move {
            let headers = [("X-API-Key", RO_KEY), ("Content-Type", "application/json")];
            sim.request(method, path, &headers, body).await
        }
    };
    let read = ro(Method::GET, "/api/v1/get/mailbox/alice@example.com", None).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["username"], "alice@example.com");
    for path in [
        "/api/v1/add/alias",
        "/api/v1/edit/alias",
        "/api/v1/delete/alias",
    ] {
        let answer = ro(Method::POST, path, Some(r#"{"items":[1],"attr":{}}"#)).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (403, RW_DENIED),
            "{path}"
        );
    }
    assert_eq!(sim.sim.write_count(), 0);
}

#[tokio::test]
async fn without_a_key_edit_and_delete_are_403_but_add_runs_and_is_denied() {
    let sim = Sim::seeded().await;
    let json = [("Content-Type", "application/json")];
    for path in ["/api/v1/edit/alias", "/api/v1/delete/alias"] {
        let answer = sim.request(Method::POST, path, &json, Some("[1]")).await;
        assert_eq!((answer.status, answer.body.as_str()), (403, RW_DENIED));
    }
    let body = json!({"address": "team@example.com", "goto": "alice@example.com", "active": 1});
    let add = sim
        .request(
            Method::POST,
            "/api/v1/add/alias",
            &json,
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(add.status, 200);
    assert_eq!(add.msgs(), vec![json!("access_denied")]);
    assert!(sim.sim.aliases().is_empty());
}

#[tokio::test]
async fn sec_fetch_dest_other_than_empty_is_403_without_body() {
    let sim = Sim::start().await;
    let browser = sim
        .request(
            Method::GET,
            "/api/v1/get/status/version",
            &[("X-API-Key", KEY), ("Sec-Fetch-Dest", "document")],
            None,
        )
        .await;
    assert_eq!((browser.status, browser.body.as_str()), (403, ""));
    let fetch = sim
        .request(
            Method::GET,
            "/api/v1/get/status/version",
            &[("X-API-Key", KEY), ("Sec-Fetch-Dest", "empty")],
            None,
        )
        .await;
    assert_eq!(fetch.status, 200);
}

#[tokio::test]
async fn body_encoding_rules() {
    let sim = Sim::seeded().await;
    let invalid = sim.post("/api/v1/add/alias", "{not json").await;
    assert_eq!(invalid.status, 400);
    assert_eq!(
        invalid.body,
        r#"{"type":"error","msg":"Request body doesn't contain valid json!"}"#
    );
    // `null` decodes to null as well.
    assert_eq!(sim.post("/api/v1/delete/alias", "null").await.status, 400);

    // Without application/json the body is not parsed at all.
    let text = sim
        .request(
            Method::POST,
            "/api/v1/add/alias",
            &[("X-API-Key", KEY), ("Content-Type", "text/plain")],
            Some(r#"{"address":"x@example.com"}"#),
        )
        .await;
    assert_eq!(
        text.body,
        r#"{"type":"error","msg":"Cannot find attributes in post data"}"#
    );

    // PHP form fields holding JSON strings work too.
    let form = sim
        .request(
            Method::POST,
            "/api/v1/add/alias",
            &[("X-API-Key", KEY), ("Content-Type", "application/x-www-form-urlencoded")],
            Some("attr=%7B%22address%22%3A%22form%40example.com%22%2C%22goto%22%3A%22alice%40example.com%22%7D"),
        )
        .await;
    assert_eq!(form.types(), vec!["success"], "{form:?}");

    // edit/* with a JSON string body indexes a string: TypeError, empty 200.
    let string = sim.post("/api/v1/edit/alias", r#""text""#).await;
    assert_eq!((string.status, string.body.as_str()), (200, ""));
}

#[tokio::test]
async fn method_and_route_errors() {
    let sim = Sim::start().await;
    let put = sim
        .request(
            Method::PUT,
            "/api/v1/add/alias",
            &[("X-API-Key", KEY), ("Content-Type", "application/json")],
            Some("{}"),
        )
        .await;
    assert_eq!(put.status, 405);
    assert_eq!(
        put.body,
        r#"{"type":"error","msg":"only POST method is allowed"}"#
    );

    // A GET without a body fails the attr check first.
    let get_add = sim.get("/api/v1/add/alias").await;
    assert_eq!(get_add.status, 200);
    assert_eq!(
        get_add.body,
        r#"{"type":"error","msg":"Cannot find attributes in post data"}"#
    );

    let post_get = sim.post("/api/v1/get/domain/all", "{}").await;
    assert_eq!(post_get.status, 405);
    assert_eq!(
        post_get.body,
        r#"{"type":"error","msg":"only GET method is allowed"}"#
    );

    for path in ["/api/v1/get/nonsense/all", "/api/v1/frobnicate/alias"] {
        let answer = sim.get(path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.body, r#"{"type":"error","msg":"route not found"}"#);
    }
}

#[tokio::test]
async fn empty_lists_and_missing_objects_are_literal_braces() {
    let sim = Sim::start().await;
    for path in [
        "/api/v1/get/domain/all",
        "/api/v1/get/alias/all",
        "/api/v1/get/alias-domain/all",
        "/api/v1/get/mailbox/all",
        "/api/v1/get/mailbox/nobody@example.com",
        "/api/v1/get/alias/12345",
    ] {
        let answer = sim.get(path).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, "{}"), "{path}");
    }
    // ?tags= on a single mailbox lists with `[]` instead.
    let tagged = sim.get("/api/v1/get/mailbox/x@example.com?tags=vip").await;
    assert_eq!(tagged.body, "[]");
}

#[tokio::test]
async fn get_bodies_are_pretty_printed_with_escaped_slashes() {
    let sim = Sim::seeded().await;
    sim.sim
        .add_alias("team@example.com", &["alice@example.com"], true, "a/b ä");
    let answer = sim.get("/api/v1/get/alias/team@example.com").await;
    assert!(
        answer
            .body
            .starts_with("{\n    \"in_primary_domain\": \"\",\n    \"id\": ")
    );
    assert!(
        answer.body.contains(r#""private_comment": "a\/b ä""#),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn domains_and_alias_domains() {
    let sim = Sim::seeded().await;
    sim.sim.add_domain("other.org");
    sim.sim.add_alias_domain("alias.example.net", "example.com");
    let domains = sim.get("/api/v1/get/domain/all").await.json();
    let names: Vec<_> = domains
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["domain_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        names,
        vec!["example.com", "other.org"],
        "primary domains only"
    );
    assert!(
        domains[0].get("domain").is_none(),
        "there is no `domain` key"
    );
    assert_eq!(domains[0]["mboxes_in_domain"], 3);
    let alias_domains = sim.get("/api/v1/get/alias-domain/all").await.json();
    assert_eq!(alias_domains[0]["alias_domain"], "alias.example.net");
    assert_eq!(alias_domains[0]["target_domain"], "example.com");
    // An alias domain's name answers with the target's details.
    let via_alias = sim.get("/api/v1/get/domain/alias.example.net").await.json();
    assert_eq!(via_alias["domain_name"], "example.com");
}
