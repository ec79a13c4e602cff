//! Ownership records: what we created (or found and must never remove).

use std::collections::BTreeSet;

use sqlx::Row;

use super::{Store, now_millis};
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerState {
    /// Recorded before asking the target to create; the target may or may
    /// not have done it. The next run adopts or retries.
    Intent,
    /// The target confirmed the create.
    Created,
    /// It existed before we wanted it: a person made it. Never removed.
    Foreign,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Created => "created",
            Self::Foreign => "foreign",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "created" => Self::Created,
            "foreign" => Self::Foreign,
            _ => Self::Intent,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    pub resource: String,
    pub key: String,
    pub state: LedgerState,
    pub username: String,
    pub groups: BTreeSet<String>,
    pub remote_id: String,
}

impl Store {
    pub async fn ledger_rows(&self, resource: Option<&str>) -> Result<Vec<LedgerRow>> {
        let rows = sqlx::query(
            "SELECT resource, key, state, username, groups, remote_id FROM ledger
             WHERE ?1 IS NULL OR resource = ?1 ORDER BY resource, key",
        )
        .bind(resource)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(row_to_ledger).collect())
    }

    pub async fn ledger_get(&self, resource: &str, key: &str) -> Result<Option<LedgerRow>> {
        let row = sqlx::query(
            "SELECT resource, key, state, username, groups, remote_id FROM ledger
             WHERE resource = ? AND key = ?",
        )
        .bind(resource)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(row_to_ledger))
    }

    pub async fn ledger_put(&self, row: &LedgerRow) -> Result<()> {
        let now = now_millis();
        let groups = serde_json::to_string(&row.groups).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO ledger (resource, key, state, username, groups, remote_id, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (resource, key) DO UPDATE SET state = excluded.state,
               username = excluded.username, groups = excluded.groups,
               remote_id = excluded.remote_id, updated_at = excluded.updated_at",
        )
        .bind(&row.resource)
        .bind(&row.key)
        .bind(row.state.as_str())
        .bind(&row.username)
        .bind(groups)
        .bind(&row.remote_id)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ledger_delete(&self, resource: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM ledger WHERE resource = ? AND key = ?")
            .bind(resource)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn row_to_ledger(r: sqlx::sqlite::SqliteRow) -> LedgerRow {
    LedgerRow {
        resource: r.get("resource"),
        key: r.get("key"),
        state: LedgerState::parse(&r.get::<String, _>("state")),
        username: r.get("username"),
        groups: serde_json::from_str(&r.get::<String, _>("groups")).unwrap_or_default(),
        remote_id: r.get("remote_id"),
    }
}
