//! The `reconciler.agent.v2.StalwartAgent` gRPC service: observe domains,
//! accounts and mailing lists ([`observe`]); apply their changes with dry
//! run, batched into few JMAP requests ([`apply`]).

mod apply;
mod observe;

use std::sync::{Arc, OnceLock};

use reconciler_proto::agent::stalwart_agent_server::{self, StalwartAgentServer};
use reconciler_proto::agent::{
    ChangeResult, Outcome, StalwartApplyRequest, StalwartApplyResponse, StalwartObserveRequest,
    StalwartObserveResponse,
};
use reconciler_runtime::locks::KeyedLocks;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::error::Result;
use crate::jmap::{Session, StalwartApi};

pub struct StalwartAgent {
    api: Arc<dyn StalwartApi>,
    /// Objects (`account:<address>`, `list:<address>`, `domain:<name>`) an
    /// Apply is reading and writing: each change diffs before it acts, so
    /// two calls touching one object must not interleave.
    objects: KeyedLocks,
    health: Arc<Health>,
}

impl StalwartAgent {
    pub fn new(api: Arc<dyn StalwartApi>) -> Self {
        Self {
            api,
            objects: KeyedLocks::default(),
            health: Arc::new(Health::default()),
        }
    }

    /// The agent's health, to attach to the server's reporter.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }
}

/// The agent's `grpc.health.v1` status follows Stalwart's session: SERVING
/// while session discovery works (Stalwart up, the key accepted, 0.16 or
/// later), NOT_SERVING otherwise. Checked at start and on every Observe.
#[derive(Default)]
pub struct Health {
    reporter: OnceLock<HealthReporter>,
}

impl Health {
    /// Reports through `reporter` from now on (the server's own).
    pub fn attach(&self, reporter: HealthReporter) {
        // A second reporter is ignored: one server, one status.
        let _ = self.reporter.set(reporter);
    }

    /// Records a session discovery's result, and returns it.
    pub async fn record(&self, session: Result<Session>) -> Result<Session> {
        let status = match &session {
            Ok(_) => ServingStatus::Serving,
            Err(e) => {
                warn!(error = %e, "Stalwart's JMAP session cannot be discovered");
                ServingStatus::NotServing
            }
        };
        if let Some(reporter) = self.reporter.get() {
            // The overall status ("") is what the coordinator checks.
            let service = <StalwartAgentServer<StalwartAgent> as NamedService>::NAME;
            for name in ["", service] {
                reporter.set_service_status(name, status).await;
            }
        }
        session
    }
}

#[tonic::async_trait]
impl stalwart_agent_server::StalwartAgent for StalwartAgent {
    #[tracing::instrument(skip_all, fields(
        domains = request.get_ref().domains.len(),
        accounts = request.get_ref().accounts.len(),
        lists = request.get_ref().lists.len(),
    ))]
    async fn observe(
        &self,
        request: Request<StalwartObserveRequest>,
    ) -> Result<Response<StalwartObserveResponse>, Status> {
        let response = observe::observe(self, request.into_inner()).await;
        if let Some(u) = &response.unavailable {
            warn!(reason = %u.reason, "Stalwart could not be observed");
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(
        changes = request.get_ref().changes.len(),
        dry_run = request.get_ref().dry_run,
    ))]
    async fn apply(
        &self,
        request: Request<StalwartApplyRequest>,
    ) -> Result<Response<StalwartApplyResponse>, Status> {
        let StalwartApplyRequest { changes, dry_run } = request.into_inner();
        let results: Vec<ChangeResult> = self.apply_all(changes, dry_run).await;
        for r in &results {
            let outcome = r.outcome();
            match outcome {
                Outcome::Applied | Outcome::DryRun | Outcome::Unchanged => {
                    info!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change")
                }
                _ => {
                    warn!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change failed")
                }
            }
        }
        reconciler_runtime::metrics::changes("stalwart-agent", results.iter().map(|r| r.outcome));
        Ok(Response::new(StalwartApplyResponse { results }))
    }
}

/// `local@domain`, trimmed and lower-cased (Stalwart stores both parts
/// lower-cased, crates/utils/src/lib.rs:337-430), split at the last `@`.
pub(crate) fn split_address(address: &str) -> Result<(String, String)> {
    let address = address.trim().to_lowercase();
    match address.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok((local.to_owned(), domain.to_owned()))
        }
        _ => Err(crate::error::Error::invalid(format!(
            "`{address}` is not an address (local@domain)"
        ))),
    }
}

#[cfg(test)]
mod tests;
