//! The agent contract's failure classes, the same from every agent: one
//! case (an object that is not ours, a target that is down, a target that
//! is misconfigured, a caller with the wrong token) is one class whichever
//! agent meets it, both as the agent reports it (a change's outcome, a
//! call's gRPC code) and as the coordinator reads it.
//!
//! Each agent runs in process: its own service, served by the runtime's
//! agent server on a free port, over an in-memory target (each agent's
//! `fake` module), called over a real gRPC channel.

// A test file: helpers here may unwrap, a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coordinator::agents::{AgentBackend, GrpcAgent};
use reconciler_proto::agent::change::Kind;
use reconciler_proto::agent::{
    AliasCreate, AliasDelete, ApplyRequest, Change, NextcloudAccountCreate, NextcloudAccountDelete,
    ObserveRequest, ObserveResponse, Outcome, SogoDelegateAdd, agent_client::AgentClient,
    agent_server::AgentServer,
};
use reconciler_runtime::agent::{AgentEndpoint, AgentService, bind_agent};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::exec::{ExecError, ExecOutput};
use reconciler_runtime::listen::ConnectionLimits;
use reconciler_runtime::outcome;
use reconciler_runtime::secrets::Secret;
use tokio::sync::oneshot;
use tonic::Code;

const TOKEN: &str = "the-agent-token";

/// What a test makes of an agent's target.
#[derive(Clone, Copy, Debug)]
enum Trouble {
    /// Unreachable: connection refused, container stopped.
    Down,
    /// Reachable, but rejects the agent's credentials or setup.
    Misconfigured,
}

/// One agent, served, with the cases every agent is asked.
struct Subject {
    name: &'static str,
    addr: SocketAddr,
    /// A change of the agent's own kind that a healthy target applies.
    applies: Kind,
    /// A change to an object on the target that is not ours; `None` where
    /// the target has no mark of ownership for the agent to check.
    not_ours: Option<NotOurs>,
    /// An observation that has to read the target.
    observe: ObserveRequest,
    /// Where a target that cannot be read shows in an observation that
    /// otherwise succeeds; `None`: the whole call fails.
    reported_inside: Option<fn(&ObserveResponse) -> Outcome>,
    trouble: Box<dyn Fn(Trouble) + Send + Sync>,
    _stop: oneshot::Sender<()>,
}

/// An object someone else made, and a change that would touch it.
struct NotOurs {
    change: Kind,
    still_there: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Serves `service` as the agent `name` does in production, on a free port.
async fn serve<S: AgentService>(name: &'static str, service: S) -> (SocketAddr, oneshot::Sender<()>)
where
    S::Future: Send + 'static,
{
    let endpoint = AgentEndpoint {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: Secret::new(TOKEN),
        limits: ConnectionLimits::grpc_from_lookup(|_| None).unwrap(),
    };
    let bound = bind_agent(name, service, endpoint).await.unwrap();
    let addr = bound.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn mailcow() -> Subject {
    use mailcow_agent::error::Error;
    use mailcow_agent::fake::FakeMailcow;

    let target = Arc::new(FakeMailcow::default());
    target.add_mailbox("alice@example.org");
    let by_hand = target.add_alias("sales@example.org", &["alice@example.org"], "made by hand");
    let agent = mailcow_agent::service::MailcowAgent::new(target.clone(), None, Duration::ZERO);
    let (addr, stop) = serve("mailcow-agent", AgentServer::new(agent)).await;
    Subject {
        name: "mailcow-agent",
        addr,
        applies: Kind::AliasCreate(AliasCreate {
            address: "team@example.org".into(),
            goto: vec!["alice@example.org".into()],
        }),
        not_ours: Some(NotOurs {
            change: Kind::AliasDelete(AliasDelete {
                id: by_hand,
                address: "sales@example.org".into(),
            }),
            still_there: Box::new({
                let target = target.clone();
                move || target.aliases_now().iter().any(|a| a.id == by_hand)
            }),
        }),
        observe: ObserveRequest {
            aliases: true,
            ..Default::default()
        },
        reported_inside: None,
        trouble: Box::new(move |trouble| match trouble {
            Trouble::Down => target.fail_with(|| Error::Unavailable("connection refused".into())),
            Trouble::Misconfigured => target.fail_with(|| Error::Unauthorized {
                status: 401,
                message: "API key invalid".into(),
            }),
        }),
        _stop: stop,
    }
}

async fn sogo() -> Subject {
    use sogo_agent::error::Error;
    use sogo_agent::fake::{FakeCache, FakeProfiles};

    let target = Arc::new(FakeProfiles::default());
    let agent = sogo_agent::service::SogoAgent::new(target.clone(), Arc::new(FakeCache));
    let (addr, stop) = serve("sogo-agent", AgentServer::new(agent)).await;
    Subject {
        name: "sogo-agent",
        addr,
        applies: Kind::SogoDelegateAdd(SogoDelegateAdd {
            owner: "info@example.org".into(),
            delegate: "alice@example.org".into(),
        }),
        // Delegations carry no marker: the coordinator's ledger alone
        // knows which are ours, so the agent has nothing to refuse on.
        not_ours: None,
        observe: ObserveRequest {
            sogo_owners: vec!["info@example.org".into()],
            ..Default::default()
        },
        reported_inside: None,
        trouble: Box::new(move |trouble| match trouble {
            Trouble::Down => target.fail_with(|| Error::Unavailable("connection refused".into())),
            Trouble::Misconfigured => target.fail_with(|| {
                Error::Config(
                    "Access denied for user 'sogo'@'10.0.0.5' (using password: YES)".into(),
                )
            }),
        }),
        _stop: stop,
    }
}

/// What occ prints when run as a user other than config.php's owner.
const OCC_RUN_AS_ANOTHER_USER: &str = "Console has to be executed with the user that owns \
     the file config/config.php\nCurrent user id: 0";

async fn nextcloud() -> Subject {
    use nextcloud_agent::config::Server;
    use nextcloud_agent::fake::FakeOcc;

    let target = Arc::new(FakeOcc::default());
    target.add_user("alice");
    let provisioned = target.add_account("alice", "alice@corp.example.org", true);
    let server = |host: &str, port| Server {
        host: host.into(),
        port,
        security: "ssl".into(),
    };
    let occ = nextcloud_agent::occ::Occ::new(
        target.clone(),
        vec!["php".into(), "occ".into()],
        server("imap.example.org", 993),
        server("smtp.example.org", 465),
    );
    let agent = nextcloud_agent::service::NextcloudAgent::new(occ);
    let (addr, stop) = serve("nextcloud-agent", AgentServer::new(agent)).await;
    Subject {
        name: "nextcloud-agent",
        addr,
        applies: Kind::NextcloudAccountCreate(NextcloudAccountCreate {
            user: "alice".into(),
            email: "alice@example.org".into(),
            name: String::new(),
            login: "alice@example.org".into(),
            password: "app-password".into(),
        }),
        not_ours: Some(NotOurs {
            change: Kind::NextcloudAccountDelete(NextcloudAccountDelete {
                user: "alice".into(),
                id: provisioned,
                email: "alice@corp.example.org".into(),
            }),
            still_there: Box::new({
                let target = target.clone();
                move || target.account_ids("alice").contains(&provisioned)
            }),
        }),
        observe: ObserveRequest {
            nextcloud_users: vec!["alice".into()],
            ..Default::default()
        },
        reported_inside: Some(|response| response.nextcloud_outcome()),
        trouble: Box::new(move |trouble| match trouble {
            Trouble::Down => target.fail_with(|| {
                Err(ExecError::Unavailable(
                    "docker exec in nextcloud: container is not running".into(),
                ))
            }),
            Trouble::Misconfigured => target.fail_with(|| {
                Ok(ExecOutput {
                    stdout: OCC_RUN_AS_ANOTHER_USER.into(),
                    stderr: String::new(),
                    exit_code: 1,
                })
            }),
        }),
        _stop: stop,
    }
}

async fn every_agent() -> [Subject; 3] {
    [mailcow().await, sogo().await, nextcloud().await]
}

impl Subject {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The agent as the coordinator drives it.
    fn coordinator_side(&self, token: &str) -> GrpcAgent {
        let timeout = Duration::from_secs(10);
        GrpcAgent::connect(self.name, &self.url(), timeout, &Secret::new(token)).unwrap()
    }

    /// The agent as any gRPC client sees it: codes, not classes.
    async fn client(
        &self,
        token: &str,
    ) -> AgentClient<
        tonic::service::interceptor::InterceptedService<tonic::transport::Channel, SendToken>,
    > {
        let channel = tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        AgentClient::with_interceptor(channel, SendToken::new(Secret::new(token)))
    }

    /// The outcome of `change` applied alone.
    async fn apply(&self, change: Kind) -> Outcome {
        let request = ApplyRequest {
            changes: vec![Change {
                id: "c1".into(),
                kind: Some(change),
            }],
            dry_run: false,
        };
        let response = self.coordinator_side(TOKEN).apply(request).await;
        let results = response
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
            .results;
        assert_eq!(results.len(), 1, "{}: {results:?}", self.name);
        results[0].outcome()
    }

    /// The class of an observation that fails, as the coordinator reads it;
    /// a whole call that fails must also carry the table's code.
    async fn failed_observation(&self) -> Outcome {
        match self.reported_inside {
            Some(outcome_inside) => {
                let response = self
                    .coordinator_side(TOKEN)
                    .observe(self.observe.clone())
                    .await;
                let response = response.unwrap_or_else(|e| panic!("{}: {e}", self.name));
                outcome_inside(&response)
            }
            None => {
                let status = self
                    .client(TOKEN)
                    .await
                    .observe(self.observe.clone())
                    .await
                    .expect_err(self.name);
                let read = self
                    .coordinator_side(TOKEN)
                    .observe(self.observe.clone())
                    .await;
                let class = read.expect_err(self.name).outcome();
                assert_eq!(
                    status.code(),
                    outcome::code(class),
                    "{}: {status:?}",
                    self.name
                );
                class
            }
        }
    }
}

#[tokio::test]
async fn a_change_each_agent_owns_is_applied() {
    for agent in every_agent().await {
        assert_eq!(
            agent.apply(agent.applies.clone()).await,
            Outcome::Applied,
            "{}",
            agent.name
        );
    }
}

#[tokio::test]
async fn an_object_that_is_not_ours_is_refused_by_every_agent_that_can_tell() {
    let mut asked = Vec::new();
    for agent in every_agent().await {
        let Some(not_ours) = &agent.not_ours else {
            continue;
        };
        assert_eq!(
            agent.apply(not_ours.change.clone()).await,
            Outcome::Refused,
            "{}",
            agent.name
        );
        assert!((not_ours.still_there)(), "{}", agent.name);
        asked.push(agent.name);
    }
    assert_eq!(asked, ["mailcow-agent", "nextcloud-agent"]);
}

#[tokio::test]
async fn a_target_that_is_down_is_transient_from_every_agent() {
    for agent in every_agent().await {
        (agent.trouble)(Trouble::Down);
        assert_eq!(
            agent.apply(agent.applies.clone()).await,
            Outcome::Transient,
            "{}",
            agent.name
        );
        assert_eq!(
            agent.failed_observation().await,
            Outcome::Transient,
            "{}",
            agent.name
        );
    }
}

#[tokio::test]
async fn a_misconfigured_target_is_a_config_error_from_every_agent() {
    for agent in every_agent().await {
        (agent.trouble)(Trouble::Misconfigured);
        assert_eq!(
            agent.apply(agent.applies.clone()).await,
            Outcome::Config,
            "{}",
            agent.name
        );
        assert_eq!(
            agent.failed_observation().await,
            Outcome::Config,
            "{}",
            agent.name
        );
    }
}

#[tokio::test]
async fn a_coordinator_with_the_wrong_token_is_a_config_error_at_every_agent() {
    for agent in every_agent().await {
        let status = agent
            .client("not-the-token")
            .await
            .observe(agent.observe.clone())
            .await
            .expect_err(agent.name);
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{}: {status:?}",
            agent.name
        );
        let read = agent
            .coordinator_side("not-the-token")
            .observe(agent.observe.clone())
            .await;
        let error = read.expect_err(agent.name);
        assert!(
            matches!(error, coordinator::Error::Config(_)),
            "{}: {error}",
            agent.name
        );
        assert!(!error.is_transient(), "{}: {error}", agent.name);
    }
}

#[tokio::test]
async fn every_agent_answers_health_without_a_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    for agent in every_agent().await {
        let channel = tonic::transport::Endpoint::from_shared(agent.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let check = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", agent.name));
        assert_eq!(
            check.into_inner().status(),
            ServingStatus::Serving,
            "{}",
            agent.name
        );
        // The coordinator's own check goes the same way.
        let health = agent.coordinator_side("not-the-token").health().await;
        health.unwrap_or_else(|e| panic!("{}: {e}", agent.name));
    }
}

#[test]
fn every_agents_errors_become_statuses_by_the_one_table() {
    use mailcow_agent::error::Error as Mailcow;
    use nextcloud_agent::error::Error as Nextcloud;
    use sogo_agent::error::Error as Sogo;

    let text = || "why".to_owned();
    let cases: Vec<(&str, Outcome, tonic::Status)> = vec![
        (
            "mailcow-agent",
            Outcome::Transient,
            Mailcow::TimedOut(text()).into(),
        ),
        (
            "mailcow-agent",
            Outcome::Permanent,
            Mailcow::Protocol {
                call: text(),
                detail: text(),
            }
            .into(),
        ),
        (
            "mailcow-agent",
            Outcome::Refused,
            Mailcow::Refused(text()).into(),
        ),
        (
            "mailcow-agent",
            Outcome::Config,
            Mailcow::Unauthorized {
                status: 403,
                message: text(),
            }
            .into(),
        ),
        ("sogo-agent", Outcome::Transient, Sogo::Cache(text()).into()),
        (
            "sogo-agent",
            Outcome::Permanent,
            Sogo::CorruptSettings {
                uid: text(),
                detail: text(),
            }
            .into(),
        ),
        ("sogo-agent", Outcome::Config, Sogo::Config(text()).into()),
        (
            "nextcloud-agent",
            Outcome::Transient,
            Nextcloud::Unavailable(text()).into(),
        ),
        (
            "nextcloud-agent",
            Outcome::Permanent,
            Nextcloud::Protocol(text()).into(),
        ),
        (
            "nextcloud-agent",
            Outcome::Refused,
            Nextcloud::Refused(text()).into(),
        ),
        (
            "nextcloud-agent",
            Outcome::Config,
            Nextcloud::Config(text()).into(),
        ),
    ];
    for (agent, class, status) in cases {
        assert_eq!(status.code(), outcome::code(class), "{agent}: {status:?}");
        assert_eq!(outcome::of_status(&status), class, "{agent}: {status:?}");
    }
}
