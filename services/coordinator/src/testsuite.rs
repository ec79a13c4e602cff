//! In-memory fakes of the directory source and of agents, so the engine can
//! run whole reconciles in process: no Authentik, no agent, no Docker.
//! Enabled for the crate's own tests and, with the `testsuite` feature, for
//! other crates' tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use reconciler_proto::agent::{
    self as pb, ApplyRequest, ApplyResponse, ObserveRequest, ObserveResponse, Outcome, change::Kind,
};

use crate::agents::AgentBackend;
use crate::authentik::{DirectorySource, Group, User};
use crate::error::{Error, Result};

/// Authentik as a list of users and groups, changed by the test.
#[derive(Default)]
pub struct FakeDirectory {
    pub users: Mutex<Vec<User>>,
    pub groups: Mutex<Vec<Group>>,
}

impl FakeDirectory {
    pub fn add_user(&self, pk: i64, username: &str, email: &str) {
        let user = serde_json::from_value(serde_json::json!({
            "pk": pk, "username": username, "email": email,
            "is_active": true, "type": "internal",
        }))
        .expect("a user");
        lock(&self.users).push(user);
    }

    pub fn add_group(&self, uuid: &str, name: &str, attributes: serde_json::Value) {
        let group = serde_json::from_value(serde_json::json!({
            "pk": uuid, "name": name, "users": [], "attributes": attributes,
        }))
        .expect("a group");
        lock(&self.groups).push(group);
    }

    pub fn set_members(&self, uuid: &str, members: &[i64]) {
        for group in lock(&self.groups).iter_mut().filter(|g| g.pk == uuid) {
            group.users = members.to_vec();
        }
        for user in lock(&self.users).iter_mut() {
            user.groups.retain(|g| g != uuid);
            if members.contains(&user.pk) {
                user.groups.push(uuid.to_owned());
            }
        }
    }
}

#[async_trait::async_trait]
impl DirectorySource for FakeDirectory {
    async fn users(&self) -> Result<Vec<User>> {
        Ok(lock(&self.users).clone())
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        Ok(lock(&self.groups).clone())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// An agent with nothing to report and nothing to change: a mailcow-agent
/// for runs whose groups grant no Mailcow resource.
pub struct EmptyAgent;

#[async_trait::async_trait]
impl AgentBackend for EmptyAgent {
    fn name(&self) -> &str {
        "empty-agent"
    }

    async fn observe(&self, _request: ObserveRequest) -> Result<ObserveResponse> {
        Ok(ObserveResponse::default())
    }

    async fn apply(&self, request: ApplyRequest) -> Result<ApplyResponse> {
        Err(Error::Agent {
            agent: self.name().into(),
            outcome: Outcome::Permanent,
            message: format!("{} unexpected change(s)", request.changes.len()),
        })
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// SOGo delegation held in memory: `owner → delegates`, with the writes
/// counted. `lose_answers` makes the next applies take effect but fail in
/// transport, as when an agent crashes after writing.
#[derive(Default)]
pub struct FakeSogoAgent {
    pub delegate_to: Mutex<BTreeMap<String, BTreeSet<String>>>,
    pub writes: Mutex<u64>,
    pub lose_answers: Mutex<u32>,
    /// Delegates whose changes fail permanently (a partially failed batch).
    pub refuse: Mutex<BTreeSet<String>>,
}

#[async_trait::async_trait]
impl AgentBackend for FakeSogoAgent {
    fn name(&self) -> &str {
        "fake-sogo-agent"
    }

    async fn observe(&self, request: ObserveRequest) -> Result<ObserveResponse> {
        let held = lock(&self.delegate_to);
        Ok(ObserveResponse {
            sogo_delegations: request
                .sogo_owners
                .iter()
                .map(|owner| pb::SogoDelegationState {
                    owner: owner.clone(),
                    delegate_to: held
                        .get(owner)
                        .map(|d| d.iter().cloned().collect())
                        .unwrap_or_default(),
                    error: String::new(),
                })
                .collect(),
            ..ObserveResponse::default()
        })
    }

    async fn apply(&self, request: ApplyRequest) -> Result<ApplyResponse> {
        let mut results = Vec::new();
        for change in request.changes {
            let delegate = match &change.kind {
                Some(Kind::SogoDelegateAdd(c)) => c.delegate.clone(),
                Some(Kind::SogoDelegateRemove(c)) => c.delegate.clone(),
                _ => String::new(),
            };
            if lock(&self.refuse).contains(&delegate) {
                results.push(pb::ChangeResult {
                    id: change.id,
                    outcome: Outcome::Permanent as i32,
                    message: format!("{delegate} refused"),
                    ..pb::ChangeResult::default()
                });
                continue;
            }
            let mut held = lock(&self.delegate_to);
            match change.kind {
                Some(Kind::SogoDelegateAdd(add)) => {
                    held.entry(add.owner).or_default().insert(add.delegate);
                }
                Some(Kind::SogoDelegateRemove(remove)) => {
                    held.entry(remove.owner)
                        .or_default()
                        .remove(&remove.delegate);
                }
                _ => {}
            }
            *lock(&self.writes) += 1;
            results.push(pb::ChangeResult {
                id: change.id,
                outcome: Outcome::Applied as i32,
                ..pb::ChangeResult::default()
            });
        }
        let mut lose = lock(&self.lose_answers);
        if *lose > 0 {
            *lose -= 1;
            return Err(Error::Agent {
                agent: self.name().into(),
                outcome: Outcome::Transient,
                message: "connection reset after the write".into(),
            });
        }
        Ok(ApplyResponse {
            results,
            ..ApplyResponse::default()
        })
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
