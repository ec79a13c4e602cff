//! nextcloud-agent: runs beside Nextcloud and is the only holder of that
//! host's Docker socket. It creates, re-keys and deletes Nextcloud Mail
//! accounts with `occ` ([`occ`]) run by `docker exec` as the web-server
//! user. Account passwords arrive in the Apply request (a Mailcow app
//! password, minted for this account) and are passed to occ only.

pub mod config;
pub mod error;
pub mod occ;
pub mod service;

use std::sync::Arc;

use reconciler_proto::agent::agent_server::AgentServer;
use reconciler_runtime::auth::RequireToken;
use reconciler_runtime::exec::DockerExec;
use reconciler_runtime::grpc;
use reconciler_runtime::listen::ConnectionLimits;
use tonic::service::interceptor::InterceptedService;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::occ::Occ;
use crate::service::NextcloudAgent;

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    // Connection cap, handshake deadline and keep-alive (`GRPC_*`).
    let limits = ConnectionLimits::grpc_from_env().map_err(Error::Config)?;
    let runner = DockerExec::new(
        config.container.clone(),
        Some(config.occ_user.clone()),
        Some(config.workdir.clone()),
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let occ = Occ::new(
        Arc::new(runner),
        config.occ_command.clone(),
        config.imap.clone(),
        config.smtp.clone(),
    );
    let service = AgentServer::new(NextcloudAgent::new(occ));
    // Only the coordinator, holding AGENT_TOKEN, may call the agent.
    let service = InterceptedService::new(service, RequireToken::new(config.agent_token.clone()));
    let router = grpc::server(&limits).add_service(service);
    let (router, _health) = grpc::with_standard_services::<
        InterceptedService<AgentServer<NextcloudAgent>, RequireToken>,
    >(router)
    .await
    .map_err(|e| Error::Config(e.to_string()))?;
    tracing::info!(addr = %config.listen, container = %config.container, "nextcloud-agent listening");
    println!("nextcloud-agent listening on {}", config.listen);
    grpc::serve(router, config.listen, &limits, grpc::shutdown_signal())
        .await
        .map_err(|e| Error::Config(e.to_string()))
}
