//! Applying a plan: ledger-only steps, backoff, then each adapter's changes
//! in batches, every outcome recorded.

use std::collections::BTreeMap;

use reconciler_proto::agent::ChangeResult;
use reconciler_runtime::secrets::Secret;
use tracing::warn;

use super::bookkeeping::{Books, fingerprint};
use super::{Engine, RunReport};
use crate::error::Result;
use crate::plan::{Action, Plan, Step};
use crate::targets::{Call, DynAdapter, Secrets};

impl Engine {
    pub(super) async fn apply(&self, job_id: i64, plan: &Plan) -> Result<RunReport> {
        let books = Books {
            job_id,
            trace_id: reconciler_runtime::telemetry::current_trace_id(),
            backoff_base: self.config.failure_backoff_base,
        };
        let mut report = RunReport {
            planned: plan.steps.len(),
            warnings: plan.warnings.clone(),
            removals_held: plan.removals_held,
            ..RunReport::default()
        };
        for w in &plan.warnings {
            warn!(warning = %w, "plan warning");
        }
        // Held because unreadable: nothing was planned for them, so
        // nothing is recorded; a transient reason retries the job.
        for held in plan.held.iter().filter(|h| h.transient) {
            report.transient_failures += 1;
            report.count_as(&format!("{}.observe", held.resource.as_str()), "transient");
        }
        // Ledger-only steps first: they need no agent.
        let ledger_only: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| !s.action.writes_target())
            .collect();
        if !ledger_only.is_empty() {
            let mut db = self.store.batch().await?;
            for step in ledger_only {
                books.ledger_only(&mut db, step, &mut report).await?;
            }
            db.commit().await?;
        }
        let writes = self.past_backoff(plan, &mut report).await?;
        // Every intent is durable before the first call is sent.
        if writes.iter().any(|s| s.action == Action::Create) {
            let mut db = self.store.batch().await?;
            for step in writes.iter().filter(|s| s.action == Action::Create) {
                books.intent(&mut db, step).await?;
            }
            db.commit().await?;
        }
        // Adapters in order, so secrets reach the adapters that use them.
        let mut secrets = Secrets::new();
        for adapter in self.adapters.iter() {
            let steps: Vec<&Step> = writes
                .iter()
                .copied()
                .filter(|s| adapter.resources().contains(&s.resource))
                .collect();
            if steps.is_empty() {
                continue;
            }
            let prepared = adapter.prepare(&steps, &secrets);
            if !prepared.waiting.is_empty() {
                let mut db = self.store.batch().await?;
                for (step, why) in prepared.waiting {
                    // Never sent: nothing was made.
                    books
                        .not_sent(&mut db, step, &why, true, &mut report)
                        .await?;
                }
                db.commit().await?;
            }
            let made = self
                .send(&books, adapter.as_ref(), prepared.calls, &mut report)
                .await?;
            secrets.extend(made);
        }
        // Planned only when observed, so only reachable if an adapter went
        // away mid-run: retry later.
        let orphaned: Vec<&&Step> = writes
            .iter()
            .filter(|s| self.adapters.owner(s.resource).is_none())
            .collect();
        if !orphaned.is_empty() {
            let mut db = self.store.batch().await?;
            for step in orphaned {
                let why = format!("no agent is configured for {}", step.resource.as_str());
                books
                    .not_sent(&mut db, step, &why, true, &mut report)
                    .await?;
            }
            db.commit().await?;
        }
        // Every secret dies here: it was only ever in this run's memory.
        drop(secrets);
        report.explain_failures(|cause| self.adapters.iter().find_map(|a| a.hint(cause)));
        Ok(report)
    }

    /// The target writes to send: a change the target refused for good is
    /// not re-sent every sweep; it waits (per object, doubling) unless its
    /// inputs changed.
    async fn past_backoff<'p>(
        &self,
        plan: &'p Plan,
        report: &mut RunReport,
    ) -> Result<Vec<&'p Step>> {
        let backoffs = self.store.backoffs().await?;
        let now = crate::store::now_millis();
        let mut writes = Vec::new();
        for step in plan.steps.iter().filter(|s| s.action.writes_target()) {
            let key = (step.resource.as_str().to_owned(), step.key.to_string());
            match backoffs.get(&key) {
                Some(b) if b.holds(&fingerprint(step), now) => {
                    report.count(step, "backing_off");
                    report.backing_off += 1;
                }
                _ => writes.push(step),
            }
        }
        if report.backing_off > 0 {
            report.warnings.push(format!(
                "{} change(s) not sent: each failed permanently before and waits before the next \
                 attempt (sent at once when its group, member or target changes)",
                report.backing_off
            ));
        }
        Ok(writes)
    }

    /// Sends the adapter's calls one after another, recording every
    /// outcome of a call (in one transaction) before the next is sent.
    /// Returns the secrets the agent produced, by step key.
    async fn send(
        &self,
        books: &Books,
        adapter: &dyn DynAdapter,
        calls: Vec<Call<'_>>,
        report: &mut RunReport,
    ) -> Result<Secrets> {
        let mut secrets = BTreeMap::new();
        for Call { changes, send } in calls {
            let results = match send.await {
                Ok(applied) => {
                    report.doveadm_execs += applied.cost.doveadm_execs;
                    report.doveadm_acl_writes += applied.cost.doveadm_acl_writes;
                    applied.results
                }
                Err(e) => {
                    // The whole call failed: nothing is recorded as done.
                    let mut db = self.store.batch().await?;
                    for step in changes.iter().flat_map(|(_, steps)| steps) {
                        books.call_failed(&mut db, step, &e, report).await?;
                    }
                    db.commit().await?;
                    continue;
                }
            };
            let by_id: BTreeMap<&str, &ChangeResult> =
                results.iter().map(|r| (r.id.as_str(), r)).collect();
            // Adapters record what they need through the store themselves,
            // so before the batch takes the write lock.
            for (id, steps) in &changes {
                if let Some(result) = by_id.get(id.as_str()) {
                    for step in steps {
                        adapter.settle(&self.store, step, result, report).await?;
                    }
                }
            }
            let mut db = self.store.batch().await?;
            for (id, steps) in changes {
                let Some(result) = by_id.get(id.as_str()) else {
                    for step in steps {
                        books
                            .not_sent(&mut db, step, "agent returned no result", false, report)
                            .await?;
                    }
                    continue;
                };
                for step in steps {
                    if !result.secret.is_empty() {
                        secrets.insert(step.key.clone(), Secret::new(result.secret.clone()));
                    }
                    books.record(&mut db, step, result, report).await?;
                }
            }
            db.commit().await?;
        }
        Ok(secrets)
    }
}
