//! The coordinator's gRPC service: reconcile, sweep, plan (dry-run), status,
//! the ledger listing and the audit log.

use std::sync::Arc;

use reconciler_proto::coordinator::{self as pb, coordinator_server::Coordinator, subject::Kind};
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::error::Error;
use crate::health;
use crate::subject::Subject;

pub struct CoordinatorService {
    pub engine: Arc<Engine>,
    pub wake: Arc<Notify>,
}

fn subject(s: Option<pb::Subject>) -> Result<Option<Subject>, Error> {
    match s.and_then(|s| s.kind) {
        None => Ok(None),
        Some(Kind::User(u)) if !u.trim().is_empty() => Ok(Some(Subject::User(u.trim().into()))),
        Some(Kind::Group(g)) if !g.trim().is_empty() => Ok(Some(Subject::Group(g.trim().into()))),
        Some(_) => Err(Error::InvalidInput("subject must not be empty".into())),
    }
}

impl CoordinatorService {
    async fn enqueue(
        &self,
        subject: &Subject,
        force: bool,
        trigger: &str,
    ) -> Result<pb::JobRef, Error> {
        let job = self
            .engine
            .store()
            .enqueue(subject, force, trigger, None)
            .await?;
        self.wake.notify_one();
        Ok(pb::JobRef {
            job_id: job.job_id,
            deduplicated: job.deduplicated,
        })
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::JobRef>, Status> {
        let subject = subject(request.into_inner().subject)?
            .ok_or_else(|| Error::InvalidInput("subject is required".into()))?;
        Ok(Response::new(self.enqueue(&subject, false, "grpc").await?))
    }

    async fn sweep(
        &self,
        request: Request<pb::SweepRequest>,
    ) -> Result<Response<pb::JobRef>, Status> {
        let force = request.into_inner().force;
        Ok(Response::new(
            self.enqueue(&Subject::All, force, "grpc").await?,
        ))
    }

    async fn plan(
        &self,
        request: Request<pb::PlanRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        let subject = subject(request.into_inner().subject)?.unwrap_or(Subject::All);
        let prepared = self.engine.prepare(&subject, false).await?;
        let changes = prepared
            .plan
            .steps
            .iter()
            .map(|s| crate::explain::planned_change(s, &prepared.directory, self.engine.adapters()))
            .collect();
        Ok(Response::new(pb::PlanResponse {
            changes,
            warnings: prepared.plan.warnings,
            removals_held: prepared.plan.removals_held as i64,
        }))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let job_id = request.into_inner().job_id;
        let store = self.engine.store();
        let counts = store.job_counts().await?;
        let last_sweep_finished = store
            .get_meta("last_sweep_finished")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let job = if job_id != 0 {
            let row = store
                .job(job_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("job {job_id}")))?;
            Some(pb::JobStatus {
                id: row.id,
                subject: row.subject,
                state: row.state,
                attempts: row.attempts as i32,
                last_error: row.last_error,
                summary: row.summary,
            })
        } else {
            None
        };
        let components = health::check(&self.engine)
            .await
            .components
            .into_iter()
            .map(|(name, c)| pb::ComponentStatus {
                name,
                healthy: c.healthy,
                detail: c.detail,
            })
            .collect();
        let pending_removals = self
            .engine
            .store()
            .pending_removals()
            .await?
            .into_iter()
            .map(wire::pending_removal)
            .collect();
        let failing = self
            .engine
            .failing_causes()
            .await?
            .into_iter()
            .map(|f| pb::FailingCause {
                resource: wire::resource_named(&f.resource) as i32,
                hint: f.hint.unwrap_or_default().to_owned(),
                cause: f.cause,
                objects: f.objects as i64,
            })
            .collect();
        Ok(Response::new(pb::StatusResponse {
            queued: counts.queued,
            running: counts.running,
            failed: counts.failed,
            done: counts.done,
            last_sweep_finished,
            components,
            job,
            pending_removals,
            failing,
        }))
    }

    async fn explain(
        &self,
        request: Request<pb::ExplainRequest>,
    ) -> Result<Response<pb::ExplainResponse>, Status> {
        let user = request.into_inner().user;
        Ok(Response::new(
            crate::explain::explain(&self.engine, &user).await?,
        ))
    }

    async fn list_owned(
        &self,
        request: Request<pb::ListOwnedRequest>,
    ) -> Result<Response<pb::ListOwnedResponse>, Status> {
        let resource = request.into_inner().resource();
        let filter = wire::from_resource(resource).map(|r| r.as_str());
        let rows = self.engine.store().ledger_rows(filter).await?;
        let objects = rows
            .into_iter()
            .map(|r| pb::OwnedObject {
                resource: wire::resource_named(&r.resource) as i32,
                key: r.key.to_string(),
                state: wire::ledger_state(r.state) as i32,
                user: r.username,
                remote_id: r.remote_id,
            })
            .collect();
        Ok(Response::new(pb::ListOwnedResponse { objects }))
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let r = request.into_inner();
        let text = |s: String| (!s.is_empty()).then_some(s);
        let time = |ms: i64| (ms != 0).then(|| ms.to_string());
        let filters = crate::audit_api::Filters {
            source: text(r.source),
            action: text(r.action),
            outcome: text(r.outcome),
            actor: text(r.actor),
            since: time(r.since_ms),
            before: time(r.before_ms),
            q: text(r.q),
            cursor: text(r.cursor),
            limit: (r.limit != 0).then_some(i64::from(r.limit)),
            format: None,
        };
        let query = filters.query().map_err(Error::InvalidInput)?;
        let rows = self.engine.store().audit_page(&query).await?;
        let (rows, next) = crate::audit_api::page(rows, &query);
        let entries = rows
            .into_iter()
            .map(|r| pb::AuditEntry {
                id: r.id,
                at_ms: r.at,
                source: r.source,
                action: r.action,
                outcome: r.outcome,
                actor: r.actor,
                remote_ip: r.remote_ip,
                resource: r.resource,
                key: r.key,
                reason: r.reason,
                detail: r.detail,
                job_id: r.job_id,
                trace_id: r.trace_id,
                external_id: r.external_id.unwrap_or_default(),
                received_from: r.received_from,
                metadata_json: r.metadata,
            })
            .collect();
        Ok(Response::new(pb::AuditResponse {
            entries,
            next_cursor: next.unwrap_or_default(),
        }))
    }
}

/// The operator contract's enums for the planner's and the ledger's types.
pub(crate) mod wire {
    use reconciler_proto::coordinator as pb;

    use crate::ledger::LedgerState;
    use crate::plan::{Action, Resource};

    pub fn action(action: Action) -> pb::Action {
        match action {
            Action::Create => pb::Action::Create,
            Action::Update => pb::Action::Update,
            Action::Delete => pb::Action::Delete,
            Action::Rotate => pb::Action::Rotate,
            Action::Rekey => pb::Action::Rekey,
            Action::Evict => pb::Action::Evict,
            Action::Adopt => pb::Action::Adopt,
            Action::RecordForeign => pb::Action::RecordForeign,
            Action::Forget => pb::Action::Forget,
            Action::Defer { .. } => pb::Action::Defer,
            Action::Cancel => pb::Action::Cancel,
        }
    }

    pub fn resource(resource: Resource) -> pb::Resource {
        match resource {
            Resource::SenderAcl => pb::Resource::SenderAcl,
            Resource::AppPassword => pb::Resource::AppPassword,
            Resource::Alias => pb::Resource::Alias,
            Resource::MailboxAcl => pb::Resource::MailboxAcl,
            Resource::SogoDelegation => pb::Resource::SogoDelegation,
            Resource::NextcloudAccount => pb::Resource::NextcloudAccount,
            Resource::SogoCacheEviction => pb::Resource::SogoCacheEviction,
            Resource::MatrixMembership => pb::Resource::MatrixMembership,
            Resource::MatrixPowerLevel => pb::Resource::MatrixPowerLevel,
            Resource::MatrixBan => pb::Resource::MatrixBan,
            Resource::MatrixAccount => pb::Resource::MatrixAccount,
            Resource::StalwartDomain => pb::Resource::StalwartDomain,
            Resource::StalwartAccount => pb::Resource::StalwartAccount,
            Resource::StalwartSuspension => pb::Resource::StalwartSuspension,
            Resource::StalwartAlias => pb::Resource::StalwartAlias,
            Resource::StalwartList => pb::Resource::StalwartList,
        }
    }

    /// A removal waiting out its grace period, as `Status` and `Explain` show it.
    pub fn pending_removal(p: crate::store::PendingRemoval) -> pb::PendingRemoval {
        pb::PendingRemoval {
            resource: resource_named(&p.resource) as i32,
            key: p.key,
            user: p.username,
            due_at_ms: p.due_at,
            since_ms: p.since,
            reason: p.reason,
        }
    }

    /// The resource of a ledger row's name; UNSPECIFIED for a name this
    /// version does not know.
    pub fn resource_named(name: &str) -> pb::Resource {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .map_or(pb::Resource::Unspecified, resource)
    }

    /// The planner's resource of a request's; `None` (every resource) for
    /// UNSPECIFIED.
    pub fn from_resource(wire: pb::Resource) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| resource(*r) == wire)
    }

    pub fn ledger_state(state: LedgerState) -> pb::LedgerState {
        match state {
            LedgerState::Intent => pb::LedgerState::Intent,
            LedgerState::Created => pb::LedgerState::Created,
            LedgerState::Foreign => pb::LedgerState::Foreign,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_resource_goes_and_comes_back() {
            for r in Resource::ALL {
                assert_eq!(from_resource(resource(r)), Some(r));
                assert_eq!(resource_named(r.as_str()), resource(r));
            }
            assert_eq!(from_resource(pb::Resource::Unspecified), None);
            assert_eq!(resource_named("no_such"), pb::Resource::Unspecified);
        }
    }
}
