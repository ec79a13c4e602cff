//! mailcow-agent: runs beside Mailcow and is the only holder of its API key.
//!
//! It answers its agent contract (`reconciler.agent.v2.MailcowAgent`):
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
pub mod batch;
pub mod config;
pub mod dovecot;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod mailcow;
pub mod observe;
pub mod password;
pub mod service;

use std::sync::Arc;

use reconciler_proto::agent::mailcow_agent_server::MailcowAgentServer;
use reconciler_runtime::agent::serve_agent;
use reconciler_runtime::exec::{DockerExec, LocalExec};

use crate::config::{Config, Doveadm};
use crate::dovecot::Dovecot;
use crate::error::{Error, Result};
use crate::mailcow::client::HttpMailcow;
use crate::service::MailcowAgent;

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
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
    let service = MailcowAgentServer::new(
        MailcowAgent::new(api, dovecot, config.timeout).with_concurrency(config.concurrency),
    )
    .max_decoding_message_size(256 * 1024 * 1024)
    .max_encoding_message_size(256 * 1024 * 1024);
    tracing::info!(mailcow = %config.mailcow_url, "mailcow-agent starting");
    serve_agent(
        "mailcow-agent",
        service,
        config.listen,
        config.agent_token.clone(),
    )
    .await
    .map_err(|e| Error::Config(e.to_string()))
}
