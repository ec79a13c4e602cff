//! The stalwart-agent: domains, accounts (their suspension and aliases) and
//! mailing lists in Stalwart, through its JMAP management API.

use std::collections::BTreeSet;

use reconciler_proto::agent::{
    self as pb, Outcome, StalwartObserveRequest, StalwartObserveResponse,
    stalwart_agent_client::StalwartAgentClient, stalwart_change::Kind,
};

use super::{Applied, Changes, Cost, Observation, ObserveInput, Secrets, TargetAdapter};
use crate::agents::{AgentLink, MAX_MESSAGE_SIZE, Transport};
use crate::error::Result;
use crate::observed::{
    Observed, ObservedStalwart, ObservedStalwartAccount, ObservedStalwartList, Unavailable,
    canonical,
};
use crate::plan::{Action, Resource, Step, Target};

pub struct Stalwart {
    link: AgentLink,
    client: StalwartAgentClient<Transport>,
}

const RESOURCES: &[Resource] = &[
    Resource::StalwartDomain,
    Resource::StalwartAccount,
    Resource::StalwartSuspension,
    Resource::StalwartAlias,
    Resource::StalwartList,
];

impl Stalwart {
    pub fn new(link: AgentLink) -> Self {
        let client = StalwartAgentClient::new(link.transport())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self { link, client }
    }

    /// One Observe call, its failure classed.
    pub async fn observe_agent(
        &self,
        request: StalwartObserveRequest,
    ) -> Result<StalwartObserveResponse> {
        self.link
            .call("observe", self.client.clone().observe(request))
            .await
    }
}

/// The domains, accounts and lists `input` concerns.
fn request(input: &ObserveInput<'_>) -> StalwartObserveRequest {
    let want = &input.desired.stalwart;
    let mut accounts: BTreeSet<String> = want
        .accounts
        .values()
        .filter(|a| input.scope.contains(&a.user))
        .map(|a| a.address.clone())
        .collect();
    let mut lists: BTreeSet<String> = want.lists.keys().cloned().collect();
    for row in input.ledger {
        match row.resource.as_str() {
            "stalwart_list" => {
                lists.insert(row.key.subject().to_owned());
            }
            "stalwart_account" | "stalwart_suspension" | "stalwart_alias"
                if input.scope.contains(&row.username) =>
            {
                accounts.insert(row.key.subject().to_owned());
            }
            _ => {}
        }
    }
    StalwartObserveRequest {
        domains: want.domains.iter().cloned().collect(),
        accounts: accounts.into_iter().collect(),
        lists: lists.into_iter().collect(),
    }
}

#[async_trait::async_trait]
impl TargetAdapter for Stalwart {
    type Change = pb::StalwartChange;

    fn name(&self) -> &str {
        self.link.name()
    }

    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        let request = request(input);
        if request.accounts.is_empty() && request.lists.is_empty() {
            return Ok(Observation::nothing());
        }
        let response = self.observe_agent(request).await?;
        Ok(Observation::new(Cost::default(), move |observed| {
            absorb(response, observed)
        }))
    }

    /// Domains and accounts are created in a call of their own, before the
    /// aliases, suspensions and lists that need them.
    fn changes<'s>(&self, steps: &[&'s Step], _secrets: &Secrets) -> Changes<'s, Self::Change> {
        Changes::one_per_step(steps, "Stalwart", |step, id| {
            change_kind(step).map(|kind| {
                let first = matches!(kind, Kind::DomainCreate(_) | Kind::AccountCreate(_));
                let change = pb::StalwartChange {
                    id,
                    kind: Some(kind),
                };
                (change, first)
            })
        })
    }

    async fn apply(&self, changes: Vec<Self::Change>) -> Result<Applied> {
        let response = self
            .link
            .call(
                "apply",
                self.client.clone().apply(pb::StalwartApplyRequest {
                    changes,
                    dry_run: false,
                }),
            )
            .await?;
        Ok(Applied {
            results: response.results,
            cost: Cost::default(),
        })
    }

    async fn health(&self) -> Result<()> {
        self.link.health().await
    }

    fn hint(&self, cause: &str) -> Option<&'static str> {
        if cause.contains("objectIsLinked") {
            Some(
                "Stalwart refuses to destroy an object other objects still use (a domain with accounts, a group with members)",
            )
        } else if cause.contains("forbidden") {
            Some(
                "the stalwart-agent's API key lacks a permission the change needs (README, \"Stalwart\")",
            )
        } else {
            None
        }
    }
}

/// The agent change for `step`.
fn change_kind(step: &Step) -> Option<Kind> {
    let kind = match (&step.target, step.action) {
        (Target::StalwartDomain { name }, Action::Create) => {
            Kind::DomainCreate(pb::StalwartDomainCreate { name: name.clone() })
        }
        (Target::StalwartAccount { address, quota, .. }, Action::Create) => {
            Kind::AccountCreate(pb::StalwartAccountCreate {
                address: address.clone(),
                r#type: pb::StalwartAccountType::User as i32,
                aliases: Vec::new(),
                disk_quota: *quota,
                description: "provisioned by authentik-reconciler".into(),
            })
        }
        (Target::StalwartAccount { address, id, quota }, Action::Update) => {
            Kind::AccountUpdate(pb::StalwartAccountUpdate {
                address: address.clone(),
                expected_id: id.clone(),
                quota: Some(pb::StalwartQuota { disk_quota: *quota }),
                ..Default::default()
            })
        }
        (Target::StalwartAccount { address, id, .. }, Action::Delete) => {
            Kind::AccountDestroy(pb::StalwartAccountDestroy {
                address: address.clone(),
                expected_id: id.clone(),
            })
        }
        (Target::StalwartSuspension { address, id }, Action::Create) => {
            Kind::AccountSuspend(pb::StalwartAccountSuspend {
                address: address.clone(),
                expected_id: id.clone(),
            })
        }
        (Target::StalwartSuspension { address, id }, Action::Delete) => {
            Kind::AccountResume(pb::StalwartAccountResume {
                address: address.clone(),
                expected_id: id.clone(),
            })
        }
        (Target::StalwartAlias { address, alias, id }, Action::Create | Action::Delete) => {
            let alias = vec![alias.clone()];
            let (add_aliases, remove_aliases) = if step.action == Action::Create {
                (alias, Vec::new())
            } else {
                (Vec::new(), alias)
            };
            Kind::AccountUpdate(pb::StalwartAccountUpdate {
                address: address.clone(),
                expected_id: id.clone(),
                add_aliases,
                remove_aliases,
                ..Default::default()
            })
        }
        (
            Target::StalwartList {
                address,
                recipients,
                ..
            },
            Action::Create,
        ) => Kind::ListCreate(pb::StalwartListCreate {
            address: address.clone(),
            recipients: recipients.clone(),
            description: "provisioned by authentik-reconciler".into(),
        }),
        (
            Target::StalwartList {
                address,
                id,
                recipients,
            },
            Action::Update,
        ) => Kind::ListUpdate(pb::StalwartListUpdate {
            address: address.clone(),
            expected_id: id.clone(),
            recipients: recipients.clone(),
        }),
        (Target::StalwartList { address, id, .. }, Action::Delete) => {
            Kind::ListDestroy(pb::StalwartListDestroy {
                address: address.clone(),
                expected_id: id.clone(),
            })
        }
        _ => return None,
    };
    Some(kind)
}

/// Folds the stalwart-agent's report into `observed`. Objects that could
/// not be read are left out, so nothing is planned for them.
fn absorb(response: StalwartObserveResponse, observed: &mut Observed) {
    if let Some(unavailable) = response.unavailable {
        let why = Unavailable {
            transient: unavailable.outcome() == Outcome::Transient,
            reason: format!("Stalwart: {}", unavailable.reason),
        };
        for resource in RESOURCES {
            observed.set_unavailable(*resource, why.clone());
        }
        return;
    }
    let present = |id: String| Some(id).filter(|id| !id.is_empty());
    let domains = response
        .domains
        .into_iter()
        .map(|d| {
            (
                canonical(&format!("x@{}", d.name)).split_off(2),
                present(d.id),
            )
        })
        .collect();
    let accounts = response
        .accounts
        .into_iter()
        .map(|a| {
            let account = present(a.id).map(|id| ObservedStalwartAccount {
                id,
                suspended: a.suspended,
                aliases: a.aliases.iter().map(|x| canonical(&x.address)).collect(),
                quota: a.disk_quota,
            });
            (canonical(&a.address), account)
        })
        .collect();
    let lists = response
        .lists
        .into_iter()
        .map(|l| {
            let list = present(l.id).map(|id| ObservedStalwartList {
                id,
                recipients: l.recipients.iter().map(|r| canonical(r)).collect(),
            });
            (canonical(&l.address), list)
        })
        .collect();
    observed.stalwart = Some(ObservedStalwart {
        domains,
        accounts,
        lists,
    });
}
