//! End to end against real SOGo peers (Debian's sogo 5.8, MariaDB,
//! memcached): the real coordinator, mailcow-agent and sogo-agent binaries,
//! with the Authentik and Mailcow simulators. Assertions read what SOGo
//! itself reads: `sogo-tool`, `sogod`'s mailAccounts, and the rows.

use reconciler_proto::agent::{
    ApplyRequest, Change, ChangeResult, Outcome, SogoDelegateAdd, change::Kind,
};
use reconciler_tests::harness::{SogoPeers, Stack, StackOptions};
use serde_json::{Value, json};

const INFO: &str = "info@example.org";
const ALICE: &str = "alice@example.org";
const CAROL: &str = "carol@example.org";
const BOB: &str = "bob@example.org";

/// The owner's settings before we touch them: other Mail keys and another
/// top-level key that must survive, and a delegate a person added in SOGo.
const OWNER_SETTINGS: &str = r#"{"Calendar":{"View":"weekview"},"Mail":{"SortingState":["arrival","0"],"DelegateTo":["bob@example.org"],"ExpandedFolders":["/0/folderINBOX"]}}"#;

struct World {
    peers: SogoPeers,
    stack: Stack,
    group: String,
    alice: i64,
}

async fn world() -> World {
    let peers = SogoPeers::start().await;
    for (uid, cn) in [
        (INFO, "Info Desk"),
        (ALICE, "Alice"),
        (BOB, "Bob"),
        (CAROL, "Carol"),
    ] {
        peers.add_user(uid, cn).await;
    }
    peers.put_settings(INFO, OWNER_SETTINGS).await;
    let stack = Stack::start(StackOptions {
        sogo_agent_env: Some(vec![
            ("SOGO_DB_URL".into(), peers.db_url()),
            ("MEMCACHED_ADDR".into(), peers.memcached_addr()),
        ]),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.org");
    for mbox in [INFO, ALICE, BOB, CAROL] {
        stack.mailcow.add_mailbox(mbox);
    }
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "info-desk",
        json!({"reconciler": {"shared_mailbox": INFO, "sogo_delegate": true}}),
    );
    World {
        peers,
        stack,
        group,
        alice,
    }
}

impl World {
    async fn membership(&self, join: bool, event: &str) {
        if join {
            self.stack.authentik.add_member(&self.group, self.alice);
        } else {
            self.stack.authentik.remove_member(&self.group, self.alice);
        }
        let job = self
            .stack
            .webhook_and_wait(&Stack::group_event(&self.group, event))
            .await;
        self.stack.expect_done(&job).await;
    }

    async fn delegate_to(&self) -> Value {
        self.peers.settings_json(INFO).await["Mail"]["DelegateTo"].clone()
    }

    /// Everything but DelegateTo is exactly as before.
    async fn other_keys_survive(&self) {
        let mut now = self.peers.settings_json(INFO).await;
        let mut before: Value = serde_json::from_str(OWNER_SETTINGS).unwrap();
        now["Mail"].as_object_mut().unwrap().remove("DelegateTo");
        before["Mail"].as_object_mut().unwrap().remove("DelegateTo");
        assert_eq!(now, before, "other keys unchanged");
    }
}

/// Asks the sogo-agent directly to let `delegate` use info@'s identity.
async fn add_delegate(addr: &str, delegate: &str) -> Vec<ChangeResult> {
    Stack::agent_client(addr)
        .await
        .apply(ApplyRequest {
            changes: vec![Change {
                id: delegate.into(),
                kind: Some(Kind::SogoDelegateAdd(SogoDelegateAdd {
                    owner: INFO.into(),
                    delegate: delegate.into(),
                })),
            }],
            dry_run: false,
        })
        .await
        .expect("apply")
        .into_inner()
        .results
}

#[tokio::test]
async fn sogo_itself_sees_the_grant_at_once_and_the_revoke() {
    let mut w = world().await;
    w.peers.start_sogod().await;
    // Warm SOGo's caches first: the owner's settings are now in memcached,
    // and alice's account list has no shared identity.
    let cached = w.peers.sogo_tool_mail(INFO).await;
    assert_eq!(cached["DelegateTo"], json!([BOB]));
    assert!(!w.peers.identities(ALICE).await.contains(&INFO.to_owned()));

    w.membership(true, "evt-join").await;

    // Served at once, not after the 900 s cache expiry.
    let owner = w.peers.sogo_tool_mail(INFO).await;
    assert_eq!(owner["DelegateTo"], json!([BOB, ALICE]), "{owner}");
    let delegate = w.peers.sogo_tool_mail(ALICE).await;
    assert_eq!(delegate["DelegateFrom"], json!([INFO]), "{delegate}");
    // The delegate's row was created the way SOGo does: c_defaults NULL.
    let defaults = w
        .peers
        .root_sql(&format!(
            "SELECT IFNULL(c_defaults, 'NULL') FROM sogo.sogo_user_profile WHERE c_uid = '{ALICE}'"
        ))
        .await;
    assert_eq!(defaults.trim(), "NULL");
    // sogod offers alice the shared mailbox's identity.
    let identities = w.peers.identities(ALICE).await;
    assert!(identities.contains(&INFO.to_owned()), "{identities:?}");
    w.other_keys_survive().await;

    w.membership(false, "evt-leave").await;
    assert_eq!(
        w.delegate_to().await,
        json!([BOB]),
        "the person's delegate stays"
    );
    assert_eq!(
        w.peers.settings_json(ALICE).await["Mail"]["DelegateFrom"],
        json!([]),
        "emptied list stays as [] like SOGo leaves it"
    );
    let owner = w.peers.sogo_tool_mail(INFO).await;
    assert_eq!(owner["DelegateTo"], json!([BOB]));
    let identities = w.peers.identities(ALICE).await;
    assert!(!identities.contains(&INFO.to_owned()), "{identities:?}");
    w.other_keys_survive().await;
}

#[tokio::test]
async fn a_second_sweep_writes_nothing() {
    let w = world().await;
    w.membership(true, "evt-join").await;
    let rows_before = (w.peers.settings(INFO).await, w.peers.settings(ALICE).await);
    let writes_before = w.peers.write_statements().await;
    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    assert_eq!(
        w.peers.write_statements().await,
        writes_before,
        "no UPDATE or INSERT reached MariaDB"
    );
    assert_eq!(
        (w.peers.settings(INFO).await, w.peers.settings(ALICE).await),
        rows_before
    );
}

#[tokio::test]
async fn concurrent_grants_both_land_and_a_sogo_overwrite_is_repaired() {
    let w = world().await;
    let addr = w.stack.sogo_agent_addr.clone().unwrap();
    let (a, c) = tokio::join!(add_delegate(&addr, ALICE), add_delegate(&addr, CAROL));
    assert_eq!(a[0].outcome(), Outcome::Applied, "{a:?}");
    assert_eq!(c[0].outcome(), Outcome::Applied, "{c:?}");
    let delegates = w.delegate_to().await;
    for uid in [BOB, ALICE, CAROL] {
        assert!(
            delegates.as_array().unwrap().contains(&json!(uid)),
            "{delegates}"
        );
    }

    // Now through the coordinator, then SOGo saves the owner's settings
    // from a copy read before our write (sorting, say), dropping alice.
    w.membership(true, "evt-join").await;
    w.peers.put_settings(INFO, OWNER_SETTINGS).await;
    assert_eq!(w.delegate_to().await, json!([BOB]));
    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    let delegates = w.delegate_to().await;
    assert!(
        delegates.as_array().unwrap().contains(&json!(ALICE)),
        "repaired: {delegates}"
    );
    w.other_keys_survive().await;
}

#[tokio::test]
async fn corrupt_settings_are_a_clear_error_and_left_byte_for_byte() {
    let w = world().await;
    let corrupt = r#"{"Mail": {"DelegateTo": ["bob@example.org"], "SortingState": ["#;
    w.peers.put_settings(INFO, corrupt).await;

    w.membership(true, "evt-join").await;
    assert_eq!(w.peers.settings(INFO).await.as_deref(), Some(corrupt));
    assert_eq!(
        w.peers.settings(ALICE).await,
        None,
        "no half-done delegation"
    );

    // Asked directly, the agent says exactly what is wrong.
    let addr = w.stack.sogo_agent_addr.clone().unwrap();
    let results = add_delegate(&addr, ALICE).await;
    assert_eq!(results[0].outcome(), Outcome::Permanent, "{results:?}");
    assert!(results[0].message.contains(INFO), "{}", results[0].message);
    assert!(
        results[0].message.contains("cannot be read"),
        "{}",
        results[0].message
    );
    assert_eq!(w.peers.settings(INFO).await.as_deref(), Some(corrupt));
}

#[tokio::test]
async fn mariadb_down_is_transient() {
    let mut w = world().await;
    w.peers.stop_mariadb().await;
    let addr = w.stack.sogo_agent_addr.clone().unwrap();
    let results = add_delegate(&addr, ALICE).await;
    assert_eq!(results[0].outcome(), Outcome::Transient, "{results:?}");
}
