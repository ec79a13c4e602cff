//! Whole reconciles in process: the real engine, planner and state DB, with
//! the directory and agents faked in memory (`crate::testsuite`).

use std::sync::Arc;

use serde_json::json;

use super::{Engine, EngineConfig};
use crate::ledger::LedgerState;
use crate::store::Store;
use crate::subject::Subject;
use crate::targets::Adapters;
use crate::testsuite::{EmptyMailcowAgent, FakeDirectory, FakeSogoAgent};

const GROUP: &str = "00000000-0000-0000-0000-00000000000a";
const INFO: &str = "info@example.com";

struct World {
    engine: Engine,
    directory: Arc<FakeDirectory>,
    sogo: Arc<FakeSogoAgent>,
    _dir: tempfile::TempDir,
}

/// alice (1) and bob (2), and the group `desk` delegating info@ in SOGo.
fn desk() -> Arc<FakeDirectory> {
    let directory = Arc::new(FakeDirectory::default());
    directory.add_user(1, "alice", "alice@example.com");
    directory.add_user(2, "bob", "bob@example.com");
    directory.add_group(
        GROUP,
        "desk",
        json!({"reconciler": {"shared_mailbox": INFO, "sogo_delegate": true}}),
    );
    directory
}

/// An engine over `directory` and `adapters`, with a fresh state DB.
async fn engine(directory: Arc<FakeDirectory>, adapters: Adapters) -> (Engine, tempfile::TempDir) {
    let (store, dir) = Store::open_temp().await;
    let engine = Engine::new(store, directory, adapters, EngineConfig::default());
    (engine, dir)
}

async fn world() -> World {
    let directory = desk();
    let sogo = Arc::new(FakeSogoAgent::default());
    let adapters = Adapters::default()
        .with(Arc::new(EmptyMailcowAgent::adapter()))
        .with(Arc::new(sogo.adapter()));
    let (engine, dir) = engine(directory.clone(), adapters).await;
    World {
        engine,
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
    let directory = desk();
    directory.set_members(GROUP, &[1]);
    let adapters = Adapters::default().with(Arc::new(EmptyMailcowAgent::adapter()));
    let (engine, _dir) = engine(directory, adapters).await;
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

#[tokio::test]
async fn a_partially_failed_batch_records_each_change_on_its_own() {
    let w = world().await;
    w.sogo
        .refuse
        .lock()
        .unwrap()
        .insert("bob@example.com".into());
    w.directory.set_members(GROUP, &[1, 2]);
    let report = w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(report.permanent_failures, 1);
    assert_eq!(
        w.ledger_state("alice@example.com").await,
        Some(LedgerState::Created)
    );
    assert_eq!(
        w.ledger_state("bob@example.com").await,
        Some(LedgerState::Intent),
        "a failure message alone never proves nothing was made"
    );
    // The refused change backs off instead of being re-sent every sweep.
    let report = w.sweep().await;
    assert_eq!(report.backing_off, 1, "{report:?}");
}

#[tokio::test]
async fn a_directory_that_shrank_by_half_removes_nothing() {
    let w = world().await;
    for pk in 3..=10 {
        w.directory
            .add_user(pk, &format!("u{pk}"), &format!("u{pk}@example.com"));
    }
    w.directory.set_members(GROUP, &[1, 2]);
    w.sweep().await;
    assert_eq!(w.delegates().len(), 2);
    // Authentik now answers with half the users, alice among the missing.
    w.directory
        .users
        .lock()
        .unwrap()
        .retain(|u| u.pk > 6 || u.pk == 2);
    let report = w.sweep().await;
    assert_eq!(w.delegates().len(), 2, "nothing removed: {report:?}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("removal(s) held")),
        "{report:?}"
    );
}

/// A fourth target the engine has never seen, written against the trait
/// alone: it keeps "delegations" in memory, is observed, planned (by the
/// resource it claims), applied and recorded with no edit to the engine.
mod fourth_target {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use reconciler_proto::agent::{ChangeResult, Outcome};

    use super::*;
    use crate::observed::ObservedSogoOwner;
    use crate::plan::{Action, Resource, Step, Target};
    use crate::targets::{
        Applied, Changes, Observation, ObserveInput, Secrets, TargetAdapter, subjects_in_scope,
    };

    /// Its own change type: nothing from any agent contract.
    struct Identity {
        id: String,
        owner: String,
        delegate: String,
        grant: bool,
    }

    #[derive(Default)]
    struct Webmail {
        identities: Arc<Mutex<BTreeSet<(String, String)>>>,
        observed: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl TargetAdapter for Webmail {
        type Change = Identity;

        fn name(&self) -> &str {
            "webmail-agent"
        }

        fn resources(&self) -> &'static [Resource] {
            &[Resource::SogoDelegation]
        }

        async fn observe(&self, input: &ObserveInput<'_>) -> crate::Result<Observation> {
            *self.observed.lock().unwrap() += 1;
            let owners = subjects_in_scope(
                input
                    .desired
                    .sogo_delegations
                    .values()
                    .map(|d| (&d.user, &d.owner)),
                input,
                Resource::SogoDelegation,
            );
            let held = self.identities.lock().unwrap().clone();
            Ok(Observation::new(Default::default(), move |observed| {
                observed.sogo = Some(
                    owners
                        .into_iter()
                        .map(|owner| {
                            let delegate_to = held
                                .iter()
                                .filter(|(o, _)| *o == owner)
                                .map(|(_, d)| d.clone())
                                .collect();
                            (
                                owner,
                                ObservedSogoOwner {
                                    delegate_to,
                                    error: None,
                                },
                            )
                        })
                        .collect(),
                );
            }))
        }

        fn changes<'s>(&self, steps: &[&'s Step], _: &Secrets) -> Changes<'s, Identity> {
            let mut changes = Changes::default();
            for step in steps {
                if let Target::SogoDelegation { owner, delegate } = &step.target {
                    changes.push(step, |id| Identity {
                        id,
                        owner: owner.clone(),
                        delegate: delegate.clone(),
                        grant: step.action == Action::Create,
                    });
                }
            }
            changes
        }

        /// Its own agent, in process.
        async fn apply(&self, changes: Vec<Identity>) -> crate::Result<Applied> {
            let mut held = self.identities.lock().unwrap();
            let results = changes
                .into_iter()
                .map(|change| {
                    let pair = (change.owner, change.delegate);
                    if change.grant {
                        held.insert(pair);
                    } else {
                        held.remove(&pair);
                    }
                    ChangeResult {
                        id: change.id,
                        outcome: Outcome::Applied as i32,
                        ..ChangeResult::default()
                    }
                })
                .collect();
            Ok(Applied {
                results,
                ..Applied::default()
            })
        }

        async fn health(&self) -> crate::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_fourth_target_is_observed_planned_applied_and_recorded() {
        let directory = desk();
        directory.set_members(GROUP, &[1]);
        let webmail = Arc::new(Webmail::default());
        let adapters = Adapters::default()
            .with(Arc::new(EmptyMailcowAgent::adapter()))
            .with(webmail.clone());
        let (engine, _dir) = super::engine(directory, adapters).await;
        let report = engine.run(1, &Subject::All, false).await.unwrap();
        assert_eq!(*webmail.observed.lock().unwrap(), 1, "observed");
        assert_eq!(report.planned, 1, "planned: {report:?}");
        assert!(
            webmail
                .identities
                .lock()
                .unwrap()
                .contains(&(INFO.into(), "alice@example.com".into())),
            "applied"
        );
        let row = engine
            .store()
            .ledger_get("sogo_delegation", &format!("{INFO}|alice@example.com"))
            .await
            .unwrap();
        assert!(
            row.is_some_and(|r| r.state == LedgerState::Created),
            "recorded"
        );
    }
}

/// The real mailcow-agent and nextcloud-agent services, in process over
/// their in-memory targets: an app password and the Nextcloud Mail account
/// that logs in with it, and a re-key that fails and is retried.
mod rekey {
    use std::sync::Arc;
    use std::time::Duration;

    use mailcow_agent::fake::FakeMailcow;
    use nextcloud_agent::config::Server;
    use nextcloud_agent::fake::FakeOcc;
    use reconciler_proto::agent::mailcow_agent_server::MailcowAgentServer;
    use reconciler_proto::agent::nextcloud_agent_server::NextcloudAgentServer;
    use reconciler_proto::mailcow::markers;
    use serde_json::json;

    use super::super::Engine;
    use super::{GROUP, INFO};
    use crate::agents::AgentLink;
    use crate::ledger::LedgerState;
    use crate::subject::Subject;
    use crate::targets::{Adapters, mailcow::Mailcow, nextcloud::Nextcloud};
    use crate::testsuite::FakeDirectory;

    struct World {
        engine: Engine,
        mailcow: Arc<FakeMailcow>,
        occ: Arc<FakeOcc>,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let directory = Arc::new(FakeDirectory::default());
        directory.add_user(1, "alice", "alice@example.com");
        directory.add_group(
            GROUP,
            "desk",
            json!({"reconciler": {"shared_mailbox": INFO, "nextcloud_mail": true}}),
        );
        directory.set_members(GROUP, &[1]);
        let mailcow = Arc::new(FakeMailcow::default());
        mailcow.add_mailbox(INFO);
        mailcow.add_mailbox("alice@example.com");
        let mailcow_agent =
            mailcow_agent::service::MailcowAgent::new(mailcow.clone(), None, Duration::ZERO);
        let occ = Arc::new(FakeOcc::default());
        occ.add_user("alice");
        let server = |port| Server {
            host: "mail.example.com".into(),
            port,
            security: "ssl".into(),
        };
        let nextcloud_agent =
            nextcloud_agent::service::NextcloudAgent::new(nextcloud_agent::occ::Occ::new(
                occ.clone(),
                vec!["php".into(), "occ".into()],
                server(993),
                server(465),
            ));
        let adapters = Adapters::default()
            .with(Arc::new(Mailcow::new(AgentLink::in_process(
                "mailcow-agent",
                MailcowAgentServer::new(mailcow_agent),
            ))))
            .with(Arc::new(Nextcloud::new(AgentLink::in_process(
                "nextcloud-agent",
                NextcloudAgentServer::new(nextcloud_agent),
            ))));
        let (engine, dir) = super::engine(directory, adapters).await;
        World {
            engine,
            mailcow,
            occ,
            _dir: dir,
        }
    }

    impl World {
        /// The account logs in with the app password: one of each, same secret.
        fn account_works(&self) -> bool {
            let name = markers::app_password_name("alice", INFO);
            let secrets = self.mailcow.app_password_secrets(INFO, &name);
            let passwords = self.occ.passwords("alice", INFO);
            secrets.len() == 1 && passwords == secrets && !secrets[0].is_empty()
        }

        async fn account_row(&self) -> Option<LedgerState> {
            let key = crate::ledger::keys::nextcloud_account("alice", INFO);
            let row = self
                .engine
                .store()
                .ledger_get("nextcloud_account", key.as_str());
            row.await.unwrap().map(|r| r.state)
        }

        async fn sweep(&self) -> super::super::RunReport {
            self.engine.run(1, &Subject::All, false).await.unwrap()
        }
    }

    #[tokio::test]
    async fn a_rekey_that_fails_is_retried_until_the_account_works() {
        let w = world().await;
        let report = w.sweep().await;
        assert!(w.account_works(), "{report:?}");
        assert_eq!(w.account_row().await, Some(LedgerState::Created));

        // The app password is deleted by hand; the re-key after its
        // re-creation fails (the container stops under it).
        w.mailcow.delete_app_passwords_by_hand(INFO);
        w.occ.fail_next_updates(1);
        let report = w.sweep().await;
        assert_eq!(
            report.outcomes["nextcloud_account.rekey.transient"], 1,
            "{report:?}"
        );
        assert!(!w.account_works(), "the account still has the old password");
        assert_eq!(
            w.account_row().await,
            Some(LedgerState::Intent),
            "the re-key is owed"
        );

        // The next run rotates the app password and re-keys again.
        let report = w.sweep().await;
        assert_eq!(
            report.outcomes["nextcloud_account.rekey.applied"], 1,
            "{report:?}"
        );
        assert!(w.account_works());
        assert_eq!(w.account_row().await, Some(LedgerState::Created));
        // In sync: nothing more.
        assert_eq!(w.sweep().await.planned, 0);
    }
}

#[tokio::test]
async fn a_run_that_removes_anything_snapshots_the_state_db_first() {
    let w = world().await;
    w.directory.set_members(GROUP, &[1]);
    let report = w.sweep().await;
    assert_eq!(
        report.state_backup, None,
        "a run that only grants: no snapshot"
    );

    w.directory.set_members(GROUP, &[]);
    let report = w.sweep().await;
    assert!(w.delegates().is_empty());
    let snapshot = report.state_backup.expect("a snapshot before the removal");
    // The snapshot is the ledger as it was: alice's delegation still ours.
    let before = Store::open(&format!("sqlite://{snapshot}")).await.unwrap();
    let row = before
        .ledger_get("sogo_delegation", &format!("{INFO}|alice@example.com"))
        .await
        .unwrap();
    assert!(row.is_some_and(|r| r.state == LedgerState::Created));
}

mod incremental_directory;
