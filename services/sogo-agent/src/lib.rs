//! sogo-agent: runs beside SOGo's database and is the only holder of its
//! MySQL credentials. SOGo has no API for mail delegation, so the agent
//! edits `sogo_user_profile.c_settings` the way SOGo itself does
//! ([`settings`]), in locked transactions ([`profiles`]), and evicts SOGo's
//! cached copies afterwards ([`cache`]).

pub mod cache;
pub mod config;
pub mod error;
pub mod profiles;
pub mod service;
pub mod settings;

use std::sync::Arc;

use reconciler_proto::agent::agent_server::AgentServer;
use reconciler_runtime::auth::RequireToken;
use reconciler_runtime::grpc;
use reconciler_runtime::listen::ConnectionLimits;
use tonic::service::interceptor::InterceptedService;

use crate::cache::Memcached;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::profiles::MysqlProfiles;
use crate::service::SogoAgent;

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    // Connection cap, handshake deadline and keep-alive (`GRPC_*`).
    let limits = ConnectionLimits::grpc_from_env().map_err(Error::Config)?;
    let profiles = Arc::new(MysqlProfiles::new(
        config.db_url.expose(),
        &config.profile_table,
    )?);
    let cache = Arc::new(Memcached::new(
        config.memcached_addr.clone(),
        config.memcached_timeout,
    ));
    let service = AgentServer::new(SogoAgent::new(profiles, cache));
    // Only the coordinator, holding AGENT_TOKEN, may call the agent.
    let service = InterceptedService::new(service, RequireToken::new(config.agent_token.clone()));
    let router = grpc::server(&limits).add_service(service);
    let (router, _health) = grpc::with_standard_services::<
        InterceptedService<AgentServer<SogoAgent>, RequireToken>,
    >(router)
    .await
    .map_err(|e| Error::Config(e.to_string()))?;
    tracing::info!(addr = %config.listen, table = %config.profile_table, "sogo-agent listening");
    println!("sogo-agent listening on {}", config.listen);
    grpc::serve(router, config.listen, &limits, grpc::shutdown_signal())
        .await
        .map_err(|e| Error::Config(e.to_string()))
}
