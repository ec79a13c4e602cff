//! The audit log: one row per attempted change.

use super::{Store, now_millis};
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct AuditEntry<'a> {
    pub job_id: i64,
    pub trace_id: &'a str,
    pub resource: &'a str,
    pub key: &'a str,
    pub action: &'a str,
    pub outcome: &'a str,
    pub reason: &'a str,
    /// Never a secret: callers pass agent messages, which are secret-free.
    pub detail: &'a str,
}

impl Store {
    pub async fn audit(&self, entry: AuditEntry<'_>) -> Result<()> {
        audit(&mut *self.write_conn().await?, entry).await
    }
}

pub(super) async fn audit(conn: &mut sqlx::AnyConnection, entry: AuditEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, job_id, trace_id, resource, key, action, outcome, reason, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_millis())
    .bind(entry.job_id)
    .bind(entry.trace_id)
    .bind(entry.resource)
    .bind(entry.key)
    .bind(entry.action)
    .bind(entry.outcome)
    .bind(entry.reason)
    .bind(entry.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An event another system reported (an ingested webhook event), stored as
/// an audit row of its `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestedEvent {
    pub source: &'static str,
    /// The sender's event id: with `source`, what makes a replay a duplicate.
    pub external_id: String,
    /// When the event happened (unix ms).
    pub at: i64,
    pub action: &'static str,
    pub outcome: &'static str,
    pub actor: String,
    pub remote_ip: String,
    pub received_from: String,
    /// What the event is about (an account, a recipient, a domain).
    pub key: String,
    pub reason: String,
    pub detail: String,
    /// JSON: the event as received.
    pub metadata: String,
}

/// What storing a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    pub new: u64,
    pub duplicates: u64,
}

impl Store {
    /// Stores a batch in one transaction: all of it or (on an error) none,
    /// so a sender that retries after our error does not find it half
    /// there. An event already stored (same source and id) is counted, not
    /// stored again.
    pub async fn ingest(&self, events: &[IngestedEvent]) -> Result<Ingested> {
        let mut tx = self.write_tx().await?;
        let mut done = Ingested::default();
        for e in events {
            let inserted = sqlx::query(
                "INSERT INTO audit (at, job_id, resource, key, action, outcome, reason, detail,
                                    source, external_id, actor, remote_ip, received_from, metadata)
                 VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (source, external_id) WHERE external_id IS NOT NULL DO NOTHING",
            )
            .bind(e.at)
            .bind(e.source)
            .bind(&e.key)
            .bind(e.action)
            .bind(e.outcome)
            .bind(&e.reason)
            .bind(&e.detail)
            .bind(e.source)
            .bind(&e.external_id)
            .bind(&e.actor)
            .bind(&e.remote_ip)
            .bind(&e.received_from)
            .bind(&e.metadata)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                done.duplicates += 1;
            } else {
                done.new += 1;
            }
        }
        tx.commit().await?;
        Ok(done)
    }
}
