//! In-memory fakes of the directory source and of agents, so the engine can
//! run whole reconciles in process: no Authentik, no agent process, no
//! Docker. The fake agents serve their real v2 service in process, so the
//! adapters talk to them through their own typed clients.
//! Enabled for the crate's own tests and, with the `testsuite` feature, for
//! other crates' tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use reconciler_proto::agent::{
    self as pb, ChangeResult, MailcowApplyRequest, MailcowApplyResponse, MailcowObserveRequest,
    MailcowObserveResponse, Outcome, SogoApplyRequest, SogoApplyResponse, SogoObserveRequest,
    SogoObserveResponse, mailcow_agent_server::MailcowAgent,
    mailcow_agent_server::MailcowAgentServer, sogo_agent_server::SogoAgent,
    sogo_agent_server::SogoAgentServer, sogo_change::Kind,
};
use reconciler_runtime::outcome;
use tonic::{Request, Response, Status};

use crate::agents::AgentLink;
use crate::authentik::{DirectorySource, Group, User, UserField};
use crate::error::Result;
use crate::targets::{mailcow::Mailcow, sogo::Sogo};

/// Authentik as a list of users and groups, changed by the test. Every
/// call is recorded (`users`, `user:42`, `group:<uuid>`, …) so tests can
/// pin what a run asked for.
#[derive(Default)]
pub struct FakeDirectory {
    pub users: Mutex<Vec<User>>,
    pub groups: Mutex<Vec<Group>>,
    pub calls: Mutex<Vec<String>>,
    holds: Mutex<BTreeMap<String, Arc<Hold>>>,
}

/// A read the fake holds until the test lets it go. It answers with what
/// it held when the read came in, as a listing that has passed an object
/// answers with what it saw then.
#[derive(Default)]
pub struct Hold {
    /// Notified once the read has come in.
    pub entered: tokio::sync::Notify,
    /// Notify to let the read answer.
    pub release: tokio::sync::Notify,
}

impl FakeDirectory {
    pub fn add_user(&self, pk: i64, username: &str, email: &str) {
        let user = serde_json::from_value(serde_json::json!({
            "pk": pk, "username": username, "email": email,
            "is_active": true, "type": "internal", "attributes": {},
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

    /// The calls made since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.calls))
    }

    /// Holds the next call named `call` (`users`, `group:<uuid>`, …).
    pub fn hold(&self, call: &str) -> Arc<Hold> {
        let hold = Arc::new(Hold::default());
        lock(&self.holds).insert(call.to_owned(), hold.clone());
        hold
    }

    fn record(&self, call: String) {
        lock(&self.calls).push(call);
    }

    /// Answers `answer`, once the test lets a held call go.
    async fn answer<T>(&self, call: &str, answer: T) -> T {
        let hold = lock(&self.holds).remove(call);
        if let Some(hold) = hold {
            hold.entered.notify_one();
            hold.release.notified().await;
        }
        answer
    }

    pub fn set_parents(&self, uuid: &str, parents: &[&str]) {
        for group in lock(&self.groups).iter_mut().filter(|g| g.pk == uuid) {
            group.parents = Some(parents.iter().map(|p| (*p).to_owned()).collect());
        }
    }

    /// Deletes user `pk`, as an admin in Authentik (their memberships go too).
    pub fn remove_user(&self, pk: i64) {
        lock(&self.users).retain(|u| u.pk != pk);
        for group in lock(&self.groups).iter_mut() {
            group.users.retain(|member| *member != pk);
        }
    }

    /// Deactivates (or activates again) user `pk`, as an admin in Authentik.
    pub fn set_active(&self, pk: i64, active: bool) {
        for user in lock(&self.users).iter_mut().filter(|u| u.pk == pk) {
            user.is_active = active;
        }
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
        self.record("users".into());
        let users = lock(&self.users).clone();
        Ok(self.answer("users", users).await)
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        self.record("groups".into());
        Ok(lock(&self.groups).clone())
    }

    async fn user(&self, pk: i64) -> Result<Option<User>> {
        self.record(format!("user:{pk}"));
        Ok(lock(&self.users).iter().find(|u| u.pk == pk).cloned())
    }

    async fn users_by(&self, field: UserField, value: &str) -> Result<Vec<User>> {
        self.record(format!("users_by:{}={value}", field.query_key()));
        Ok(lock(&self.users)
            .iter()
            .filter(|u| match field {
                UserField::Username => u.username == value,
                UserField::Email => u.email == value,
            })
            .cloned()
            .collect())
    }

    async fn group(&self, uuid: &str) -> Result<Option<Group>> {
        let call = format!("group:{uuid}");
        self.record(call.clone());
        let group = lock(&self.groups).iter().find(|g| g.pk == uuid).cloned();
        Ok(self.answer(&call, group).await)
    }

    async fn group_members(&self, uuid: &str) -> Result<Vec<User>> {
        self.record(format!("group_members:{uuid}"));
        let members: Vec<i64> = lock(&self.groups)
            .iter()
            .filter(|g| g.pk == uuid)
            .flat_map(|g| g.users.clone())
            .collect();
        Ok(lock(&self.users)
            .iter()
            .filter(|u| members.contains(&u.pk))
            .cloned()
            .collect())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// A mailcow-agent with nothing to report and nothing to change, served
/// in process: for runs whose groups grant no Mailcow resource.
pub struct EmptyMailcowAgent;

impl EmptyMailcowAgent {
    /// The Mailcow adapter, talking to this agent.
    pub fn adapter() -> Mailcow {
        Mailcow::new(AgentLink::in_process(
            "empty-mailcow-agent",
            MailcowAgentServer::new(Self),
        ))
    }
}

#[tonic::async_trait]
impl MailcowAgent for EmptyMailcowAgent {
    async fn observe(
        &self,
        _request: Request<MailcowObserveRequest>,
    ) -> std::result::Result<Response<MailcowObserveResponse>, Status> {
        Ok(Response::new(MailcowObserveResponse::default()))
    }

    async fn apply(
        &self,
        request: Request<MailcowApplyRequest>,
    ) -> std::result::Result<Response<MailcowApplyResponse>, Status> {
        Err(outcome::status(
            Outcome::Permanent,
            format!("{} unexpected change(s)", request.get_ref().changes.len()),
        ))
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
    /// Holds the next observe, which answers with what was held when it
    /// came in.
    pub hold_observe: Mutex<Option<Arc<Hold>>>,
}

impl FakeSogoAgent {
    /// The SOGo adapter, talking to this agent in process.
    pub fn adapter(self: &Arc<Self>) -> Sogo {
        Sogo::new(AgentLink::in_process(
            "fake-sogo-agent",
            SogoAgentServer::from_arc(self.clone()),
        ))
    }
}

#[tonic::async_trait]
impl SogoAgent for FakeSogoAgent {
    async fn observe(
        &self,
        request: Request<SogoObserveRequest>,
    ) -> std::result::Result<Response<SogoObserveResponse>, Status> {
        let answer = {
            let held = lock(&self.delegate_to);
            SogoObserveResponse {
                delegations: request
                    .get_ref()
                    .owners
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
            }
        };
        let hold = lock(&self.hold_observe).take();
        if let Some(hold) = hold {
            hold.entered.notify_one();
            hold.release.notified().await;
        }
        Ok(Response::new(answer))
    }

    async fn apply(
        &self,
        request: Request<SogoApplyRequest>,
    ) -> std::result::Result<Response<SogoApplyResponse>, Status> {
        let mut results = Vec::new();
        for change in request.into_inner().changes {
            let delegate = match &change.kind {
                Some(Kind::DelegateAdd(c)) => c.delegate.clone(),
                Some(Kind::DelegateRemove(c)) => c.delegate.clone(),
                _ => String::new(),
            };
            if lock(&self.refuse).contains(&delegate) {
                results.push(ChangeResult {
                    id: change.id,
                    outcome: Outcome::Permanent as i32,
                    message: format!("{delegate} refused"),
                    ..ChangeResult::default()
                });
                continue;
            }
            let mut held = lock(&self.delegate_to);
            match change.kind {
                Some(Kind::DelegateAdd(add)) => {
                    held.entry(add.owner).or_default().insert(add.delegate);
                }
                Some(Kind::DelegateRemove(remove)) => {
                    held.entry(remove.owner)
                        .or_default()
                        .remove(&remove.delegate);
                }
                _ => {}
            }
            *lock(&self.writes) += 1;
            results.push(ChangeResult {
                id: change.id,
                outcome: Outcome::Applied as i32,
                ..ChangeResult::default()
            });
        }
        let mut lose = lock(&self.lose_answers);
        if *lose > 0 {
            *lose -= 1;
            return Err(outcome::status(
                Outcome::Transient,
                "connection reset after the write",
            ));
        }
        Ok(Response::new(SogoApplyResponse { results }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
