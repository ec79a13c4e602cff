//! sogo-agent: runs beside SOGo's database and is the only holder of its
//! MySQL credentials. SOGo has no API for mail delegation, so the agent
//! edits `sogo_user_profile.c_settings` the way SOGo itself does
//! ([`settings`]), in locked transactions ([`profiles`]), and evicts SOGo's
//! cached copies afterwards ([`cache`]).

pub mod cache;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod profiles;
pub mod service;
pub mod settings;

use std::sync::Arc;

use reconciler_proto::agent::sogo_agent_server::SogoAgentServer;
use reconciler_runtime::agent::serve_agent;

use crate::cache::Memcached;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::profiles::MysqlProfiles;
use crate::service::SogoAgent;

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    let profiles = Arc::new(MysqlProfiles::new(
        config.db_url.expose(),
        &config.profile_table,
    )?);
    let cache = Arc::new(Memcached::new(
        config.memcached_addr.clone(),
        config.memcached_timeout,
    ));
    let service = SogoAgentServer::new(SogoAgent::new(profiles, cache));
    tracing::info!(table = %config.profile_table, "sogo-agent starting");
    serve_agent(
        "sogo-agent",
        service,
        config.listen,
        config.agent_token.clone(),
    )
    .await
    .map_err(|e| Error::Config(e.to_string()))
}
