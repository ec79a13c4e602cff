//! The `reconciler.agent.v1.Agent` gRPC service for SOGo: observe owners'
//! `DelegateTo`, apply delegation adds and removes.

use std::sync::Arc;

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    ApplyRequest, ApplyResponse, ChangeResult, ObserveRequest, ObserveResponse, Outcome,
    SogoDelegationState, agent_server::Agent, change::Kind,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::cache::SettingsCache;
use crate::error::{Error, Result};
use crate::profiles::ProfileStore;

/// Changes applied at once; the database serialises those on the same rows.
pub const APPLY_CONCURRENCY: usize = 4;

pub struct SogoAgent {
    profiles: Arc<dyn ProfileStore>,
    cache: Arc<dyn SettingsCache>,
}

impl SogoAgent {
    pub fn new(profiles: Arc<dyn ProfileStore>, cache: Arc<dyn SettingsCache>) -> Self {
        Self { profiles, cache }
    }

    async fn delegation(
        &self,
        owner: &str,
        delegate: &str,
        add: bool,
        dry_run: bool,
    ) -> Result<(Outcome, String)> {
        let (owner, delegate) = (owner.trim(), delegate.trim());
        if owner.is_empty() || delegate.is_empty() {
            return Err(Error::Invalid("owner and delegate are required".into()));
        }
        let verb = if add { "add" } else { "remove" };
        if dry_run {
            let current = self.profiles.delegations(&[owner.to_owned()]).await?;
            let state = current.get(owner).cloned().unwrap_or_default();
            if let Some(detail) = state.error {
                return Err(Error::CorruptSettings {
                    uid: owner.to_owned(),
                    detail,
                });
            }
            let present = state.delegate_to.iter().any(|d| d == delegate);
            return Ok(if present == add {
                (Outcome::Unchanged, "already as asked".into())
            } else {
                (
                    Outcome::DryRun,
                    format!("would {verb} {delegate} as delegate of {owner}"),
                )
            });
        }
        let written = self.profiles.set_delegation(owner, delegate, add).await?;
        // Evict after commit, also when nothing was written: a retry after a
        // failed eviction must still evict.
        self.cache.evict_settings(&[owner, delegate]).await?;
        Ok(if written {
            (
                Outcome::Applied,
                format!("{verb}ed {delegate} as delegate of {owner}"),
            )
        } else {
            (Outcome::Unchanged, "already as asked".into())
        })
    }

    async fn apply_one(&self, id: String, kind: Option<Kind>, dry_run: bool) -> ChangeResult {
        let result = match kind {
            Some(Kind::SogoDelegateAdd(c)) => {
                self.delegation(&c.owner, &c.delegate, true, dry_run).await
            }
            Some(Kind::SogoDelegateRemove(c)) => {
                self.delegation(&c.owner, &c.delegate, false, dry_run).await
            }
            _ => Err(Error::Invalid(
                "the sogo-agent only handles SOGo delegation changes".into(),
            )),
        };
        let (outcome, message) = result.unwrap_or_else(|e| (e.outcome(), e.to_string()));
        ChangeResult {
            id,
            outcome: outcome as i32,
            message,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl Agent for SogoAgent {
    #[tracing::instrument(skip_all, fields(owners = request.get_ref().sogo_owners.len()))]
    async fn observe(
        &self,
        request: Request<ObserveRequest>,
    ) -> Result<Response<ObserveResponse>, Status> {
        let owners: Vec<String> = request.into_inner().sogo_owners;
        let states = self
            .profiles
            .delegations(&owners)
            .await
            .inspect_err(|e| warn!(error = %e, "observe failed"))?;
        Ok(Response::new(ObserveResponse {
            sogo_delegations: states
                .into_iter()
                .map(|(owner, s)| SogoDelegationState {
                    owner,
                    delegate_to: s.delegate_to,
                    error: s.error.unwrap_or_default(),
                })
                .collect(),
            ..Default::default()
        }))
    }

    #[tracing::instrument(skip_all, fields(changes = request.get_ref().changes.len(), dry_run = request.get_ref().dry_run))]
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let ApplyRequest { changes, dry_run } = request.into_inner();
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
        Ok(Response::new(ApplyResponse {
            results,
            ..Default::default()
        }))
    }
}
