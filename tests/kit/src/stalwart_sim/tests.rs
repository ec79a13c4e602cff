//! The simulator's semantics, over HTTP with a plain reqwest client.

use serde_json::{Value, json};

use super::*;

async fn sim() -> StalwartSim {
    reconciler_runtime::install_crypto_provider();
    StalwartSim::start(StalwartSimConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// POSTs method calls to apiUrl with the API key; returns the responses.
async fn call(sim: &StalwartSim, calls: Value) -> Vec<Value> {
    let body = json!({"using": [jmap::CORE, jmap::MANAGEMENT], "methodCalls": calls});
    let response = reqwest::Client::new()
        .post(format!("{}/jmap/", sim.base_url()))
        .bearer_auth(sim.api_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["methodResponses"].as_array().unwrap().clone()
}

#[tokio::test]
async fn session_names_api_url_and_management_only_per_account() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let url = format!("{}/jmap/session", sim.base_url());
    let s: Value = client
        .get(&url)
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["apiUrl"], format!("{}/jmap/", sim.base_url()));
    assert!(s["capabilities"].get(jmap::MANAGEMENT).is_none());
    let id = s["primaryAccounts"][jmap::MANAGEMENT].as_str().unwrap();
    assert!(s["accounts"][id]["accountCapabilities"][jmap::MANAGEMENT].is_object());

    let anonymous: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(anonymous["accounts"], json!({}));
    let refused = client.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers().get_all("www-authenticate").iter().count(),
        2
    );
    let basic = client
        .get(&url)
        .basic_auth("admin", Some("Sim-Admin-Passw0rd!"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);

    let old = StalwartSim::start(
        StalwartSimConfig {
            management: false,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let s: Value = client
        .get(format!("{}/jmap/session", old.base_url()))
        .bearer_auth(old.api_key())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(s["primaryAccounts"].get(jmap::MANAGEMENT).is_none());
}

#[tokio::test]
async fn create_with_back_references_get_and_query() {
    let sim = sim().await;
    let domain = sim.add_domain("Example.COM");
    let r = call(
        &sim,
        json!([
            ["x:Account/set", {"create": {
                "g": {"@type": "Group", "name": "staff", "domainId": domain},
                // json! sorts keys: "u" is sent after "g", as it must be.
                "u": {"@type": "User", "name": " Alice ", "domainId": domain,
                      "memberGroupIds": {"#g": true},
                      "aliases": {"0": {"name": "al", "domainId": domain}}}
            }}, "c1"],
            ["x:Account/query", {"filter": {"name": "alice", "domainId": domain}}, "c2"],
            ["x:Account/get", {"#ids": {"resultOf": "c2", "name": "x:Account/query", "path": "/ids"},
                               "properties": ["emailAddress", "memberGroupIds", "aliases"]}, "c3"]
        ]),
    )
    .await;
    let group = r[0][1]["created"]["g"]["id"].as_str().unwrap();
    let alice = r[0][1]["created"]["u"]["id"].as_str().unwrap();
    assert_eq!(r[1][1]["ids"], json!([alice]));
    let got = &r[2][1]["list"][0];
    assert_eq!(got["emailAddress"], "alice@example.com");
    assert_eq!(got["memberGroupIds"], json!({ group: true }));
    assert_eq!(got["aliases"]["0"]["name"], "al");
    assert!(got.get("name").is_none(), "properties limits the answer");
    assert_eq!(sim.count("x:Account/set"), 1);
    assert_eq!(sim.count("POST /jmap"), 1);
}

#[tokio::test]
async fn set_errors_per_item() {
    let sim = sim().await;
    let domain = sim.add_domain("example.com");
    sim.add_user("taken@example.com", None);
    let r = call(
        &sim,
        json!([["x:Account/set", {"create": {
            "dup": {"@type": "User", "name": "taken", "domainId": domain},
            "notype": {"name": "x", "domainId": domain},
            "noname": {"@type": "User", "domainId": domain},
            "baddomain": {"@type": "User", "name": "y", "domainId": "zzzz"},
            "at": {"@type": "User", "name": "a@b", "domainId": domain},
            "weak": {"@type": "User", "name": "w", "domainId": domain,
                     "credentials": {"0": {"@type": "Password", "secret": "short"}}},
            "ok": {"@type": "User", "name": "fine", "domainId": domain}
        }, "update": {"zzzz": {"description": "x"}}, "destroy": ["zzzz"]}, "c1"]]),
    )
    .await;
    let set = &r[0][1];
    let nc = &set["notCreated"];
    assert_eq!(nc["dup"]["type"], "primaryKeyViolation");
    assert_eq!(nc["dup"]["properties"], json!(["email"]));
    assert_eq!(nc["dup"]["objectId"]["object"], "Account");
    assert_eq!(nc["notype"]["type"], "invalidPatch");
    assert_eq!(nc["noname"]["type"], "validationFailed");
    assert_eq!(nc["baddomain"]["type"], "invalidForeignKey");
    assert_eq!(nc["at"]["description"], "Invalid email local part");
    assert_eq!(nc["weak"]["type"], "invalidProperties");
    assert!(set["created"]["ok"]["id"].is_string());
    assert_eq!(set["notUpdated"]["zzzz"]["type"], "willDestroy");
    assert_eq!(set["notDestroyed"]["zzzz"]["type"], "notFound");
    assert!(set.get("updated").is_none(), "empty maps are omitted");
}

#[tokio::test]
async fn a_domain_in_use_is_not_destroyed() {
    let sim = sim().await;
    let domain = sim.add_domain("example.com");
    let other = sim.add_domain("example.org");
    let user = sim.add_user("bob@example.com", None);
    let r = call(
        &sim,
        json!([["x:Domain/set", {"destroy": [domain, other]}, "c1"]]),
    )
    .await;
    let e = &r[0][1]["notDestroyed"][&domain];
    assert_eq!(e["type"], "objectIsLinked");
    assert_eq!(
        e["linkedObjects"],
        json!([{"object": "Account", "id": user}])
    );
    assert_eq!(r[0][1]["destroyed"], json!([other]));
    let r = call(
        &sim,
        json!([["x:Account/set", {"destroy": [user]}, "a"],
               ["x:Domain/set", {"destroy": [domain]}, "b"]]),
    )
    .await;
    assert_eq!(r[1][1]["destroyed"], json!([domain]));
    assert_eq!(sim.state()["domains"], json!([]));
}

#[tokio::test]
async fn suspension_refuses_sign_in_and_resume_restores_it() {
    let sim = sim().await;
    sim.add_domain("example.com");
    let id = sim.add_user("carol@example.com", Some("Correct-Horse-9"));
    assert_eq!(
        sim.sign_in("Carol@Example.com", Some("Correct-Horse-9")),
        SignIn::Allowed
    );
    assert_eq!(
        sim.sign_in("carol@example.com", Some("nope")),
        SignIn::BadCredentials
    );
    assert_eq!(sim.sign_in("carol@example.com", None), SignIn::Allowed);

    // The pointer form fails while permissions are Inherit.
    let r = call(
        &sim,
        json!([["x:Account/set", {"update": {&id:
            {"permissions/disabledPermissions/authenticate": true}}}, "c1"]]),
    )
    .await;
    assert_eq!(
        r[0][1]["notUpdated"][&id]["description"],
        "Invalid JSON Pointer path"
    );

    let suspend = json!({"permissions": {"@type": "Merge", "enabledPermissions": {},
                                         "disabledPermissions": {"authenticate": true}}});
    let r = call(
        &sim,
        json!([["x:Account/set", {"update": {&id: suspend}}, "c1"]]),
    )
    .await;
    assert_eq!(r[0][1]["updated"], json!({ &id: null }));
    assert_eq!(
        sim.sign_in("carol@example.com", Some("Correct-Horse-9")),
        SignIn::Forbidden
    );
    assert_eq!(sim.sign_in("carol@example.com", None), SignIn::Forbidden);

    let resume = json!({"permissions/disabledPermissions/authenticate": null});
    call(
        &sim,
        json!([["x:Account/set", {"update": {&id: resume}}, "c1"]]),
    )
    .await;
    assert_eq!(
        sim.sign_in("carol@example.com", Some("Correct-Horse-9")),
        SignIn::Allowed
    );
    let account = sim.get(ObjectType::Account, &id).unwrap();
    assert_eq!(account["credentials"]["0"]["secret"], "****");
}

#[tokio::test]
async fn lists_patch_recipients_and_type_cannot_change() {
    let sim = sim().await;
    let domain = sim.add_domain("example.com");
    let list = sim.add_list("team@example.com", &["a@example.com"]);
    let user = sim.add_user("dave@example.com", None);
    let r = call(
        &sim,
        json!([
            ["x:MailingList/set", {"update": {&list: {
                "recipients/B@Example.com": true, "recipients/a@example.com": false}}}, "c1"],
            ["x:Account/set", {"update": {&user: {"@type": "Group"}}}, "c2"],
            ["x:Account/set", {"update": {&user: {"emailAddress": "x@y.z"}}}, "c3"],
            ["x:MailingList/set", {"create": {"l": {"name": "dave", "domainId": domain}}}, "c4"]
        ]),
    )
    .await;
    assert_eq!(r[0][1]["updated"], json!({ &list: null }));
    assert_eq!(
        sim.get(ObjectType::MailingList, &list).unwrap()["recipients"],
        json!({"b@example.com": true})
    );
    assert_eq!(r[1][1]["notUpdated"][&user]["type"], "invalidProperties");
    assert_eq!(
        r[2][1]["notUpdated"][&user]["description"],
        "Cannot modify server set property"
    );
    assert_eq!(r[3][1]["notCreated"]["l"]["type"], "primaryKeyViolation");
}

#[tokio::test]
async fn method_and_request_errors() {
    let sim = sim().await;
    let r = call(
        &sim,
        json!([
            ["x:Account/changes", {}, "a"],
            ["x:Nope/get", {}, "b"],
            ["x:Account/get", {"bogus": 1}, "c"],
            ["x:Account/query", {"filter": {"operator": "OR", "conditions": []}}, "d"],
            ["x:MailingList/query", {"filter": {"name": "x"}}, "e"],
            ["x:Account/get", {"accountId": "b"}, "f"]
        ]),
    )
    .await;
    let kinds: Vec<&str> = r.iter().map(|m| m[1]["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "unknownMethod",
            "unknownMethod",
            "invalidArguments",
            "unsupportedFilter",
            "unsupportedFilter",
            "forbidden"
        ]
    );
    assert!(r.iter().all(|m| m[0] == "error"));

    let client = reqwest::Client::new();
    let url = format!("{}/jmap", sim.base_url());
    let too_many: Vec<Value> = (0..17)
        .map(|i| json!(["Core/echo", {}, format!("c{i}")]))
        .collect();
    let response = client
        .post(&url)
        .bearer_auth(sim.api_key())
        .json(&json!({"using": [jmap::CORE], "methodCalls": too_many}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["limit"], "maxCallsInRequest");
    let unknown_urn = client
        .post(&url)
        .bearer_auth(sim.api_key())
        .json(&json!({"using": ["urn:x"], "methodCalls": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_urn.status(), 400);
    let unauthenticated = client
        .post(&url)
        .json(&json!({"using": [], "methodCalls": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn pre_0_16_has_no_management_methods() {
    reconciler_runtime::install_crypto_provider();
    let old = StalwartSim::start(
        StalwartSimConfig {
            management: false,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/jmap/", old.base_url()))
        .bearer_auth(old.api_key())
        .json(&json!({"using": [jmap::CORE], "methodCalls": [["x:Domain/get", {}, "a"]]}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["methodResponses"][0][1]["type"], "unknownMethod");
}

#[tokio::test]
async fn query_orders_by_id_descending_and_pages() {
    let sim = sim().await;
    let a = sim.add_domain("a.example.com");
    let b = sim.add_domain("b.example.com");
    let c = sim.add_domain("c.example.com");
    let r = call(
        &sim,
        json!([
            ["x:Domain/query", {"calculateTotal": true}, "a"],
            ["x:Domain/query", {"limit": 1, "position": 1}, "b"],
            ["x:Domain/query", {"sort": [{"property": "name", "isAscending": true}]}, "c"],
            ["x:Domain/query", {"sort": [{"property": "description"}]}, "d"]
        ]),
    )
    .await;
    assert_eq!(r[0][1]["ids"], json!([c, b, a]));
    assert_eq!(r[0][1]["total"], 3);
    assert_eq!(r[1][1]["ids"], json!([b]));
    assert_eq!(r[1][1]["limit"], 1);
    assert_eq!(r[2][1]["ids"], json!([a, b, c]));
    assert_eq!(r[3][1]["type"], "unsupportedSort");
}

#[tokio::test]
async fn faults_and_control_channel() {
    let sim = sim().await;
    let client = reqwest::Client::new();
    let url = format!("{}/jmap/session", sim.base_url());
    sim.fail_next(1, Fault::Http500);
    let r = client
        .get(&url)
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let control = |path: &str| format!("{}/__sim/{path}", sim.base_url());
    client
        .post(control("fault"))
        .json(&json!({"mode": "401"}))
        .send()
        .await
        .unwrap();
    let r = client
        .get(&url)
        .bearer_auth(sim.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r: Value = client
        .post(control("create"))
        .json(&json!({"object": "Domain", "properties": {"name": "example.com"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["id"].is_string());
    let r = client
        .post(control("create"))
        .json(&json!({"object": "Account", "properties":
            {"@type": "User", "name": "eve", "domain": "example.com",
             "credentials": {"0": {"@type": "Password", "secret": "Eve-Secret-42!"}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: Value = client
        .post(control("sign-in"))
        .json(&json!({"login": "eve@example.com", "secret": "Eve-Secret-42!"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"], "allowed");
    let state: Value = client
        .get(control("state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["accounts"][0]["emailAddress"], "eve@example.com");
    let counts: Value = client
        .get(control("counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["fault"], 2);
    assert_eq!(counts["unauthorized"], 1);

    sim.go_down().await;
    assert!(client.get(&url).send().await.is_err(), "connection refused");
    sim.come_up().await.unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
}

/// HMAC-SHA256 written out from RFC 2104 over `sha2`, independent of ring.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[tokio::test]
async fn webhook_batches_are_signed_and_retried() {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use base64::Engine;
    use std::sync::atomic::{AtomicUsize, Ordering};

    reconciler_runtime::install_crypto_provider();
    type Seen = Arc<Mutex<Vec<(Option<String>, Vec<u8>)>>>;
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            let calls = calls.clone();
            move |headers: HeaderMap, body: Bytes| async move {
                let signature = headers
                    .get("x-signature")
                    .map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push((signature, body.to_vec()));
                // The first two attempts fail: the batch must come again.
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let events = vec![
        webhook::event(
            "auth.failed",
            json!({"accountName": "alice@example.com",
                                             "remoteIp": "192.0.2.7"}),
        ),
        webhook::event(
            "security.authentication-ban",
            json!({"remoteIp": "192.0.2.7"}),
        ),
    ];
    let key = "webhook-signing-key";
    let delivery = WebhookSender::new(&url, Some(key)).send(&events).await;
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.statuses, [Some(503), Some(503), Some(200)]);
    assert!(delivery.delivered);
    let seen = seen.lock().unwrap().clone();
    for (signature, body) in &seen {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(hmac_sha256(key.as_bytes(), body));
        assert_eq!(signature.as_deref(), Some(expected.as_str()));
        let parsed: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(parsed["events"][0]["type"], "auth.failed");
        assert!(
            parsed["events"][1]["createdAt"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
    }
    assert_eq!(seen[0].1, seen[2].1, "a retry sends the same batch");

    // Bounded: a receiver that never accepts gets max_attempts tries.
    let mut sender = WebhookSender::new("http://127.0.0.1:9/never", None);
    sender.max_attempts = 2;
    let delivery = sender.send(&events).await;
    assert_eq!((delivery.attempts, delivery.delivered), (2, false));
}

#[test]
fn ids_round_trip_and_names_sanitize() {
    for n in [0, 1, 31, 32, 4_294_967_295, u64::MAX] {
        assert_eq!(store::decode_id(&store::encode_id(n)), Some(n));
    }
    assert_eq!(store::decode_id("not an id"), None);
    assert_eq!(
        store::sanitize_local_part(" john doe").as_deref(),
        Some("johndoe")
    );
    assert_eq!(store::sanitize_local_part("a..b"), None);
    assert_eq!(
        store::sanitize_domain("Mail.Example.TEST").as_deref(),
        Some("mail.example.test")
    );
    assert_eq!(store::sanitize_domain("localhost"), None);
}
