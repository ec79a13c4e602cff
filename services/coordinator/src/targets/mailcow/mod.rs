//! The mailcow-agent: Mailcow's API (send-as rights, app passwords,
//! aliases) and Dovecot's folder ACLs, behind one agent beside Mailcow.

use std::collections::BTreeMap;

use reconciler_proto::agent::{
    self as pb, MailcowObserveRequest, MailcowObserveResponse, Outcome,
    mailcow_agent_client::MailcowAgentClient, mailcow_change::Kind,
};

mod wire;

use self::wire::{protocol_name, right_name, wire_protocols, wire_right};
use super::{Applied, Batch, Changes, Cost, Observation, ObserveInput, Secrets, TargetAdapter};
use crate::agents::{AgentLink, MAX_MESSAGE_SIZE, Transport};
use crate::error::Result;
use crate::observed::{
    Observed, ObservedAlias, ObservedAppPassword, ObservedOwnerAcls, ObservedSenderAcl,
    Unavailable, canonical,
};
use crate::plan::{Action, Resource, Step, Target};

pub struct Mailcow {
    link: AgentLink,
    client: MailcowAgentClient<Transport>,
}

impl Mailcow {
    pub fn new(link: AgentLink) -> Self {
        let client = MailcowAgentClient::new(link.transport())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self { link, client }
    }

    /// One Observe call, its failure classed.
    pub async fn observe_agent(
        &self,
        request: MailcowObserveRequest,
    ) -> Result<MailcowObserveResponse> {
        self.link
            .call("observe", self.client.clone().observe(request))
            .await
    }

    /// One Apply call, its failure classed.
    pub async fn apply_agent(
        &self,
        request: pb::MailcowApplyRequest,
    ) -> Result<pb::MailcowApplyResponse> {
        self.link
            .call("apply", self.client.clone().apply(request))
            .await
    }
}

const RESOURCES: &[Resource] = &[
    Resource::SenderAcl,
    Resource::AppPassword,
    Resource::Alias,
    Resource::MailboxAcl,
];

#[async_trait::async_trait]
impl TargetAdapter for Mailcow {
    type Change = pb::MailcowChange;

    fn name(&self) -> &str {
        self.link.name()
    }

    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        let request = observe_request(input);
        let response = self.observe_agent(request.clone()).await?;
        let cost = Cost {
            doveadm_execs: response.doveadm_execs,
            ..Cost::default()
        };
        Ok(Observation::new(cost, move |observed| {
            absorb(&request, response, observed)
        }))
    }

    fn changes<'s>(&self, steps: &[&'s Step], _secrets: &Secrets) -> Changes<'s, Self::Change> {
        build_changes(steps)
    }

    async fn apply(&self, changes: Vec<Self::Change>) -> Result<Applied> {
        let response = self
            .apply_agent(pb::MailcowApplyRequest {
                changes,
                dry_run: false,
            })
            .await?;
        Ok(Applied {
            results: response.results,
            cost: Cost {
                doveadm_execs: response.doveadm_execs,
                doveadm_acl_writes: response.doveadm_acl_writes,
            },
        })
    }

    async fn health(&self) -> Result<()> {
        self.link.health().await
    }

    /// Mailcow's message keys whose cause is one setting, not one object.
    fn hint(&self, cause: &str) -> Option<&'static str> {
        const HINTS: [(&str, &str); 6] = [
            (
                "mailbox_quota_left_exceeded",
                "the domain's quota is over-allocated: raise it or lower mailbox quotas",
            ),
            (
                "max_alias_exceeded",
                "the domain allows no more aliases: raise its alias limit",
            ),
            (
                "access_denied",
                "the API key cannot do this: give the mailcow-agent a read-write key",
            ),
            (
                "domain_not_found",
                "the domain is not in Mailcow: add it, or fix the group attribute",
            ),
            (
                "extra_acl_invalid_domain",
                "Mailcow refuses send-as for addresses outside its domains",
            ),
            (
                "is_alias_or_mailbox",
                "the address is already a mailbox or an alias in Mailcow",
            ),
        ];
        HINTS
            .iter()
            .find(|(key, _)| cause.contains(key))
            .map(|(_, hint)| *hint)
    }
}

/// Every login and mailbox the scope could touch, from desired state and
/// the ledger. Aliases are group-level: always observed.
fn observe_request(input: &ObserveInput<'_>) -> MailcowObserveRequest {
    let desired = input.desired;
    let logins = super::subjects_in_scope(
        desired.sender_acls.values().map(|d| (&d.user, &d.login)),
        input,
        Resource::SenderAcl,
    );
    let mailboxes = super::subjects_in_scope(
        desired
            .app_passwords
            .values()
            .map(|d| (&d.user, &d.mailbox)),
        input,
        Resource::AppPassword,
    );
    // Owners are only asked about when some group shares a mailbox (or
    // we hold entries to clean up), so an agent without Dovecot access
    // works for everything else.
    let owners = super::subjects_in_scope(
        desired.mailbox_acls.values().map(|d| (&d.user, &d.owner)),
        input,
        Resource::MailboxAcl,
    );
    MailcowObserveRequest {
        sender_acl_logins: logins.into_iter().collect(),
        app_password_mailboxes: mailboxes.into_iter().collect(),
        aliases: true,
        mailbox_acl_owners: owners.into_iter().collect(),
    }
}

/// Folds the mailcow-agent's report into `observed`. A subject the agent
/// could not read (one mailbox's app passwords, one login's sender_acl) is
/// absent from the maps, so nothing is created or removed for it.
fn absorb(
    request: &MailcowObserveRequest,
    response: MailcowObserveResponse,
    observed: &mut Observed,
) {
    if let Some(unavailable) = &response.mailbox_acls_unavailable {
        observed.set_unavailable(
            Resource::MailboxAcl,
            Unavailable {
                transient: unavailable.outcome() == Outcome::Transient,
                reason: unavailable.reason.clone(),
            },
        );
    }
    observed.sender_acls = response
        .sender_acls
        .into_iter()
        .map(|s| {
            (
                canonical(&s.login),
                ObservedSenderAcl {
                    mailbox_exists: s.mailbox_exists,
                    send_as: s.send_as.iter().map(|a| canonical(a)).collect(),
                    implicitly_allowed: s.implicitly_allowed.iter().map(|a| canonical(a)).collect(),
                },
            )
        })
        .collect();
    observed.subject_errors = response
        .errors
        .iter()
        .map(|e| {
            (
                (e.resource.clone(), canonical(&e.subject)),
                Unavailable {
                    reason: e.message.clone(),
                    transient: e.outcome() == Outcome::Transient,
                },
            )
        })
        .collect();
    let unreadable = |mailbox: &str| {
        observed
            .subject_error(Resource::AppPassword, &canonical(mailbox))
            .is_some()
    };
    // Asked and none found is an empty list; asked and unreadable is absent.
    let mut app_passwords: BTreeMap<String, Vec<ObservedAppPassword>> = request
        .app_password_mailboxes
        .iter()
        .filter(|m| !unreadable(m))
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    for p in response.app_passwords {
        if unreadable(&p.mailbox) {
            continue;
        }
        app_passwords
            .entry(canonical(&p.mailbox))
            .or_default()
            .push(ObservedAppPassword {
                id: p.id,
                mailbox: canonical(&p.mailbox),
                active: p.active,
                protocols: p.protocols().map(protocol_name).collect(),
                name: p.name,
            });
    }
    observed.app_passwords = app_passwords;
    observed.aliases = Some(
        response
            .aliases
            .into_iter()
            .map(|a| {
                (
                    canonical(&a.address),
                    ObservedAlias {
                        id: a.id,
                        address: canonical(&a.address),
                        goto: a.goto.iter().map(|g| canonical(g)).collect(),
                        active: a.active,
                        sogo_visible: a.sogo_visible,
                        sender_allowed: a.sender_allowed,
                        managed: a.managed,
                    },
                )
            })
            .collect(),
    );
    observed.mailbox_acls = response
        .mailbox_acls
        .into_iter()
        .map(|owner| {
            let folders = owner
                .folders
                .into_iter()
                .map(|f| {
                    let entries = f
                        .entries
                        .into_iter()
                        .map(|e| (canonical(&e.id), e.rights().map(right_name).collect()))
                        .collect();
                    (f.folder, entries)
                })
                .collect();
            (
                canonical(&owner.owner),
                ObservedOwnerAcls {
                    exists: owner.owner_exists,
                    folders,
                },
            )
        })
        .collect();
}

/// Turns steps into agent changes. Sender-ACL steps for one login become
/// one delta, so the agent reads and writes that list once; ACL steps for
/// one (owner, grantee, rights) become one change with a folder list, which
/// the agent batches per owner.
fn build_changes<'s>(steps: &[&'s Step]) -> Changes<'s, pb::MailcowChange> {
    let mut changes = Changes::default();
    let mut by_login: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_acl: BTreeMap<(&str, &str, &[String]), usize> = BTreeMap::new();
    for step in steps {
        match (&step.target, step.action) {
            (Target::SenderAcl { login, send_as }, action) => {
                let index = *by_login.entry(login.as_str()).or_insert_with(|| {
                    let id = format!("sender_acl:{login}");
                    changes.ready.push(Batch {
                        change: pb::MailcowChange {
                            id: id.clone(),
                            kind: Some(Kind::SenderAcl(pb::SenderAclDelta {
                                login: login.clone(),
                                add: vec![],
                                remove: vec![],
                            })),
                        },
                        id,
                        steps: Vec::new(),
                    });
                    changes.ready.len() - 1
                });
                let batch = &mut changes.ready[index];
                if let Some(Kind::SenderAcl(delta)) = &mut batch.change.kind {
                    match action {
                        Action::Create => delta.add.push(send_as.clone()),
                        _ => delta.remove.push(send_as.clone()),
                    }
                }
                batch.steps.push(step);
            }
            (
                Target::MailboxAcl {
                    owner,
                    grantee,
                    folder,
                    rights,
                },
                action,
            ) => {
                let delete = action == Action::Delete;
                let rights: &[String] = if delete { &[] } else { rights };
                let index = *by_acl
                    .entry((owner.as_str(), grantee.as_str(), rights))
                    .or_insert_with(|| {
                        let change = acl_change(owner, grantee, rights, delete);
                        changes.ready.push(Batch {
                            id: change.id.clone(),
                            change,
                            steps: Vec::new(),
                        });
                        changes.ready.len() - 1
                    });
                let batch = &mut changes.ready[index];
                match &mut batch.change.kind {
                    Some(Kind::MailboxAclSet(set)) => set.folders.push(folder.clone()),
                    Some(Kind::MailboxAclDelete(delete)) => delete.folders.push(folder.clone()),
                    _ => {}
                }
                batch.steps.push(step);
            }
            (Target::AppPassword { .. } | Target::Alias { .. }, _) => {
                if let Some(kind) = single_change(step) {
                    changes.push(step, |id| pb::MailcowChange {
                        id,
                        kind: Some(kind),
                    });
                }
            }
            _ => changes.waiting.push((
                step,
                format!("{} is not a Mailcow resource", step.resource.as_str()),
            )),
        }
    }
    changes
}

fn acl_change(owner: &str, grantee: &str, rights: &[String], delete: bool) -> pb::MailcowChange {
    if delete {
        pb::MailcowChange {
            id: format!("mailbox_acl:delete:{owner}|{grantee}"),
            kind: Some(Kind::MailboxAclDelete(pb::MailboxAclDelete {
                owner: owner.to_owned(),
                grantee: grantee.to_owned(),
                folders: vec![],
            })),
        }
    } else {
        pb::MailcowChange {
            id: format!("mailbox_acl:set:{owner}|{grantee}|{}", rights.join(" ")),
            kind: Some(Kind::MailboxAclSet(pb::MailboxAclSet {
                owner: owner.to_owned(),
                grantee: grantee.to_owned(),
                rights: rights.iter().map(|r| wire_right(r)).collect(),
                folders: vec![],
            })),
        }
    }
}

/// The change of an app password or alias step.
fn single_change(step: &Step) -> Option<Kind> {
    Some(match (&step.target, step.action) {
        (
            Target::AppPassword {
                mailbox,
                name,
                protocols,
                ..
            },
            Action::Create,
        ) => Kind::AppPasswordCreate(pb::AppPasswordCreate {
            mailbox: mailbox.clone(),
            name: name.clone(),
            protocols: wire_protocols(protocols),
        }),
        (
            Target::AppPassword {
                mailbox,
                name,
                id,
                protocols,
            },
            Action::Update,
        ) => Kind::AppPasswordUpdate(pb::AppPasswordUpdate {
            id: *id,
            mailbox: mailbox.clone(),
            name: name.clone(),
            protocols: wire_protocols(protocols),
        }),
        (
            Target::AppPassword {
                mailbox,
                name,
                id,
                protocols,
            },
            Action::Rotate,
        ) => Kind::AppPasswordRotate(pb::AppPasswordRotate {
            id: *id,
            mailbox: mailbox.clone(),
            name: name.clone(),
            protocols: wire_protocols(protocols),
        }),
        (
            Target::AppPassword {
                mailbox, name, id, ..
            },
            _,
        ) => Kind::AppPasswordDelete(pb::AppPasswordDelete {
            id: *id,
            mailbox: mailbox.clone(),
            name: name.clone(),
        }),
        (Target::Alias { address, goto, .. }, Action::Create) => {
            Kind::AliasCreate(pb::AliasCreate {
                address: address.clone(),
                goto: goto.clone(),
            })
        }
        (Target::Alias { address, id, goto }, Action::Update) => {
            Kind::AliasUpdate(pb::AliasUpdate {
                id: *id,
                address: address.clone(),
                goto: goto.clone(),
            })
        }
        (Target::Alias { address, id, .. }, _) => Kind::AliasDelete(pb::AliasDelete {
            id: *id,
            address: address.clone(),
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn acl(folder: &str, action: Action) -> Step {
        Step {
            resource: Resource::MailboxAcl,
            key: crate::ledger::keys::mailbox_acl("info@x.org", "bob@x.org", folder),
            action,
            username: "bob".into(),
            groups: crate::group_set::GroupSet::new(),
            target: Target::MailboxAcl {
                owner: "info@x.org".into(),
                grantee: "bob@x.org".into(),
                folder: folder.into(),
                rights: vec!["lookup".into(), "read".into()],
            },
            reason: String::new(),
        }
    }

    #[test]
    fn folder_acl_steps_of_one_grant_travel_as_one_change() {
        let steps = [
            acl("INBOX", Action::Create),
            acl("Sent", Action::Create),
            acl("Old", Action::Delete),
        ];
        let refs: Vec<&Step> = steps.iter().collect();
        let changes = build_changes(&refs);
        assert_eq!(changes.ready.len(), 2);
        assert_eq!(changes.ready[0].steps.len(), 2);
        match &changes.ready[0].change.kind {
            Some(Kind::MailboxAclSet(set)) => assert_eq!(set.folders, ["INBOX", "Sent"]),
            other => panic!("{other:?}"),
        }
        assert!(changes.waiting.is_empty());
    }
}
