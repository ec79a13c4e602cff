//! `GET /status` in a real headless browser (Debian's `chromium`): the
//! page renders, a target that is down is shown in red, and a removal a
//! guard held is listed; without a token the browser gets nothing.

use reconciler_testkit::harness::{RefusedPort, Stack, StackOptions};
use serde_json::json;

const STATUS_TOKEN: &str = "status-page-token-0123456789";

/// The DOM chromium renders for `url` (`--dump-dom`), run without
/// blocking: the simulators answer from this test's runtime.
async fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .await
        .expect("chromium (scripts/lib/prereqs.sh installs it)");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_status_page_shows_a_down_target_in_red_and_a_held_removal() {
    let sogo_down = RefusedPort::new();
    let stack = Stack::start(StackOptions {
        coordinator_env: vec![
            ("SOGO_AGENT_URL".into(), sogo_down.url()),
            ("STATUS_TOKEN".into(), STATUS_TOKEN.into()),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    let a = &stack.authentik;
    let team = a.add_group("team", json!({"reconciler": {"alias": "team@example.com"}}));
    let mut people = Vec::new();
    for name in ["ann", "ben", "cat", "dan"] {
        let email = format!("{name}@example.com");
        stack.mailcow.add_mailbox(&email);
        let pk = a.add_user(name, &email);
        a.add_member(&team, pk);
        people.push(pk);
    }
    stack.sweep().await;
    // Three of four users vanish from Authentik: it looks wrong, so the
    // alias keeps its members and the removal is held.
    for pk in &people[1..] {
        a.delete_user(*pk);
    }
    let job = stack.sweep().await;
    let warnings = job["summary"]["warnings"].to_string();
    assert!(warnings.contains("removal(s) held"), "{job}");

    let host = stack.http_url.trim_start_matches("http://");
    let dom = chromium_dom(&format!("http://ops:{STATUS_TOKEN}@{host}/status")).await;
    assert!(dom.contains("<h1>authentik-reconciler</h1>"), "{dom}");
    assert!(
        dom.contains(r#"<tr class="down" data-component="sogo-agent">"#),
        "{dom}"
    );
    assert!(
        dom.contains(".down{color:#c00"),
        "red is what .down means: {dom}"
    );
    assert!(
        dom.contains(r#"<tr class="up" data-component="mailcow-agent">"#),
        "{dom}"
    );
    assert!(dom.contains(r#"<li class="held">"#), "{dom}");
    assert!(dom.contains("removal(s) held"), "{dom}");

    // Without the token: the browser is asked for credentials, shown nothing.
    let refused = chromium_dom(&format!("http://{host}/status")).await;
    assert!(!refused.contains("sogo-agent"), "{refused}");
    let wrong = chromium_dom(&format!("http://ops:wrong@{host}/status")).await;
    assert!(!wrong.contains("sogo-agent"), "{wrong}");
    let response = reqwest::get(format!("{}/status", stack.http_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
}
