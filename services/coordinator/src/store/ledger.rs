//! Ownership records: what we created (or found and must never remove).

use reconciler_proto::mailcow::markers;
use sqlx::{AnyConnection, Row};

use super::{Store, now_millis};
use crate::error::{Error, Result};
use crate::ledger::keys;
use crate::ledger::{LedgerKey, LedgerRow, LedgerState};

/// The ledger's resource name for Mailcow app passwords.
const APP_PASSWORD: &str = "app_password";

impl Store {
    pub async fn ledger_rows(&self, resource: Option<&str>) -> Result<Vec<LedgerRow>> {
        let rows = sqlx::query(
            "SELECT resource, key, state, username, groups, remote_id FROM ledger
             WHERE $1 IS NULL OR resource = $1 ORDER BY resource, key",
        )
        .bind(resource)
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(row_to_ledger).collect()
    }

    pub async fn ledger_get(&self, resource: &str, key: &str) -> Result<Option<LedgerRow>> {
        get(&mut *self.reader.acquire().await?, resource, key).await
    }

    pub async fn ledger_put(&self, row: &LedgerRow) -> Result<()> {
        put(&mut *self.write_conn().await?, row).await
    }
}

pub(super) async fn put(conn: &mut AnyConnection, row: &LedgerRow) -> Result<()> {
    let now = now_millis();
    let groups = serde_json::to_string(&row.groups).unwrap_or_else(|_| "[]".into());
    sqlx::query(
            "INSERT INTO ledger (resource, key, state, username, groups, remote_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (resource, key) DO UPDATE SET state = excluded.state,
               username = excluded.username, groups = excluded.groups,
               remote_id = excluded.remote_id, updated_at = excluded.updated_at",
        )
        .bind(&row.resource)
        .bind(row.key.as_str())
        .bind(row.state.as_str())
        .bind(&row.username)
        .bind(groups)
        .bind(&row.remote_id)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Re-keys app password rows written before names were percent-encoded
    /// (`info@x|authentik-sync:o'neil:info@x`) to the name we would make
    /// today. Ownership is read from the ledger alone, so a row under the
    /// old key would never match the object again: it would be forgotten,
    /// the object would look like a person's, and a leaver would keep it.
    /// Idempotent; a row whose current key is already taken is left as it
    /// is (and forgotten by the next run, like any row whose object is gone).
    pub async fn canonicalize_app_password_keys(&self) -> Result<usize> {
        let mut moved = 0;
        for row in self.ledger_rows(Some(APP_PASSWORD)).await? {
            let Some((mailbox, name)) = keys::parse_app_password(&row.key) else {
                continue;
            };
            let Some(canonical) = markers::canonical_app_password_name(name) else {
                continue;
            };
            if canonical == name {
                continue;
            }
            let key = keys::app_password(mailbox, &canonical);
            let done = sqlx::query(
                "UPDATE ledger SET key = $1 WHERE resource = $2 AND key = $3
                 AND NOT EXISTS (SELECT 1 FROM ledger WHERE resource = $2 AND key = $1)",
            )
            .bind(key.as_str())
            .bind(APP_PASSWORD)
            .bind(row.key.as_str())
            .execute(&self.writer)
            .await?;
            if done.rows_affected() == 1 {
                moved += 1;
            } else {
                tracing::warn!(
                    old = %row.key,
                    current = %key,
                    "two ledger rows name the same app password; the old-form one is left to be forgotten"
                );
            }
        }
        Ok(moved)
    }

    /// Drops the row, and the removal that waited for it, if one did.
    pub async fn ledger_delete(&self, resource: &str, key: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        delete(&mut tx, resource, key).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(super) async fn get(
    conn: &mut AnyConnection,
    resource: &str,
    key: &str,
) -> Result<Option<LedgerRow>> {
    let row = sqlx::query(
        "SELECT resource, key, state, username, groups, remote_id FROM ledger
         WHERE resource = $1 AND key = $2",
    )
    .bind(resource)
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(row_to_ledger).transpose()
}

/// Drops the row and the removal that waited for it; `conn` is inside a
/// transaction, so both go or neither.
pub(super) async fn delete(conn: &mut AnyConnection, resource: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM ledger WHERE resource = $1 AND key = $2")
        .bind(resource)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM pending_removals WHERE resource = $1 AND key = $2")
        .bind(resource)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A row that does not parse is an error: read as an intent or as "no
/// groups", it would change what the planner believes we own.
fn row_to_ledger(r: sqlx::any::AnyRow) -> Result<LedgerRow> {
    let resource: String = r.get("resource");
    let key: String = r.get("key");
    let corrupt = |what: &str| Error::Corrupt(format!("ledger row {resource} {key}: {what}"));
    let state: String = r.get("state");
    let state =
        LedgerState::parse(&state).ok_or_else(|| corrupt(&format!("unknown state `{state}`")))?;
    let groups = serde_json::from_str(&r.get::<String, _>("groups"))
        .map_err(|e| corrupt(&format!("groups are not a JSON list of strings: {e}")))?;
    let key = LedgerKey::parse(&resource, &key)
        .ok_or_else(|| corrupt(&format!("not a {resource} key")))?;
    Ok(LedgerRow {
        state,
        username: r.get("username"),
        groups,
        remote_id: r.get("remote_id"),
        resource,
        key,
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn row(key: &str, remote_id: &str) -> LedgerRow {
        LedgerRow {
            resource: APP_PASSWORD.into(),
            key: LedgerKey::parse(APP_PASSWORD, key).unwrap(),
            state: LedgerState::Created,
            username: "o'neil".into(),
            groups: crate::group_set::GroupSet::from(["desk".to_owned()]),
            remote_id: remote_id.into(),
        }
    }

    #[tokio::test]
    async fn old_form_app_password_keys_are_rekeyed_when_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/s.db", dir.path().display());
        let store = Store::open(&url).await.unwrap();
        let current = markers::app_password_name("o'neil", "info@x.org");
        store
            .ledger_put(&row("info@x.org|authentik-sync:o'neil:info@x.org", "7"))
            .await
            .unwrap();
        store
            .ledger_put(&row(
                "info@x.org|authentik-sync:o&amp;#039;n:info@x.org",
                "8",
            ))
            .await
            .unwrap();
        // The current key of this one is taken: it stays as it is.
        store
            .ledger_put(&row(
                &format!("c@x.org|{}", markers::app_password_name("c'd", "c@x.org")),
                "9",
            ))
            .await
            .unwrap();
        store
            .ledger_put(&row("c@x.org|authentik-sync:c'd:c@x.org", "10"))
            .await
            .unwrap();
        drop(store);

        let store = Store::open(&url).await.unwrap();
        let keys: Vec<(String, String)> = store
            .ledger_rows(Some(APP_PASSWORD))
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.key.to_string(), r.remote_id))
            .collect();
        assert!(
            keys.contains(&(format!("info@x.org|{current}"), "7".into())),
            "{keys:?}"
        );
        assert!(keys.contains(&(
            format!(
                "info@x.org|{}",
                markers::app_password_name("o'n", "info@x.org")
            ),
            "8".into()
        )));
        assert!(keys.contains(&("c@x.org|authentik-sync:c'd:c@x.org".into(), "10".into())));
        assert_eq!(keys.len(), 4);
        assert_eq!(
            store.canonicalize_app_password_keys().await.unwrap(),
            0,
            "idempotent"
        );
    }

    #[tokio::test]
    async fn a_row_that_does_not_parse_is_an_error_not_an_intent() {
        let (store, _dir) = Store::open_temp().await;
        store.ledger_put(&row("a@x.org|n", "1")).await.unwrap();
        sqlx::query("UPDATE ledger SET state = 'bogus'")
            .execute(&store.writer)
            .await
            .unwrap();
        let err = store.ledger_rows(None).await.unwrap_err();
        assert!(err.to_string().contains("unknown state `bogus`"), "{err}");
        sqlx::query("UPDATE ledger SET state = 'created', groups = 'not json'")
            .execute(&store.writer)
            .await
            .unwrap();
        assert!(store.ledger_get(APP_PASSWORD, "a@x.org|n").await.is_err());
    }
}
