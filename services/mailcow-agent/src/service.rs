//! The `reconciler.agent.v2.MailcowAgent` gRPC service.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, stream};
use reconciler_proto::agent::{
    AppPasswordCreate, ChangeResult, MailcowApplyRequest, MailcowApplyResponse, MailcowChange,
    MailcowObserveRequest, MailcowObserveResponse, Outcome, mailcow_agent_server,
    mailcow_change::Kind,
};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::acl::{self, AclChange};
use crate::apply::Applier;
use crate::batch::{ListingSizes, Listings, WriteLog};
use crate::config::DEFAULT_CONCURRENCY;
use crate::dovecot::{Dovecot, rights_from_wire};
use crate::mailcow::MailcowApi;
use crate::observe;
use reconciler_runtime::locks::KeyedLocks;

pub struct MailcowAgent {
    api: Arc<dyn MailcowApi>,
    dovecot: Option<Arc<Dovecot>>,
    /// One change per object at a time, across concurrent Apply calls too.
    locks: KeyedLocks,
    writes: WriteLog,
    listing_sizes: ListingSizes,
    /// How long a create whose answer was lost watches for its object.
    lost_answer_wait: Duration,
    /// Units of REST work in flight at once within one Apply call; each
    /// unit sends one Mailcow request at a time.
    concurrency: usize,
}

impl MailcowAgent {
    /// `lost_answer_wait`: how long to keep re-reading after a write timed
    /// out (the Mailcow request timeout is a good value: PHP goes on after
    /// the client gave up).
    pub fn new(
        api: Arc<dyn MailcowApi>,
        dovecot: Option<Arc<Dovecot>>,
        lost_answer_wait: Duration,
    ) -> Self {
        Self {
            api,
            dovecot,
            locks: KeyedLocks::default(),
            writes: WriteLog::default(),
            listing_sizes: ListingSizes::default(),
            lost_answer_wait,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// At most `concurrency` (at least 1) Mailcow writes in flight within
    /// one Apply call (`MAILCOW_CONCURRENCY`).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// ACL changes grouped by owner: each owner costs two execs whatever
    /// the number of grantees and folders.
    async fn apply_acls(
        &self,
        by_owner: BTreeMap<String, Vec<(usize, AclChange)>>,
        dry_run: bool,
    ) -> (Vec<(usize, ChangeResult)>, u64, u64) {
        let Some(dovecot) = &self.dovecot else {
            let e = observe::not_configured();
            let results = by_owner
                .into_values()
                .flatten()
                .map(|(i, c)| (i, failed(&c.id, e.outcome(), e.to_string())))
                .collect();
            return (results, 0, 0);
        };
        let reports: Vec<_> = stream::iter(by_owner)
            .map(|(owner, changes)| async move {
                // One batch per owner at a time, across concurrent calls too.
                let _guard = self.locks.lock(&format!("dovecot:{owner}")).await;
                let plain: Vec<AclChange> = changes.iter().map(|(_, c)| c.clone()).collect();
                let report = acl::apply_owner(dovecot, &owner, &plain, dry_run).await;
                (changes, report)
            })
            .buffered(observe::ACL_CONCURRENCY)
            .collect()
            .await;
        let (mut execs, mut writes) = (0, 0);
        let mut results = Vec::new();
        for (changes, report) in reports {
            execs += report.execs;
            writes += report.acl_writes;
            results.extend(changes.into_iter().map(|(i, _)| i).zip(report.results));
        }
        (results, execs, writes)
    }
}

fn failed(id: &str, outcome: Outcome, message: String) -> ChangeResult {
    ChangeResult {
        id: id.to_owned(),
        outcome: outcome as i32,
        message,
        ..Default::default()
    }
}

/// Splits a batch: Dovecot ACL changes by owner (already validated), the
/// rest for the REST applier, and immediate results for invalid changes.
type Split = (
    BTreeMap<String, Vec<(usize, AclChange)>>,
    Vec<(usize, MailcowChange)>,
    Vec<(usize, ChangeResult)>,
);

/// A piece of REST work that sends one Mailcow request at a time; the
/// units of a batch run side by side, up to the agent's concurrency.
enum Unit {
    /// One change, at its index in the request.
    One(usize, MailcowChange),
    /// Several app password creates on one mailbox (one listing before,
    /// one after), with their indexes and ids.
    Creates(String, Vec<(usize, String, AppPasswordCreate)>),
}

/// App password creates, by mailbox, for mailboxes with more than one in
/// this call (applied as a group: one listing before, one after); the
/// other changes as they were.
#[allow(clippy::type_complexity)]
fn group_app_password_creates(
    rest: Vec<(usize, MailcowChange)>,
) -> (
    BTreeMap<String, Vec<(usize, String, AppPasswordCreate)>>,
    Vec<(usize, MailcowChange)>,
) {
    let mut per_mailbox: BTreeMap<String, usize> = BTreeMap::new();
    for (_, change) in &rest {
        if let Some(Kind::AppPasswordCreate(c)) = &change.kind {
            *per_mailbox
                .entry(c.mailbox.to_ascii_lowercase())
                .or_default() += 1;
        }
    }
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let mut others = Vec::new();
    for (i, change) in rest {
        match change.kind {
            Some(Kind::AppPasswordCreate(c))
                if per_mailbox
                    .get(&c.mailbox.to_ascii_lowercase())
                    .is_some_and(|n| *n > 1) =>
            {
                groups
                    .entry(c.mailbox.to_ascii_lowercase())
                    .or_default()
                    .push((i, change.id, c));
            }
            kind => others.push((
                i,
                MailcowChange {
                    id: change.id,
                    kind,
                },
            )),
        }
    }
    (groups, others)
}

fn split(changes: Vec<MailcowChange>) -> Split {
    let (mut acls, mut rest, mut invalid) = (BTreeMap::new(), Vec::new(), Vec::new());
    for (i, change) in changes.into_iter().enumerate() {
        let (owner, acl_change) = match change.kind {
            Some(Kind::MailboxAclSet(set)) => match rights_from_wire(&set.rights) {
                Ok(rights) => (
                    set.owner,
                    AclChange {
                        id: change.id,
                        grantee: set.grantee,
                        rights: Some(rights),
                        folders: set.folders.into_iter().collect(),
                    },
                ),
                Err(e) => {
                    invalid.push((i, failed(&change.id, e.outcome(), e.to_string())));
                    continue;
                }
            },
            Some(Kind::MailboxAclDelete(delete)) => (
                delete.owner,
                AclChange {
                    id: change.id,
                    grantee: delete.grantee,
                    rights: None,
                    folders: delete.folders.into_iter().collect(),
                },
            ),
            _ => {
                rest.push((i, change));
                continue;
            }
        };
        if let Err(e) = acl::one_user("owner", &owner)
            .and_then(|_| acl::one_user("grantee", &acl_change.grantee))
        {
            invalid.push((i, failed(&acl_change.id, e.outcome(), e.to_string())));
            continue;
        }
        acls.entry(owner.to_ascii_lowercase())
            .or_insert_with(Vec::new)
            .push((i, acl_change));
    }
    (acls, rest, invalid)
}

#[tonic::async_trait]
impl mailcow_agent_server::MailcowAgent for MailcowAgent {
    #[tracing::instrument(skip_all, fields(
        logins = request.get_ref().sender_acl_logins.len(),
        mailboxes = request.get_ref().app_password_mailboxes.len(),
        acl_owners = request.get_ref().mailbox_acl_owners.len(),
    ))]
    async fn observe(
        &self,
        request: Request<MailcowObserveRequest>,
    ) -> Result<Response<MailcowObserveResponse>, Status> {
        let response = observe::observe(
            self.api.clone(),
            self.dovecot.as_deref(),
            &self.listing_sizes,
            request.into_inner(),
        )
        .await
        .inspect_err(|e| warn!(error = %e, "observe failed"))?;
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(
        changes = request.get_ref().changes.len(),
        dry_run = request.get_ref().dry_run,
    ))]
    async fn apply(
        &self,
        request: Request<MailcowApplyRequest>,
    ) -> Result<Response<MailcowApplyResponse>, Status> {
        let MailcowApplyRequest { changes, dry_run } = request.into_inner();
        let count = changes.len();
        let (acls, rest, invalid) = split(changes);
        // A dry run writes nothing; its re-checks read as one would.
        let listings = Listings::read(
            self.api.as_ref(),
            &self.writes,
            &self.listing_sizes,
            rest.iter().map(|(_, c)| c),
        )
        .await;
        let (creates, rest) = group_app_password_creates(rest);
        let applier = Applier {
            api: self.api.as_ref(),
            locks: &self.locks,
            dry_run,
            lost_answer_wait: self.lost_answer_wait,
            listings: &listings,
            writes: &self.writes,
        };
        let units = rest
            .into_iter()
            .map(|(i, change)| Unit::One(i, change))
            .chain(
                creates
                    .into_iter()
                    .map(|(mailbox, group)| Unit::Creates(mailbox, group)),
            );
        let rest_results = stream::iter(units)
            .map(|unit| {
                let applier = &applier;
                async move {
                    match unit {
                        Unit::One(i, change) => {
                            vec![(i, applier.apply(change.id, change.kind).await)]
                        }
                        Unit::Creates(mailbox, group) => {
                            applier.app_password_creates(&mailbox, group).await
                        }
                    }
                }
            })
            // Results go back to their slots by index, so a slow unit does
            // not hold back the start of the next.
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>();
        let (rest_results, (acl_results, execs, writes)) =
            tokio::join!(rest_results, self.apply_acls(acls, dry_run));

        let mut slots: Vec<Option<ChangeResult>> = vec![None; count];
        for (i, r) in rest_results
            .into_iter()
            .flatten()
            .chain(acl_results)
            .chain(invalid)
        {
            slots[i] = Some(r);
        }
        let results: Vec<ChangeResult> = slots.into_iter().flatten().collect();
        reconciler_runtime::agent::report_results("mailcow-agent", &results);
        if execs > 0 {
            info!(
                doveadm_execs = execs,
                doveadm_acl_writes = writes,
                "dovecot batch"
            );
        }
        Ok(Response::new(MailcowApplyResponse {
            results,
            doveadm_execs: execs,
            doveadm_acl_writes: writes,
        }))
    }
}
