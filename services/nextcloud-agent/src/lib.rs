//! nextcloud-agent: runs beside Nextcloud and is the only holder of that
//! host's Docker socket. It creates, re-keys and deletes Nextcloud Mail
//! accounts with `occ` ([`occ`]) run by `docker exec` as the web-server
//! user. Account passwords arrive in the Apply request (a Mailcow app
//! password, minted for this account) and are passed to occ only.

pub mod config;
pub mod db;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod occ;
pub mod service;

use std::sync::Arc;

use reconciler_proto::agent::nextcloud_agent_server::NextcloudAgentServer;
use reconciler_runtime::agent::serve_agent;
use reconciler_runtime::exec::DockerExec;

use crate::config::Config;
use crate::db::MailAccountsTable;
use crate::error::{Error, Result};
use crate::occ::Occ;
use crate::service::NextcloudAgent;

/// Serves the agent until SIGINT/SIGTERM.
pub async fn run(config: Config) -> Result<()> {
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
    let mut agent = NextcloudAgent::new(occ);
    if let Some(database) = &config.database {
        let table = MailAccountsTable::new(database)?;
        tracing::info!(
            table = table.table(),
            "observing Mail accounts from Nextcloud's database"
        );
        agent = agent.with_database(table);
    }
    let service = NextcloudAgentServer::new(agent);
    tracing::info!(container = %config.container, "nextcloud-agent starting");
    serve_agent(
        "nextcloud-agent",
        service,
        config.listen,
        config.agent_token.clone(),
    )
    .await
    .map_err(|e| Error::Config(e.to_string()))
}
