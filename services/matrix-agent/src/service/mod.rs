//! The `reconciler.agent.v2.MatrixAgent` gRPC service: observe rooms, users
//! and SSO links ([`observe`]); apply membership, power-level and account
//! changes with dry run ([`apply`]).

mod apply;
mod observe;

use std::sync::Arc;

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    ChangeResult, MatrixApplyRequest, MatrixApplyResponse, MatrixObserveRequest,
    MatrixObserveResponse, Outcome, matrix_agent_server,
};
use reconciler_runtime::locks::KeyedLocks;
use tokio::sync::OnceCell;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::error::Result;
use crate::synapse::MatrixApi;

/// Changes applied at once. Synapse serialises events per room itself;
/// more would only meet its rate limits sooner.
pub const APPLY_CONCURRENCY: usize = 4;

pub struct MatrixAgent {
    api: Arc<dyn MatrixApi>,
    /// Rooms (by id) and accounts (by user ID) a change is reading and
    /// writing: each change diffs before it acts, and a power-level change
    /// rewrites the room's whole `m.room.power_levels`, so two changes to
    /// one room must not interleave.
    objects: KeyedLocks,
    /// The bot's user ID, once Synapse has named it: its server part names
    /// the accounts `create_user` makes.
    bot: OnceCell<String>,
}

impl MatrixAgent {
    pub fn new(api: Arc<dyn MatrixApi>) -> Self {
        Self {
            api,
            objects: KeyedLocks::default(),
            bot: OnceCell::new(),
        }
    }

    async fn bot(&self) -> Result<&str> {
        self.bot
            .get_or_try_init(|| self.api.whoami())
            .await
            .map(String::as_str)
    }
}

#[tonic::async_trait]
impl matrix_agent_server::MatrixAgent for MatrixAgent {
    #[tracing::instrument(skip_all, fields(rooms = request.get_ref().rooms.len(), users = request.get_ref().users.len()))]
    async fn observe(
        &self,
        request: Request<MatrixObserveRequest>,
    ) -> Result<Response<MatrixObserveResponse>, Status> {
        let response = observe::observe(self.api.as_ref(), request.into_inner()).await;
        if let Some(u) = &response.unavailable {
            warn!(reason = %u.reason, "Synapse could not be observed");
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(changes = request.get_ref().changes.len(), dry_run = request.get_ref().dry_run))]
    async fn apply(
        &self,
        request: Request<MatrixApplyRequest>,
    ) -> Result<Response<MatrixApplyResponse>, Status> {
        let MatrixApplyRequest { changes, dry_run } = request.into_inner();
        let results: Vec<ChangeResult> = stream::iter(changes)
            .map(|c| self.apply_one(c.id, c.kind, dry_run))
            .buffered(APPLY_CONCURRENCY)
            .collect()
            .await;
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
        reconciler_runtime::metrics::changes("matrix-agent", results.iter().map(|r| r.outcome));
        Ok(Response::new(MatrixApplyResponse { results }))
    }
}

#[cfg(test)]
mod tests;
