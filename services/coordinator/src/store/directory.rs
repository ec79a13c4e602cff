//! The directory snapshot in the state DB (issue 12): replaced whole after
//! a full read, row by row after a webhook's patch, loaded at the first
//! webhook after a restart.

use super::Store;
use crate::authentik::{Group, User};
use crate::directory::{Directory, Touched};
use crate::error::{Error, Result};

/// `meta` row: when the snapshot was last read whole (Unix milliseconds).
const READ_AT: &str = "directory_read_at";

/// A snapshot as stored: its objects and when it was read whole.
pub struct StoredDirectory {
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    pub read_at_millis: i64,
}

impl Store {
    /// Replaces the snapshot with a directory just read whole.
    pub async fn replace_directory(
        &self,
        directory: &Directory,
        read_at_millis: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM directory_users")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM directory_groups")
            .execute(&mut *tx)
            .await?;
        for user in directory.users() {
            sqlx::query("INSERT INTO directory_users (pk, body) VALUES (?, ?)")
                .bind(user.pk)
                .bind(to_json(user)?)
                .execute(&mut *tx)
                .await?;
        }
        for (uuid, group) in &directory.groups {
            sqlx::query("INSERT INTO directory_groups (uuid, body) VALUES (?, ?)")
                .bind(uuid)
                .bind(to_json(group)?)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO meta (name, value) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(READ_AT)
        .bind(read_at_millis.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes back the rows a patch (or a new whole read) changed, as they
    /// now are in `directory`, and when it was last read whole.
    pub async fn save_directory_rows(
        &self,
        directory: &Directory,
        touched: &Touched,
        read_at_millis: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO meta (name, value) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        )
        .bind(READ_AT)
        .bind(read_at_millis.to_string())
        .execute(&mut *tx)
        .await?;
        for pk in &touched.users {
            match directory.all_users.get(pk) {
                Some(user) => {
                    sqlx::query(
                        "INSERT INTO directory_users (pk, body) VALUES (?, ?)
                         ON CONFLICT (pk) DO UPDATE SET body = excluded.body",
                    )
                    .bind(pk)
                    .bind(to_json(user)?)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM directory_users WHERE pk = ?")
                        .bind(pk)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for uuid in &touched.groups {
            match directory.groups.get(uuid) {
                Some(group) => {
                    sqlx::query(
                        "INSERT INTO directory_groups (uuid, body) VALUES (?, ?)
                         ON CONFLICT (uuid) DO UPDATE SET body = excluded.body",
                    )
                    .bind(uuid)
                    .bind(to_json(group)?)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM directory_groups WHERE uuid = ?")
                        .bind(uuid)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored snapshot, if a full read ever stored one.
    pub async fn load_directory(&self) -> Result<Option<StoredDirectory>> {
        let Some(read_at_millis) = self
            .get_meta(READ_AT)
            .await?
            .and_then(|v| v.parse::<i64>().ok())
        else {
            return Ok(None);
        };
        let users = sqlx::query_scalar::<_, String>("SELECT body FROM directory_users")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|body| from_json(body))
            .collect::<Result<Vec<User>>>()?;
        let groups = sqlx::query_scalar::<_, String>("SELECT body FROM directory_groups")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|body| from_json(body))
            .collect::<Result<Vec<Group>>>()?;
        Ok(Some(StoredDirectory {
            users,
            groups,
            read_at_millis,
        }))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    // Our own types: serializing them cannot fail.
    Ok(serde_json::to_string(value).expect("a directory object serializes"))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::Corrupt(format!("directory snapshot: {e}")))
}
