//! Apply: each change diffs against what Stalwart shows before it acts, so
//! asking for what already is writes nothing and says UNCHANGED, and a dry
//! run reads and diffs exactly what the real run would.
//!
//! A call runs in rounds, each with at most one change per object (a
//! second change of the same object waits for the next round, so it diffs
//! against the first one's result). A round costs few JMAP requests
//! whatever its size: one read of the domains, the accounts and lists
//! concerned (see [`View`]), then one batched `/set` per kind of write
//! (domains created first, so accounts and lists of the same call can
//! live in them).

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::agent::{
    ChangeResult, Outcome, StalwartAccountCreate, StalwartAccountType, StalwartChange,
    StalwartListCreate, stalwart_change::Kind,
};

use super::observe::{Failure, View};
use super::{StalwartAgent, split_address};
use crate::error::{Error, Result, set_failure_outcome};
use crate::jmap::{
    Account, AccountKind, AccountPatch, Alias, Domain, ItemResult, ListRecipients, MailingList,
    NewAccount, NewDomain, NewList, SetFailure,
};

/// What one change did.
struct Done {
    outcome: Outcome,
    message: String,
    remote_id: String,
}

impl Done {
    fn new(outcome: Outcome, message: impl Into<String>, remote_id: impl Into<String>) -> Self {
        Self {
            outcome,
            message: message.into(),
            remote_id: remote_id.into(),
        }
    }

    fn error(e: &Error) -> Self {
        Self::new(e.outcome(), e.to_string(), "")
    }

    /// A read (or a domain create) that failed, for a change that needed it.
    fn failed_read(f: &Failure) -> Self {
        Self::new(f.outcome, f.message.clone(), "")
    }
}

/// A change, checked and normalised (addresses trimmed and lower-cased).
enum Op {
    DomainCreate {
        name: String,
    },
    AccountCreate {
        address: String,
        kind: AccountKind,
        aliases: Vec<String>,
        disk_quota: Option<u64>,
        description: Option<String>,
    },
    AccountUpdate {
        address: String,
        expected_id: String,
        add: Vec<String>,
        remove: Vec<String>,
        /// `None`: leave it; `Some(None)`: no quota.
        quota: Option<Option<u64>>,
    },
    AccountSuspend {
        address: String,
        expected_id: String,
    },
    AccountResume {
        address: String,
        expected_id: String,
    },
    AccountDestroy {
        address: String,
        expected_id: String,
    },
    ListCreate {
        address: String,
        recipients: Vec<String>,
        description: Option<String>,
    },
    ListUpdate {
        address: String,
        expected_id: String,
        recipients: Vec<String>,
    },
    ListDestroy {
        address: String,
        expected_id: String,
    },
}

impl Op {
    fn parse(kind: Option<Kind>) -> Result<Self> {
        let address = |a: &str| split_address(a).map(|(l, d)| format!("{l}@{d}"));
        let addresses = |list: &[String]| -> Result<Vec<String>> {
            let set: BTreeSet<String> = list.iter().map(|a| address(a)).collect::<Result<_>>()?;
            Ok(set.into_iter().collect())
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(match kind {
            Some(Kind::DomainCreate(c)) => {
                let name = c.name.trim().to_lowercase();
                if name.is_empty() || name.contains(['@', '/', ' ']) {
                    return Err(Error::invalid(format!("`{name}` is not a domain name")));
                }
                Op::DomainCreate { name }
            }
            Some(Kind::AccountCreate(c)) => {
                let StalwartAccountCreate {
                    address: a,
                    r#type,
                    aliases,
                    disk_quota,
                    description,
                } = c;
                let kind = match StalwartAccountType::try_from(r#type) {
                    Ok(StalwartAccountType::Group) => AccountKind::Group,
                    _ => AccountKind::User,
                };
                Op::AccountCreate {
                    address: address(&a)?,
                    kind,
                    aliases: addresses(&aliases)?,
                    disk_quota,
                    description: text(&description),
                }
            }
            Some(Kind::AccountUpdate(c)) => Op::AccountUpdate {
                address: address(&c.address)?,
                expected_id: c.expected_id,
                add: addresses(&c.add_aliases)?,
                remove: addresses(&c.remove_aliases)?,
                quota: c.quota.map(|q| q.disk_quota),
            },
            Some(Kind::AccountSuspend(c)) => Op::AccountSuspend {
                address: address(&c.address)?,
                expected_id: c.expected_id,
            },
            Some(Kind::AccountResume(c)) => Op::AccountResume {
                address: address(&c.address)?,
                expected_id: c.expected_id,
            },
            Some(Kind::AccountDestroy(c)) => Op::AccountDestroy {
                address: address(&c.address)?,
                expected_id: c.expected_id,
            },
            Some(Kind::ListCreate(c)) => {
                let StalwartListCreate {
                    address: a,
                    recipients,
                    description,
                } = c;
                Op::ListCreate {
                    address: address(&a)?,
                    recipients: addresses(&recipients)?,
                    description: text(&description),
                }
            }
            Some(Kind::ListUpdate(c)) => Op::ListUpdate {
                address: address(&c.address)?,
                expected_id: c.expected_id,
                recipients: addresses(&c.recipients)?,
            },
            Some(Kind::ListDestroy(c)) => Op::ListDestroy {
                address: address(&c.address)?,
                expected_id: c.expected_id,
            },
            None => return Err(Error::invalid("the change has no kind")),
        })
    }

    /// The object it changes, as the agent's locks name it.
    fn key(&self) -> String {
        match self {
            Op::DomainCreate { name } => format!("domain:{name}"),
            Op::AccountCreate { address, .. }
            | Op::AccountUpdate { address, .. }
            | Op::AccountSuspend { address, .. }
            | Op::AccountResume { address, .. }
            | Op::AccountDestroy { address, .. } => format!("account:{address}"),
            Op::ListCreate { address, .. }
            | Op::ListUpdate { address, .. }
            | Op::ListDestroy { address, .. } => format!("list:{address}"),
        }
    }

    fn account_address(&self) -> Option<&str> {
        match self {
            Op::AccountCreate { address, .. }
            | Op::AccountUpdate { address, .. }
            | Op::AccountSuspend { address, .. }
            | Op::AccountResume { address, .. }
            | Op::AccountDestroy { address, .. } => Some(address),
            _ => None,
        }
    }

    fn is_list(&self) -> bool {
        matches!(
            self,
            Op::ListCreate { .. } | Op::ListUpdate { .. } | Op::ListDestroy { .. }
        )
    }
}

/// A write one change needs, with what to say before and after.
struct Planned {
    write: Write,
    /// "create account alice@example.com"
    action: String,
    /// "created account alice@example.com"
    done: String,
    /// The object's id when it exists already.
    remote_id: String,
}

enum Write {
    CreateAccount(NewAccount),
    UpdateAccount(AccountPatch),
    DestroyAccount(String),
    CreateList(NewList),
    UpdateList(ListRecipients),
    DestroyList(String),
}

/// The order writes of one round are sent in: destroys before creates, so
/// an address freed in a round can be taken in the same round.
const WRITE_ORDER: [&str; 6] = [
    "update account",
    "destroy account",
    "destroy list",
    "create account",
    "create list",
    "update list",
];

impl Write {
    fn group(&self) -> &'static str {
        match self {
            Write::UpdateAccount(_) => WRITE_ORDER[0],
            Write::DestroyAccount(_) => WRITE_ORDER[1],
            Write::DestroyList(_) => WRITE_ORDER[2],
            Write::CreateAccount(_) => WRITE_ORDER[3],
            Write::CreateList(_) => WRITE_ORDER[4],
            Write::UpdateList(_) => WRITE_ORDER[5],
        }
    }

    /// The key Stalwart's answer names the item by: a create's client id
    /// (the change's index), an update's or destroy's object id.
    fn key(&self) -> String {
        match self {
            Write::CreateAccount(a) => a.key.clone(),
            Write::CreateList(l) => l.key.clone(),
            Write::UpdateAccount(p) => p.id.clone(),
            Write::UpdateList(r) => r.id.clone(),
            Write::DestroyAccount(id) | Write::DestroyList(id) => id.clone(),
        }
    }
}

/// The outcome slot of every change of the call, by index.
type Results = Vec<Option<Done>>;

impl StalwartAgent {
    pub(super) async fn apply_all(
        &self,
        changes: Vec<StalwartChange>,
        dry_run: bool,
    ) -> Vec<ChangeResult> {
        let ids: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
        let mut results: Results = ids.iter().map(|_| None).collect();
        let mut rounds: Vec<Vec<(usize, Op)>> = Vec::new();
        let mut last_round: BTreeMap<String, usize> = BTreeMap::new();
        for (i, change) in changes.into_iter().enumerate() {
            match Op::parse(change.kind) {
                Ok(op) => {
                    let key = op.key();
                    let round = last_round.get(&key).map_or(0, |r| r + 1);
                    last_round.insert(key, round);
                    if rounds.len() <= round {
                        rounds.push(Vec::new());
                    }
                    rounds[round].push((i, op));
                }
                Err(e) => results[i] = Some(Done::error(&e)),
            }
        }
        let keys: BTreeSet<String> = last_round.into_keys().collect();
        let _objects = self.objects.lock_all(&keys).await;
        for round in rounds {
            self.round(round, dry_run, &mut results).await;
        }
        ids.into_iter()
            .zip(results)
            .map(|(id, done)| {
                let done = done.unwrap_or_else(|| {
                    Done::error(&Error::Transient("the change was not carried out".into()))
                });
                ChangeResult {
                    id,
                    outcome: done.outcome as i32,
                    message: done.message,
                    remote_id: done.remote_id,
                    ..Default::default()
                }
            })
            .collect()
    }

    async fn round(&self, ops: Vec<(usize, Op)>, dry_run: bool, results: &mut Results) {
        let api = self.api.as_ref();
        let mut view = match View::domains(api).await {
            Ok(view) => view,
            Err(e) => {
                for (i, _) in ops {
                    results[i] = Some(Done::error(&e));
                }
                return;
            }
        };
        // Domains a dry run would create: the accounts and lists of the
        // same call may name them.
        let mut pending = BTreeSet::new();
        let mut new_domains = Vec::new();
        for (i, op) in &ops {
            let Op::DomainCreate { name } = op else {
                continue;
            };
            results[*i] = Some(match view.domains.get(name) {
                Some(d) => Done::new(Outcome::Unchanged, format!("domain {name} exists"), &d.id),
                None if dry_run => {
                    pending.insert(name.clone());
                    Done::new(Outcome::DryRun, format!("would create domain {name}"), "")
                }
                None => {
                    new_domains.push(NewDomain {
                        key: i.to_string(),
                        name: name.clone(),
                    });
                    continue;
                }
            });
        }
        // Domains this call failed to create, with why: the accounts and
        // lists in them fail the same way, not as "no such domain".
        let mut failed = BTreeMap::new();
        if !new_domains.is_empty() {
            self.create_domains(new_domains, &mut view, results).await;
            for (i, op) in &ops {
                if let (Op::DomainCreate { name }, Some(done)) = (op, &results[*i])
                    && !view.domains.contains_key(name)
                {
                    let why = Failure {
                        outcome: done.outcome,
                        message: format!("domain {name} was not created: {}", done.message),
                    };
                    failed.insert(name.clone(), why);
                }
            }
        }

        let accounts: BTreeSet<String> = ops
            .iter()
            .filter_map(|(_, op)| op.account_address().map(str::to_owned))
            .collect();
        if !accounts.is_empty() {
            view.read_accounts(api, &accounts).await;
        }
        if ops.iter().any(|(_, op)| op.is_list()) {
            view.read_lists(api).await;
        }
        let context = Context {
            view: &view,
            pending: &pending,
            failed: &failed,
        };
        let mut writes: BTreeMap<&'static str, Vec<(usize, Planned)>> = BTreeMap::new();
        for (i, op) in &ops {
            if matches!(op, Op::DomainCreate { .. }) {
                continue;
            }
            match context.plan(*i, op) {
                Err(done) => results[*i] = Some(done),
                Ok(Step::Unchanged(message, remote_id)) => {
                    results[*i] = Some(Done::new(Outcome::Unchanged, message, remote_id));
                }
                Ok(Step::Write(planned)) if dry_run => {
                    let message = format!("would {}", planned.action);
                    results[*i] = Some(Done::new(Outcome::DryRun, message, planned.remote_id));
                }
                Ok(Step::Write(planned)) => {
                    writes
                        .entry(planned.write.group())
                        .or_default()
                        .push((*i, planned));
                }
            }
        }
        for group in WRITE_ORDER {
            if let Some(batch) = writes.remove(group) {
                self.send(batch, results).await;
            }
        }
    }

    async fn create_domains(&self, new: Vec<NewDomain>, view: &mut View, results: &mut Results) {
        match self.api.create_domains(&new).await {
            Ok(items) => {
                for item in items {
                    let Some(d) = new.iter().find(|d| d.key == item.key) else {
                        continue;
                    };
                    let Ok(i) = item.key.parse::<usize>() else {
                        continue;
                    };
                    let name = &d.name;
                    results[i] = Some(match item.result {
                        Ok(id) => {
                            let domain = Domain {
                                id: id.clone(),
                                name: name.clone(),
                                aliases: Vec::new(),
                            };
                            view.domains.insert(name.clone(), domain);
                            Done::new(Outcome::Applied, format!("created domain {name}"), id)
                        }
                        Err(f) => refused(&f, &format!("create domain {name}"), ""),
                    });
                }
            }
            Err(e) => {
                for d in &new {
                    if let Ok(i) = d.key.parse::<usize>() {
                        results[i] = Some(Done::error(&e));
                    }
                }
            }
        }
    }

    /// One batched `/set` of one kind; each item's result to its change.
    async fn send(&self, batch: Vec<(usize, Planned)>, results: &mut Results) {
        let api = &self.api;
        let Some((_, first)) = batch.first() else {
            return;
        };
        let answer: Result<Vec<ItemResult<Option<String>>>> = match first.write {
            Write::CreateAccount(_) => {
                let new: Vec<NewAccount> = batch
                    .iter()
                    .filter_map(|(_, p)| match &p.write {
                        Write::CreateAccount(a) => Some(a.clone()),
                        _ => None,
                    })
                    .collect();
                api.create_accounts(&new).await.map(with_id)
            }
            Write::UpdateAccount(_) => {
                let patches: Vec<AccountPatch> = batch
                    .iter()
                    .filter_map(|(_, p)| match &p.write {
                        Write::UpdateAccount(patch) => Some(patch.clone()),
                        _ => None,
                    })
                    .collect();
                api.update_accounts(&patches).await.map(without_id)
            }
            Write::DestroyAccount(_) => {
                let ids: Vec<String> = batch.iter().map(|(_, p)| p.write.key()).collect();
                api.destroy_accounts(&ids).await.map(without_id)
            }
            Write::CreateList(_) => {
                let new: Vec<NewList> = batch
                    .iter()
                    .filter_map(|(_, p)| match &p.write {
                        Write::CreateList(l) => Some(l.clone()),
                        _ => None,
                    })
                    .collect();
                api.create_lists(&new).await.map(with_id)
            }
            Write::UpdateList(_) => {
                let changes: Vec<ListRecipients> = batch
                    .iter()
                    .filter_map(|(_, p)| match &p.write {
                        Write::UpdateList(r) => Some(r.clone()),
                        _ => None,
                    })
                    .collect();
                api.update_list_recipients(&changes).await.map(without_id)
            }
            Write::DestroyList(_) => {
                let ids: Vec<String> = batch.iter().map(|(_, p)| p.write.key()).collect();
                api.destroy_lists(&ids).await.map(without_id)
            }
        };
        let mut answered: BTreeMap<String, std::result::Result<Option<String>, SetFailure>> =
            match answer {
                Ok(items) => items.into_iter().map(|r| (r.key, r.result)).collect(),
                Err(e) => {
                    for (i, planned) in batch {
                        let mut done = Done::error(&e);
                        done.remote_id = planned.remote_id;
                        results[i] = Some(done);
                    }
                    return;
                }
            };
        for (i, planned) in batch {
            results[i] = Some(match answered.remove(&planned.write.key()) {
                Some(Ok(new_id)) => Done::new(
                    Outcome::Applied,
                    planned.done,
                    new_id.unwrap_or(planned.remote_id),
                ),
                Some(Err(f)) => refused(&f, &planned.action, &planned.remote_id),
                None => Done::new(
                    Outcome::Transient,
                    format!("{}: Stalwart's answer does not mention it", planned.action),
                    planned.remote_id,
                ),
            });
        }
    }
}

/// A SetError: Stalwart's type and words, for the change that met it.
fn refused(failure: &SetFailure, action: &str, remote_id: &str) -> Done {
    Done::new(
        set_failure_outcome(failure),
        format!("Stalwart refused to {action}: {failure}"),
        remote_id,
    )
}

fn with_id(items: Vec<ItemResult<String>>) -> Vec<ItemResult<Option<String>>> {
    items
        .into_iter()
        .map(|r| ItemResult {
            key: r.key,
            result: r.result.map(Some),
        })
        .collect()
}

fn without_id(items: Vec<ItemResult<()>>) -> Vec<ItemResult<Option<String>>> {
    items
        .into_iter()
        .map(|r| ItemResult {
            key: r.key,
            result: r.result.map(|()| None),
        })
        .collect()
}

enum Step {
    /// Already as asked: why, and the object's id.
    Unchanged(String, String),
    Write(Planned),
}

/// What a round's changes are planned against.
struct Context<'a> {
    view: &'a View,
    /// Domains a dry run would have created.
    pending: &'a BTreeSet<String>,
    /// Domains this call failed to create, and why.
    failed: &'a BTreeMap<String, Failure>,
}

impl Context<'_> {
    /// The id of `domain`, which Stalwart must have (or a dry run would
    /// have created: then a stand-in, as nothing is sent).
    fn domain_id(&self, domain: &str) -> std::result::Result<String, Done> {
        if let Some(d) = self.view.domains.get(domain) {
            return Ok(d.id.clone());
        }
        if self.pending.contains(domain) {
            return Ok(format!("(domain {domain} to be created)"));
        }
        if let Some(why) = self.failed.get(domain) {
            return Err(Done::failed_read(why));
        }
        Err(Done::error(&Error::invalid(format!(
            "Stalwart has no domain {domain}: create it first"
        ))))
    }

    fn account(&self, address: &str) -> std::result::Result<Option<&Account>, Done> {
        if let Some(f) = self.view.account_errors.get(address) {
            return Err(Done::failed_read(f));
        }
        Ok(self.view.accounts.get(address))
    }

    fn list(&self, address: &str) -> std::result::Result<Option<&MailingList>, Done> {
        if let Some(f) = &self.view.lists_error {
            return Err(Done::failed_read(f));
        }
        Ok(self.view.lists.get(address))
    }

    /// An account or list that must exist, and be the one the coordinator
    /// recorded when it names one.
    fn ours(&self, what: &str, address: &str, id: &str, expected_id: &str) -> Result<(), Done> {
        if expected_id.is_empty() || expected_id == id {
            return Ok(());
        }
        let mut done = Done::error(&Error::NotOurs(format!(
            "the {what} {address} in Stalwart is {id}, not {expected_id}: not the one recorded"
        )));
        done.remote_id = id.to_owned();
        Err(done)
    }

    fn alias_addresses(&self, aliases: &[Alias]) -> Vec<String> {
        let mut out: Vec<String> = aliases
            .iter()
            .map(|a| self.view.address(&a.name, &a.domain_id))
            .collect();
        out.sort();
        out
    }

    fn alias(&self, address: &str) -> std::result::Result<Alias, Done> {
        let (local, domain) = split_address(address).map_err(|e| Done::error(&e))?;
        Ok(Alias::new(local, self.domain_id(&domain)?))
    }

    fn plan(&self, index: usize, op: &Op) -> std::result::Result<Step, Done> {
        let split = |a: &str| split_address(a).map_err(|e| Done::error(&e));
        let absent = |what: &str, address: &str| {
            Done::error(&Error::invalid(format!("Stalwart has no {what} {address}")))
        };
        match op {
            Op::DomainCreate { .. } => Err(Done::error(&Error::invalid("domains come first"))),
            Op::AccountCreate {
                address,
                kind,
                aliases,
                disk_quota,
                description,
            } => {
                let (local, domain) = split(address)?;
                let domain_id = self.domain_id(&domain)?;
                if let Some(a) = self.account(address)? {
                    let have = self.alias_addresses(&a.aliases);
                    if a.kind == *kind && have == *aliases && a.disk_quota == *disk_quota {
                        return Ok(Step::Unchanged(
                            format!("account {address} exists as asked"),
                            a.id.clone(),
                        ));
                    }
                    return Err(Done::new(
                        Outcome::Permanent,
                        format!(
                            "account {address} exists ({}, a {}, aliases [{}], quota {:?}), \
                             not as asked: an update changes it, a create does not",
                            a.id,
                            a.kind.as_str(),
                            have.join(", "),
                            a.disk_quota
                        ),
                        &a.id,
                    ));
                }
                let aliases = aliases
                    .iter()
                    .map(|a| self.alias(a))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                let what = match kind {
                    AccountKind::User => "account",
                    AccountKind::Group => "group account",
                };
                Ok(Step::Write(Planned {
                    write: Write::CreateAccount(NewAccount {
                        key: index.to_string(),
                        kind: *kind,
                        name: local,
                        domain_id,
                        aliases,
                        disk_quota: *disk_quota,
                        description: description.clone(),
                    }),
                    action: format!("create {what} {address}"),
                    done: format!("created {what} {address}"),
                    remote_id: String::new(),
                }))
            }
            Op::AccountUpdate {
                address,
                expected_id,
                add,
                remove,
                quota,
            } => {
                let a = self
                    .account(address)?
                    .ok_or_else(|| absent("account", address))?;
                self.ours("account", address, &a.id, expected_id)?;
                let mut aliases: Vec<Alias> = a
                    .aliases
                    .iter()
                    .filter(|al| !remove.contains(&self.view.address(&al.name, &al.domain_id)))
                    .cloned()
                    .collect();
                let mut said = Vec::new();
                for gone in remove {
                    if self.alias_addresses(&a.aliases).contains(gone) {
                        said.push(format!("-{gone}"));
                    }
                }
                for new in add {
                    if !self.alias_addresses(&aliases).contains(new) {
                        aliases.push(self.alias(new)?);
                        said.push(format!("+{new}"));
                    }
                }
                let mut patch = AccountPatch::new(&a.id);
                if aliases != a.aliases {
                    patch = patch.aliases(&aliases);
                }
                if let Some(quota) = quota
                    && *quota != a.disk_quota
                {
                    patch = patch.disk_quota(*quota);
                    said.push(match quota {
                        Some(bytes) => format!("quota {bytes}"),
                        None => "no quota".to_owned(),
                    });
                }
                if patch.is_empty() {
                    return Ok(Step::Unchanged(
                        format!("account {address} has these aliases and quota already"),
                        a.id.clone(),
                    ));
                }
                let said = said.join(" ");
                Ok(Step::Write(Planned {
                    write: Write::UpdateAccount(patch),
                    action: format!("update account {address} ({said})"),
                    done: format!("updated account {address} ({said})"),
                    remote_id: a.id.clone(),
                }))
            }
            Op::AccountSuspend {
                address,
                expected_id,
            } => {
                let a = self
                    .account(address)?
                    .ok_or_else(|| absent("account", address))?;
                self.ours("account", address, &a.id, expected_id)?;
                if a.is_suspended() {
                    return Ok(Step::Unchanged(
                        format!("account {address} is suspended already"),
                        a.id.clone(),
                    ));
                }
                Ok(Step::Write(Planned {
                    write: Write::UpdateAccount(AccountPatch::new(&a.id).suspend(a)),
                    action: format!("suspend account {address}"),
                    done: format!("suspended account {address}: sign-in refused, mail kept"),
                    remote_id: a.id.clone(),
                }))
            }
            Op::AccountResume {
                address,
                expected_id,
            } => {
                let a = self
                    .account(address)?
                    .ok_or_else(|| absent("account", address))?;
                self.ours("account", address, &a.id, expected_id)?;
                if !a.is_suspended() {
                    return Ok(Step::Unchanged(
                        format!("account {address} is not suspended"),
                        a.id.clone(),
                    ));
                }
                Ok(Step::Write(Planned {
                    write: Write::UpdateAccount(AccountPatch::new(&a.id).resume(a)),
                    action: format!("resume account {address}"),
                    done: format!("resumed account {address}"),
                    remote_id: a.id.clone(),
                }))
            }
            Op::AccountDestroy {
                address,
                expected_id,
            } => {
                let Some(a) = self.account(address)? else {
                    return Ok(Step::Unchanged(
                        format!("Stalwart has no account {address}"),
                        String::new(),
                    ));
                };
                self.ours("account", address, &a.id, expected_id)?;
                Ok(Step::Write(Planned {
                    write: Write::DestroyAccount(a.id.clone()),
                    action: format!("destroy account {address} and erase its mail"),
                    done: format!("destroyed account {address}; its mail is erased"),
                    remote_id: a.id.clone(),
                }))
            }
            Op::ListCreate {
                address,
                recipients,
                description,
            } => {
                let (local, domain) = split(address)?;
                let domain_id = self.domain_id(&domain)?;
                if let Some(l) = self.list(address)? {
                    if l.recipients == *recipients {
                        return Ok(Step::Unchanged(
                            format!("list {address} exists as asked"),
                            l.id.clone(),
                        ));
                    }
                    return Err(Done::new(
                        Outcome::Permanent,
                        format!(
                            "list {address} exists ({}) with other recipients: an update \
                             changes it, a create does not",
                            l.id
                        ),
                        &l.id,
                    ));
                }
                Ok(Step::Write(Planned {
                    write: Write::CreateList(NewList {
                        key: index.to_string(),
                        name: local,
                        domain_id,
                        recipients: recipients.clone(),
                        description: description.clone(),
                    }),
                    action: format!("create list {address} ({} recipients)", recipients.len()),
                    done: format!("created list {address} ({} recipients)", recipients.len()),
                    remote_id: String::new(),
                }))
            }
            Op::ListUpdate {
                address,
                expected_id,
                recipients,
            } => {
                let l = self.list(address)?.ok_or_else(|| absent("list", address))?;
                self.ours("list", address, &l.id, expected_id)?;
                if l.recipients == *recipients {
                    return Ok(Step::Unchanged(
                        format!("list {address} has these recipients already"),
                        l.id.clone(),
                    ));
                }
                let added = recipients.iter().filter(|r| !l.recipients.contains(r));
                let removed = l.recipients.iter().filter(|r| !recipients.contains(r));
                let said = format!("+{} -{}", added.count(), removed.count());
                Ok(Step::Write(Planned {
                    write: Write::UpdateList(ListRecipients {
                        id: l.id.clone(),
                        recipients: recipients.clone(),
                    }),
                    action: format!("update the recipients of list {address} ({said})"),
                    done: format!("updated the recipients of list {address} ({said})"),
                    remote_id: l.id.clone(),
                }))
            }
            Op::ListDestroy {
                address,
                expected_id,
            } => {
                let Some(l) = self.list(address)? else {
                    return Ok(Step::Unchanged(
                        format!("Stalwart has no list {address}"),
                        String::new(),
                    ));
                };
                self.ours("list", address, &l.id, expected_id)?;
                Ok(Step::Write(Planned {
                    write: Write::DestroyList(l.id.clone()),
                    action: format!("destroy list {address}"),
                    done: format!("destroyed list {address}"),
                    remote_id: l.id.clone(),
                }))
            }
        }
    }
}
