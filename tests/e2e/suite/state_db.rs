//! The coordinator's store on both of its backends: the same calls, the
//! same answers, on SQLite and on a private PostgreSQL 15. The job queue
//! in detail (it is what several coordinators share), every other table
//! through one round trip each (each SQL statement runs at least once on
//! PostgreSQL), and claims from two stores at once on one PostgreSQL.

use std::time::Duration;

use coordinator::ledger::{LedgerKey, LedgerRow, LedgerState};
use coordinator::store::{
    AuditEntry, AuditQuery, IngestedEvent, Interrupted, Retention, Store, now_millis,
};
use coordinator::subject::Subject;
use reconciler_testkit::harness::Postgres;

/// What keeps a test's database alive (its directory, its server).
type Backing = Box<dyn std::any::Any>;

async fn sqlite() -> (Store, Backing) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let store = Store::open(&url).await.expect("open SQLite");
    (store, Box::new(dir))
}

async fn postgres() -> (Store, Backing) {
    let pg = Postgres::start().await;
    let store = Store::open(&pg.url()).await.expect("open PostgreSQL");
    (store, Box::new(pg))
}

fn user(name: &str) -> Subject {
    Subject::User(name.into())
}

/// The queue's rules, on a fresh store.
async fn job_queue(store: &Store) {
    let store = store.clone().as_instance("tester");
    // One event pk, one job; a waiting job absorbs the same subject.
    let first = store
        .enqueue(&user("alice"), false, "webhook", Some("evt-1"))
        .await
        .unwrap();
    assert!(!first.deduplicated);
    let replay = store
        .enqueue(&user("alice"), false, "webhook", Some("evt-1"))
        .await
        .unwrap();
    assert_eq!((replay.job_id, replay.deduplicated), (first.job_id, true));
    let again = store
        .enqueue(&user("alice"), false, "webhook", Some("evt-2"))
        .await
        .unwrap();
    assert_eq!((again.job_id, again.deduplicated), (first.job_id, true));
    // A forced trigger does not hide in an unforced job.
    let forced = store
        .enqueue(&user("alice"), true, "admin", None)
        .await
        .unwrap();
    assert_ne!(forced.job_id, first.job_id);
    let bob = store
        .enqueue(&user("bob"), false, "timer", None)
        .await
        .unwrap();
    let counts = store.job_counts().await.unwrap();
    assert_eq!((counts.queued, counts.running), (3, 0));
    assert!(store.oldest_queued_job().await.unwrap().is_some());
    assert!(store.next_due().await.unwrap().unwrap() <= now_millis());

    // Oldest first; one job per subject at a time.
    let claimed = store.claim().await.unwrap().expect("alice's job");
    assert_eq!(
        (claimed.id, claimed.subject.as_str(), claimed.attempts),
        (first.job_id, "user:alice", 1)
    );
    assert_eq!(claimed.trigger, "webhook");
    let next = store.claim().await.unwrap().expect("bob's job");
    assert_eq!(
        next.id, bob.job_id,
        "alice's forced job waits for her first"
    );
    assert!(store.claim().await.unwrap().is_none());

    // A sweep waits for everything running, and everything waits for it.
    let sweep = store
        .enqueue(&Subject::All, false, "timer", None)
        .await
        .unwrap();
    store
        .finish(first.job_id, r#"{"outcomes":{"x":1}}"#)
        .await
        .unwrap();
    let claimed = store.claim().await.unwrap().expect("alice's forced job");
    assert_eq!(claimed.id, forced.job_id);
    assert!(claimed.force);
    store.finish(forced.job_id, "").await.unwrap();
    assert!(store.claim().await.unwrap().is_none(), "bob still runs");
    store
        .retry_or_fail(bob.job_id, "agent down", "", Some(now_millis() + 60_000))
        .await
        .unwrap();
    let claimed = store.claim().await.unwrap().expect("the sweep");
    assert_eq!(claimed.id, sweep.job_id);
    store
        .enqueue(&user("carol"), false, "webhook", None)
        .await
        .unwrap();
    assert!(
        store.claim().await.unwrap().is_none(),
        "nothing runs beside a sweep"
    );
    store.finish(sweep.job_id, "{}").await.unwrap();
    assert_eq!(
        store.last_finished_sweep().await.unwrap().map(|j| j.id),
        Some(sweep.job_id)
    );

    let job = store.job(first.job_id).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("done", 1));
    assert!(job.summary.contains("attempts_reported"), "{}", job.summary);
    let job = store.job(bob.job_id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.last_error.as_str()),
        ("queued", "agent down")
    );

    // A crash while carol runs: requeued, and given up once her attempts
    // are used.
    let carol = store.claim().await.unwrap().expect("carol");
    assert_eq!(
        store.requeue_interrupted(3).await.unwrap(),
        Interrupted {
            requeued: 1,
            gave_up: 0
        }
    );
    for _ in 0..2 {
        assert_eq!(store.claim().await.unwrap().map(|j| j.id), Some(carol.id));
        store.requeue_interrupted(3).await.unwrap();
    }
    let job = store.job(carol.id).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempts), ("failed", 3));
    assert_eq!(
        job.last_error,
        "gave up after 3 attempts, the last one interrupted"
    );

    // Every attempt is on record, with who ran it and how it ended.
    let attempts = store.job_attempts(carol.id).await.unwrap();
    let outcomes: Vec<(i64, &str, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.instance.as_str(), a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, "tester", "interrupted"),
            (2, "tester", "interrupted"),
            (3, "tester", "interrupted"),
        ]
    );
    assert!(attempts.iter().all(|a| a.ended_at.is_some()));
    let attempts = store.job_attempts(first.job_id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "done");
    let attempts = store.job_attempts(bob.job_id).await.unwrap();
    assert_eq!(attempts[0].outcome, "retry");
}

#[tokio::test]
async fn the_job_queue_on_sqlite() {
    let (store, _keep) = sqlite().await;
    job_queue(&store).await;
}

#[tokio::test]
async fn the_job_queue_on_postgres() {
    let (store, _keep) = postgres().await;
    job_queue(&store).await;
}

fn ledger_row(key: &str) -> LedgerRow {
    LedgerRow {
        resource: "sender_acl".into(),
        key: LedgerKey::parse("sender_acl", key).expect("a sender_acl key"),
        state: LedgerState::Created,
        username: "alice".into(),
        groups: coordinator::group_set::GroupSet::from(["g1"]),
        remote_id: "7".into(),
    }
}

/// Every other table, one round trip each.
async fn every_table(store: &Store) {
    store.ping().await.unwrap();
    // meta and known users
    store.set_meta("k", "v1").await.unwrap();
    store.set_meta("k", "v2").await.unwrap();
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v2"));
    store
        .remember_users(&[(42, "alice".into(), "Alice@Example.com".into())])
        .await
        .unwrap();
    for needle in ["42", "alice", "alice@example.com"] {
        assert_eq!(
            store.known_username(needle).await.unwrap().as_deref(),
            Some("alice"),
            "{needle}"
        );
    }

    // ledger, in a batch and alone, ordered bytewise
    let mut batch = store.batch().await.unwrap();
    batch
        .ledger_put(&ledger_row("alice@x.org|info@x.org"))
        .await
        .unwrap();
    batch
        .ledger_put(&ledger_row("Zed@x.org|info@x.org"))
        .await
        .unwrap();
    batch
        .backoff_failed(
            "alias",
            "a@x.org",
            "f1",
            "refused",
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    batch
        .audit(AuditEntry {
            job_id: 1,
            trace_id: "t",
            resource: "sender_acl",
            key: "alice@x.org|info@x.org",
            action: "add",
            outcome: "applied",
            reason: "",
            detail: "",
        })
        .await
        .unwrap();
    batch
        .pending_put("matrix_membership", "!r:x|@a:x", "alice", 5_000, "left")
        .await
        .unwrap();
    batch.commit().await.unwrap();
    let keys: Vec<String> = store
        .ledger_rows(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.to_string())
        .collect();
    assert_eq!(keys, vec!["Zed@x.org|info@x.org", "alice@x.org|info@x.org"]);
    assert_eq!(store.ledger_rows(Some("alias")).await.unwrap().len(), 0);
    let row = store
        .ledger_get("sender_acl", "alice@x.org|info@x.org")
        .await
        .unwrap()
        .expect("row");
    assert_eq!(row.remote_id, "7");
    store
        .ledger_delete("sender_acl", "Zed@x.org|info@x.org")
        .await
        .unwrap();
    assert_eq!(store.canonicalize_app_password_keys().await.unwrap(), 0);

    // backoff
    let backoffs = store.backoffs().await.unwrap();
    assert_eq!(backoffs.len(), 1);
    store.backoff_clear("alias", "a@x.org").await.unwrap();
    assert!(store.backoffs().await.unwrap().is_empty());

    // pending removals
    assert_eq!(
        store.pending_due(i64::MIN, 6_000).await.unwrap(),
        (vec!["alice".to_owned()], None)
    );
    store
        .pending_delete("matrix_membership", "!r:x|@a:x")
        .await
        .unwrap();
    assert!(store.pending_removals().await.unwrap().is_empty());

    // SOGo evictions owed
    let uids = vec!["a@x.org".to_owned()];
    store.owe_sogo_evictions(&uids, "down").await.unwrap();
    store.owe_sogo_evictions(&uids, "still down").await.unwrap();
    let owed = store.owed_sogo_evictions().await.unwrap();
    assert_eq!(
        (owed[0].attempts, owed[0].last_error.as_str()),
        (2, "still down")
    );
    store.settle_sogo_evictions(&uids).await.unwrap();
    assert!(store.owed_sogo_evictions().await.unwrap().is_empty());

    // the audit log: own rows, ingested events, filters
    let event = |id: &str| IngestedEvent {
        source: "stalwart",
        external_id: id.into(),
        at: 1_000,
        action: "stalwart.login_failed",
        outcome: "failure",
        actor: "bob".into(),
        remote_ip: "203.0.113.5".into(),
        received_from: String::new(),
        key: "bob".into(),
        reason: "auth.failed".into(),
        detail: "Needle".into(),
        metadata: "{}".into(),
    };
    let done = store.ingest(&[event("1"), event("1")]).await.unwrap();
    assert_eq!((done.new, done.duplicates), (1, 1));
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit_page(&all).await.unwrap().len(), 2);
    let found = store
        .audit_page(&AuditQuery {
            action: Some("stalwart.*".into()),
            q: Some("needle".into()),
            source: Some("stalwart".into()),
            since: Some(500),
            before: Some(2_000),
            below_id: Some(i64::MAX),
            ..all.clone()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].actor, "bob");
    assert!(
        store
            .audit_page(&AuditQuery {
                q: Some("%".into()),
                ..all.clone()
            })
            .await
            .unwrap()
            .is_empty()
    );

    // retention
    let old = store
        .enqueue(&user("old"), false, "webhook", Some("evt-old"))
        .await
        .unwrap();
    let job = store.claim().await.unwrap().expect("old job");
    assert_eq!(job.id, old.job_id);
    store.finish(old.job_id, "").await.unwrap();
    let later = now_millis() + 10 * 86_400_000;
    let pruned = store
        .prune_batch(
            &Retention {
                jobs: Some(Duration::from_secs(86_400)),
                audit: Some(Duration::from_secs(86_400)),
            },
            later,
            100,
        )
        .await
        .unwrap();
    assert_eq!((pruned.jobs, pruned.webhook_events), (1, 1));
    assert_eq!(pruned.audit, 2);
    assert!(store.job(old.job_id).await.unwrap().is_none());
    assert!(store.job_attempts(old.job_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_table_on_sqlite() {
    let (store, _keep) = sqlite().await;
    every_table(&store).await;
}

#[tokio::test]
async fn every_table_on_postgres() {
    let (store, _keep) = postgres().await;
    every_table(&store).await;
}

/// Two coordinators' stores claim from one queue at once (as two
/// instances would during a hand-over): every job is claimed once, and
/// never two jobs of one subject at a time.
#[tokio::test]
async fn two_stores_claiming_at_once_take_each_job_once() {
    let pg = Postgres::start().await;
    let a = Store::open(&pg.url()).await.unwrap().as_instance("a");
    let b = Store::open(&pg.url()).await.unwrap().as_instance("b");
    const JOBS: usize = 40;
    for i in 0..JOBS {
        // Two jobs per subject: the second waits for the first.
        a.enqueue(&user(&format!("u{}", i / 2)), i % 2 == 1, "test", None)
            .await
            .unwrap();
    }
    let claim_all = |store: Store| async move {
        let mut mine = Vec::new();
        let mut idle = 0;
        while idle < 20 {
            match store.claim().await.unwrap() {
                Some(job) => {
                    idle = 0;
                    mine.push(job.id);
                    store.finish(job.id, "").await.unwrap();
                }
                None => {
                    idle += 1;
                    tokio::task::yield_now().await;
                }
            }
        }
        mine
    };
    let (from_a, from_b) = tokio::join!(claim_all(a.clone()), claim_all(b.clone()));
    let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    all.sort();
    let claimed = all.len();
    all.dedup();
    assert_eq!(claimed, all.len(), "a job was claimed twice");
    assert_eq!(claimed, JOBS);
    for id in &from_a {
        let attempts = a.job_attempts(*id).await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].instance, "a");
    }
    for id in &from_b {
        assert_eq!(b.job_attempts(*id).await.unwrap()[0].instance, "b");
    }
}

/// The migrations' version lists are the same on both backends, and both
/// stores come up at the same version.
#[tokio::test]
async fn both_backends_migrate_to_the_same_versions() {
    let (sqlite, _keep_sqlite) = sqlite().await;
    let (postgres, _keep_postgres) = postgres().await;
    let a = sqlite.applied_migrations().await.unwrap();
    let b = postgres.applied_migrations().await.unwrap();
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

/// `STATE_DB_URL` may ask for TLS with the server's certificate checked
/// against a private CA (`sslmode=verify-full&sslrootcert=…`): the store
/// opens, its connections are encrypted, and a server whose certificate
/// another CA signed is refused.
#[tokio::test]
async fn a_postgres_url_may_require_verified_tls() {
    let pg = Postgres::start_with_tls().await;
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        pg.ca_file().display()
    );
    let store = Store::open(&url).await.expect("open over TLS");
    store.set_meta("k", "v").await.unwrap();
    let encrypted: Vec<String> = pg
        .sql(
            "reconciler",
            "SELECT ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE application_name <> 'psql' AND datname = 'reconciler'",
        )
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!encrypted.is_empty());
    assert!(encrypted.iter().all(|ssl| ssl == "t"), "{encrypted:?}");

    let other = Postgres::start_with_tls().await;
    let wrong_ca = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        other.ca_file().display()
    );
    // Refused in the TLS handshake for the certificate (rustls: "invalid
    // peer certificate"), not for anything else going wrong.
    let refused = match Store::open(&wrong_ca).await {
        Ok(_) => panic!("a server certificate another CA signed was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        refused.contains("invalid peer certificate"),
        "refused for another reason: {refused}"
    );
}
