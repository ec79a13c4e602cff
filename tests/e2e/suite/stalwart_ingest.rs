//! End to end, Stalwart's webhooks into the audit log (issue 11 items 4
//! and 5): the real coordinator binary receives batches from the test kit's
//! Stalwart webhook sender (the exact signature, retries on non-2xx) and
//! serves them back through `GET /audit` (JSON pages and CSV) and gRPC.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use reconciler_proto::coordinator::AuditRequest;
use reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN;
use reconciler_testkit::harness::{Stack, StackOptions};
use reconciler_testkit::stalwart_sim::WebhookSender;
use reconciler_testkit::stalwart_sim::webhook::{event, signature};
use serde_json::{Value, json};

const KEY: &str = "stalwart-signing-key-for-tests";
/// The only peer trusted to set `X-Forwarded-For` (a second loopback
/// address, so the test can be both a trusted and an untrusted peer).
const PROXY: &str = "127.0.0.2";

async fn stack() -> Stack {
    Stack::start(StackOptions {
        coordinator_env: vec![
            ("STALWART_WEBHOOK_SECRET".into(), KEY.into()),
            ("TRUSTED_PROXIES".into(), format!("{PROXY}/32")),
        ],
        ..StackOptions::default()
    })
    .await
}

fn url(stack: &Stack) -> String {
    format!("{}/ingest/stalwart", stack.http_url)
}

/// POSTs a body signed with `key` (`None`: unsigned) from `from`; the
/// status and the JSON answer.
async fn post(
    stack: &Stack,
    body: Vec<u8>,
    key: Option<&str>,
    from: Option<&str>,
    forwarded_for: Option<&str>,
) -> (u16, Value) {
    let mut client = reqwest::Client::builder();
    if let Some(from) = from {
        client = client.local_address(from.parse::<IpAddr>().unwrap());
    }
    let mut request = client
        .build()
        .unwrap()
        .post(url(stack))
        .header("Content-Type", "application/json");
    if let Some(key) = key {
        request = request.header("X-Signature", signature(key, &body));
    }
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /audit` with `params`; the status and the JSON answer.
async fn audit(stack: &Stack, params: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/audit", stack.http_url))
        .header("X-Reconciler-Admin-Token", ADMIN_TOKEN)
        .query(params)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every row `params` selects, page after page; asserts no page repeats a
/// row and ids only go down.
async fn walk(stack: &Stack, params: &[(&str, &str)]) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_params = params.to_vec();
        if let Some(c) = cursor.as_deref() {
            page_params.push(("cursor", c));
        }
        let (status, page) = audit(stack, &page_params).await;
        assert_eq!(status, 200, "{page}");
        for row in page["entries"].as_array().unwrap() {
            if let Some(last) = rows.last() {
                assert!(row["id"].as_i64() < last["id"].as_i64(), "ids go down");
            }
            rows.push(row.clone());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return rows,
        }
    }
}

async fn stalwart_rows(stack: &Stack) -> Vec<Value> {
    walk(stack, &[("source", "stalwart"), ("limit", "1000")]).await
}

fn at(kind: &str, id: &str, created: &str, data: Value) -> Value {
    json!({ "id": id, "type": kind, "createdAt": created, "data": data })
}

#[tokio::test]
async fn signed_batches_become_audit_rows_once() {
    let stack = stack().await;
    let batch = vec![
        event(
            "auth.failed",
            json!({"accountName": "alice@example.com", "remoteIp": "203.0.113.5",
                   "reason": "Invalid credentials", "spanId": 11}),
        ),
        event(
            "auth.success",
            json!({"accountName": "bob@example.com", "accountId": 7, "remoteIp": "2001:db8::1"}),
        ),
        event(
            "security.authentication-ban",
            json!({"accountName": "alice@example.com", "remoteIp": "203.0.113.5"}),
        ),
        event(
            "delivery.dsn-perm-fail",
            json!({"to": "gone@example.org", "hostname": "mx.example.org",
                   "details": "550 5.1.1 no such user"}),
        ),
        event(
            "smtp.dmarc-fail",
            json!({"domain": "spoofed.example", "remoteIp": "198.51.100.9"}),
        ),
        event(
            "queue.message-queued",
            json!({"queueId": 5, "to": ["x@example.org"]}),
        ),
    ];

    // Unsigned and wrongly signed: 401 on every retry, nothing stored.
    let mut unsigned = WebhookSender::new(url(&stack), None);
    unsigned.max_attempts = 2;
    let delivery = unsigned.send(&batch).await;
    assert_eq!(delivery.statuses, vec![Some(401), Some(401)]);
    let mut wrong = WebhookSender::new(url(&stack), Some("not-the-key"));
    wrong.max_attempts = 2;
    assert_eq!(
        wrong.send(&batch).await.statuses,
        vec![Some(401), Some(401)]
    );
    assert!(stalwart_rows(&stack).await.is_empty());

    // Signed: delivered at the first attempt.
    let sender = WebhookSender::new(url(&stack), Some(KEY));
    let delivery = sender.send(&batch).await;
    assert_eq!(delivery.statuses, vec![Some(200)]);
    let rows = stalwart_rows(&stack).await;
    assert_eq!(rows.len(), batch.len());
    let by_type: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), r))
        .collect();
    let failed = by_type["auth.failed"];
    assert_eq!(failed["action"], "stalwart.login_failed");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["actor"], "alice@example.com");
    assert_eq!(failed["remote_ip"], "203.0.113.5");
    assert_eq!(failed["detail"], "Invalid credentials");
    assert_eq!(failed["received_from"], "127.0.0.1");
    // The whole event, as sent, is the metadata.
    assert_eq!(failed["metadata"], batch[0]);
    assert_eq!(failed["external_id"], batch[0]["id"]);
    let login = by_type["auth.success"];
    assert_eq!(
        (&login["action"], &login["actor"], &login["remote_ip"]),
        (
            &json!("stalwart.login"),
            &json!("bob@example.com"),
            &json!("2001:db8::1")
        )
    );
    assert_eq!(
        by_type["security.authentication-ban"]["action"],
        "stalwart.ban"
    );
    let bounce = by_type["delivery.dsn-perm-fail"];
    assert_eq!(bounce["action"], "stalwart.bounced");
    assert_eq!(bounce["key"], "gone@example.org");
    assert_eq!(by_type["smtp.dmarc-fail"]["action"], "stalwart.dmarc_fail");
    assert_eq!(by_type["smtp.dmarc-fail"]["key"], "spoofed.example");
    // A type we do not map is kept, with its type.
    assert_eq!(by_type["queue.message-queued"]["action"], "stalwart.other");

    // The same batch again (Stalwart's at-least-once delivery): nothing new.
    let body = WebhookSender::body(&batch);
    let (status, answer) = post(&stack, body, Some(KEY), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"received": 0, "duplicates": 6, "skipped": 0})
    );
    assert_eq!(stalwart_rows(&stack).await.len(), batch.len());

    // Malformed events are skipped and counted; the rest is stored.
    let body = serde_json::to_vec(&json!({"events": [
        "not an event",
        {"type": "auth.failed", "data": {}},
        {"id": "m-1", "type": ["auth.failed"]},
        event("auth.too-many-attempts", json!({"spanId": 3})),
        {"id": "m-2", "type": "security.ip-blocked", "data": "not an object"},
        event("security.ip-blocked", json!({"remoteIp": "192.0.2.66", "localPort": 25})),
    ]}))
    .unwrap();
    let (status, answer) = post(&stack, body, Some(KEY), None, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"received": 2, "duplicates": 0, "skipped": 4})
    );
    let (_, blocked) = audit(&stack, &[("action", "stalwart.ip_blocked")]).await;
    assert_eq!(blocked["entries"][0]["remote_ip"], "192.0.2.66");
    // A body that is not a batch at all: one skip, still a 200 (a 4xx or
    // 5xx would only make Stalwart send it again and again).
    let (status, answer) = post(&stack, b"[1, 2".to_vec(), Some(KEY), None, None).await;
    assert_eq!((status, answer["skipped"].as_i64()), (200, Some(1)));

    // Over 4 MiB: 413, even when signed, and nothing stored.
    let filler = "x".repeat(5 * 1024 * 1024);
    let big = WebhookSender::body(&[event("auth.success", json!({"details": filler}))]);
    let (status, _) = post(&stack, big, Some(KEY), None, None).await;
    assert_eq!(status, 413);
    assert_eq!(stalwart_rows(&stack).await.len(), batch.len() + 2);
}

#[tokio::test]
async fn without_a_secret_the_endpoint_says_it_is_not_configured() {
    let stack = Stack::start(StackOptions::default()).await;
    let body = WebhookSender::body(&[event("auth.success", json!({}))]);
    let (status, answer) = post(&stack, body, Some(KEY), None, None).await;
    assert_eq!(status, 404);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("STALWART_WEBHOOK_SECRET"),
        "{answer}"
    );
    assert!(stalwart_rows(&stack).await.is_empty());
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let stack = stack().await;
    let send = |id: &str| {
        WebhookSender::body(&[at(
            "auth.success",
            id,
            "2026-12-06T10:00:00Z",
            json!({"accountName": "carol@example.com"}),
        )])
    };
    let xff = Some("1.1.1.1, 198.51.100.7");
    let (status, _) = post(&stack, send("direct"), Some(KEY), Some("127.0.0.1"), xff).await;
    assert_eq!(status, 200);
    let (status, _) = post(&stack, send("proxied"), Some(KEY), Some(PROXY), xff).await;
    assert_eq!(status, 200);
    let rows = stalwart_rows(&stack).await;
    let from: HashMap<&str, &str> = rows
        .iter()
        .map(|r| {
            (
                r["external_id"].as_str().unwrap(),
                r["received_from"].as_str().unwrap(),
            )
        })
        .collect();
    // An untrusted peer's header is ignored; the trusted proxy's rightmost
    // hop is the client (the "1.1.1.1" left of it could be forged).
    assert_eq!(from["direct"], "127.0.0.1");
    assert_eq!(from["proxied"], "198.51.100.7");
}

#[tokio::test]
async fn the_audit_api_filters_pages_and_exports() {
    let stack = stack().await;
    let sender = WebhookSender::new(url(&stack), Some(KEY));

    // Filters, on events with known times.
    let known = vec![
        at(
            "auth.failed",
            "f-1",
            "2026-01-01T00:00:00Z",
            json!({"accountName": "alice@example.com", "reason": "Needle in the haystack"}),
        ),
        at(
            "auth.failed",
            "f-2",
            "2026-06-01T00:00:00Z",
            json!({"accountName": "bob@example.com"}),
        ),
        at(
            "auth.success",
            "f-3",
            "2026-06-01T00:00:00Z",
            json!({"accountName": "alice@example.com"}),
        ),
    ];
    assert!(sender.send(&known).await.delivered);
    let ids = |params: &'static [(&'static str, &'static str)]| {
        let stack = &stack;
        async move {
            let (status, page) = audit(stack, params).await;
            assert_eq!(status, 200, "{params:?}: {page}");
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["external_id"].as_str().unwrap_or_default().to_owned())
                .collect::<BTreeSet<_>>()
        }
    };
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(
        ids(&[("source", "stalwart")]).await,
        set(&["f-1", "f-2", "f-3"])
    );
    assert_eq!(
        ids(&[("action", "stalwart.login_failed")]).await,
        set(&["f-1", "f-2"])
    );
    assert_eq!(ids(&[("outcome", "success")]).await, set(&["f-3"]));
    assert_eq!(
        ids(&[("actor", "alice@example.com")]).await,
        set(&["f-1", "f-3"])
    );
    assert_eq!(ids(&[("q", "NEEDLE")]).await, set(&["f-1"]));
    assert_eq!(
        ids(&[("source", "stalwart"), ("since", "2026-06-01T00:00:00Z")]).await,
        set(&["f-2", "f-3"])
    );
    // Unix milliseconds: 2026-06-01T00:00:00Z.
    assert_eq!(
        ids(&[("source", "stalwart"), ("before", "1780272000000")]).await,
        set(&["f-1"])
    );
    for bad in [
        [("since", "last tuesday")],
        [("limit", "1001")],
        [("cursor", "12")],
        [("format", "xml")],
    ] {
        assert_eq!(audit(&stack, &bad).await.0, 400, "{bad:?}");
    }
    let unauthorized = reqwest::get(format!("{}/audit", stack.http_url))
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    // The same through gRPC.
    let mut client = stack.coordinator_client().await;
    let answer = client
        .audit(AuditRequest {
            actor: "alice@example.com".into(),
            since_ms: 1_780_272_000_000,
            ..AuditRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.entries.len(), 1);
    assert_eq!(answer.entries[0].external_id, "f-3");
    assert_eq!(answer.entries[0].action, "stalwart.login");
    assert!(answer.next_cursor.is_empty());

    // 10,000 more rows, in two signed batches (each well under 4 MiB).
    for _ in 0..2 {
        let batch: Vec<Value> = (0..5_000)
            .map(|i| {
                event(
                    if i % 2 == 0 {
                        "auth.success"
                    } else {
                        "delivery.delivered"
                    },
                    json!({"accountName": format!("user{i}@example.com"), "remoteIp": "192.0.2.1",
                           "details": "a \"quoted\", comma'd\nmultiline detail"}),
                )
            })
            .collect();
        let (status, answer) =
            post(&stack, WebhookSender::body(&batch), Some(KEY), None, None).await;
        assert_eq!(status, 200);
        assert_eq!(answer["received"], 5_000);
    }
    // Pages of an odd size: every row once, none missing.
    let rows = walk(&stack, &[("source", "stalwart"), ("limit", "777")]).await;
    assert_eq!(rows.len(), 10_003);
    let unique: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(unique.len(), 10_003);
    // gRPC pages walk the same rows.
    let mut grpc_ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .audit(AuditRequest {
                source: "stalwart".into(),
                cursor: cursor.clone(),
                limit: 1000,
                ..AuditRequest::default()
            })
            .await
            .unwrap()
            .into_inner();
        grpc_ids.extend(page.entries.iter().map(|e| e.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let json_ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(grpc_ids, json_ids);

    // The CSV export: a CSV parser reads back exactly the JSON rows.
    let csv_body = reqwest::Client::new()
        .get(format!("{}/audit", stack.http_url))
        .header("X-Reconciler-Admin-Token", ADMIN_TOKEN)
        .query(&[("source", "stalwart"), ("format", "csv")])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_body.as_ref());
    let header = reader.headers().unwrap().clone();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (record, row) in records.iter().zip(&rows) {
        for (column, field) in header.iter().zip(record) {
            let expected = &row[column];
            match (column, expected) {
                ("metadata", _) => {
                    assert_eq!(&serde_json::from_str::<Value>(field).unwrap(), expected);
                }
                (_, Value::String(s)) => assert_eq!(field, s, "{column}"),
                (_, Value::Null) => assert_eq!(field, "", "{column}"),
                (_, other) => assert_eq!(field, other.to_string(), "{column}"),
            }
        }
    }
}
