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
        sqlx::query(
            "INSERT INTO audit (at, job_id, trace_id, resource, key, action, outcome, reason, detail)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
