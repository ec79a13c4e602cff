//! The `reconciler.agent.v2.SogoAgent` gRPC service: observe owners'
//! `DelegateTo`, apply delegation adds and removes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    ChangeResult, Outcome, SogoApplyRequest, SogoApplyResponse, SogoDelegationState,
    SogoObserveRequest, SogoObserveResponse, sogo_agent_server, sogo_change::Kind,
};
use reconciler_runtime::locks::KeyedLocks;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::cache::{EvictionFailed, SettingsCache, valid_key_part};
use crate::error::{Error, Result};
use crate::profiles::ProfileStore;

/// Changes applied at once; the database serialises those on the same rows.
pub const APPLY_CONCURRENCY: usize = 4;

pub struct SogoAgent {
    profiles: Arc<dyn ProfileStore>,
    cache: Arc<dyn SettingsCache>,
    /// Profile rows (by lower-case uid) a change is writing.
    rows: KeyedLocks,
}

/// What one change did.
struct Done {
    outcome: Outcome,
    message: String,
    /// Uids whose cached settings are still to be evicted.
    eviction_owed: Vec<String>,
}

impl Done {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            eviction_owed: Vec::new(),
        }
    }
}

/// The first memcached failure of one Apply call. Later evictions in the
/// same call are owed at once instead of each waiting out the timeout
/// again; the next call tries memcached afresh.
#[derive(Default)]
struct CacheTrouble(Mutex<Option<String>>);

impl CacheTrouble {
    fn get(&self) -> Option<String> {
        self.0.lock().map(|g| g.clone()).unwrap_or(None)
    }

    fn set(&self, reason: &str) {
        if let Ok(mut g) = self.0.lock() {
            g.get_or_insert_with(|| reason.to_owned());
        }
    }
}

impl SogoAgent {
    pub fn new(profiles: Arc<dyn ProfileStore>, cache: Arc<dyn SettingsCache>) -> Self {
        Self {
            profiles,
            cache,
            rows: KeyedLocks::default(),
        }
    }

    /// Evicts the uids' settings; on failure, what is owed and why.
    async fn evict(&self, uids: &[&str], trouble: &CacheTrouble) -> Result<(), EvictionFailed> {
        if let Some(reason) = trouble.get() {
            return Err(EvictionFailed {
                owed: uids.iter().map(|u| (*u).to_owned()).collect(),
                reason: format!("skipped after an earlier failure in this call: {reason}"),
            });
        }
        self.cache
            .evict_settings(uids)
            .await
            .inspect_err(|f| trouble.set(&f.reason))
    }

    async fn delegation(
        &self,
        owner: &str,
        delegate: &str,
        add: bool,
        dry_run: bool,
        trouble: &CacheTrouble,
    ) -> Result<Done> {
        let (owner, delegate) = (owner.trim(), delegate.trim());
        if owner.is_empty() || delegate.is_empty() {
            return Err(Error::Invalid("owner and delegate are required".into()));
        }
        // Checked before writing: a uid that cannot be evicted afterwards
        // would leave SOGo showing the old value.
        for uid in [owner, delegate] {
            if !valid_key_part(uid) {
                return Err(Error::Invalid(format!(
                    "`{}` is not a SOGo uid this agent can handle",
                    uid.escape_debug()
                )));
            }
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
                Done::new(Outcome::Unchanged, "already as asked")
            } else {
                Done::new(
                    Outcome::DryRun,
                    format!("would {verb} {delegate} as delegate of {owner}"),
                )
            });
        }
        let written = {
            // Changes in one call run at once. Two on the same row would
            // wait on each other's row locks in the database anyway, and
            // two first inserts of one uid collide on its key and are
            // retried; here the second simply waits its turn.
            let rows = [owner, delegate].map(str::to_ascii_lowercase);
            let _rows = self.rows.lock_all(&BTreeSet::from(rows)).await;
            self.profiles.set_delegation(owner, delegate, add).await?
        };
        let mut done = if written {
            Done::new(
                Outcome::Applied,
                format!("{verb}ed {delegate} as delegate of {owner}"),
            )
        } else {
            Done::new(Outcome::Unchanged, "already as asked")
        };
        // Evict after commit, also when nothing was written: a concurrent
        // change may have written it. The write stands either way; what
        // could not be evicted is reported as owed, for the coordinator to
        // retry until it succeeds.
        if let Err(failed) = self.evict(&[owner, delegate], trouble).await {
            done.message = format!(
                "{}; memcached eviction owed for {}: {}",
                done.message,
                failed.owed.join(", "),
                failed.reason
            );
            done.eviction_owed = failed.owed;
        }
        Ok(done)
    }

    /// A retried eviction: APPLIED when every uid was evicted.
    async fn evict_owed(
        &self,
        uids: &[String],
        dry_run: bool,
        trouble: &CacheTrouble,
    ) -> Result<Done> {
        let uids: Vec<&str> = uids.iter().map(|u| u.trim()).collect();
        if uids.is_empty() {
            return Err(Error::Invalid("no uids to evict".into()));
        }
        if let Some(bad) = uids.iter().find(|u| !valid_key_part(u)) {
            return Err(Error::Invalid(format!(
                "`{}` cannot be a memcached key",
                bad.escape_debug()
            )));
        }
        if dry_run {
            return Ok(Done::new(
                Outcome::DryRun,
                format!("would evict the cached settings of {}", uids.join(", ")),
            ));
        }
        Ok(match self.evict(&uids, trouble).await {
            Ok(()) => Done::new(
                Outcome::Applied,
                format!("evicted the cached settings of {}", uids.join(", ")),
            ),
            Err(failed) => Done {
                outcome: Outcome::Transient,
                message: Error::Cache(failed.reason).to_string(),
                eviction_owed: failed.owed,
            },
        })
    }

    async fn apply_one(
        &self,
        id: String,
        kind: Option<Kind>,
        dry_run: bool,
        trouble: &CacheTrouble,
    ) -> ChangeResult {
        let result = match kind {
            Some(Kind::DelegateAdd(c)) => {
                self.delegation(&c.owner, &c.delegate, true, dry_run, trouble)
                    .await
            }
            Some(Kind::DelegateRemove(c)) => {
                self.delegation(&c.owner, &c.delegate, false, dry_run, trouble)
                    .await
            }
            Some(Kind::CacheEvict(c)) => self.evict_owed(&c.uids, dry_run, trouble).await,
            None => Err(Error::Invalid("change has no kind".into())),
        };
        let done = result.unwrap_or_else(|e| Done::new(e.outcome(), e.to_string()));
        ChangeResult {
            id,
            outcome: done.outcome as i32,
            message: done.message,
            eviction_owed: done.eviction_owed,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl sogo_agent_server::SogoAgent for SogoAgent {
    #[tracing::instrument(skip_all, fields(owners = request.get_ref().owners.len()))]
    async fn observe(
        &self,
        request: Request<SogoObserveRequest>,
    ) -> Result<Response<SogoObserveResponse>, Status> {
        let owners: Vec<String> = request.into_inner().owners;
        let states = self
            .profiles
            .delegations(&owners)
            .await
            .inspect_err(|e| warn!(error = %e, "observe failed"))?;
        Ok(Response::new(SogoObserveResponse {
            delegations: states
                .into_iter()
                .map(|(owner, s)| SogoDelegationState {
                    owner,
                    delegate_to: s.delegate_to,
                    error: s.error.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(changes = request.get_ref().changes.len(), dry_run = request.get_ref().dry_run))]
    async fn apply(
        &self,
        request: Request<SogoApplyRequest>,
    ) -> Result<Response<SogoApplyResponse>, Status> {
        let SogoApplyRequest { changes, dry_run } = request.into_inner();
        let trouble = CacheTrouble::default();
        let results: Vec<ChangeResult> = stream::iter(changes)
            .map(|c| self.apply_one(c.id, c.kind, dry_run, &trouble))
            .buffered(APPLY_CONCURRENCY)
            .collect()
            .await;
        for r in &results {
            let outcome = r.outcome();
            match outcome {
                Outcome::Applied | Outcome::Unchanged if !r.eviction_owed.is_empty() => {
                    warn!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change applied; cache eviction owed")
                }
                Outcome::Applied | Outcome::DryRun | Outcome::Unchanged => {
                    info!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change")
                }
                _ => {
                    warn!(change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change failed")
                }
            }
        }
        reconciler_runtime::metrics::changes("sogo-agent", results.iter().map(|r| r.outcome));
        Ok(Response::new(SogoApplyResponse { results }))
    }
}
