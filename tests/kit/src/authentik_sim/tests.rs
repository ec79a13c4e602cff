//! The simulator over real HTTP, as a client sees it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;

const TOKEN: &str = "authentik-test-token";

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn start(config: AuthentikSimConfig) -> (AuthentikSim, reqwest::Client) {
    let sim = AuthentikSim::start(config, loopback())
        .await
        .expect("start");
    (sim, reqwest::Client::new())
}

async fn get(
    client: &reqwest::Client,
    sim: &AuthentikSim,
    path_and_query: &str,
) -> (StatusCode, Value) {
    let response = client
        .get(format!("{}{path_and_query}", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn usernames(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn authentik_pagination_uses_page_numbers_and_clamps_page_size() {
    let (sim, client) = start(AuthentikSimConfig {
        max_page_size: 7,
        default_page_size: 5,
        ..AuthentikSimConfig::default()
    })
    .await;
    for i in 0..16 {
        sim.add_user(&format!("user{i:02}"), &format!("user{i:02}@example.com"));
    }

    let (status, body) = get(&client, &sim, "/api/v3/core/users/?ordering=pk").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        5,
        "default page size"
    );
    assert_eq!(body["autocomplete"], json!({}));

    // Asking for 100 silently yields the maximum, 7.
    let (_, body) = get(
        &client,
        &sim,
        "/api/v3/core/users/?page_size=100&ordering=pk",
    )
    .await;
    let p = &body["pagination"];
    assert_eq!(
        *p,
        json!({"next": 2, "previous": 0, "count": 16, "current": 1,
               "total_pages": 3, "start_index": 1, "end_index": 7})
    );
    assert!(p["next"].is_u64(), "integers, not URLs or floats");

    // Walk the pages the way a client should: follow `next` until 0.
    let mut seen = Vec::new();
    let mut page = 1;
    while page != 0 {
        let (status, body) = get(
            &client,
            &sim,
            &format!("/api/v3/core/users/?page_size=100&ordering=pk&page={page}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(usernames(&body));
        page = body["pagination"]["next"].as_u64().unwrap();
    }
    assert_eq!(seen.len(), 16);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 16);

    let (_, last) = get(&client, &sim, "/api/v3/core/users/?page_size=7&page=3").await;
    assert_eq!(last["pagination"]["previous"], 2);
    assert_eq!(last["pagination"]["next"], 0);
    assert_eq!(last["pagination"]["start_index"], 15);
    assert_eq!(last["pagination"]["end_index"], 16);

    let (status, body) = get(&client, &sim, "/api/v3/core/users/?page_size=7&page=4").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "Invalid page."}));

    // An invalid page_size falls back to the default.
    let (_, body) = get(&client, &sim, "/api/v3/core/users/?page_size=abc").await;
    assert_eq!(body["results"].as_array().unwrap().len(), 5);

    // Default ordering is by username, descending works too.
    let (_, body) = get(
        &client,
        &sim,
        "/api/v3/core/users/?ordering=-username&page_size=2",
    )
    .await;
    assert_eq!(usernames(&body), ["user15", "user14"]);
}

#[tokio::test]
async fn authentik_group_parents_and_legacy_parent() {
    for legacy in [false, true] {
        let (sim, client) = start(AuthentikSimConfig {
            legacy_parent: legacy,
            ..AuthentikSimConfig::default()
        })
        .await;
        let a = sim.add_group("a-parent", json!({}));
        let b = sim.add_group("b-parent", json!({}));
        let child = sim.add_group("child", json!({"x": 1}));
        sim.set_group_parents(&child, &[&a, &b]);

        let (status, body) = get(&client, &sim, &format!("/api/v3/core/groups/{child}/")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["pk"], json!(child));
        if legacy {
            assert_eq!(body["parent"], json!(a), "only the first parent survives");
            assert_eq!(body["parent_name"], "a-parent");
            assert!(body.get("parents").is_none());
            assert!(body.get("parents_obj").is_none());
        } else {
            assert_eq!(body["parents"], json!([a, b]));
            assert!(body["parents_obj"].is_null(), "null unless include_parents");
            assert!(body.get("parent").is_none());
            let (_, body) = get(
                &client,
                &sim,
                &format!("/api/v3/core/groups/{child}/?include_parents=true"),
            )
            .await;
            assert_eq!(body["parents_obj"][1]["name"], "b-parent");
            assert_eq!(body["parents_obj"][1]["group_uuid"], json!(b));
        }
        let (_, parent) = get(
            &client,
            &sim,
            &format!("/api/v3/core/groups/{a}/?include_children=true"),
        )
        .await;
        assert_eq!(parent["children"], json!([child]));
        assert_eq!(parent["children_obj"][0]["name"], "child");

        // Undashed UUIDs (as webhook events carry them) resolve too.
        let undashed = child.replace('-', "");
        let (status, _) = get(&client, &sim, &format!("/api/v3/core/groups/{undashed}/")).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn authentik_include_users_false_keeps_user_pks() {
    let (sim, client) = start(AuthentikSimConfig::default()).await;
    let alice = sim.add_user("alice", "alice@example.com");
    let bob = sim.add_user("bob", "bob@example.com");
    let group = sim.add_group("support", json!({}));
    sim.add_member(&group, alice);
    sim.add_member(&group, bob);

    let (_, body) = get(&client, &sim, "/api/v3/core/groups/?include_users=false").await;
    let g = &body["results"][0];
    assert!(g["users_obj"].is_null());
    assert_eq!(g["users"], json!([alice, bob]));

    let (_, body) = get(&client, &sim, "/api/v3/core/groups/").await;
    assert_eq!(body["results"][0]["users_obj"][0]["username"], "alice");

    let (_, body) = get(&client, &sim, "/api/v3/core/users/?include_groups=false").await;
    let u = &body["results"][0];
    assert!(u["groups_obj"].is_null());
    assert_eq!(u["groups"], json!([group]));
    assert_eq!(u["name"], "Alice");
    assert_eq!(u["type"], "internal");
    assert!(u["pk"].is_i64());
}

#[tokio::test]
async fn authentik_user_filters_use_direct_membership() {
    let (sim, client) = start(AuthentikSimConfig::default()).await;
    let alice = sim.add_user("alice", "alice@example.com");
    let bob = sim.add_user("bob", "bob@example.com");
    sim.set_user_active(bob, false);
    let parent = sim.add_group("parent", json!({}));
    let child = sim.add_group("child", json!({}));
    sim.set_group_parents(&child, &[&parent]);
    sim.add_member(&child, alice);

    let (_, body) = get(&client, &sim, "/api/v3/core/users/?groups_by_name=parent").await;
    assert!(usernames(&body).is_empty(), "ancestors don't count");
    let (_, body) = get(
        &client,
        &sim,
        &format!("/api/v3/core/users/?groups_by_pk={child}"),
    )
    .await;
    assert_eq!(usernames(&body), ["alice"]);
    let (status, body) = get(&client, &sim, "/api/v3/core/users/?groups_by_name=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["groups_by_name"].is_array());

    let (_, body) = get(&client, &sim, "/api/v3/core/users/?is_active=false").await;
    assert_eq!(usernames(&body), ["bob"]);
    let (_, body) = get(
        &client,
        &sim,
        "/api/v3/core/users/?type=internal&type=external",
    )
    .await;
    assert_eq!(body["pagination"]["count"], 2);
    let (_, body) = get(&client, &sim, "/api/v3/core/users/?search=ALI").await;
    assert_eq!(usernames(&body), ["alice"]);
    let (_, body) = get(
        &client,
        &sim,
        "/api/v3/core/groups/?members_by_username=alice",
    )
    .await;
    assert_eq!(body["results"][0]["name"], "child");

    let (status, body) = get(&client, &sim, "/api/v3/core/users/99999/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"detail": "No User matches the given query."}));

    sim.set_hide_users(true);
    let (status, body) = get(&client, &sim, "/api/v3/core/users/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["pagination"]["count"], 0);
}

#[tokio::test]
async fn authentik_auth_failures_are_403() {
    let (sim, client) = start(AuthentikSimConfig::default()).await;
    let url = format!("{}/api/v3/core/users/", sim.base_url());

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"detail": "Authentication credentials were not provided."})
    );

    let response = client.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"detail": "Token invalid/expired"}));

    let response = client
        .get(&url)
        .header("Authorization", format!("Token {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn authentik_fail_next_and_counts() {
    let (sim, client) = start(AuthentikSimConfig::default()).await;
    sim.fail_next(2);
    for _ in 0..2 {
        let response = client
            .get(format!("{}/api/v3/core/groups/", sim.base_url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Server Error (500)")
        );
    }
    let (status, _) = get(&client, &sim, "/api/v3/core/groups/").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&client, &sim, "/api/v3/core/users/1/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(sim.request_count(), 4);
    let counts = sim.counts();
    assert_eq!(counts["GET /api/v3/core/groups/"], 3);
    assert_eq!(counts["GET /api/v3/core/users/{pk}/"], 1);
    sim.reset_counts();
    assert_eq!(sim.request_count(), 0);
    assert!(sim.counts().is_empty());
}

/// Usernames and envelope of page `n` of the users listing, three per page.
async fn users_page(client: &reqwest::Client, sim: &AuthentikSim, n: u64) -> (Vec<String>, Value) {
    let (status, body) = get(
        client,
        sim,
        &format!("/api/v3/core/users/?ordering=pk&page_size=100&page={n}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (usernames(&body), body["pagination"].clone())
}

#[tokio::test]
async fn authentik_list_faults_distort_only_what_they_say() {
    let (sim, client) = start(AuthentikSimConfig {
        max_page_size: 3,
        ..AuthentikSimConfig::default()
    })
    .await;
    for i in 1..=7 {
        sim.add_user(&format!("u{i}"), &format!("u{i}@example.com"));
    }
    let faithful = json!({"next": 3, "previous": 1, "count": 7, "current": 2,
                          "total_pages": 3, "start_index": 4, "end_index": 6});
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert_eq!(names, ["u4", "u5", "u6"]);
    assert_eq!(envelope, faithful);

    sim.set_list_fault(Listing::Users, Some(ListFault::EmptyPage { page: 2 }));
    assert_eq!(users_page(&client, &sim, 1).await.0, ["u1", "u2", "u3"]);
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert!(names.is_empty());
    assert_eq!(envelope, faithful, "next still says there is more");

    sim.set_list_fault(Listing::Users, Some(ListFault::EndAfter { page: 2 }));
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert_eq!(names, ["u4", "u5", "u6"]);
    assert_eq!(envelope["next"], 0);
    assert_eq!(envelope["total_pages"], 3);

    sim.set_list_fault(Listing::Users, Some(ListFault::WrongCount { delta: 5 }));
    for n in 1..=3 {
        assert_eq!(users_page(&client, &sim, n).await.1["count"], 12);
    }
    assert_eq!(users_page(&client, &sim, 3).await.0, ["u7"]);

    sim.set_list_fault(Listing::Users, Some(ListFault::Repeat { page: 2, by: 1 }));
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert_eq!(names, ["u3", "u4", "u5"]);
    assert_eq!(envelope, faithful);

    sim.set_list_fault(Listing::Users, Some(ListFault::OnlyFirst { keep: 4 }));
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert_eq!(names, ["u4"]);
    assert_eq!(
        envelope,
        json!({"next": 0, "previous": 1, "count": 4, "current": 2,
               "total_pages": 2, "start_index": 4, "end_index": 4})
    );

    // Groups are untouched by a users fault, and the control API sets and
    // clears faults the same way.
    sim.add_group("g", json!({}));
    let (_, body) = get(&client, &sim, "/api/v3/core/groups/").await;
    assert_eq!(body["pagination"]["count"], 1);
    let control = |body: Value| {
        let client = client.clone();
        let url = format!("{}/__sim/list_fault", sim.base_url());
        async move { client.post(url).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(
        control(json!({"listing": "groups", "fault": {"kind": "wrong_count", "delta": -1}})).await,
        StatusCode::NO_CONTENT
    );
    let (_, body) = get(&client, &sim, "/api/v3/core/groups/").await;
    assert_eq!(body["pagination"]["count"], 0);
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    for listing in ["users", "groups"] {
        control(json!({"listing": listing, "fault": null})).await;
    }
    let (_, body) = get(&client, &sim, "/api/v3/core/groups/").await;
    assert_eq!(body["pagination"]["count"], 1);
    let (names, envelope) = users_page(&client, &sim, 2).await;
    assert_eq!(names, ["u4", "u5", "u6"]);
    assert_eq!(envelope, faithful);
    assert_eq!(
        control(json!({"listing": "users", "fault": {"kind": "nonsense"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// A webhook receiver that forwards each (headers, body) to a channel.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body.0));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Value)>) -> (HeaderMap, Value) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a webhook within 10 s")
        .expect("receiver open")
}

fn webhook_config(url: String) -> AuthentikSimConfig {
    AuthentikSimConfig {
        webhook: Some(WebhookConfig {
            url,
            headers: vec![("X-Authentik-Webhook-Token".into(), "s3cret".into())],
        }),
        ..AuthentikSimConfig::default()
    }
}

#[tokio::test]
async fn authentik_add_user_endpoint_posts_group_webhook() {
    let (url, mut rx) = receiver().await;
    let (sim, client) = start(webhook_config(url)).await;
    let alice = sim.add_user("alice", "alice@example.com");
    let group = sim.add_group("support", json!({}));

    let response = client
        .post(format!(
            "{}/api/v3/core/groups/{group}/add_user/",
            sim.base_url()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"pk": alice}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let (headers, body) = next_event(&mut rx).await;
    assert_eq!(headers["x-authentik-webhook-token"], "s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["action"], "model_updated");
    assert_eq!(
        body["model"],
        json!({"app": "authentik_core", "model_name": "group",
               "pk": group.replace('-', ""), "name": "support"})
    );
    assert!(uuid::Uuid::parse_str(body["event_pk"].as_str().unwrap()).is_ok());
    assert!(body["created"].as_str().unwrap().ends_with("+00:00"));

    let (_, body) = get(&client, &sim, &format!("/api/v3/core/groups/{group}/")).await;
    assert_eq!(body["users"], json!([alice]));

    // An unknown user is a 404 and no event.
    let response = client
        .post(format!(
            "{}/api/v3/core/groups/{group}/remove_user/",
            sim.base_url()
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"pk": 4242}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn authentik_user_patch_and_crud_emit_user_events() {
    let (url, mut rx) = receiver().await;
    let (sim, client) = start(webhook_config(url)).await;
    let base = sim.base_url();

    let response = client
        .post(format!("{base}/api/v3/core/users/"))
        .bearer_auth(TOKEN)
        .json(&json!({"username": "carol", "name": "Carol C", "email": "carol@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let pk = created["pk"].as_i64().unwrap();
    let (_, event) = next_event(&mut rx).await;
    assert_eq!(event["action"], "model_created");
    assert_eq!(event["model"]["pk"], pk);
    assert_eq!(
        event["model"]["name"], "Carol C",
        "display name, not username"
    );

    let response = client
        .patch(format!("{base}/api/v3/core/users/{pk}/"))
        .bearer_auth(TOKEN)
        .json(&json!({"is_active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["is_active"], false);
    let (_, event) = next_event(&mut rx).await;
    assert_eq!(event["action"], "model_updated");
    assert_eq!(event["model"]["model_name"], "user");

    // Validation errors are DRF-shaped and emit nothing.
    let response = client
        .post(format!("{base}/api/v3/core/users/"))
        .bearer_auth(TOKEN)
        .json(&json!({"username": "carol", "name": "dup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], json!(["This field must be unique."]));

    let response = client
        .delete(format!("{base}/api/v3/core/users/{pk}/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (_, event) = next_event(&mut rx).await;
    assert_eq!(event["action"], "model_deleted");
    assert_eq!(event["model"]["pk"], pk);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn authentik_group_patch_sets_parents_and_members() {
    let (url, mut rx) = receiver().await;
    let (sim, client) = start(webhook_config(url)).await;
    let base = sim.base_url();
    let alice = sim.add_user("alice", "alice@example.com");
    let parent = sim.add_group("parent", json!({}));
    let group = sim.add_group("team", json!({}));

    let response = client
        .patch(format!("{base}/api/v3/core/groups/{group}/"))
        .bearer_auth(TOKEN)
        .json(&json!({"parents": [parent], "users": [alice], "attributes": {"reconciler": {"alias": "team@example.com"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["parents"], json!([parent]));
    assert_eq!(body["users"], json!([alice]));
    // One save plus one event per m2m addition, all for the group.
    for _ in 0..3 {
        let (_, event) = next_event(&mut rx).await;
        assert_eq!(event["model"]["model_name"], "group");
        assert_eq!(event["action"], "model_updated");
    }

    let response = client
        .patch(format!("{base}/api/v3/core/groups/{group}/"))
        .bearer_auth(TOKEN)
        .json(&json!({"attributes": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn authentik_seed_endpoint_and_generator() {
    let (sim, client) = start(AuthentikSimConfig::default()).await;
    let response = client
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({
            "users": [{"username": "alice", "email": "alice@example.com"},
                      {"username": "bob", "email": "bob@example.com", "is_active": false}],
            "groups": [{"name": "child", "parents": ["root"], "members": ["alice"]},
                       {"name": "root", "attributes": {"reconciler": {"alias": "all@example.com"}}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["users"]["alice"], sim.user_pk("alice").unwrap());
    let (_, body) = get(
        &client,
        &sim,
        "/api/v3/core/groups/?name=child&include_parents=true",
    )
    .await;
    assert_eq!(body["results"][0]["parents_obj"][0]["name"], "root");

    let a = AuthentikSim::start(AuthentikSimConfig::default(), loopback())
        .await
        .unwrap();
    let b = AuthentikSim::start(AuthentikSimConfig::default(), loopback())
        .await
        .unwrap();
    let ga = generate_directory(&a, 200, 40, 10, 3, 7);
    let gb = generate_directory(&b, 200, 40, 10, 3, 7);
    assert_eq!(ga.shared_mailboxes, gb.shared_mailboxes);
    assert_eq!(ga.aliases, gb.aliases);
    assert_eq!(ga.memberships, gb.memberships);
    assert_eq!(ga.shared_mailboxes.len(), 10);
    assert_eq!(ga.user_emails.len(), 200);

    // Chains are at most three groups long and the graph is acyclic.
    let directory = a.shared.directory();
    let parents: HashMap<_, _> = directory
        .groups
        .values()
        .map(|g| (g.uuid, g.parents.clone()))
        .collect();
    fn depth(g: &uuid::Uuid, parents: &HashMap<uuid::Uuid, Vec<uuid::Uuid>>) -> usize {
        1 + parents[g]
            .iter()
            .map(|p| depth(p, parents))
            .max()
            .unwrap_or(0)
    }
    let deepest = parents.keys().map(|g| depth(g, &parents)).max().unwrap();
    assert!((2..=3).contains(&deepest), "depth {deepest}");
}
