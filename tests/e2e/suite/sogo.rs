//! End to end against real SOGo peers (Debian's sogo 5.8, MariaDB,
//! memcached): the real coordinator, mailcow-agent and sogo-agent binaries,
//! with the Authentik and Mailcow simulators. Assertions read what SOGo
//! itself reads: `sogo-tool`, `sogod`'s mailAccounts, and the rows.

use reconciler_proto::agent::{
    ChangeResult, Outcome, SogoApplyRequest, SogoChange, SogoDelegateAdd, sogo_change::Kind,
};
use std::time::{Duration, Instant};

use reconciler_testkit::harness::sogo::MemcachedGate;
use reconciler_testkit::harness::{SogoPeers, Stack, StackOptions};
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
    /// Between the sogo-agent and memcached, when asked for.
    gate: Option<MemcachedGate>,
    stack: Stack,
    group: String,
    alice: i64,
}

async fn world() -> World {
    world_with(Vec::new(), StackOptions::default(), false).await
}

/// A world whose sogo-agent also gets `agent_env` (later entries win) and,
/// with `gate`, reaches memcached through a [`MemcachedGate`].
async fn world_with(agent_env: Vec<(&str, String)>, options: StackOptions, gate: bool) -> World {
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
    let gate = match gate {
        true => Some(MemcachedGate::start(peers.memcached_addr()).await),
        false => None,
    };
    let memcached = gate
        .as_ref()
        .map_or_else(|| peers.memcached_addr(), |g| g.addr.clone());
    let mut env = vec![
        ("SOGO_DB_URL".to_owned(), peers.db_url()),
        ("MEMCACHED_ADDR".to_owned(), memcached),
    ];
    env.extend(agent_env.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let stack = Stack::start(StackOptions {
        sogo_agent_env: Some(env),
        ..options
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
        gate,
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
    Stack::sogo_agent_client(addr)
        .await
        .apply(SogoApplyRequest {
            changes: vec![SogoChange {
                id: delegate.into(),
                kind: Some(Kind::DelegateAdd(SogoDelegateAdd {
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

/// A job's summary (the run report), parsed.
fn summary(job: &Value) -> Value {
    job["summary"].clone()
}

/// The uids the coordinator's state DB says are owed a cache eviction.
async fn owed_evictions(stack: &Stack) -> Vec<String> {
    let url = format!("sqlite://{}?mode=ro", stack.state_db().display());
    let db = sqlx::SqlitePool::connect(&url)
        .await
        .expect("open state DB");
    let owed = sqlx::query_scalar("SELECT uid FROM sogo_cache_evictions ORDER BY uid")
        .fetch_all(&db)
        .await
        .expect("read owed evictions");
    db.close().await;
    owed
}

#[tokio::test]
async fn a_failed_eviction_is_retried_until_memcached_holds_no_stale_entry() {
    // One attempt per job, so the grant's own job cannot retry the
    // eviction: a later run has to.
    let w = world_with(
        vec![("MEMCACHED_TIMEOUT_MILLIS", "500".into())],
        StackOptions {
            max_attempts: 1,
            ..StackOptions::default()
        },
        true,
    )
    .await;
    let gate = w.gate.as_ref().unwrap();
    // SOGo reads the owner's settings and caches them: the entry that
    // goes stale once we write the row.
    let key = format!("{INFO}+settings");
    assert_eq!(
        w.peers.sogo_tool_mail(INFO).await["DelegateTo"],
        json!([BOB])
    );
    let cached = w.peers.memcached_get(&key).await.expect("SOGo cached it");
    assert!(!cached.contains(ALICE), "{cached}");

    // memcached stalls (accepts, never answers) for the agent during the
    // grant; its cache, which SOGo reads, keeps the old entry.
    gate.stall(true);
    w.stack.authentik.add_member(&w.group, w.alice);
    let grant = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-join"))
        .await;
    gate.stall(false);

    // The row was written, but SOGo still serves the old copy...
    let delegates = w.delegate_to().await;
    assert_eq!(delegates, json!([BOB, ALICE]), "{grant}");
    let stale = w.peers.memcached_get(&key).await.expect("still cached");
    assert!(!stale.contains(ALICE), "stale: {stale}");
    assert_eq!(
        w.peers.sogo_tool_mail(INFO).await["DelegateTo"],
        json!([BOB])
    );
    // ...so the evictions are owed, durably, and the job says so.
    assert_eq!(owed_evictions(&w.stack).await, [ALICE, INFO]);
    let report = summary(&grant);
    assert_eq!(
        report["outcomes"]["sogo_cache_eviction.evict.owed"], 2,
        "{report}"
    );
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("SOGo cache eviction owed") && warnings.contains(INFO),
        "{report}"
    );

    // The next run finds the row right (nothing to write) and still
    // evicts: memcached holds no stale entry and SOGo shows the grant.
    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    let report = summary(&sweep);
    assert_eq!(
        report["outcomes"]["sogo_cache_eviction.evict.applied"], 2,
        "{report}"
    );
    assert!(
        report["warnings"]
            .to_string()
            .contains("owed by earlier runs"),
        "{report}"
    );
    assert_eq!(w.peers.memcached_get(&key).await, None);
    assert_eq!(
        w.peers.sogo_tool_mail(INFO).await["DelegateTo"],
        json!([BOB, ALICE])
    );
    assert!(owed_evictions(&w.stack).await.is_empty());

    // Settled: the run after plans no eviction.
    let again = w.stack.sweep().await;
    assert_eq!(again["state"], "done", "{again}");
    assert!(again["summary"].is_object(), "{again}");
    assert!(
        !again["summary"].to_string().contains("sogo_cache_eviction"),
        "{again}"
    );
}

#[tokio::test]
async fn a_stalled_memcached_is_answered_within_the_short_timeout_with_the_eviction_owed() {
    // Accepts connections and reads, never answers.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_addr = stalled.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            held.push(socket);
        }
    });
    // The default timeout (2 s): the agent's own default is what is tested.
    let w = world_with(
        vec![("MEMCACHED_ADDR", stalled_addr)],
        StackOptions::default(),
        false,
    )
    .await;
    let addr = w.stack.sogo_agent_addr.clone().unwrap();
    let started = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(30), add_delegate(&addr, ALICE))
        .await
        .expect("the sogo-agent answered despite the stalled memcached");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(results[0].outcome(), Outcome::Applied, "{results:?}");
    assert_eq!(results[0].eviction_owed, [INFO, ALICE], "{results:?}");
    assert!(
        results[0].message.contains("did not answer"),
        "{}",
        results[0].message
    );
    assert_eq!(w.delegate_to().await, json!([BOB, ALICE]));
}

/// What SOGo (or a person) wrote, with what a re-serialiser would change:
/// an integer beyond f64's precision, `1e2`, a duplicate key, unknown keys,
/// escapes and SOGo's own spacing.
const ODD_OWNER: &str = r#"{"Calendar": {"View": "weekview"}, "Big": 12345678901234567890123, "Exp": 1e2, "Dup": 1, "Dup": 2, "Mail": {"SortingState": ["arrival", "0"], "DelegateTo": ["bob@example.org"], "Zz-Unknown": {"n": -0.0, "s": "caf\u00e9 \/ \"q\""}}, "Tail": [1.50, true, null]}"#;
const ODD_DELEGATE: &str = r#"{"Big":98765432109876543210987,"Mail":{"Other":1e-7,"Other":[]}}"#;

#[tokio::test]
async fn settings_we_do_not_own_survive_byte_for_byte() {
    let w = world().await;
    w.peers.put_settings(INFO, ODD_OWNER).await;
    w.peers.put_settings(ALICE, ODD_DELEGATE).await;

    w.membership(true, "evt-join").await;
    assert_eq!(
        w.peers.settings_exact(INFO).await.as_deref(),
        Some(
            ODD_OWNER
                .replace(
                    r#""DelegateTo": ["bob@example.org"]"#,
                    r#""DelegateTo": ["bob@example.org", "alice@example.org"]"#
                )
                .as_str()
        )
    );
    assert_eq!(
        w.peers.settings_exact(ALICE).await.as_deref(),
        Some(
            r#"{"Big":98765432109876543210987,"Mail":{"Other":1e-7,"Other":[],"DelegateFrom":["info@example.org"]}}"#
        )
    );
    // SOGo itself still reads the rows and the delegation.
    assert_eq!(
        w.peers.sogo_tool_mail(INFO).await["DelegateTo"],
        json!([BOB, ALICE])
    );
    assert_eq!(
        w.peers.sogo_tool_mail(ALICE).await["DelegateFrom"],
        json!([INFO])
    );

    w.membership(false, "evt-leave").await;
    assert_eq!(
        w.peers.settings_exact(INFO).await.as_deref(),
        Some(ODD_OWNER),
        "back to exactly what SOGo wrote"
    );
    assert_eq!(
        w.peers.settings_exact(ALICE).await.as_deref(),
        Some(
            r#"{"Big":98765432109876543210987,"Mail":{"Other":1e-7,"Other":[],"DelegateFrom":[]}}"#
        )
    );
    assert_eq!(
        w.peers.sogo_tool_mail(INFO).await["DelegateTo"],
        json!([BOB])
    );
}
