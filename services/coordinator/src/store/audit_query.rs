//! Reading the audit log: filters, newest first, one page at a time. Pages
//! are keyed by row id (`id < cursor`), not offsets, so a walk neither
//! skips nor repeats rows while new ones are written (they are newer than
//! every page) and each page is an index range, however deep.

use serde::Serialize;

use super::Store;
use crate::error::Result;

/// What to read. Every filter is optional; they combine with AND.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub source: Option<String>,
    /// An exact action, or a prefix ending in `*` (`stalwart.*`).
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub before: Option<i64>,
    /// Case-insensitive substring of key, detail or metadata.
    pub q: Option<String>,
    /// Only rows with a smaller id (the previous page's last).
    pub below_id: Option<i64>,
    pub limit: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    pub source: String,
    pub action: String,
    pub outcome: String,
    pub actor: String,
    pub remote_ip: String,
    pub resource: String,
    pub key: String,
    pub reason: String,
    pub detail: String,
    pub job_id: i64,
    pub trace_id: String,
    pub external_id: Option<String>,
    pub received_from: String,
    /// JSON text.
    pub metadata: String,
}

impl Store {
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        // One static statement for every combination of filters: a filter
        // left out is a NULL parameter, and `$n IS NULL OR …` lets every
        // row through it.
        let (exact_action, prefix) = match query.action.as_deref() {
            Some(action) => match action.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix.trim_end_matches('*').to_owned())),
                None => (Some(action.to_owned()), None),
            },
            None => (None, None),
        };
        // substr, not LIKE: an action may contain `_`, LIKE's wildcard.
        let prefix_len = prefix.as_ref().map(|p| p.chars().count() as i64);
        // instr over lower(): a plain substring, no pattern characters.
        let q = query
            .q
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        Ok(sqlx::query_as(
            "SELECT id, at, source, action, outcome, actor, remote_ip, resource, key, reason,
                    detail, job_id, trace_id, external_id, received_from, metadata
             FROM audit
             WHERE ($1 IS NULL OR source = $1)
               AND ($2 IS NULL OR outcome = $2)
               AND ($3 IS NULL OR actor = $3)
               AND ($4 IS NULL OR action = $4)
               AND ($5 IS NULL OR substr(action, 1, CAST($6 AS INTEGER)) = $5)
               AND ($7 IS NULL OR at >= $7)
               AND ($8 IS NULL OR at < $8)
               AND ($9 IS NULL OR instr(lower(key), $9) > 0 OR instr(lower(detail), $9) > 0
                    OR instr(lower(metadata), $9) > 0)
               AND ($10 IS NULL OR id < $10)
             ORDER BY id DESC LIMIT $11",
        )
        .bind(query.source.as_deref())
        .bind(query.outcome.as_deref())
        .bind(query.actor.as_deref())
        .bind(exact_action)
        .bind(prefix)
        .bind(prefix_len)
        .bind(query.since)
        .bind(query.before)
        .bind(q)
        .bind(query.below_id)
        .bind(query.limit)
        .fetch_all(&self.reader)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuditEntry, IngestedEvent};

    fn event(id: &str, action: &'static str, actor: &str, at: i64) -> IngestedEvent {
        IngestedEvent {
            source: "stalwart",
            external_id: id.into(),
            at,
            action,
            outcome: "failure",
            actor: actor.into(),
            remote_ip: "203.0.113.5".into(),
            received_from: String::new(),
            key: actor.into(),
            reason: "auth.failed".into(),
            detail: String::new(),
            metadata: format!(r#"{{"id":"{id}","note":"Needle"}}"#),
        }
    }

    fn all() -> AuditQuery {
        AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        }
    }

    #[tokio::test]
    async fn ingested_and_own_rows_side_by_side() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        // The reconciler's writer is unchanged and gets the defaults.
        store
            .audit(AuditEntry {
                job_id: 1,
                trace_id: "t",
                resource: "alias",
                key: "a@x.org",
                action: "create",
                outcome: "applied",
                reason: "",
                detail: "",
            })
            .await
            .unwrap();
        let batch = [
            event("1", "stalwart.login_failed", "alice", 1000),
            event("2", "stalwart.login", "bob", 2000),
            event("1", "stalwart.login_failed", "alice", 1000),
        ];
        let done = store.ingest(&batch).await.unwrap();
        assert_eq!((done.new, done.duplicates), (2, 1));
        let again = store.ingest(&batch[..2]).await.unwrap();
        assert_eq!((again.new, again.duplicates), (0, 2));

        let rows = store.audit_page(&all()).await.unwrap();
        assert_eq!(rows.len(), 3);
        let own = rows.iter().find(|r| r.source == "reconciler").unwrap();
        assert_eq!(
            (own.external_id.as_deref(), own.metadata.as_str()),
            (None, "{}")
        );

        let count = |q: AuditQuery| {
            let store = store.clone();
            async move { store.audit_page(&q).await.unwrap().len() }
        };
        let q = |f: fn(&mut AuditQuery)| {
            let mut q = all();
            f(&mut q);
            q
        };
        assert_eq!(count(q(|q| q.source = Some("stalwart".into()))).await, 2);
        assert_eq!(count(q(|q| q.action = Some("stalwart.*".into()))).await, 2);
        assert_eq!(
            count(q(|q| q.action = Some("stalwart.login".into()))).await,
            1
        );
        assert_eq!(count(q(|q| q.actor = Some("alice".into()))).await, 1);
        assert_eq!(count(q(|q| q.outcome = Some("applied".into()))).await, 1);
        assert_eq!(count(q(|q| q.since = Some(2000))).await, 2);
        assert_eq!(count(q(|q| q.before = Some(2000))).await, 1);
        assert_eq!(count(q(|q| q.q = Some("needle".into()))).await, 2);
        assert_eq!(count(q(|q| q.q = Some("A@X".into()))).await, 1);
        // `_` and `%` are not patterns.
        assert_eq!(count(q(|q| q.action = Some("stalwart_*".into()))).await, 0);
        assert_eq!(count(q(|q| q.q = Some("%".into()))).await, 0);

        let first = store
            .audit_page(&AuditQuery { limit: 2, ..all() })
            .await
            .unwrap();
        let rest = store
            .audit_page(&AuditQuery {
                below_id: first.last().map(|r| r.id),
                ..all()
            })
            .await
            .unwrap();
        let mut ids: Vec<i64> = first.iter().chain(&rest).map(|r| r.id).collect();
        assert_eq!(ids.len(), 3);
        ids.dedup();
        assert_eq!(ids.len(), 3);
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_leaves_nothing() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        // A storage failure on the second event of the batch.
        sqlx::query(
            "CREATE TRIGGER boom BEFORE INSERT ON audit WHEN NEW.external_id = 'boom'
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        let batch = [
            event("ok", "stalwart.login", "alice", 1),
            event("boom", "stalwart.login", "bob", 2),
        ];
        assert!(store.ingest(&batch).await.is_err());
        assert!(store.audit_page(&all()).await.unwrap().is_empty());
    }
}
