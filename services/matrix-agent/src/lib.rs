//! matrix-agent runs beside Synapse and is the only holder of the bot's
//! access token. The bot must be a Synapse server admin: the
//! force-join and user lookups are admin APIs.
//!
//! What is here so far:
//! - [`synapse`]: the Synapse client behind the [`MatrixApi`] trait (so an
//!   in-memory fake can stand in for Synapse), with errors classified into
//!   transient, permanent and configuration ([`Error`]), and rate limits
//!   waited out within bounds;
//! - [`localpart`]: Synapse's own rule for turning a username into a Matrix
//!   ID;
//! - [`config`]: `MATRIX_HOMESERVER_URL`, `MATRIX_ACCESS_TOKEN` (or `_FILE`),
//!   `MATRIX_EXEMPT_RATELIMIT`.
//!
//! What is not here yet: the gRPC agent service (observe, apply with dry
//! run, health, bearer `AGENT_TOKEN`). It comes with the v2 agent contract;
//! until then the binary only checks that Synapse answers and accepts the
//! token (whoami and server version), applies the rate-limit exemption when
//! asked to, and exits.

pub mod config;
pub mod error;
pub mod localpart;
pub mod synapse;

pub use error::{Error, ErrorClass, Result};
pub use synapse::{MatrixApi, SynapseClient};

/// The binary's whole job until the gRPC service lands: prove the
/// configuration works against the real Synapse.
pub async fn run(config: config::Config) -> Result<()> {
    let client = SynapseClient::new(&config.client)?;
    let bot = client.whoami().await?;
    let version = client.server_version().await?;
    tracing::info!(%bot, synapse = %version, "Synapse accepts the bot's token");
    if config.exempt_ratelimit {
        client.exempt_from_rate_limits(&bot).await?;
        tracing::info!(%bot, "the bot is exempt from Synapse's rate limits");
    }
    Ok(())
}
