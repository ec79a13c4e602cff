//! The Stalwart agent: runs beside Stalwart 0.16 or later, the only holder
//! of its API key, and provisions domains, accounts (users and groups) and
//! mailing lists through Stalwart's JMAP management API
//! ([`jmap::StalwartApi`], implemented over HTTP by [`jmap::StalwartClient`]).
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
pub mod jmap;

use crate::config::Config;
use crate::error::Result;
use crate::jmap::{StalwartApi, StalwartClient};

/// Discovers the session and returns: the first step of the agent, until
/// its gRPC service (with the contract) is added.
pub async fn run(config: Config) -> Result<()> {
    let client = StalwartClient::new(config.client)?;
    let session = client.session().await?;
    tracing::info!(
        api_url = %session.api_url,
        account_id = %session.account_id,
        username = %session.username,
        "Stalwart JMAP management session discovered"
    );
    Ok(())
}
