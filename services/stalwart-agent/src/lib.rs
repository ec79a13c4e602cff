//! The Stalwart agent: runs beside Stalwart 0.16 or later, the only holder
//! of its API key, and observes and provisions domains, accounts (users
//! and groups) and mailing lists for the coordinator.
//!
//! - [`service`]: the `reconciler.agent.v2.StalwartAgent` gRPC service
//!   (observe domains, accounts and lists; apply their changes with dry
//!   run, batched into few JMAP requests), behind the bearer `AGENT_TOKEN`,
//!   its health following Stalwart's session;
//! - [`jmap`]: Stalwart's JMAP management API behind the [`StalwartApi`]
//!   trait, implemented over HTTP by [`StalwartClient`] (and in memory by
//!   [`fake`], for tests);
//! - [`error`]: the error classes and their outcomes and gRPC statuses;
//! - [`config`]: `STALWART_URL`, `STALWART_API_KEY` (or `_FILE`),
//!   `AGENT_TOKEN` (or `_FILE`), `AGENT_LISTEN`.
//!
//! What the agent relies on, from stalwartlabs/stalwart v0.16.18:
//! - the session (`GET /jmap/session`) names `apiUrl` and, in
//!   `primaryAccounts`, the management capability `urn:stalwart:jmap`
//!   (crates/jmap/src/api/session.rs); a server without it predates 0.16;
//! - objects are `x:Domain`, `x:Account`, `x:MailingList`, through
//!   `x:<Object>/get|query|set` (crates/jmap-proto/src/request/method.rs);
//! - there is no `enabled` flag on an account: suspension is the
//!   `authenticate` permission disabled, which every login checks
//!   (crates/common/src/auth/authentication.rs:40-44);
//! - destroying an account erases its mail (crates/jmap/src/registry/mapping/principal.rs:441-492).

pub mod config;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod jmap;
pub mod service;

use std::sync::Arc;

use reconciler_proto::agent::stalwart_agent_server::StalwartAgentServer;
use reconciler_runtime::agent::{AgentEndpoint, bind_agent};
use reconciler_runtime::grpc::shutdown_signal;
use reconciler_runtime::listen::ConnectionLimits;
use reconciler_runtime::tls::ServerTransport;

use crate::config::Config;
use crate::error::{Error, Result};
pub use crate::jmap::{StalwartApi, StalwartClient};

const NAME: &str = "stalwart-agent";

/// Serves the agent until SIGINT/SIGTERM.
///
/// Stalwart's session is discovered first, for the log and the health
/// status; a Stalwart that is down or refuses the key does not stop the
/// agent: health says NOT_SERVING until an Observe finds the session
/// again, and every call reports the class to the coordinator, which is
/// where an operator looks.
pub async fn run(config: Config) -> Result<()> {
    let client: Arc<dyn StalwartApi> = Arc::new(StalwartClient::new(config.client.clone())?);
    let agent = service::StalwartAgent::new(client.clone());
    let health = agent.health();
    let limits = ConnectionLimits::grpc_from_env().map_err(Error::Config)?;
    let transport = ServerTransport::from_env().map_err(|e| Error::Config(e.to_string()))?;
    let endpoint = AgentEndpoint {
        listen: config.listen,
        token: config.agent_token.clone(),
        limits,
        transport,
        health_listen: reconciler_runtime::healthcheck::health_listen_from_env()
            .map_err(Error::Config)?,
    };
    let bound = bind_agent(NAME, StalwartAgentServer::new(agent), endpoint)
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    health.attach(bound.health_reporter());
    if let Ok(session) = health.record(client.session().await).await {
        tracing::info!(
            api_url = %session.api_url,
            username = %session.username,
            "Stalwart's JMAP management session discovered"
        );
    }
    tracing::info!(stalwart = %config.client.url, "stalwart-agent starting");
    bound
        .serve(shutdown_signal())
        .await
        .map_err(|e| Error::Config(e.to_string()))
}
