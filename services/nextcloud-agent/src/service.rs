//! The `reconciler.agent.v2.NextcloudAgent` gRPC service.

use reconciler_proto::agent::{
    ChangeResult, NextcloudAccount, NextcloudAccountCreate, NextcloudAccountDelete,
    NextcloudAccountSetPassword, NextcloudApplyRequest, NextcloudApplyResponse,
    NextcloudObserveRequest, NextcloudObserveResponse, NextcloudUserAccounts, Outcome, Unavailable,
    nextcloud_agent_server, nextcloud_change::Kind,
};
use reconciler_runtime::locks::KeyedLocks;
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::db::MailAccountsTable;
use crate::error::{Error, Result};
use crate::occ::{Account, Deleted, Occ};

pub struct NextcloudAgent {
    occ: Occ,
    /// Nextcloud's database, when configured: observe reads every user's
    /// accounts from it in one query.
    database: Option<MailAccountsTable>,
    /// One change per Nextcloud user at a time (export, then act).
    locks: KeyedLocks,
}

impl NextcloudAgent {
    pub fn new(occ: Occ) -> Self {
        Self {
            occ,
            database: None,
            locks: KeyedLocks::default(),
        }
    }

    /// Observe reads `table` instead of running one export per user.
    pub fn with_database(mut self, table: MailAccountsTable) -> Self {
        self.database = Some(table);
        self
    }

    /// Every user's Mail accounts, and whether Nextcloud knows the user.
    /// From the database in one query when it is configured and answers;
    /// otherwise (or when it fails) one occ export per user, in sequence:
    /// occ is a PHP process each time.
    async fn read_users(&self, users: Vec<String>) -> Result<Vec<NextcloudUserAccounts>> {
        let from_database = match &self.database {
            Some(table) => match table.accounts_of(&users).await {
                Ok(accounts) => Some(accounts),
                Err(e) => {
                    warn!(
                        error = %e,
                        users = users.len(),
                        "Nextcloud's database cannot be read; observing with one occ export per user"
                    );
                    None
                }
            },
            None => None,
        };
        let mut read = Vec::with_capacity(users.len());
        for user in users {
            let accounts = match &from_database {
                Some(by_user) => by_user.get(&user).cloned().unwrap_or_default(),
                None => self.occ.export(&user).await?,
            };
            // Export (and the table) say nothing for unknown users too; ask
            // occ only then. Users come from any backend (LDAP, OIDC), so
            // no table of Nextcloud's can answer this for all of them.
            let user_exists = !accounts.is_empty() || self.occ.user_exists(&user).await?;
            read.push(self.user_accounts(user, accounts, user_exists));
        }
        Ok(read)
    }

    fn user_accounts(
        &self,
        user: String,
        accounts: Vec<Account>,
        user_exists: bool,
    ) -> NextcloudUserAccounts {
        NextcloudUserAccounts {
            user_exists,
            user,
            accounts: accounts
                .into_iter()
                .map(|a| NextcloudAccount {
                    configured_server: a.imap_host.eq_ignore_ascii_case(self.occ.imap_host()),
                    id: a.id,
                    email: a.email,
                    name: a.name,
                    imap_user: a.imap_user,
                    imap_host: a.imap_host,
                    provisioned: a.provisioned,
                })
                .collect(),
        }
    }

    async fn create(
        &self,
        c: NextcloudAccountCreate,
        dry_run: bool,
    ) -> Result<(Outcome, String, i64)> {
        require(&[("user", &c.user), ("email", &c.email), ("login", &c.login)])?;
        if c.password.is_empty() {
            return Err(Error::Permanent(
                "no password to create the account with".into(),
            ));
        }
        let _guard = self.locks.lock(&c.user).await;
        if dry_run {
            return Ok((
                Outcome::DryRun,
                format!("would create a Mail account for {} on {}", c.user, c.email),
                0,
            ));
        }
        let name = if c.name.is_empty() { &c.email } else { &c.name };
        let id = self
            .occ
            .create(&c.user, name, &c.email, &c.login, &c.password)
            .await?;
        Ok((
            Outcome::Applied,
            format!("account {id} created for {}", c.user),
            id,
        ))
    }

    async fn delete(
        &self,
        c: NextcloudAccountDelete,
        dry_run: bool,
    ) -> Result<(Outcome, String, i64)> {
        require(&[("user", &c.user)])?;
        let _guard = self.locks.lock(&c.user).await;
        let Some(account) = self
            .occ
            .export(&c.user)
            .await?
            .into_iter()
            .find(|a| a.id == c.id)
        else {
            return Ok((
                Outcome::Unchanged,
                format!("account {} is already gone", c.id),
                c.id,
            ));
        };
        // The id is only proof together with the address it was created for.
        if !account.email.eq_ignore_ascii_case(&c.email) {
            return Err(Error::Refused(format!(
                "account {} of {} is for {}, not {}",
                c.id, c.user, account.email, c.email
            )));
        }
        if account.provisioned {
            return Err(Error::Refused(format!(
                "account {} is provisioned; never ours",
                c.id
            )));
        }
        if dry_run {
            return Ok((
                Outcome::DryRun,
                format!("would delete account {}", c.id),
                c.id,
            ));
        }
        Ok(match self.occ.delete(c.id).await? {
            Deleted::Deleted => (Outcome::Applied, format!("account {} deleted", c.id), c.id),
            Deleted::AlreadyGone => (
                Outcome::Unchanged,
                format!("account {} is already gone", c.id),
                c.id,
            ),
        })
    }

    async fn set_password(
        &self,
        c: NextcloudAccountSetPassword,
        dry_run: bool,
    ) -> Result<(Outcome, String, i64)> {
        require(&[("user", &c.user)])?;
        if c.password.is_empty() {
            return Err(Error::Permanent("no password to set".into()));
        }
        let _guard = self.locks.lock(&c.user).await;
        let exists = self
            .occ
            .export(&c.user)
            .await?
            .iter()
            .any(|a| a.id == c.id && a.email.eq_ignore_ascii_case(&c.email));
        if !exists {
            return Err(Error::Permanent(format!(
                "account {} of {} for {} is gone",
                c.id, c.user, c.email
            )));
        }
        if dry_run {
            return Ok((
                Outcome::DryRun,
                format!("would set a new password on account {}", c.id),
                c.id,
            ));
        }
        self.occ.set_password(c.id, &c.password).await?;
        Ok((
            Outcome::Applied,
            format!("account {} has the new app password", c.id),
            c.id,
        ))
    }

    async fn apply_one(&self, id: String, kind: Option<Kind>, dry_run: bool) -> ChangeResult {
        let result = match kind {
            Some(Kind::AccountCreate(c)) => self.create(c, dry_run).await,
            Some(Kind::AccountDelete(c)) => self.delete(c, dry_run).await,
            Some(Kind::AccountSetPassword(c)) => self.set_password(c, dry_run).await,
            None => Err(Error::Permanent("change has no kind".into())),
        };
        let (outcome, message, remote_id) =
            result.unwrap_or_else(|e| (e.outcome(), e.to_string(), 0));
        ChangeResult {
            id,
            outcome: outcome as i32,
            message,
            // Nextcloud numbers accounts from 1; 0 is "no object".
            remote_id: if remote_id == 0 {
                String::new()
            } else {
                remote_id.to_string()
            },
            ..Default::default()
        }
    }
}

fn require(fields: &[(&str, &str)]) -> Result<()> {
    match fields.iter().find(|(_, v)| v.trim().is_empty()) {
        Some((name, _)) => Err(Error::Permanent(format!("{name} is empty"))),
        None => Ok(()),
    }
}

#[tonic::async_trait]
impl nextcloud_agent_server::NextcloudAgent for NextcloudAgent {
    #[tracing::instrument(skip_all, fields(users = request.get_ref().users.len()))]
    async fn observe(
        &self,
        request: Request<NextcloudObserveRequest>,
    ) -> Result<Response<NextcloudObserveResponse>, Status> {
        let users = request.into_inner().users;
        let response = match self.read_users(users).await {
            Ok(accounts) => NextcloudObserveResponse {
                accounts,
                unavailable: None,
            },
            Err(e) => {
                // Nothing about Nextcloud can be trusted this run; the
                // coordinator plans nothing for it and says why.
                warn!(error = %e, "Nextcloud cannot be read");
                NextcloudObserveResponse {
                    accounts: Vec::new(),
                    unavailable: Some(Unavailable {
                        reason: e.to_string(),
                        outcome: e.outcome() as i32,
                    }),
                }
            }
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(changes = request.get_ref().changes.len(), dry_run = request.get_ref().dry_run))]
    async fn apply(
        &self,
        request: Request<NextcloudApplyRequest>,
    ) -> Result<Response<NextcloudApplyResponse>, Status> {
        let NextcloudApplyRequest { changes, dry_run } = request.into_inner();
        let mut results = Vec::with_capacity(changes.len());
        for change in changes {
            results.push(self.apply_one(change.id, change.kind, dry_run).await);
        }
        reconciler_runtime::agent::report_results("nextcloud-agent", &results);
        Ok(Response::new(NextcloudApplyResponse { results }))
    }
}
