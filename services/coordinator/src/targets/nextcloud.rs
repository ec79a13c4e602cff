//! The nextcloud-agent: Nextcloud Mail accounts through `occ`, logging in
//! with the app passwords the mailcow-agent makes in the same run.

use std::sync::Arc;

use reconciler_proto::agent::{self as pb, ObserveRequest, ObserveResponse, Outcome, change::Kind};

use super::{Changes, ObserveInput, Secrets, TargetAdapter};
use crate::agents::AgentBackend;
use crate::observed::{Observed, ObservedNextcloudAccount, Unavailable, canonical};
use crate::plan::{Action, Resource, Step, Target};

pub struct Nextcloud {
    agent: Arc<dyn AgentBackend>,
}

impl Nextcloud {
    pub fn new(agent: Arc<dyn AgentBackend>) -> Self {
        Self { agent }
    }
}

const RESOURCES: &[Resource] = &[Resource::NextcloudAccount];

#[async_trait::async_trait]
impl TargetAdapter for Nextcloud {
    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    fn agent(&self) -> &dyn AgentBackend {
        self.agent.as_ref()
    }

    fn observe_request(&self, input: &ObserveInput<'_>) -> Option<ObserveRequest> {
        let users = super::subjects_in_scope(
            input
                .desired
                .nextcloud_accounts
                .values()
                .map(|d| (&d.user, &d.user)),
            input,
            Resource::NextcloudAccount,
        );
        (!users.is_empty()).then(|| ObserveRequest {
            nextcloud_users: users.into_iter().collect(),
            ..ObserveRequest::default()
        })
    }

    fn absorb(
        &self,
        _request: &ObserveRequest,
        response: ObserveResponse,
        observed: &mut Observed,
    ) {
        if !response.nextcloud_unavailable.is_empty() {
            observed.set_unavailable(
                Resource::NextcloudAccount,
                Unavailable {
                    transient: response.nextcloud_outcome() == Outcome::Transient,
                    reason: response.nextcloud_unavailable,
                },
            );
            return;
        }
        observed.nextcloud_unknown_users = response
            .nextcloud_accounts
            .iter()
            .filter(|u| !u.user_exists)
            .map(|u| u.user.clone())
            .collect();
        observed.nextcloud = Some(
            response
                .nextcloud_accounts
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

    /// A create or re-key needs the secret of the app password created or
    /// rotated earlier in this run; without it the step waits (the next run
    /// rotates and tries again).
    fn changes<'s>(&self, steps: &[&'s Step], secrets: &Secrets) -> Changes<'s> {
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
                    Kind::NextcloudAccountCreate(pb::NextcloudAccountCreate {
                        user: user.clone(),
                        email: email.clone(),
                        name: email.clone(),
                        login: login.clone(),
                        password,
                    })
                }
                (Action::Update, Some(password)) => {
                    Kind::NextcloudAccountSetPassword(pb::NextcloudAccountSetPassword {
                        user: user.clone(),
                        id: *id,
                        email: email.clone(),
                        password,
                    })
                }
                (Action::Create | Action::Update, None) => {
                    changes.waiting.push((
                        step,
                        "its app password could not be created or rotated in this run".into(),
                    ));
                    continue;
                }
                _ => Kind::NextcloudAccountDelete(pb::NextcloudAccountDelete {
                    user: user.clone(),
                    id: *id,
                    email: email.clone(),
                }),
            };
            changes.push(step, kind);
        }
        changes
    }
}
