//! The nextcloud-agent: Nextcloud Mail accounts through `occ`, logging in
//! with the app passwords the mailcow-agent makes in the same run.

use reconciler_proto::agent::{
    self as pb, NextcloudObserveRequest, NextcloudObserveResponse, Outcome,
    nextcloud_agent_client::NextcloudAgentClient, nextcloud_change::Kind,
};

use super::{Applied, Changes, Cost, Observation, ObserveInput, Secrets, TargetAdapter};
use crate::agents::{AgentLink, MAX_MESSAGE_SIZE, Transport};
use crate::error::Result;
use crate::observed::{Observed, ObservedNextcloudAccount, Unavailable, canonical};
use crate::plan::{Action, Resource, Step, Target};

pub struct Nextcloud {
    link: AgentLink,
    client: NextcloudAgentClient<Transport>,
}

impl Nextcloud {
    pub fn new(link: AgentLink) -> Self {
        let client = NextcloudAgentClient::new(link.transport())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self { link, client }
    }

    /// One Observe call, its failure classed.
    pub async fn observe_agent(
        &self,
        request: NextcloudObserveRequest,
    ) -> Result<NextcloudObserveResponse> {
        self.link
            .call("observe", self.client.clone().observe(request))
            .await
    }

    /// One Apply call, its failure classed.
    pub async fn apply_agent(
        &self,
        request: pb::NextcloudApplyRequest,
    ) -> Result<pb::NextcloudApplyResponse> {
        self.link
            .call("apply", self.client.clone().apply(request))
            .await
    }
}

const RESOURCES: &[Resource] = &[Resource::NextcloudAccount];

#[async_trait::async_trait]
impl TargetAdapter for Nextcloud {
    type Change = pb::NextcloudChange;

    fn name(&self) -> &str {
        self.link.name()
    }

    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        let users = super::subjects_in_scope(
            input
                .desired
                .nextcloud_accounts
                .values()
                .map(|d| (&d.user, &d.user)),
            input,
            Resource::NextcloudAccount,
        );
        if users.is_empty() {
            return Ok(Observation::nothing());
        }
        let response = self
            .observe_agent(NextcloudObserveRequest {
                users: users.into_iter().collect(),
            })
            .await?;
        Ok(Observation::new(Cost::default(), move |observed| {
            absorb(response, observed)
        }))
    }

    async fn apply(&self, changes: Vec<Self::Change>) -> Result<Applied> {
        let response = self
            .apply_agent(pb::NextcloudApplyRequest {
                changes,
                dry_run: false,
            })
            .await?;
        Ok(Applied {
            results: response.results,
            cost: Cost::default(),
        })
    }

    async fn health(&self) -> Result<()> {
        self.link.health().await
    }

    /// A create or re-key needs the secret of the app password created or
    /// rotated earlier in this run; without it the step waits (the next run
    /// rotates and tries again).
    fn changes<'s>(&self, steps: &[&'s Step], secrets: &Secrets) -> Changes<'s, Self::Change> {
        let mut changes = Changes::default();
        for step in steps {
            let Target::NextcloudAccount {
                user,
                email,
                login,
                id,
                app_password_key,
            } = &step.target
            else {
                changes.waiting.push((
                    step,
                    format!("{} is not a Nextcloud resource", step.resource.as_str()),
                ));
                continue;
            };
            let secret = secrets.get(app_password_key).map(|s| s.expose().to_owned());
            let kind = match (step.action, secret) {
                (Action::Create, Some(password)) => {
                    Kind::AccountCreate(pb::NextcloudAccountCreate {
                        user: user.clone(),
                        email: email.clone(),
                        name: email.clone(),
                        login: login.clone(),
                        password,
                    })
                }
                (Action::Rekey, Some(password)) => {
                    Kind::AccountSetPassword(pb::NextcloudAccountSetPassword {
                        user: user.clone(),
                        id: *id,
                        email: email.clone(),
                        password,
                    })
                }
                (Action::Create | Action::Rekey, None) => {
                    changes.waiting.push((
                        step,
                        "its app password could not be created or rotated in this run".into(),
                    ));
                    continue;
                }
                _ => Kind::AccountDelete(pb::NextcloudAccountDelete {
                    user: user.clone(),
                    id: *id,
                    email: email.clone(),
                }),
            };
            changes.push(step, |id| pb::NextcloudChange {
                id,
                kind: Some(kind),
            });
        }
        changes
    }
}

/// Folds the nextcloud-agent's report into `observed`.
fn absorb(response: NextcloudObserveResponse, observed: &mut Observed) {
    if let Some(unavailable) = response.unavailable {
        observed.set_unavailable(
            Resource::NextcloudAccount,
            Unavailable {
                transient: unavailable.outcome() == Outcome::Transient,
                reason: unavailable.reason,
            },
        );
        return;
    }
    observed.nextcloud_unknown_users = response
        .accounts
        .iter()
        .filter(|u| !u.user_exists)
        .map(|u| u.user.clone())
        .collect();
    observed.nextcloud = Some(
        response
            .accounts
            .into_iter()
            .map(|u| {
                let accounts = u
                    .accounts
                    .into_iter()
                    .map(|a| ObservedNextcloudAccount {
                        id: a.id,
                        email: canonical(&a.email),
                        imap_user: canonical(&a.imap_user),
                        configured_server: a.configured_server,
                        provisioned: a.provisioned,
                    })
                    .collect();
                (u.user, accounts)
            })
            .collect(),
    );
}
