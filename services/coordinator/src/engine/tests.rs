//! Whole reconciles in process: the real engine, planner and state DB, with
//! the directory and agents faked in memory (`crate::testsuite`).

use std::sync::Arc;

use serde_json::json;

use super::{Engine, EngineConfig};
use crate::ledger::LedgerState;
use crate::store::Store;
use crate::subject::Subject;
use crate::targets::{Adapters, mailcow::Mailcow, sogo::Sogo};
use crate::testsuite::{EmptyAgent, FakeDirectory, FakeSogoAgent};

const GROUP: &str = "00000000-0000-0000-0000-00000000000a";
const INFO: &str = "info@example.com";

struct World {
    engine: Engine,
    directory: Arc<FakeDirectory>,
    sogo: Arc<FakeSogoAgent>,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
        .await
        .unwrap();
    let directory = Arc::new(FakeDirectory::default());
    directory.add_user(1, "alice", "alice@example.com");
    directory.add_user(2, "bob", "bob@example.com");
    directory.add_group(
        GROUP,
        "desk",
        json!({"reconciler": {"shared_mailbox": INFO, "sogo_delegate": true}}),
    );
    let sogo = Arc::new(FakeSogoAgent::default());
    let adapters = Adapters::default()
        .with(Arc::new(Mailcow::new(Arc::new(EmptyAgent))))
        .with(Arc::new(Sogo::new(sogo.clone())));
    World {
        engine: Engine::new(store, directory.clone(), adapters, EngineConfig::default()),
        directory,
        sogo,
        _dir: dir,
    }
}

impl World {
    fn delegates(&self) -> Vec<String> {
        self.sogo
            .delegate_to
            .lock()
            .unwrap()
            .get(INFO)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn writes(&self) -> u64 {
        *self.sogo.writes.lock().unwrap()
    }

    async fn ledger_state(&self, delegate: &str) -> Option<LedgerState> {
        self.engine
            .store()
            .ledger_get("sogo_delegation", &format!("{INFO}|{delegate}"))
            .await
            .unwrap()
            .map(|r| r.state)
    }

    async fn sweep(&self) -> super::RunReport {
        self.engine.run(1, &Subject::All, false).await.unwrap()
    }
}

#[tokio::test]
async fn a_grant_goes_from_intent_to_created_and_a_second_run_writes_nothing() {
    let w = world().await;
    w.directory.set_members(GROUP, &[1]);
    let report = w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(
        w.ledger_state("alice@example.com").await,
        Some(LedgerState::Created)
    );
    assert_eq!(report.outcomes["sogo_delegation.create.applied"], 1);

    let writes = w.writes();
    let report = w.sweep().await;
    assert_eq!(w.writes(), writes, "in sync: no write");
    assert_eq!(report.planned, 0);
}

#[tokio::test]
async fn a_crash_between_intent_and_result_is_adopted_not_repeated() {
    let w = world().await;
    w.directory.set_members(GROUP, &[1]);
    *w.sogo.lose_answers.lock().unwrap() = 1;
    let report = w.sweep().await;
    assert_eq!(report.transient_failures, 1, "{report:?}");
    assert_eq!(w.delegates(), ["alice@example.com"], "the write happened");
    assert_eq!(
        w.ledger_state("alice@example.com").await,
        Some(LedgerState::Intent),
        "the intent stays: the write may have happened"
    );

    let writes = w.writes();
    let report = w.sweep().await;
    assert_eq!(
        w.writes(),
        writes,
        "found there and adopted, not written again"
    );
    assert_eq!(report.outcomes["sogo_delegation.adopt.ok"], 1);
    assert_eq!(
        w.ledger_state("alice@example.com").await,
        Some(LedgerState::Created)
    );
    // Adopted means ours: leaving revokes it.
    w.directory.set_members(GROUP, &[]);
    w.sweep().await;
    assert!(w.delegates().is_empty());
    assert_eq!(w.ledger_state("alice@example.com").await, None);
}

#[tokio::test]
async fn a_delegate_a_person_added_is_recorded_foreign_and_never_removed() {
    let w = world().await;
    w.sogo
        .delegate_to
        .lock()
        .unwrap()
        .entry(INFO.into())
        .or_default()
        .insert("bob@example.com".into());
    w.directory.set_members(GROUP, &[2]);
    w.sweep().await;
    assert_eq!(
        w.ledger_state("bob@example.com").await,
        Some(LedgerState::Foreign)
    );
    w.directory.set_members(GROUP, &[]);
    w.sweep().await;
    assert_eq!(
        w.delegates(),
        ["bob@example.com"],
        "a person's delegate stays"
    );
}

#[tokio::test]
async fn without_its_adapter_a_target_is_held_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
        .await
        .unwrap();
    let directory = Arc::new(FakeDirectory::default());
    directory.add_user(1, "alice", "alice@example.com");
    directory.add_group(
        GROUP,
        "desk",
        json!({"reconciler": {"shared_mailbox": INFO, "sogo_delegate": true}}),
    );
    directory.set_members(GROUP, &[1]);
    let adapters = Adapters::default().with(Arc::new(Mailcow::new(Arc::new(EmptyAgent))));
    let engine = Engine::new(store, directory, adapters, EngineConfig::default());
    let report = engine.run(1, &Subject::All, false).await.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("no agent is configured for sogo_delegation")),
        "{report:?}"
    );
    assert_eq!(report.planned, 0);
}
