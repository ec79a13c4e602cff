//! matrix-agent runs beside Synapse and is the only holder of the bot's
//! access token. The bot must be a Synapse server admin: the
//! force-join and user lookups are admin APIs.
//!
//! - [`service`]: the `reconciler.agent.v2.MatrixAgent` gRPC service
//!   (observe rooms, users and SSO links; apply membership, power-level
//!   and account changes, with dry run), behind the bearer `AGENT_TOKEN`;
//! - [`synapse`]: the Synapse client behind the [`MatrixApi`] trait (so an
//!   in-memory fake, [`fake`], can stand in for Synapse), with errors
//!   classified into transient, permanent and configuration ([`Error`]),
//!   and rate limits waited out within bounds;
//! - [`config`]: `MATRIX_HOMESERVER_URL`, `MATRIX_ACCESS_TOKEN` (or `_FILE`),
//!   `MATRIX_EXEMPT_RATELIMIT`, `AGENT_TOKEN`, `AGENT_LISTEN`.

pub mod config;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod service;
pub mod synapse;

use std::sync::Arc;

use reconciler_proto::agent::matrix_agent_server::MatrixAgentServer;
use reconciler_runtime::agent::serve_agent;

pub use error::{Error, ErrorClass, Result};
pub use synapse::{MatrixApi, SynapseClient};

/// Serves the agent until SIGINT/SIGTERM.
///
/// Synapse is asked who the bot is and which version it runs first, for
/// the log; a Synapse that is down or refuses the token does not stop the
/// agent: every call then reports that class to the coordinator, which is
/// where an operator looks.
pub async fn run(config: config::Config) -> Result<()> {
    let client = Arc::new(SynapseClient::new(&config.client)?);
    match check(client.as_ref(), config.exempt_ratelimit).await {
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, "Synapse is not usable yet"),
    }
    let service = MatrixAgentServer::new(service::MatrixAgent::new(client));
    tracing::info!(homeserver = %config.client.homeserver(), "matrix-agent starting");
    serve_agent(
        "matrix-agent",
        service,
        config.listen,
        config.agent_token.clone(),
    )
    .await
    .map_err(|e| Error::Config(e.to_string()))
}

/// Whoami and server version, and the rate-limit exemption when asked for.
async fn check(client: &SynapseClient, exempt_ratelimit: bool) -> Result<()> {
    let bot = client.whoami().await?;
    let version = client.server_version().await?;
    tracing::info!(%bot, synapse = %version, "Synapse accepts the bot's token");
    if exempt_ratelimit {
        client.exempt_from_rate_limits(&bot).await?;
        tracing::info!(%bot, "the bot is exempt from Synapse's rate limits");
    }
    Ok(())
}
