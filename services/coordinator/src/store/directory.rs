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
            save_row(&mut tx, &USERS, user.pk, Some(to_json(user)?)).await?;
        }
        for (uuid, group) in &directory.groups {
            save_row(&mut tx, &GROUPS, uuid, Some(to_json(group)?)).await?;
        }
        super::set_meta_in(&mut tx, READ_AT, &read_at_millis.to_string()).await?;
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
        super::set_meta_in(&mut tx, READ_AT, &read_at_millis.to_string()).await?;
        for pk in &touched.users {
            let body = directory.all_users.get(pk).map(to_json).transpose()?;
            save_row(&mut tx, &USERS, pk, body).await?;
        }
        for uuid in &touched.groups {
            let body = directory.groups.get(uuid).map(to_json).transpose()?;
            save_row(&mut tx, &GROUPS, uuid, body).await?;
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
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(|body| from_json(body))
            .collect::<Result<Vec<User>>>()?;
        let groups = sqlx::query_scalar::<_, String>("SELECT body FROM directory_groups")
            .fetch_all(&self.reader)
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

/// A snapshot table's two statements (static SQL, as sqlx asks).
struct Table {
    upsert: &'static str,
    delete: &'static str,
}

const USERS: Table = Table {
    upsert: "INSERT INTO directory_users (pk, body) VALUES ($1, $2)
             ON CONFLICT (pk) DO UPDATE SET body = excluded.body",
    delete: "DELETE FROM directory_users WHERE pk = $1",
};
const GROUPS: Table = Table {
    upsert: "INSERT INTO directory_groups (uuid, body) VALUES ($1, $2)
             ON CONFLICT (uuid) DO UPDATE SET body = excluded.body",
    delete: "DELETE FROM directory_groups WHERE uuid = $1",
};

/// Writes one object's row, or deletes it when the object is gone.
async fn save_row<K>(
    conn: &mut sqlx::AnyConnection,
    table: &Table,
    key: K,
    body: Option<String>,
) -> Result<()>
where
    K: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send,
{
    match body {
        Some(body) => sqlx::query(table.upsert).bind(key).bind(body),
        None => sqlx::query(table.delete).bind(key),
    }
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    // Our own types: serializing them cannot fail.
    Ok(serde_json::to_string(value).expect("a directory object serializes"))
}

fn from_json<T: serde::de::DeserializeOwned>(body: &str) -> Result<T> {
    serde_json::from_str(body).map_err(|e| Error::Corrupt(format!("directory snapshot: {e}")))
}
