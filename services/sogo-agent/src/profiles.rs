//! Delegation in `sogo_user_profile`, behind [`ProfileStore`].
//!
//! Each change is one transaction that locks both rows with
//! `SELECT … FOR UPDATE` in uid order (a fixed order, so two changes on the
//! same pair cannot deadlock each other for long), edits the JSON, and
//! writes back only rows that changed. Deadlocks, lock-wait timeouts and
//! the duplicate-key race of two first inserts are retried.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::*;
use mysql_async::{Pool, TxOpts};

use crate::error::{Error, Result, classify};
use crate::settings::{self, DELEGATE_FROM, DELEGATE_TO};

/// Attempts per change before lock conflicts count as a transient failure.
const ATTEMPTS: u32 = 5;

/// What one owner's row says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerDelegation {
    pub delegate_to: Vec<String>,
    /// The row's settings could not be read.
    pub error: Option<String>,
}

#[async_trait]
pub trait ProfileStore: Send + Sync {
    /// `Mail.DelegateTo` of each owner (owners without a row: empty).
    async fn delegations(&self, owners: &[String]) -> Result<BTreeMap<String, OwnerDelegation>>;
    /// Adds (`add`) or removes the pair; true when a row was written.
    async fn set_delegation(&self, owner: &str, delegate: &str, add: bool) -> Result<bool>;
}

pub struct MysqlProfiles {
    pool: Pool,
    table: String,
}

impl MysqlProfiles {
    pub fn new(url: &str, table: &str) -> Result<Self> {
        let opts = mysql_async::Opts::from_url(url)
            .map_err(|e| Error::Config(format!("SOGO_DB_URL: {e}")))?;
        Ok(Self {
            pool: Pool::new(opts),
            table: table.to_owned(),
        })
    }

    async fn try_set(
        &self,
        owner: &str,
        delegate: &str,
        add: bool,
    ) -> Result<bool, mysql_async::Error> {
        let mut conn = self.pool.get_conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        let mut uids = [owner, delegate];
        uids.sort();
        let rows: Vec<(String, Option<String>)> = tx
            .exec(
                format!(
                    "SELECT c_uid, c_settings FROM `{}` WHERE c_uid IN (?, ?) ORDER BY c_uid FOR UPDATE",
                    self.table
                ),
                (uids[0], uids[1]),
            )
            .await?;
        let row = |uid: &str| rows.iter().find(|(u, _)| u.eq_ignore_ascii_case(uid));

        // Edit both before writing either: a corrupt row stops the change.
        let mut edits = Vec::new();
        for (uid, list, other) in [
            (owner, DELEGATE_TO, delegate),
            (delegate, DELEGATE_FROM, owner),
        ] {
            let existing = row(uid);
            let raw = existing.and_then(|(_, s)| s.as_deref());
            match settings::edit(raw, list, other, add) {
                Ok(Some(text)) => edits.push((uid, existing.is_some(), text)),
                Ok(None) => {}
                // Revoking must not depend on the delegate's row: the
                // owner's DelegateTo is what SOGo trusts, and SOGo prunes a
                // DelegateFrom the owner does not confirm.
                Err(e) if !add && uid == delegate => {
                    tracing::warn!(uid, error = %e, "delegate's settings unreadable; revoking on the owner's side only");
                }
                Err(e) => {
                    tx.rollback().await?;
                    return Err(corrupt(uid, e.0));
                }
            }
        }
        for (uid, exists, text) in &edits {
            if *exists {
                tx.exec_drop(
                    format!("UPDATE `{}` SET c_settings = ? WHERE c_uid = ?", self.table),
                    (text, uid),
                )
                .await?;
            } else {
                // As SOGo does: a new row carries only the column written.
                tx.exec_drop(
                    format!(
                        "INSERT INTO `{}` (c_uid, c_defaults, c_settings) VALUES (?, NULL, ?)",
                        self.table
                    ),
                    (uid, text),
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(!edits.is_empty())
    }
}

/// Smuggles a corrupt-row finding out of the mysql_async-typed retry loop.
fn corrupt(uid: &str, detail: String) -> mysql_async::Error {
    mysql_async::Error::Other(Box::new(Error::CorruptSettings {
        uid: uid.to_owned(),
        detail,
    }))
}

#[async_trait]
impl ProfileStore for MysqlProfiles {
    async fn delegations(&self, owners: &[String]) -> Result<BTreeMap<String, OwnerDelegation>> {
        let mut out: BTreeMap<String, OwnerDelegation> = owners
            .iter()
            .map(|o| (o.clone(), OwnerDelegation::default()))
            .collect();
        let mut conn = self.pool.get_conn().await.map_err(|e| match classify(e) {
            Err(e) => e,
            Ok(()) => Error::Unavailable("lock conflict while connecting".into()),
        })?;
        for chunk in owners.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let rows: Vec<(String, Option<String>)> = conn
                .exec(
                    format!(
                        "SELECT c_uid, c_settings FROM `{}` WHERE c_uid IN ({marks})",
                        self.table
                    ),
                    chunk.to_vec(),
                )
                .await
                .map_err(|e| match classify(e) {
                    Err(e) => e,
                    Ok(()) => Error::Unavailable("lock conflict while reading".into()),
                })?;
            for (uid, raw) in rows {
                let Some(owner) = out.keys().find(|o| o.eq_ignore_ascii_case(&uid)).cloned() else {
                    continue;
                };
                let state = match settings::parse(raw.as_deref())
                    .and_then(|s| settings::list(&s, DELEGATE_TO))
                {
                    Ok(delegate_to) => OwnerDelegation {
                        delegate_to,
                        error: None,
                    },
                    Err(e) => OwnerDelegation {
                        delegate_to: Vec::new(),
                        error: Some(e.0),
                    },
                };
                out.insert(owner, state);
            }
        }
        Ok(out)
    }

    async fn set_delegation(&self, owner: &str, delegate: &str, add: bool) -> Result<bool> {
        if owner.eq_ignore_ascii_case(delegate) {
            return Err(Error::Invalid(format!("{owner} cannot delegate to itself")));
        }
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            match self.try_set(owner, delegate, add).await {
                Ok(changed) => return Ok(changed),
                Err(mysql_async::Error::Other(inner)) => {
                    return Err(match inner.downcast::<Error>() {
                        Ok(e) => *e,
                        Err(other) => Error::Database(other.to_string()),
                    });
                }
                Err(e) => {
                    last = e.to_string();
                    classify(e)?;
                    tracing::debug!(attempt, error = %last, "lock conflict; retrying");
                    tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
                }
            }
        }
        Err(Error::Unavailable(format!(
            "lock conflicts persisted after {ATTEMPTS} attempts: {last}"
        )))
    }
}
