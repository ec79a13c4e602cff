//! End to end, at the edges (issue 8, defects 3, 12 and 13): idle
//! connections against the real coordinator and mailcow-agent binaries, who
//! may read a job, how many times a job may run across crashes, and what a
//! retried job's summary counts.

use std::future::Future;
use std::time::{Duration, Instant};

use reconciler_proto::coordinator::coordinator_client::CoordinatorClient;
use reconciler_proto::coordinator::{ListOwnedRequest, Resource};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::secrets::Secret;
use reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN;
use reconciler_testkit::harness::{Service, Stack, StackOptions};
use reconciler_testkit::mailcow_sim::FailMode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";

/// The connection cap of every listener in the idle-connection test.
const CAP: usize = 32;
/// Header-read (HTTP) and handshake (gRPC) timeout in that test.
const HANDSHAKE: Duration = Duration::from_secs(2);
/// The coordinator's open-file limit in that test (as a systemd unit without
/// `LimitNOFILE` would give it, scaled down): far above what the caps let it
/// hold, far below the idle connections the test opens.
const NOFILE: u32 = 160;
/// Idle connections opened per port: several times the cap, and together
/// more than `NOFILE`.
const IDLE_PER_PORT: usize = 96;
/// How long a real request may take to be answered while idle connections
/// are held.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

fn limits_env() -> Vec<(String, String)> {
    [
        ("HTTP_MAX_CONNECTIONS", CAP.to_string()),
        ("GRPC_MAX_CONNECTIONS", CAP.to_string()),
        (
            "HTTP_HEADER_TIMEOUT_SECONDS",
            HANDSHAKE.as_secs().to_string(),
        ),
        (
            "GRPC_HANDSHAKE_TIMEOUT_SECONDS",
            HANDSHAKE.as_secs().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Lowers a running service's open-file limit (soft and hard).
fn limit_open_files(service: &Service, limit: u32) {
    let pid = service.pid().expect("service runs");
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed: {status}");
}

/// `n` connections to `addr` that each send `first` (possibly nothing) and
/// then go quiet.
async fn idle_connections(addr: &str, n: usize, first: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.expect("TCP connect");
        if !first.is_empty() {
            stream.write_all(first).await.expect("send partial request");
        }
        held.push(stream);
    }
    held
}

/// Retries `attempt` (each try bounded) until it returns `Some`, or panics
/// after [`ANSWER_WITHIN`] with what the last try said.
async fn answered<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(3), attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(e)) => e,
            Err(_) => "no answer within 3s".to_owned(),
        };
        assert!(
            start.elapsed() < ANSWER_WITHIN,
            "{what} not answered within {ANSWER_WITHIN:?} while idle connections are held: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn channel(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// How the server ended a connection: EOF or a reset both mean closed.
async fn closed_by_server(mut stream: TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return Ok(()),
            // Whatever the server says before closing (e.g. a 408) is fine.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[tokio::test]
async fn idle_connections_beyond_the_cap_leave_the_service_reachable() {
    let stack = Stack::start(StackOptions {
        coordinator_env: limits_env(),
        agent_env: limits_env(),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ALICE);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    stack.authentik.add_member(&group, alice);
    limit_open_files(&stack.coordinator, NOFILE);

    let http = stack.http_url.trim_start_matches("http://").to_owned();
    // Partial request lines on HTTP; silent TCP and a partial HTTP/2
    // preface on both gRPC ports (coordinator and mailcow-agent).
    let mut held = idle_connections(&http, IDLE_PER_PORT, b"GET /heal").await;
    held.extend(idle_connections(&stack.grpc_addr, IDLE_PER_PORT / 2, b"").await);
    held.extend(idle_connections(&stack.grpc_addr, IDLE_PER_PORT / 2, b"PRI * HTTP/2").await);
    held.extend(idle_connections(&stack.agent_addr, IDLE_PER_PORT, b"").await);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let healthz = format!("{}/healthz", stack.http_url);
    answered("/healthz", || async {
        let response = client
            .get(&healthz)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200 => Ok(()),
            other => Err(format!(
                "status {other}: {}",
                response.text().await.unwrap_or_default()
            )),
        }
    })
    .await;

    let webhook = format!("{}/reconcile", stack.http_url);
    let event = Stack::group_event(&group, "evt-while-flooded");
    let job_id = answered("the webhook", || async {
        let response = client
            .post(&webhook)
            .header(
                "X-Authentik-Webhook-Token",
                reconciler_testkit::harness::stack_tokens::WEBHOOK_TOKEN,
            )
            .json(&event)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        match (status, body["job_id"].as_i64()) {
            (202, Some(id)) => Ok(id),
            _ => Err(format!("status {status}: {body}")),
        }
    })
    .await;

    answered("the coordinator's gRPC service", || async {
        let channel = channel(&stack.grpc_addr).await?;
        let mut client =
            CoordinatorClient::with_interceptor(channel, SendToken::new(Secret::new(ADMIN_TOKEN)));
        client
            .list_owned(ListOwnedRequest {
                resource: Resource::SenderAcl as i32,
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;

    answered("the mailcow-agent's health check", || async {
        let mut health = HealthClient::new(channel(&stack.agent_addr).await?);
        let reply = health
            .check(HealthCheckRequest {
                service: "reconciler.agent.v2.MailcowAgent".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
        match reply.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // The webhook's job ran, through the agent, while the flood was held.
    let job = stack.wait_job(job_id).await;
    stack.expect_done(&job).await;
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));

    // Every idle connection is closed by the servers: at the latest when
    // its header-read / handshake timeout runs out.
    let closing = futures::future::join_all(held.into_iter().map(closed_by_server));
    let ended = tokio::time::timeout(HANDSHAKE + Duration::from_secs(5), closing)
        .await
        .expect("every idle connection is closed by the server");
    for result in ended {
        result.expect("closed cleanly");
    }

    // Under the cap, a partial request is closed at the timeout, not before.
    let started = Instant::now();
    let partial = idle_connections(&http, 1, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let silent = idle_connections(&stack.grpc_addr, 1, b"").await;
    let both = partial.into_iter().chain(silent).map(closed_by_server);
    for result in futures::future::join_all(both).await {
        result.expect("closed");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HANDSHAKE - Duration::from_millis(300)
            && elapsed < HANDSHAKE + Duration::from_secs(3),
        "closed after {elapsed:?}, the timeout is {HANDSHAKE:?}"
    );
}

#[tokio::test]
async fn a_job_is_shown_only_to_operators() {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    let (status, reply) = stack.webhook(&json!({"user": ALICE})).await;
    assert_eq!(status, 202, "{reply}");
    let url = format!("{}/jobs/{}", stack.http_url, reply["job_id"]);
    let client = reqwest::Client::new();

    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let body = anonymous.text().await.unwrap();
    assert!(!body.contains(ALICE), "nothing about the job leaks: {body}");

    let wrong = client
        .get(&url)
        .header("X-Reconciler-Admin-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // The webhook token is not the admin token.
    let webhook_token = client
        .get(&url)
        .header(
            "X-Reconciler-Admin-Token",
            reconciler_testkit::harness::stack_tokens::WEBHOOK_TOKEN,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(webhook_token.status().as_u16(), 401);

    let operator = client
        .get(&url)
        .header("X-Reconciler-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(operator.status().as_u16(), 200);
    let job: Value = operator.json().await.unwrap();
    assert_eq!(job["subject"], format!("user:{ALICE}"), "{job}");
    assert_eq!(job["state"], "queued", "{job}");
}

/// A job that takes long enough to be caught running: many users, one
/// Authentik page per user, a Mailcow write per user.
async fn slow_group(stack: &Stack, users: usize) -> String {
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    for i in 0..users {
        let email = format!("user{i}@example.com");
        stack.mailcow.add_mailbox(&email);
        let pk = stack.authentik.add_user(&format!("user{i}"), &email);
        stack.authentik.add_member(&group, pk);
    }
    group
}

/// Polls until job `id` is running its attempt number `attempt`.
async fn wait_running(stack: &Stack, id: i64, attempt: i64) {
    let start = Instant::now();
    loop {
        let job = stack.job(id).await;
        if job["state"] == "running" && job["attempts"] == attempt {
            return;
        }
        assert!(
            job["state"] == "queued" || job["state"] == "running",
            "job {id} ended before attempt {attempt} could be interrupted: {job}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job {id} never ran attempt {attempt}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn repeated_crashes_never_run_a_job_more_than_job_max_attempts_times() {
    let max_attempts = 2;
    let mut stack = Stack::start(StackOptions {
        max_attempts,
        authentik_max_page_size: 1,
        ..StackOptions::default()
    })
    .await;
    let group = slow_group(&stack, 150).await;
    let (status, reply) = stack
        .webhook(&Stack::group_event(&group, "evt-crashes"))
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["job_id"].as_i64().unwrap();

    for attempt in 1..=i64::from(max_attempts) {
        wait_running(&stack, id, attempt).await;
        stack.coordinator.kill();
        stack.start_coordinator(2).await;
    }
    let job = stack.wait_job(id).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], max_attempts, "{job}");
    assert!(
        job["last_error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("gave up after 2 attempts, the last one interrupted"),
        "{job}"
    );
}

#[tokio::test]
async fn a_retried_job_counts_the_changes_of_every_attempt() {
    let stack = Stack::start(StackOptions::default()).await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ALICE);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true, "alias": "team@example.com"}}),
    );
    stack.authentik.add_member(&group, alice);
    // The first attempt grants send-as, but Mailcow fails creating the alias.
    stack
        .mailcow
        .fail_next_on("add/alias", 1, FailMode::Http502);

    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-retried"))
        .await;
    stack.expect_done(&job).await;
    assert_eq!(job["attempts"], 2, "one retry: {job}");
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
    assert!(
        stack
            .mailcow
            .aliases()
            .iter()
            .any(|a| a.address == "team@example.com")
    );

    let summary: Value = job["summary"].clone();
    let applied = |report: &Value, resource: &str| -> u64 {
        report["outcomes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(&format!("{resource}.")) && k.ends_with(".applied"))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    };
    // The send-as grant happened in the first attempt, the alias in the
    // second: the job's summary shows both.
    assert_eq!(applied(&summary, "sender_acl"), 1, "{summary}");
    assert_eq!(applied(&summary, "alias"), 1, "{summary}");
    assert_eq!(summary["attempts_reported"], 2, "{summary}");
    assert_eq!(
        applied(&summary["last_attempt"], "sender_acl"),
        0,
        "{summary}"
    );
}

/// Hygiene at the edges (issue 9, item 8): `GET /jobs/<id>` serves the
/// summary as a JSON object (no JSON string inside JSON; `null` until an
/// attempt reports), and logs written to a file carry no colour codes. The
/// binaries listen where they announced they would (port 0, then
/// `LISTEN_ADDR_FILE`), which their logs confirm.
#[tokio::test]
async fn a_job_summary_is_an_object_and_logs_to_a_file_are_plain() {
    let mut stack = Stack::start(StackOptions::default()).await;
    stack.start_coordinator(0).await;
    let (status, reply) = stack
        .post(
            "/reconcile-all",
            &[("X-Reconciler-Admin-Token", ADMIN_TOKEN)],
            String::new(),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["job_id"].as_i64().unwrap();
    let queued = stack.job(id).await;
    assert_eq!(queued["state"], "queued", "no worker runs it: {queued}");
    assert_eq!(queued["summary"], Value::Null, "{queued}");

    stack.coordinator.kill();
    stack.start_coordinator(2).await;
    let job = stack.wait_job(id).await;
    stack.expect_done(&job).await;
    assert!(job["summary"].is_object(), "{job}");
    assert_eq!(job["summary"]["attempts_reported"], 1, "{job}");

    for service in [&stack.coordinator, &stack.agent] {
        let logs = service.logs();
        assert!(!logs.is_empty(), "{} logged nothing", service.name);
        assert!(
            !logs.contains('\u{1b}'),
            "{} wrote escape codes to a file:\n{logs}",
            service.name
        );
    }
    let http = stack.http_url.trim_start_matches("http://").to_owned();
    for addr in [&http, &stack.grpc_addr, &stack.agent_addr] {
        assert!(!addr.ends_with(":0"), "{addr}");
    }
    let coordinator = stack.coordinator.logs();
    assert!(coordinator.contains(&http), "{coordinator}");
    assert!(coordinator.contains(&stack.grpc_addr), "{coordinator}");
}
