//! Observe: what Stalwart holds for the domains, accounts and lists asked
//! about, read in few requests: every domain at once (there are few), the
//! accounts of each domain by name when few are asked for (in one
//! request), all of the domain's otherwise, and every list at once (Stalwart cannot filter lists
//! by name, crates/jmap/src/registry/query.rs). Apply reads through the
//! same [`View`], so a dry run sees exactly what the real run would.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::agent::{
    ObserveError, Outcome, StalwartAccount, StalwartAccountType, StalwartAlias, StalwartDomain,
    StalwartList, StalwartObserveRequest, StalwartObserveResponse, Unavailable,
};

use super::{StalwartAgent, split_address};
use crate::error::{Error, Result};
use crate::jmap::{Account, AccountFilter, AccountKind, Alias, Domain, MailingList, StalwartApi};

/// Up to this many accounts of one domain are looked up by name (a query
/// and a get each, all in one request); more, and the whole domain is
/// listed (500 per get, 4000 per request).
const BY_NAME: usize = 8;

/// What Stalwart showed for the objects of one call.
#[derive(Default)]
pub(super) struct View {
    /// Every domain, by name.
    pub domains: BTreeMap<String, Domain>,
    /// Accounts found, by address; an address read but absent is missing.
    pub accounts: BTreeMap<String, Account>,
    /// Accounts that could not be read, by address.
    pub account_errors: BTreeMap<String, Failure>,
    pub lists: BTreeMap<String, MailingList>,
    /// Why the lists could not be read, if they could not.
    pub lists_error: Option<Failure>,
}

/// A read that failed, kept for every subject it concerned.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub outcome: Outcome,
    pub message: String,
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        Self {
            outcome: e.outcome(),
            message: e.to_string(),
        }
    }
}

impl View {
    /// Every domain; the failure of this read is the whole call's.
    pub async fn domains(api: &dyn StalwartApi) -> Result<Self> {
        let domains = api
            .domains()
            .await?
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        Ok(Self {
            domains,
            ..Self::default()
        })
    }

    pub fn domain_name(&self, id: &str) -> Option<&str> {
        self.domains
            .values()
            .find(|d| d.id == id)
            .map(|d| d.name.as_str())
    }

    /// `name@<domain name>`; the id where the domain is not known.
    pub fn address(&self, name: &str, domain_id: &str) -> String {
        format!(
            "{name}@{}",
            self.domain_name(domain_id).unwrap_or(domain_id)
        )
    }

    /// Reads the accounts at `addresses` (lower-cased `local@domain`); an
    /// address in a domain Stalwart does not have has no account.
    pub async fn read_accounts(&mut self, api: &dyn StalwartApi, addresses: &BTreeSet<String>) {
        let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for address in addresses {
            if let Ok((local, domain)) = split_address(address)
                && let Some(d) = self.domains.get(&domain)
            {
                by_domain.entry(d.id.clone()).or_default().push(local);
            }
        }
        for (domain_id, names) in by_domain {
            let read = if names.len() <= BY_NAME {
                let named: Vec<(String, String)> = names
                    .iter()
                    .map(|name| (name.clone(), domain_id.clone()))
                    .collect();
                api.accounts_named(&named).await
            } else {
                let filter = AccountFilter {
                    domain_id: Some(domain_id.clone()),
                    ..AccountFilter::default()
                };
                api.accounts(&filter).await
            };
            match read {
                Ok(accounts) => {
                    for account in accounts {
                        let address = self.address(&account.name, &account.domain_id);
                        self.accounts.insert(address, account);
                    }
                }
                Err(e) => {
                    let domain = self.domain_name(&domain_id).unwrap_or_default().to_owned();
                    for name in names {
                        self.account_errors
                            .insert(format!("{name}@{domain}"), Failure::from(&e));
                    }
                }
            }
        }
    }

    /// Reads every list.
    pub async fn read_lists(&mut self, api: &dyn StalwartApi) {
        match api.lists().await {
            Ok(lists) => {
                for list in lists {
                    let address = self.address(&list.name, &list.domain_id);
                    self.lists.insert(address, list);
                }
            }
            Err(e) => self.lists_error = Some(Failure::from(&e)),
        }
    }

    pub fn aliases(&self, aliases: &[Alias]) -> Vec<StalwartAlias> {
        aliases
            .iter()
            .map(|a| StalwartAlias {
                address: self.address(&a.name, &a.domain_id),
                enabled: a.enabled,
            })
            .collect()
    }
}

pub(super) fn unavailable(e: &Error) -> Unavailable {
    Unavailable {
        reason: e.to_string(),
        outcome: e.outcome() as i32,
    }
}

fn observe_error(resource: &str, subject: &str, failure: Failure) -> ObserveError {
    ObserveError {
        resource: resource.to_owned(),
        subject: subject.to_owned(),
        message: failure.message,
        outcome: failure.outcome as i32,
    }
}

/// Each subject once, lower-cased, in the order first asked.
fn unique(subjects: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    subjects
        .into_iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

pub(super) async fn observe(
    agent: &StalwartAgent,
    req: StalwartObserveRequest,
) -> StalwartObserveResponse {
    let api = agent.api.as_ref();
    // The session first: with Stalwart down, the key refused or a server
    // before 0.16, nothing else can be read, and the coordinator learns
    // why once. It is also the agent's health.
    let session = match agent.health.record(api.session().await).await {
        Ok(session) => session,
        Err(e) => {
            return StalwartObserveResponse {
                unavailable: Some(unavailable(&e)),
                ..Default::default()
            };
        }
    };
    let mut view = match View::domains(api).await {
        Ok(view) => view,
        Err(e) => {
            return StalwartObserveResponse {
                unavailable: Some(unavailable(&e)),
                ..Default::default()
            };
        }
    };
    let mut errors = Vec::new();
    let domains = unique(req.domains)
        .into_iter()
        .map(|name| match view.domains.get(&name) {
            Some(d) => StalwartDomain {
                name,
                id: d.id.clone(),
                aliases: d.aliases.clone(),
            },
            None => StalwartDomain {
                name,
                ..StalwartDomain::default()
            },
        })
        .collect();

    let mut accounts_asked = Vec::new();
    for address in unique(req.accounts) {
        match split_address(&address) {
            Ok(_) => accounts_asked.push(address),
            Err(e) => errors.push(observe_error("account", &address, Failure::from(&e))),
        }
    }
    view.read_accounts(api, &accounts_asked.iter().cloned().collect())
        .await;
    let mut accounts = Vec::new();
    for address in accounts_asked {
        if let Some(failure) = view.account_errors.get(&address) {
            errors.push(observe_error("account", &address, failure.clone()));
            continue;
        }
        accounts.push(match view.accounts.get(&address) {
            Some(a) => account(&view, address, a),
            None => StalwartAccount {
                address,
                ..StalwartAccount::default()
            },
        });
    }

    let mut lists_asked = Vec::new();
    for address in unique(req.lists) {
        match split_address(&address) {
            Ok(_) => lists_asked.push(address),
            Err(e) => errors.push(observe_error("list", &address, Failure::from(&e))),
        }
    }
    if !lists_asked.is_empty() {
        view.read_lists(api).await;
    }
    let mut lists = Vec::new();
    for address in lists_asked {
        if let Some(failure) = &view.lists_error {
            errors.push(observe_error("list", &address, failure.clone()));
            continue;
        }
        lists.push(match view.lists.get(&address) {
            Some(l) => StalwartList {
                address,
                id: l.id.clone(),
                recipients: l.recipients.clone(),
                aliases: view.aliases(&l.aliases),
                description: l.description.clone().unwrap_or_default(),
            },
            None => StalwartList {
                address,
                ..StalwartList::default()
            },
        });
    }
    StalwartObserveResponse {
        username: session.username,
        account_id: session.account_id,
        unavailable: None,
        domains,
        accounts,
        lists,
        errors,
    }
}

fn account(view: &View, address: String, a: &Account) -> StalwartAccount {
    StalwartAccount {
        address,
        id: a.id.clone(),
        r#type: account_type(a.kind) as i32,
        aliases: view.aliases(&a.aliases),
        disk_quota: a.disk_quota,
        suspended: a.is_suspended(),
        member_group_ids: a.member_group_ids.clone(),
        description: a.description.clone().unwrap_or_default(),
    }
}

pub(super) fn account_type(kind: AccountKind) -> StalwartAccountType {
    match kind {
        AccountKind::User => StalwartAccountType::User,
        AccountKind::Group => StalwartAccountType::Group,
    }
}
