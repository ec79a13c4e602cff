//! `coordinator plan` and `coordinator explain` against the running
//! coordinator binary: the diff and its exit code before and after a
//! sweep, and the nested group chain that grants a user what they hold.

use reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN;
use reconciler_testkit::harness::{Stack, StackOptions, bin_dir};
use serde_json::{Value, json};

/// Runs `coordinator <args>` against the stack; its exit code and output.
/// Not blocking: the Authentik simulator answers from this test's runtime.
async fn coordinator(stack: &Stack, args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(bin_dir().join("coordinator"))
        .args(args)
        .env("COORDINATOR_URL", format!("http://{}", stack.grpc_addr))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .expect("run coordinator");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

#[tokio::test]
async fn plan_shows_the_diff_and_exits_2_then_0_and_explain_names_the_group_chain() {
    let stack = Stack::start(StackOptions::default()).await;
    let m = &stack.mailcow;
    m.add_domain("example.com");
    m.add_mailbox("info@example.com");
    m.add_mailbox("alice@example.com");
    let a = &stack.authentik;
    let alice = a.add_user("alice", "alice@example.com");
    let support = a.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": "info@example.com", "send_as": true}}),
    );
    let emea = a.add_group("support-emea", json!({}));
    a.set_group_parents(&emea, &[&support]);
    a.add_member(&emea, alice);

    let (code, text) = coordinator(&stack, &["plan"]).await;
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(
            "mailcow-agent\n  + sender_acl alice@example.com → info@example.com (group support)"
        ),
        "{text}"
    );
    let (code, json_text) =
        coordinator(&stack, &["plan", "--subject", "user:alice", "--json"]).await;
    assert_eq!(code, 2, "{json_text}");
    let plan: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(plan["changes"][0]["action"], "create");
    assert_eq!(plan["changes"][0]["resource"], "sender_acl");
    assert_eq!(plan["changes"][0]["object"]["send_as"], "info@example.com");
    assert_eq!(
        m.sender_acl("alice@example.com"),
        Vec::<String>::new(),
        "plan changes nothing"
    );

    stack.sweep().await;
    let (code, text) = coordinator(&stack, &["plan"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("in sync"), "{text}");

    let (code, text) = coordinator(&stack, &["explain", "alice"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(
            "mailcow-agent sender_acl alice@example.com → info@example.com [created] ← support ← support-emea"
        ),
        "{text}"
    );
    let (code, text) = coordinator(&stack, &["plan", "--subject", "nonsense"]).await;
    assert_eq!(code, 1, "{text}");
    let (code, text) = coordinator(&stack, &["plan", "--url", "http://127.0.0.1:1"]).await;
    assert_eq!(code, 1, "{text}");
}
