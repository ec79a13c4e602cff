//! The agent contracts' failure classes, the same from every agent: one
//! case (an object that is not ours, a target that is down, a target that
//! is misconfigured, a caller with the wrong token) is one class whichever
//! agent meets it, both as the agent reports it (a change's outcome, a
//! call's gRPC code) and as the coordinator reads it.
//!
//! Each agent runs in process: its own v2 service, served by the runtime's
//! agent server on a free port, over an in-memory target (each agent's
//! `fake` module), called over a real gRPC channel by the coordinator's
//! adapter for it.

// A test file: helpers here may unwrap, a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coordinator::agents::AgentLink;
use coordinator::targets::TargetAdapter;
use coordinator::targets::{
    mailcow::Mailcow,
    matrix::{Matrix, MatrixIdentities},
    nextcloud::Nextcloud,
    sogo::Sogo,
    stalwart::Stalwart,
};
use futures::future::BoxFuture;
use reconciler_proto::agent::{
    AliasCreate, AliasDelete, ChangeResult, MailcowChange, MailcowObserveRequest, MatrixChange,
    MatrixInvite, MatrixObserveRequest, NextcloudAccountCreate, NextcloudAccountDelete,
    NextcloudChange, NextcloudObserveRequest, Outcome, SogoChange, SogoDelegateAdd,
    SogoObserveRequest, mailcow_agent_client::MailcowAgentClient,
    mailcow_agent_server::MailcowAgentServer, mailcow_change,
    matrix_agent_client::MatrixAgentClient, matrix_agent_server::MatrixAgentServer, matrix_change,
    nextcloud_agent_client::NextcloudAgentClient, nextcloud_agent_server::NextcloudAgentServer,
    nextcloud_change, sogo_agent_client::SogoAgentClient, sogo_agent_server::SogoAgentServer,
    sogo_change,
};
use reconciler_proto::agent::{
    StalwartAccountCreate, StalwartAccountDestroy, StalwartAccountType, StalwartChange,
    StalwartObserveRequest, stalwart_agent_client::StalwartAgentClient,
    stalwart_agent_server::StalwartAgentServer, stalwart_change,
};
use reconciler_runtime::agent::{AgentEndpoint, AgentService, bind_agent};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::exec::{ExecError, ExecOutput};
use reconciler_runtime::listen::ConnectionLimits;
use reconciler_runtime::outcome;
use reconciler_runtime::secrets::Secret;
use reconciler_runtime::tls::{ClientTransport, ServerTransport};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const TOKEN: &str = "the-agent-token";

/// What a test makes of an agent's target.
#[derive(Clone, Copy, Debug)]
enum Trouble {
    /// Unreachable: connection refused, container stopped.
    Down,
    /// Reachable, but rejects the agent's credentials or setup.
    Misconfigured,
}

/// Which of an agent's changes to send.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// A change of the agent's own kind that a healthy target applies.
    Applies,
    /// A change to an object on the target that is not ours.
    NotOurs,
}

/// The answer of a call as the coordinator reads it.
type Read<T> = BoxFuture<'static, coordinator::Result<T>>;

/// One agent, served, with the cases every agent is asked. Each agent has
/// its own messages, so each case is a function of the agent's own types.
struct Subject {
    name: &'static str,
    addr: SocketAddr,
    /// Sends the case's change alone through the coordinator's adapter,
    /// with the given token.
    apply: Box<dyn Fn(String, Case) -> Read<Vec<ChangeResult>> + Send + Sync>,
    /// Whether the agent has a not-ours case: `None` where the target has no
    /// mark of ownership for the agent to check; otherwise whether the
    /// object is still there.
    not_ours_still_there: Option<Box<dyn Fn() -> bool + Send + Sync>>,
    /// An observation that has to read the target, through the adapter with
    /// the given token: the class of a target reported unreadable inside an
    /// answer that otherwise succeeds, if any.
    observe: Box<dyn Fn(String) -> Read<Option<Outcome>> + Send + Sync>,
    /// The same observation from a plain gRPC client: codes, not classes.
    observe_plainly:
        Box<dyn Fn(String) -> BoxFuture<'static, Result<(), tonic::Status>> + Send + Sync>,
    trouble: Box<dyn Fn(Trouble) + Send + Sync>,
    _stop: oneshot::Sender<()>,
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
        // The contract is the same over either transport; mutual TLS has
        // its own end-to-end suite (tests/e2e/suite/mtls.rs).
        transport: ServerTransport::Insecure,
        health_listen: None,
    };
    let bound = bind_agent(name, service, endpoint).await.unwrap();
    let addr = bound.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The agent as the coordinator reaches it.
fn link(name: &str, addr: SocketAddr, token: &str) -> AgentLink {
    AgentLink::connect(
        name,
        &url(addr),
        Duration::from_secs(10),
        &Secret::new(token),
        &ClientTransport::Insecure,
    )
    .unwrap()
}

/// A channel as any gRPC client opens it, sending `token`.
async fn plain_channel(addr: SocketAddr, token: &str) -> InterceptedService<Channel, SendToken> {
    let channel = tonic::transport::Endpoint::from_shared(url(addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    InterceptedService::new(channel, SendToken::new(Secret::new(token)))
}

async fn mailcow() -> Subject {
    use mailcow_agent::error::Error;
    use mailcow_agent::fake::FakeMailcow;
    use mailcow_change::Kind;

    const NAME: &str = "mailcow-agent";
    let target = Arc::new(FakeMailcow::default());
    target.add_mailbox("alice@example.org");
    let by_hand = target.add_alias("sales@example.org", &["alice@example.org"], "made by hand");
    let agent = mailcow_agent::service::MailcowAgent::new(target.clone(), None, Duration::ZERO);
    let (addr, stop) = serve(NAME, MailcowAgentServer::new(agent)).await;
    let request = || MailcowObserveRequest {
        aliases: true,
        ..Default::default()
    };
    Subject {
        name: NAME,
        addr,
        apply: Box::new(move |token, case| {
            let kind = match case {
                Case::Applies => Kind::AliasCreate(AliasCreate {
                    address: "team@example.org".into(),
                    goto: vec!["alice@example.org".into()],
                }),
                Case::NotOurs => Kind::AliasDelete(AliasDelete {
                    id: by_hand,
                    address: "sales@example.org".into(),
                }),
            };
            let adapter = Mailcow::new(link(NAME, addr, &token));
            Box::pin(async move {
                let change = MailcowChange {
                    id: "c1".into(),
                    kind: Some(kind),
                };
                Ok(TargetAdapter::apply(&adapter, vec![change]).await?.results)
            })
        }),
        not_ours_still_there: Some(Box::new({
            let target = target.clone();
            move || target.aliases_now().iter().any(|a| a.id == by_hand)
        })),
        observe: Box::new(move |token| {
            let adapter = Mailcow::new(link(NAME, addr, &token));
            Box::pin(async move {
                adapter.observe_agent(request()).await?;
                Ok(None)
            })
        }),
        observe_plainly: Box::new(move |token| {
            Box::pin(async move {
                let mut client = MailcowAgentClient::new(plain_channel(addr, &token).await);
                client.observe(request()).await.map(drop)
            })
        }),
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
    use sogo_change::Kind;

    const NAME: &str = "sogo-agent";
    let target = Arc::new(FakeProfiles::default());
    let agent = sogo_agent::service::SogoAgent::new(target.clone(), Arc::new(FakeCache));
    let (addr, stop) = serve(NAME, SogoAgentServer::new(agent)).await;
    let request = || SogoObserveRequest {
        owners: vec!["info@example.org".into()],
    };
    Subject {
        name: NAME,
        addr,
        apply: Box::new(move |token, case| {
            // Delegations carry no marker: the coordinator's ledger alone
            // knows which are ours, so the agent has nothing to refuse on.
            assert!(matches!(case, Case::Applies), "SOGo has no not-ours case");
            let adapter = Sogo::new(link(NAME, addr, &token));
            Box::pin(async move {
                let change = SogoChange {
                    id: "c1".into(),
                    kind: Some(Kind::DelegateAdd(SogoDelegateAdd {
                        owner: "info@example.org".into(),
                        delegate: "alice@example.org".into(),
                    })),
                };
                Ok(TargetAdapter::apply(&adapter, vec![change]).await?.results)
            })
        }),
        not_ours_still_there: None,
        observe: Box::new(move |token| {
            let adapter = Sogo::new(link(NAME, addr, &token));
            Box::pin(async move {
                adapter.observe_agent(request()).await?;
                Ok(None)
            })
        }),
        observe_plainly: Box::new(move |token| {
            Box::pin(async move {
                let mut client = SogoAgentClient::new(plain_channel(addr, &token).await);
                client.observe(request()).await.map(drop)
            })
        }),
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
    use nextcloud_change::Kind;

    const NAME: &str = "nextcloud-agent";
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
    let (addr, stop) = serve(NAME, NextcloudAgentServer::new(agent)).await;
    let request = || NextcloudObserveRequest {
        users: vec!["alice".into()],
    };
    Subject {
        name: NAME,
        addr,
        apply: Box::new(move |token, case| {
            let kind = match case {
                Case::Applies => Kind::AccountCreate(NextcloudAccountCreate {
                    user: "alice".into(),
                    email: "alice@example.org".into(),
                    name: String::new(),
                    login: "alice@example.org".into(),
                    password: "app-password".into(),
                }),
                Case::NotOurs => Kind::AccountDelete(NextcloudAccountDelete {
                    user: "alice".into(),
                    id: provisioned,
                    email: "alice@corp.example.org".into(),
                }),
            };
            let adapter = Nextcloud::new(link(NAME, addr, &token));
            Box::pin(async move {
                let change = NextcloudChange {
                    id: "c1".into(),
                    kind: Some(kind),
                };
                Ok(TargetAdapter::apply(&adapter, vec![change]).await?.results)
            })
        }),
        not_ours_still_there: Some(Box::new({
            let target = target.clone();
            move || target.account_ids("alice").contains(&provisioned)
        })),
        // Nextcloud that cannot be read is reported inside the answer.
        observe: Box::new(move |token| {
            let adapter = Nextcloud::new(link(NAME, addr, &token));
            Box::pin(async move {
                let response = adapter.observe_agent(request()).await?;
                Ok(response.unavailable.map(|u| u.outcome()))
            })
        }),
        observe_plainly: Box::new(move |token| {
            Box::pin(async move {
                let mut client = NextcloudAgentClient::new(plain_channel(addr, &token).await);
                client.observe(request()).await.map(drop)
            })
        }),
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

async fn matrix() -> Subject {
    use matrix_agent::error::Error;
    use matrix_agent::fake::FakeMatrix;
    use matrix_change::Kind;

    const NAME: &str = "matrix-agent";
    const ROOM: &str = "!team:example.org";
    const ALICE: &str = "@alice:example.org";
    let target = Arc::new(FakeMatrix::new("@reconciler:example.org"));
    target.add_room(ROOM, Some("#team:example.org"));
    target.add_account(ALICE);
    let agent = matrix_agent::service::MatrixAgent::new(target.clone());
    let (addr, stop) = serve(NAME, MatrixAgentServer::new(agent)).await;
    let request = || MatrixObserveRequest {
        rooms: vec!["#team:example.org".into()],
        users: vec![ALICE.into()],
        ..MatrixObserveRequest::default()
    };
    let adapter =
        move |token: &str| Matrix::new(link(NAME, addr, token), MatrixIdentities::default());
    Subject {
        name: NAME,
        addr,
        apply: Box::new(move |token, case| {
            // Room memberships carry no marker: the coordinator's ledger
            // alone knows which are ours, so the agent has nothing to refuse on.
            assert!(matches!(case, Case::Applies), "Matrix has no not-ours case");
            let adapter = adapter(&token);
            Box::pin(async move {
                let change = MatrixChange {
                    id: "c1".into(),
                    kind: Some(Kind::Invite(MatrixInvite {
                        room: ROOM.into(),
                        user_id: ALICE.into(),
                        reason: String::new(),
                    })),
                };
                Ok(TargetAdapter::apply(&adapter, vec![change]).await?.results)
            })
        }),
        not_ours_still_there: None,
        // Synapse that cannot be asked is reported inside the answer.
        observe: Box::new(move |token| {
            let adapter = adapter(&token);
            Box::pin(async move {
                let response = adapter.observe_agent(request()).await?;
                Ok(response.unavailable.map(|u| u.outcome()))
            })
        }),
        observe_plainly: Box::new(move |token| {
            Box::pin(async move {
                let mut client = MatrixAgentClient::new(plain_channel(addr, &token).await);
                client.observe(request()).await.map(drop)
            })
        }),
        trouble: Box::new(move |trouble| match trouble {
            Trouble::Down => target.fail_with(|| {
                Error::Transient("GET whoami: cannot connect: connection refused".into())
            }),
            Trouble::Misconfigured => target.fail_with(|| {
                Error::Config("401 M_UNKNOWN_TOKEN: Invalid access token passed.".into())
            }),
        }),
        _stop: stop,
    }
}

async fn stalwart() -> Subject {
    use stalwart_agent::error::Error;
    use stalwart_agent::fake::FakeStalwart;
    use stalwart_change::Kind;

    const NAME: &str = "stalwart-agent";
    let target = Arc::new(FakeStalwart::new());
    target.add_domain("example.org");
    // A person's account at the address; the coordinator recorded another
    // id for it (ours was destroyed and the address reused).
    target.add_user("alice@example.org");
    let agent = stalwart_agent::service::StalwartAgent::new(target.clone());
    let (addr, stop) = serve(NAME, StalwartAgentServer::new(agent)).await;
    let request = || StalwartObserveRequest {
        domains: vec!["example.org".into()],
        accounts: vec!["alice@example.org".into()],
        lists: Vec::new(),
    };
    Subject {
        name: NAME,
        addr,
        apply: Box::new(move |token, case| {
            let kind = match case {
                Case::Applies => Kind::AccountCreate(StalwartAccountCreate {
                    address: "bob@example.org".into(),
                    r#type: StalwartAccountType::User as i32,
                    ..Default::default()
                }),
                Case::NotOurs => Kind::AccountDestroy(StalwartAccountDestroy {
                    address: "alice@example.org".into(),
                    expected_id: "the-id-we-recorded".into(),
                }),
            };
            let adapter = Stalwart::new(link(NAME, addr, &token));
            Box::pin(async move {
                let change = StalwartChange {
                    id: "c1".into(),
                    kind: Some(kind),
                };
                Ok(TargetAdapter::apply(&adapter, vec![change]).await?.results)
            })
        }),
        not_ours_still_there: Some(Box::new({
            let target = target.clone();
            move || target.account("alice@example.org").is_some()
        })),
        // Stalwart that cannot be read is reported inside the answer.
        observe: Box::new(move |token| {
            let adapter = Stalwart::new(link(NAME, addr, &token));
            Box::pin(async move {
                let response = adapter.observe_agent(request()).await?;
                Ok(response.unavailable.map(|u| u.outcome()))
            })
        }),
        observe_plainly: Box::new(move |token| {
            Box::pin(async move {
                let mut client = StalwartAgentClient::new(plain_channel(addr, &token).await);
                client.observe(request()).await.map(drop)
            })
        }),
        trouble: Box::new(move |trouble| match trouble {
            Trouble::Down => target.break_with(|| {
                Error::Transient("error sending request: connection refused".into())
            }),
            Trouble::Misconfigured => target.break_with(|| {
                Error::Config(
                    "Stalwart refused the credentials (401): check STALWART_API_KEY".into(),
                )
            }),
        }),
        _stop: stop,
    }
}

async fn every_agent() -> [Subject; 5] {
    [
        mailcow().await,
        sogo().await,
        nextcloud().await,
        matrix().await,
        stalwart().await,
    ]
}

impl Subject {
    /// The outcome of the case's change applied alone.
    async fn apply(&self, case: Case) -> Outcome {
        let results = (self.apply)(TOKEN.into(), case)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name));
        assert_eq!(results.len(), 1, "{}: {results:?}", self.name);
        assert_eq!(results[0].id, "c1", "{}", self.name);
        results[0].outcome()
    }

    /// The class of an observation that fails, as the coordinator reads it;
    /// a whole call that fails must also carry the table's code.
    async fn failed_observation(&self) -> Outcome {
        match (self.observe)(TOKEN.into()).await {
            Ok(Some(inside)) => inside,
            Ok(None) => panic!("{}: the observation did not fail", self.name),
            Err(read) => {
                let class = read.outcome();
                let status = (self.observe_plainly)(TOKEN.into())
                    .await
                    .expect_err(self.name);
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

    fn url(&self) -> String {
        url(self.addr)
    }
}

#[tokio::test]
async fn a_change_each_agent_owns_is_applied() {
    for agent in every_agent().await {
        assert_eq!(
            agent.apply(Case::Applies).await,
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
        let Some(still_there) = &agent.not_ours_still_there else {
            continue;
        };
        assert_eq!(
            agent.apply(Case::NotOurs).await,
            Outcome::Refused,
            "{}",
            agent.name
        );
        assert!(still_there(), "{}", agent.name);
        asked.push(agent.name);
    }
    assert_eq!(
        asked,
        ["mailcow-agent", "nextcloud-agent", "stalwart-agent"]
    );
}

#[tokio::test]
async fn a_target_that_is_down_is_transient_from_every_agent() {
    for agent in every_agent().await {
        (agent.trouble)(Trouble::Down);
        assert_eq!(
            agent.apply(Case::Applies).await,
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
            agent.apply(Case::Applies).await,
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
        let status = (agent.observe_plainly)("not-the-token".into())
            .await
            .expect_err(agent.name);
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{}: {status:?}",
            agent.name
        );
        let read = (agent.observe)("not-the-token".into()).await;
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
        let health = link(agent.name, agent.addr, "not-the-token").health().await;
        health.unwrap_or_else(|e| panic!("{}: {e}", agent.name));
    }
}

#[test]
fn every_agents_errors_become_statuses_by_the_one_table() {
    use mailcow_agent::error::Error as Mailcow;
    use matrix_agent::error::Error as Matrix;
    use nextcloud_agent::error::Error as Nextcloud;
    use sogo_agent::error::Error as Sogo;
    use stalwart_agent::error::Error as Stalwart;

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
        (
            "matrix-agent",
            Outcome::Transient,
            Matrix::Transient(text()).into(),
        ),
        (
            "matrix-agent",
            Outcome::Permanent,
            Matrix::Permanent {
                call: "invite",
                status: 403,
                errcode: "M_FORBIDDEN".into(),
                reason: text(),
            }
            .into(),
        ),
        (
            "matrix-agent",
            Outcome::Config,
            Matrix::Config(text()).into(),
        ),
        (
            "stalwart-agent",
            Outcome::Transient,
            Stalwart::Transient(text()).into(),
        ),
        (
            "stalwart-agent",
            Outcome::Permanent,
            Stalwart::Permanent(text()).into(),
        ),
        (
            "stalwart-agent",
            Outcome::Permanent,
            Stalwart::Invalid(text()).into(),
        ),
        (
            "stalwart-agent",
            Outcome::Refused,
            Stalwart::NotOurs(text()).into(),
        ),
        (
            "stalwart-agent",
            Outcome::Config,
            Stalwart::Config(text()).into(),
        ),
    ];
    for (agent, class, status) in cases {
        assert_eq!(status.code(), outcome::code(class), "{agent}: {status:?}");
        assert_eq!(outcome::of_status(&status), class, "{agent}: {status:?}");
    }
}
