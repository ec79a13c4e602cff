//! Mutual TLS between the real coordinator and the real mailcow-agent, with
//! certificates made by the real `coordinator certs` command: the right
//! client certificate reconciles; no certificate, another CA's, an expired
//! one or one for another name is refused in the TLS handshake, and the
//! Mailcow simulator's counters show that no call reached Mailcow. grpcurl
//! shows the operator's path. Plaintext only with `AGENT_INSECURE=true`,
//! said in the logs and `/healthz`; with neither, nothing starts.

use std::collections::BTreeSet;
use std::time::Duration;

use reconciler_proto::agent::{
    MailcowObserveRequest as ObserveRequest, mailcow_agent_client::MailcowAgentClient,
};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::secrets::Secret;
use reconciler_runtime::tls::ClientTransport;
use reconciler_testkit::harness::stack_tokens::AGENT_TOKEN;
use reconciler_testkit::harness::tls::{current_client_certificate, expired_client_certificate};
use reconciler_testkit::harness::{CertDir, Service, Stack, StackOptions, grpcurl};
use serde_json::{Value, json};
// tokio's Command: the simulators run on this test's runtime.
use tokio::process::Command;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";

/// A stack whose coordinator reaches the mailcow-agent over mutual TLS, the
/// agent accepting only the name `coordinator`.
async fn mtls_stack() -> (Stack, CertDir) {
    let certs = CertDir::temporary(&["mailcow-agent"]);
    let stack = Stack::start(StackOptions {
        tls: Some(certs.clone()),
        agent_env: vec![("AGENT_TLS_CLIENT_NAME".into(), "coordinator".into())],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    for mailbox in [INFO, ALICE] {
        stack.mailcow.add_mailbox(mailbox);
    }
    (stack, certs)
}

/// alice joins a group granting send-as on info@, through the webhook;
/// the simulator then holds the grant.
async fn reconcile_through_the_webhook(stack: &Stack) {
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "access": "readwrite", "send_as": true}}),
    );
    stack.authentik.add_member(&group, alice);
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-join"))
        .await;
    stack.expect_done(&job).await;
    let acl = stack.mailcow.sender_acl(ALICE);
    assert!(acl.contains(&INFO.to_owned()), "send-as granted: {acl:?}");
}

async fn healthz(stack: &Stack) -> Value {
    reqwest::get(format!("{}/healthz", stack.http_url))
        .await
        .expect("GET /healthz")
        .json()
        .await
        .expect("health JSON")
}

/// Mailcow API requests the simulator saw since its last reset.
fn mailcow_calls(stack: &Stack) -> u64 {
    stack.mailcow.counts().values().sum()
}

fn endpoint(transport: &ClientTransport, addr: &str) -> Endpoint {
    transport
        .endpoint("test agent URL", &format!("https://{addr}"))
        .expect("endpoint")
}

/// A TLS client that trusts the CA but presents no certificate.
fn without_certificate(certs: &CertDir, addr: &str) -> Endpoint {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(std::fs::read(certs.ca()).unwrap())),
        )
        .expect("TLS config")
}

/// An Observe that reads Mailcow, sent with the right agent token: Ok when
/// the agent answered it.
async fn observe(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let mut client =
        MailcowAgentClient::with_interceptor(channel, SendToken::new(Secret::new(AGENT_TOKEN)));
    client
        .observe(ObserveRequest {
            sender_acl_logins: vec![ALICE.into()],
            ..Default::default()
        })
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

/// How many handshakes the agent has refused so far, by its log.
fn refusals(agent: &Service) -> usize {
    agent.logs().matches("TLS handshake refused").count()
}

/// Each of `clients` is refused before the agent reads Mailcow: the call
/// fails, the agent logs a refused handshake, and the simulator sees nothing.
async fn refused_before_mailcow(stack: &Stack, clients: Vec<(&str, Endpoint)>) {
    stack.mailcow.reset_counts();
    for (what, client) in clients {
        let before = refusals(&stack.agent);
        let result = observe(client).await;
        assert!(result.is_err(), "{what}: the agent answered");
        let start = std::time::Instant::now();
        while refusals(&stack.agent) == before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what}: no refused handshake logged ({result:?}):\n{}",
                stack.agent.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            mailcow_calls(stack),
            0,
            "{what}: Mailcow was called: {:?}",
            stack.mailcow.counts()
        );
    }
}

#[tokio::test]
async fn the_right_certificate_reconciles_and_every_other_client_is_refused_in_the_handshake() {
    let (stack, certs) = mtls_stack().await;

    // (a) The coordinator's certificate: a whole reconcile through the webhook.
    reconcile_through_the_webhook(&stack).await;
    let health = healthz(&stack).await;
    assert_eq!(health["agent_transport"], "mtls", "{health}");
    assert_eq!(
        health["components"]["mailcow-agent"]["healthy"], true,
        "{health}"
    );
    assert!(
        stack.agent.logs().contains("(mtls)"),
        "{}",
        stack.agent.logs()
    );

    // The same call every refused client makes below does reach Mailcow
    // with the right certificate: the counters are live.
    stack.mailcow.reset_counts();
    observe(endpoint(&certs.client("coordinator"), &stack.agent_addr))
        .await
        .expect("the coordinator's certificate is served");
    assert!(mailcow_calls(&stack) > 0, "{:?}", stack.mailcow.counts());

    // (b)-(d), and a certificate of the right CA for another name.
    let other_ca = CertDir::temporary(&["mailcow-agent"]);
    let issuer = certs.issuer(coordinator::certs::CA_NAME);
    let (expired_cert, expired_key) = expired_client_certificate(&issuer);
    let (intruder_cert, intruder_key) = current_client_certificate(&issuer, "intruder");
    let addr = &stack.agent_addr;
    refused_before_mailcow(
        &stack,
        vec![
            ("no client certificate", without_certificate(&certs, addr)),
            (
                "another CA's certificate",
                endpoint(
                    &certs.client_with(
                        &std::fs::read(other_ca.cert("coordinator")).unwrap(),
                        &std::fs::read(other_ca.key("coordinator")).unwrap(),
                    ),
                    addr,
                ),
            ),
            (
                "an expired certificate",
                endpoint(&certs.client_with(&expired_cert, &expired_key), addr),
            ),
            (
                "a certificate for another name",
                endpoint(&certs.client_with(&intruder_cert, &intruder_key), addr),
            ),
        ],
    )
    .await;
    // Each was refused for its own reason (rustls's words). Every CA made
    // by `coordinator certs` has the same subject, so another CA's
    // certificate fails on the signature rather than the issuer's name.
    let log = stack.agent.logs().to_lowercase();
    for reasons in [
        &["no certificates"][..],
        &["badsignature", "unknownissuer"],
        &["certificate expired"],
        &["notvalidforname"],
    ] {
        assert!(
            reasons.iter().any(|r| log.contains(r)),
            "{reasons:?} in:\n{log}"
        );
    }
}

#[tokio::test]
async fn grpcurl_reaches_an_agent_with_the_certificates_and_not_without() {
    let (stack, certs) = mtls_stack().await;
    let path = |p: std::path::PathBuf| p.display().to_string();
    stack.mailcow.reset_counts();
    let out = Command::new(grpcurl())
        .args([
            "-cacert",
            &path(certs.ca()),
            "-cert",
            &path(certs.cert("coordinator")),
            "-key",
            &path(certs.key("coordinator")),
            "-H",
            &format!("authorization: Bearer {AGENT_TOKEN}"),
            "-d",
            &json!({"sender_acl_logins": [ALICE]}).to_string(),
            &stack.agent_addr,
            "reconciler.agent.v2.MailcowAgent/Observe",
        ])
        .output()
        .await
        .expect("run grpcurl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("grpcurl JSON");
    assert!(body.to_string().contains(ALICE), "{body}");
    assert!(mailcow_calls(&stack) > 0);

    stack.mailcow.reset_counts();
    let before = refusals(&stack.agent);
    let refused = Command::new(grpcurl())
        .args([
            "-cacert",
            &path(certs.ca()),
            "-connect-timeout",
            "5",
            "-H",
            &format!("authorization: Bearer {AGENT_TOKEN}"),
            "-d",
            &json!({"sender_acl_logins": [ALICE]}).to_string(),
            &stack.agent_addr,
            "reconciler.agent.v2.MailcowAgent/Observe",
        ])
        .output()
        .await
        .expect("run grpcurl");
    assert!(
        !refused.status.success(),
        "served without a client certificate: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(
        refusals(&stack.agent) > before,
        "refused in the handshake: {}",
        stack.agent.logs()
    );
    assert_eq!(mailcow_calls(&stack), 0, "{:?}", stack.mailcow.counts());
}

#[tokio::test]
async fn plaintext_only_when_asked_for_and_said_so_and_nothing_starts_with_neither() {
    // The default test stack runs with AGENT_INSECURE=true on both sides.
    let stack = Stack::start(StackOptions::default()).await;
    stack.mailcow.add_domain("example.com");
    for mailbox in [INFO, ALICE] {
        stack.mailcow.add_mailbox(mailbox);
    }
    reconcile_through_the_webhook(&stack).await;
    let health = healthz(&stack).await;
    assert_eq!(health["agent_transport"], "insecure", "{health}");
    for (who, log) in [
        ("coordinator", stack.coordinator.logs()),
        ("agent", stack.agent.logs()),
    ] {
        let warning = log
            .lines()
            .find(|l| l.contains("AGENT_INSECURE=true"))
            .unwrap_or_else(|| panic!("{who} says nothing about plaintext:\n{log}"));
        assert!(warning.contains("WARN"), "{who}: {warning}");
    }
    assert!(stack.agent.logs().contains("(insecure)"));
    let page = reqwest::Client::new()
        .get(format!("{}/status", stack.http_url))
        .header(
            "X-Reconciler-Admin-Token",
            reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN,
        )
        .send()
        .await
        .expect("GET /status")
        .text()
        .await
        .unwrap();
    assert!(page.contains("AGENT_INSECURE=true"), "{page}");

    // Neither TLS nor AGENT_INSECURE: each refuses to start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let agent_env = env(&[
        ("AGENT_LISTEN", "127.0.0.1:0"),
        ("AGENT_TOKEN", AGENT_TOKEN),
        ("MAILCOW_URL", &stack.mailcow.base_url()),
        ("MAILCOW_API_KEY", reconciler_testkit::harness::MAILCOW_KEY),
    ]);
    let coordinator_env = env(&[
        ("HTTP_LISTEN", "127.0.0.1:0"),
        ("GRPC_LISTEN", "127.0.0.1:0"),
        (
            "STATE_DB_URL",
            &format!("sqlite://{}", dir.path().join("state.db").display()),
        ),
        ("AUTHENTIK_URL", &stack.authentik.base_url()),
        ("AUTHENTIK_TOKEN", "authentik-test-token"),
        ("WEBHOOK_TOKEN", "w"),
        ("ADMIN_TOKEN", "a"),
        ("AGENT_TOKEN", AGENT_TOKEN),
        (
            "MAILCOW_AGENT_URL",
            &format!("https://{}", stack.agent_addr),
        ),
    ]);
    for (binary, env, names) in [
        (
            "mailcow-agent",
            agent_env,
            ["AGENT_TLS_CERT_FILE", "AGENT_TLS_CLIENT_CA_FILE"],
        ),
        (
            "coordinator",
            coordinator_env,
            ["AGENT_TLS_CA_FILE", "COORDINATOR_TLS_CERT_FILE"],
        ),
    ] {
        let mut service = Service::spawn(binary, &env, dir.path());
        let status = service
            .wait_exit(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{binary} started without TLS or AGENT_INSECURE"));
        assert!(!status.success(), "{binary}: {status}");
        let log = service.logs();
        for name in names.iter().chain(&["AGENT_INSECURE=true"]) {
            assert!(log.contains(name), "{binary} names {name}:\n{log}");
        }
    }
}

/// Issue 14, "isolation, proven": each process runs with only its own
/// variables (the harness starts every binary with `env_clear` and then
/// only what that service needs; read back here from /proc), a whole
/// reconcile works, and an agent called without the client certificate,
/// or with another CA's, refuses before Mailcow sees a request.
#[tokio::test]
async fn each_service_holds_only_its_own_secrets_and_a_full_reconcile_works() {
    let (stack, certs) = mtls_stack().await;
    let names = |service: &Service| -> BTreeSet<String> {
        service.environment_names().into_iter().collect()
    };
    let coordinator = names(&stack.coordinator);
    let agent = names(&stack.agent);
    assert!(coordinator.contains("AUTHENTIK_TOKEN"), "{coordinator:?}");
    assert!(agent.contains("MAILCOW_API_KEY"), "{agent:?}");
    // Nothing of a target: no Mailcow key, no Docker, no target database.
    for name in &coordinator {
        assert!(
            !(name.starts_with("MAILCOW_API")
                || name.starts_with("DOCKER")
                || name.starts_with("DOVE")
                || name.ends_with("_DB_URL") && name != "STATE_DB_URL"
                || name.starts_with("MATRIX_ACCESS")
                || name.starts_with("STALWART_API")
                || name.starts_with("NEXTCLOUD_CONTAINER")),
            "the coordinator holds {name}: {coordinator:?}"
        );
    }
    // Nothing of Authentik or the coordinator's own keys.
    for name in &agent {
        assert!(
            !(name.starts_with("AUTHENTIK")
                || name.starts_with("WEBHOOK")
                || name.starts_with("ADMIN")
                || name.starts_with("COORDINATOR_TLS")
                || name == "STATE_DB_URL"),
            "the agent holds {name}: {agent:?}"
        );
    }
    // The coordinator has no Docker socket open either.
    let pid = stack.coordinator.pid().unwrap();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let target = std::fs::read_link(fd.unwrap().path()).unwrap_or_default();
        assert!(
            !target.to_string_lossy().contains("docker.sock"),
            "{target:?}"
        );
    }

    reconcile_through_the_webhook(&stack).await;
    let job = stack.sweep().await;
    stack.expect_done(&job).await;

    let other_ca = CertDir::temporary(&["mailcow-agent"]);
    refused_before_mailcow(
        &stack,
        vec![
            (
                "no client certificate",
                without_certificate(&certs, &stack.agent_addr),
            ),
            (
                "another CA's certificate",
                endpoint(
                    &certs.client_with(
                        &std::fs::read(other_ca.cert("coordinator")).unwrap(),
                        &std::fs::read(other_ca.key("coordinator")).unwrap(),
                    ),
                    &stack.agent_addr,
                ),
            ),
        ],
    )
    .await;
}

/// Under TLS a connection is established when its TLS handshake completes
/// (its first bytes are a ClientHello, not the HTTP/2 preface): one that
/// stalls mid-handshake is closed at `GRPC_HANDSHAKE_TIMEOUT_SECONDS`, and
/// stalled handshakes beyond the connection cap make room for the
/// coordinator's.
#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_at_the_deadline_and_cannot_crowd_out_the_coordinator() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = CertDir::temporary(&["mailcow-agent"]);
    let stack = Stack::start(StackOptions {
        tls: Some(certs.clone()),
        agent_env: vec![
            ("GRPC_HANDSHAKE_TIMEOUT_SECONDS".into(), "3".into()),
            ("GRPC_MAX_CONNECTIONS".into(), "4".into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(ALICE);

    // More than 24 bytes of a TLS record header and a partial ClientHello,
    // then nothing.
    let partial_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut stalled = tokio::net::TcpStream::connect(&stack.agent_addr)
        .await
        .unwrap();
    stalled.write_all(partial_hello).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stalled handshake was kept open");
    assert!(
        started.elapsed() >= Duration::from_millis(2800),
        "closed before the deadline: {:?}",
        started.elapsed()
    );

    // Twice the cap in stalled handshakes; the coordinator's certificate
    // is served before any of them times out: a stalled one made room.
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(&stack.agent_addr)
            .await
            .unwrap();
        stream.write_all(partial_hello).await.unwrap();
        held.push(stream);
    }
    let started = std::time::Instant::now();
    observe(endpoint(&certs.client("coordinator"), &stack.agent_addr))
        .await
        .expect("served past stalled handshakes");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "waited for the deadline instead of evicting: {:?}",
        started.elapsed()
    );
    drop(held);
}

/// `coordinator certs` as an operator runs it: keys mode 0600, extra names,
/// a second run adds an agent and keeps every existing key, `--force`
/// replaces them, and a name that is not a file name is refused.
#[tokio::test]
async fn coordinator_certs_keeps_existing_keys_and_adds_agents() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let certs = |args: &[&str]| {
        let out =
            std::process::Command::new(reconciler_testkit::harness::bin_dir().join("coordinator"))
                .arg("certs")
                .arg("--out")
                .arg(dir.path())
                .args(args)
                .output()
                .expect("run coordinator certs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();

    let (ok, out) = certs(&[
        "--agent",
        "mailcow-agent=mail.example.com,10.1.2.3",
        "--days",
        "2",
    ]);
    assert!(ok, "{out}");
    for key in ["ca-key.pem", "coordinator-key.pem", "mailcow-agent-key.pem"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let ca_key = read("ca-key.pem");
    let agent_key = read("mailcow-agent-key.pem");

    let (ok, out) = certs(&["--agent", "mailcow-agent", "--agent", "sogo-agent"]);
    assert!(ok, "{out}");
    assert!(out.contains("kept") && out.contains("wrote"), "{out}");
    assert_eq!(read("ca-key.pem"), ca_key);
    assert_eq!(read("mailcow-agent-key.pem"), agent_key);
    assert!(dir.path().join("sogo-agent.pem").exists());

    let (ok, out) = certs(&["--agent", "mailcow-agent", "--force"]);
    assert!(ok, "{out}");
    assert_ne!(read("ca-key.pem"), ca_key);
    assert_ne!(read("mailcow-agent-key.pem"), agent_key);

    let (ok, out) = certs(&["--agent", "../escape"]);
    assert!(!ok, "{out}");
    assert!(out.contains("../escape"), "{out}");
}
