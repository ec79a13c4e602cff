//! mailcow-agent: runs beside Mailcow and is the only holder of its API key.
//!
//! It answers the agent contract (`reconciler.agent.v1.Agent`):
//! - [`observe`]: sender_acl lists, our app passwords, aliases (read only);
//! - [`apply`]: sender_acl deltas, app password create/update/delete, alias
//!   create/update/delete, each refusing objects without our marker.
//!
//! [`mailcow`] holds the REST client behind the [`mailcow::MailcowApi`] trait;
//! [`dovecot`] runs doveadm (docker exec or local) for shared-folder ACLs,
//! batched per owner by [`acl`].

pub mod acl;
pub mod address;
pub mod apply;
pub mod config;
pub mod dovecot;
pub mod error;
pub mod mailcow;
pub mod observe;
pub mod password;
pub mod service;

use std::sync::Arc;

use reconciler_proto::agent::agent_server::AgentServer;
use reconciler_runtime::auth::RequireToken;
use reconciler_runtime::grpc;
use reconciler_runtime::listen::ConnectionLimits;
use tonic::service::interceptor::InterceptedService;

use crate::config::{Config, Doveadm};
use crate::dovecot::Dovecot;
use crate::error::{Error, Result};
use crate::mailcow::client::HttpMailcow;
use crate::service::MailcowAgent;
use reconciler_runtime::exec::{DockerExec, LocalExec};

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
    // Connection cap, handshake deadline and keep-alive (`GRPC_*`).
    let limits = ConnectionLimits::grpc_from_env().map_err(Error::Config)?;
    let api = Arc::new(HttpMailcow::new(&config)?);
    let dovecot = match &config.doveadm {
        None => None,
        Some(Doveadm::Local { command }) => {
            Some(Arc::new(Dovecot::new(Arc::new(LocalExec), command.clone())))
        }
        Some(Doveadm::Docker { container, user }) => Some(Arc::new(Dovecot::new(
            Arc::new(
                DockerExec::new(container.clone(), user.clone(), None)
                    .map_err(|e| Error::Config(e.to_string()))?,
            ),
            "doveadm",
        ))),
    };
    let service = AgentServer::new(MailcowAgent::new(api, dovecot, config.timeout))
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    // Only the coordinator, holding AGENT_TOKEN, may call the agent.
    let service = InterceptedService::new(service, RequireToken::new(config.agent_token.clone()));
    let router = grpc::server(&limits).add_service(service);
    let (router, _health) = grpc::with_standard_services::<
        InterceptedService<AgentServer<MailcowAgent>, RequireToken>,
    >(router)
    .await
    .map_err(|e| Error::Config(e.to_string()))?;
    tracing::info!(addr = %config.listen, mailcow = %config.mailcow_url, "mailcow-agent listening");
    println!("mailcow-agent listening on {}", config.listen);
    grpc::serve(router, config.listen, &limits, grpc::shutdown_signal())
        .await
        .map_err(|e| Error::Config(e.to_string()))
}
