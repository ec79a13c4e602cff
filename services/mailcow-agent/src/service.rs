//! The `reconciler.agent.v1.Agent` gRPC service for Mailcow.

use std::sync::Arc;

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    ApplyRequest, ApplyResponse, ObserveRequest, ObserveResponse, Outcome, agent_server::Agent,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::apply::Applier;
use crate::locks::KeyedLocks;
use crate::mailcow::MailcowApi;
use crate::observe;

/// Changes applied at once within one Apply call. Changes to the same
/// object still run one after another (see [`KeyedLocks`]).
pub const APPLY_CONCURRENCY: usize = 4;

pub struct MailcowAgent {
    api: Arc<dyn MailcowApi>,
    locks: KeyedLocks,
}

impl MailcowAgent {
    pub fn new(api: Arc<dyn MailcowApi>) -> Self {
        Self {
            api,
            locks: KeyedLocks::default(),
        }
    }
}

#[tonic::async_trait]
impl Agent for MailcowAgent {
    #[tracing::instrument(skip_all, fields(
        logins = request.get_ref().sender_acl_logins.len(),
        mailboxes = request.get_ref().app_password_mailboxes.len(),
    ))]
    async fn observe(
        &self,
        request: Request<ObserveRequest>,
    ) -> Result<Response<ObserveResponse>, Status> {
        let response = observe::observe(self.api.clone(), request.into_inner())
            .await
            .inspect_err(|e| warn!(error = %e, "observe failed"))?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(
        changes = request.get_ref().changes.len(),
        dry_run = request.get_ref().dry_run,
    ))]
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let ApplyRequest { changes, dry_run } = request.into_inner();
        let applier = Applier {
            api: self.api.as_ref(),
            locks: &self.locks,
            dry_run,
        };
        let results: Vec<_> = stream::iter(changes)
            .map(|change| applier.apply(change.id, change.kind))
            .buffered(APPLY_CONCURRENCY)
            .collect()
            .await;
        for r in &results {
            let outcome = Outcome::try_from(r.outcome).unwrap_or(Outcome::Unspecified);
            // The secret field is never logged; only id, outcome and message.
            match outcome {
                Outcome::Applied | Outcome::DryRun | Outcome::Unchanged => {
                    info!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change")
                }
                _ => {
                    warn!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change failed")
                }
            }
        }
        Ok(Response::new(ApplyResponse { results }))
    }
}
