//! The ledger's state machine: what a run writes to the ledger, the audit
//! log and the backoff table around each change.
//!
//! Guarantees (ownership is read from the ledger alone, so these are what
//! make removals safe):
//! - **Intent before create.** A create's row is written as `intent` before
//!   the agent is asked; a crash after the target made the object leaves a
//!   row the next run adopts instead of an object nobody owns.
//! - **Created only on confirmation.** A row becomes `created` (with the
//!   target's id) only when the agent reports the change applied.
//! - **Forgotten only when certain.** An intent row goes when nothing was
//!   made for sure: never sent, or refused because the object was already
//!   there. An error message alone never decides: a write the target applied
//!   but reported as failed keeps its intent, and is revoked when access
//!   ends.
//! - **Deletes remove their own row.** Only the row of the object deleted
//!   goes; a duplicate's delete leaves the keeper's row alone.
//! - **Every outcome is audited**, with the reason planned and the agent's
//!   message, never a secret.

use std::time::Duration;

use reconciler_proto::agent::{self as pb, Outcome};

use super::RunReport;
use crate::error::Result;
use crate::ledger::{LedgerRow, LedgerState};
use crate::plan::{Action, Step};
use crate::store::{AuditEntry, Batch};

/// The longest a permanently failing change waits between attempts.
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(86_400);

/// One run's bookkeeping, written through a [`Batch`] the caller opens
/// and commits (one transaction per group of outcomes).
pub(super) struct Books {
    pub job_id: i64,
    pub trace_id: String,
    /// First wait before a permanently failed change is sent again.
    pub backoff_base: Duration,
}

impl Books {
    /// A step that needs no agent: adopt, record foreign, forget.
    pub async fn ledger_only(
        &self,
        db: &mut Batch,
        step: &Step,
        report: &mut RunReport,
    ) -> Result<()> {
        let remote_id = step.target.remote_id();
        match step.action {
            Action::Adopt => {
                db.ledger_put(&ledger_row(step, LedgerState::Created, remote_id))
                    .await?
            }
            Action::RecordForeign => {
                db.ledger_put(&ledger_row(step, LedgerState::Foreign, remote_id))
                    .await?
            }
            Action::Forget => {
                db.ledger_delete(step.resource.as_str(), step.key.as_str())
                    .await?
            }
            Action::Defer { due_at } => {
                db.pending_put(
                    step.resource.as_str(),
                    step.key.as_str(),
                    &step.username,
                    due_at,
                    &step.reason,
                )
                .await?
            }
            Action::Cancel => {
                db.pending_delete(step.resource.as_str(), step.key.as_str())
                    .await?
            }
            // Target writes are recorded by `record`.
            _ => return Ok(()),
        }
        self.audit(db, step, "ok", "").await?;
        report.count(step, "ok");
        Ok(())
    }

    /// Writes the intent of a create, before the agent is asked.
    pub async fn intent(&self, db: &mut Batch, step: &Step) -> Result<()> {
        db.ledger_put(&ledger_row(step, LedgerState::Intent, String::new()))
            .await
    }

    /// Records one change's outcome in the ledger, the backoff table and the
    /// audit log. The secret of a created app password is never read here;
    /// nothing in this path may format `result` as a whole.
    pub async fn record(
        &self,
        db: &mut Batch,
        step: &Step,
        result: &pb::ChangeResult,
        report: &mut RunReport,
    ) -> Result<()> {
        let outcome = result.outcome();
        match outcome {
            Outcome::Applied | Outcome::Unchanged => self.applied(db, step, result).await?,
            Outcome::Transient => {
                report.transient_failures += 1;
                self.unsettled(db, step, false).await?;
            }
            // The agent found the object there already and left it: our
            // create certainly did not make it.
            Outcome::Refused => {
                report.permanent_failures += 1;
                report.failed(step, &result.message);
                self.unsettled(db, step, true).await?;
            }
            // A target can report a failure for a write it applied (Mailcow
            // answers an error message for a change it made): the intent
            // stays, and the next observation settles it.
            _ => {
                report.permanent_failures += 1;
                report.failed(step, &result.message);
                self.unsettled(db, step, false).await?;
            }
        }
        self.backoff(db, step, result).await?;
        let detail = if result.implicitly_allowed.is_empty() {
            result.message.clone()
        } else {
            format!(
                "{} (already allowed through an alias: {})",
                result.message,
                result.implicitly_allowed.join(", ")
            )
        };
        let label = outcome_label(outcome);
        self.audit(db, step, label, &detail).await?;
        report.count(step, label);
        Ok(())
    }

    async fn applied(&self, db: &mut Batch, step: &Step, result: &pb::ChangeResult) -> Result<()> {
        match step.action {
            Action::Create => {
                // The target's id; else what the step knows (the value it
                // set, e.g. a power level); empty when neither names one.
                let remote_id = if result.remote_id.is_empty() {
                    step.target.remote_id()
                } else {
                    result.remote_id.clone()
                };
                db.ledger_put(&ledger_row(step, LedgerState::Created, remote_id))
                    .await
            }
            // An update that changes what the ledger remembers of the
            // object (the power level we set) keeps the ledger in step.
            Action::Update => {
                let remote_id = step.target.remote_id();
                let row = db
                    .ledger_get(step.resource.as_str(), step.key.as_str())
                    .await?;
                match row {
                    Some(mut row) if !remote_id.is_empty() && row.remote_id != remote_id => {
                        row.remote_id = remote_id;
                        db.ledger_put(&row).await
                    }
                    _ => Ok(()),
                }
            }
            Action::Delete => {
                let deleted = step.target.remote_id();
                let row = db
                    .ledger_get(step.resource.as_str(), step.key.as_str())
                    .await?;
                if row.is_some_and(|r| r.remote_id.is_empty() || r.remote_id == deleted) {
                    db.ledger_delete(step.resource.as_str(), step.key.as_str())
                        .await?;
                }
                Ok(())
            }
            // Re-keyed (or adopted and re-keyed) with the secret it now has.
            Action::Rekey => {
                db.ledger_put(&ledger_row(
                    step,
                    LedgerState::Created,
                    step.target.remote_id(),
                ))
                .await
            }
            _ => Ok(()),
        }
    }

    /// A change refused for good waits (per object, doubling) before it is
    /// sent again, unless its inputs change; success clears the wait.
    async fn backoff(&self, db: &mut Batch, step: &Step, result: &pb::ChangeResult) -> Result<()> {
        match result.outcome() {
            Outcome::Applied | Outcome::Unchanged => {
                db.backoff_clear(step.resource.as_str(), step.key.as_str())
                    .await
            }
            Outcome::Permanent | Outcome::Config | Outcome::Refused => {
                db.backoff_failed(
                    step.resource.as_str(),
                    step.key.as_str(),
                    &fingerprint(step),
                    &result.message,
                    self.backoff_base,
                    MAX_FAILURE_BACKOFF,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    /// A step that was not sent (or not answered): audited as transient.
    /// `made_nothing`: it certainly was not applied.
    pub async fn not_sent(
        &self,
        db: &mut Batch,
        step: &Step,
        why: &str,
        made_nothing: bool,
        report: &mut RunReport,
    ) -> Result<()> {
        self.audit(db, step, "transient", why).await?;
        report.transient(step);
        self.unsettled(db, step, made_nothing).await
    }

    /// The agent call carrying `step` failed as a whole: transient failures
    /// are retried with the job; a configuration error is reported as such
    /// (an operator must act) and, like any failure, may have been applied.
    pub async fn call_failed(
        &self,
        db: &mut Batch,
        step: &Step,
        error: &crate::Error,
        report: &mut RunReport,
    ) -> Result<()> {
        if error.is_transient() {
            return self
                .not_sent(db, step, &error.to_string(), false, report)
                .await;
        }
        let label = outcome_label(error.outcome());
        self.audit(db, step, label, &error.to_string()).await?;
        report.count(step, label);
        report.permanent_failures += 1;
        report.failed(step, &error.to_string());
        self.unsettled(db, step, false).await
    }

    /// A change that did not happen, or may not have. A create's intent
    /// row goes only when `made_nothing` is certain; otherwise it stays,
    /// and the next run's observation resolves it: present → ours
    /// (adopted), absent → dropped or created again. A re-key that did not
    /// happen is remembered, so the next run re-keys again instead of
    /// leaving a dead password.
    pub async fn unsettled(&self, db: &mut Batch, step: &Step, made_nothing: bool) -> Result<()> {
        match step.action {
            Action::Create if made_nothing => {
                let row = db
                    .ledger_get(step.resource.as_str(), step.key.as_str())
                    .await?;
                if row.is_some_and(|r| r.state == LedgerState::Intent && r.remote_id.is_empty()) {
                    db.ledger_delete(step.resource.as_str(), step.key.as_str())
                        .await?;
                }
            }
            Action::Rekey => {
                db.ledger_put(&ledger_row(
                    step,
                    LedgerState::Intent,
                    step.target.remote_id(),
                ))
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    pub async fn audit(
        &self,
        db: &mut Batch,
        step: &Step,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        db.audit(AuditEntry {
            job_id: self.job_id,
            trace_id: &self.trace_id,
            resource: step.resource.as_str(),
            key: step.key.as_str(),
            action: step.action.as_str(),
            outcome,
            reason: &step.reason,
            detail,
        })
        .await
    }
}

fn ledger_row(step: &Step, state: LedgerState, remote_id: String) -> LedgerRow {
    LedgerRow {
        resource: step.resource.as_str().to_owned(),
        key: step.key.clone(),
        state,
        username: step.username.clone(),
        groups: step.groups.clone(),
        remote_id,
    }
}

/// Identifies a change (what it does to which object, with which values),
/// so a backoff applies only while the change stays the same. Stable within
/// a build; after an upgrade a waiting change is simply tried once more.
pub(super) fn fingerprint(step: &Step) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    step.action.as_str().hash(&mut hasher);
    serde_json::to_string(&step.target)
        .unwrap_or_default()
        .hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "applied",
        Outcome::DryRun => "dry_run",
        Outcome::Unchanged => "unchanged",
        Outcome::Transient => "transient",
        Outcome::Permanent => "permanent",
        Outcome::Config => "config",
        Outcome::Refused => "refused",
        Outcome::Unspecified => "unspecified",
    }
}
