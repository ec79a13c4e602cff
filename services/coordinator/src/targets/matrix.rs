//! The matrix-agent: room and space membership in Synapse, power levels,
//! and accounts for users who have none yet.

use std::collections::{BTreeMap, BTreeSet};

use reconciler_proto::agent::{
    self as pb, MatrixAccount as WireAccount, MatrixObserveRequest, MatrixObserveResponse, Outcome,
    matrix_agent_client::MatrixAgentClient, matrix_change::Kind,
};
use reconciler_proto::matrix::user_id as localpart_user_id;
use tokio::sync::OnceCell;

use super::{Applied, Changes, Cost, Observation, ObserveInput, Secrets, TargetAdapter};
use crate::agents::{AgentLink, MAX_MESSAGE_SIZE, Transport};
use crate::attributes::{JoinMethod, LeaveAction};
use crate::engine::RunReport;
use crate::error::Result;
use crate::ledger::{LedgerRow, LedgerState, keys};
use crate::observed::{
    AccountState, MatrixIdentity, Observed, ObservedMatrix, ObservedRoom, Unavailable,
};
use crate::plan::{Action, Resource, Step, Target};
use crate::store::Store;

/// How directory users are found in Synapse (README, "Matrix").
#[derive(Clone, Debug, Default)]
pub struct MatrixIdentities {
    /// `MATRIX_SERVER_NAME`; unset: the server part of the bot's ID.
    pub server_name: Option<String>,
    /// `MATRIX_OIDC_PROVIDER` (`oidc-<idp_id>`): users are looked up by
    /// their SSO link first.
    pub oidc_provider: Option<String>,
    /// `MATRIX_CREATE_USERS`: users without an account get one, linked at
    /// `oidc_provider`.
    pub create_users: bool,
}

pub struct Matrix {
    link: AgentLink,
    client: MatrixAgentClient<Transport>,
    identities: MatrixIdentities,
    /// The server users live on, once known.
    server_name: OnceCell<String>,
}

const RESOURCES: &[Resource] = &[
    Resource::MatrixAccount,
    Resource::MatrixBan,
    Resource::MatrixMembership,
    Resource::MatrixPowerLevel,
];

impl Matrix {
    pub fn new(link: AgentLink, identities: MatrixIdentities) -> Self {
        let client = MatrixAgentClient::new(link.transport())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let server_name = OnceCell::new_with(identities.server_name.clone());
        Self {
            link,
            client,
            identities,
            server_name,
        }
    }

    /// One Observe call, its failure classed.
    pub async fn observe_agent(
        &self,
        request: MatrixObserveRequest,
    ) -> Result<MatrixObserveResponse> {
        self.link
            .call("observe", self.client.clone().observe(request))
            .await
    }

    /// The server name, asked of Synapse (through the bot's ID) once.
    /// `Err` carries Synapse's answer when it could not be asked.
    async fn server_name(&self) -> Result<std::result::Result<&str, pb::Unavailable>> {
        if let Some(name) = self.server_name.get() {
            return Ok(Ok(name));
        }
        let response = self.observe_agent(MatrixObserveRequest::default()).await?;
        if let Some(unavailable) = response.unavailable {
            return Ok(Err(unavailable));
        }
        let server = response
            .bot_user_id
            .split_once(':')
            .map(|(_, server)| server.to_owned())
            .unwrap_or_default();
        Ok(Ok(self.server_name.get_or_init(|| async { server }).await))
    }
}

/// The rooms and users `input` concerns: rooms of grants and of ledger
/// rows in scope, and the directory users granted a room.
struct Wanted<'a> {
    rooms: BTreeSet<String>,
    include_children: bool,
    /// Username → Authentik uid.
    users: BTreeMap<&'a str, &'a str>,
}

fn wanted<'a>(input: &ObserveInput<'a>) -> Wanted<'a> {
    let grants = input
        .desired
        .matrix
        .grants
        .values()
        .filter(|g| input.scope.contains(&g.user));
    let mut wanted = Wanted {
        rooms: BTreeSet::new(),
        include_children: false,
        users: BTreeMap::new(),
    };
    for grant in grants {
        wanted.rooms.insert(grant.room.clone());
        wanted.include_children |= grant.include_children;
        wanted.users.insert(&grant.user, &grant.uid);
    }
    let matrix_rows = input.ledger.iter().filter(|r: &&LedgerRow| {
        RESOURCES.iter().any(|res| res.as_str() == r.resource)
            && r.resource != Resource::MatrixAccount.as_str()
            && input.scope.contains(&r.username)
    });
    for row in matrix_rows {
        if let Some((room_id, _)) = keys::parse_matrix(&row.key) {
            wanted.rooms.insert(room_id.to_owned());
        }
    }
    wanted
}

#[async_trait::async_trait]
impl TargetAdapter for Matrix {
    type Change = pb::MatrixChange;

    fn name(&self) -> &str {
        self.link.name()
    }

    fn resources(&self) -> &'static [Resource] {
        RESOURCES
    }

    async fn observe(&self, input: &ObserveInput<'_>) -> Result<Observation> {
        let wanted = wanted(input);
        if wanted.rooms.is_empty() {
            return Ok(Observation::nothing());
        }
        let server = match self.server_name().await? {
            Ok(server) => server.to_owned(),
            Err(unavailable) => {
                return Ok(Observation::new(Cost::default(), move |observed| {
                    unavailable_everywhere(observed, unavailable)
                }));
            }
        };
        let provider = self.identities.oidc_provider.clone();
        let by_localpart: BTreeMap<String, String> = wanted
            .users
            .keys()
            .map(|u| (u.to_string(), localpart_user_id(u, &server)))
            .collect();
        let by_uid: BTreeMap<String, String> = match &provider {
            Some(_) => wanted
                .users
                .iter()
                .filter(|(_, uid)| !uid.is_empty())
                .map(|(u, uid)| (u.to_string(), uid.to_string()))
                .collect(),
            None => BTreeMap::new(),
        };
        let request = MatrixObserveRequest {
            rooms: wanted.rooms.into_iter().collect(),
            include_children: wanted.include_children,
            users: by_localpart.values().cloned().collect(),
            external_ids: provider
                .iter()
                .flat_map(|p| {
                    by_uid.values().map(|uid| pb::MatrixExternalId {
                        auth_provider: p.clone(),
                        external_id: uid.clone(),
                    })
                })
                .collect(),
        };
        let response = self.observe_agent(request).await?;
        let create_users = provider.filter(|_| self.identities.create_users);
        Ok(Observation::new(Cost::default(), move |observed| {
            absorb(
                response,
                server,
                &by_localpart,
                &by_uid,
                create_users,
                observed,
            )
        }))
    }

    fn changes<'s>(&self, steps: &[&'s Step], _secrets: &Secrets) -> Changes<'s, Self::Change> {
        Changes::one_per_step(steps, "Matrix", |step, id| {
            change_kind(step).map(|(kind, first)| {
                let change = pb::MatrixChange {
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
                self.client.clone().apply(pb::MatrixApplyRequest {
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
        if cause.contains("M_FORBIDDEN") {
            Some(
                "the bot must be joined to the room with enough power to invite, kick, ban and \
                 change power levels there (README, \"Matrix\")",
            )
        } else if cause.contains("M_LIMIT_EXCEEDED") {
            Some(
                "Synapse rate-limits the bot: exempt it with MATRIX_EXEMPT_RATELIMIT=true on the matrix-agent",
            )
        } else {
            None
        }
    }

    /// A ban we set is ours to lift if the member is entitled again: the
    /// ledger records it.
    async fn settle(
        &self,
        store: &Store,
        step: &Step,
        result: &pb::ChangeResult,
        _report: &mut RunReport,
    ) -> Result<()> {
        let banned = matches!(
            step.target,
            Target::MatrixMembership {
                on_leave: LeaveAction::Ban,
                ..
            }
        ) && step.action == Action::Delete
            && result.outcome() == Outcome::Applied;
        if banned {
            store
                .ledger_put(&LedgerRow {
                    resource: Resource::MatrixBan.as_str().to_owned(),
                    key: step.key.clone(),
                    state: LedgerState::Created,
                    username: step.username.clone(),
                    groups: step.groups.clone(),
                    remote_id: String::new(),
                })
                .await?;
        }
        Ok(())
    }
}

/// The agent change for `step`, and whether others wait for it.
fn change_kind(step: &Step) -> Option<(Kind, bool)> {
    let kind = match (&step.target, step.action) {
        (
            Target::MatrixMembership {
                room_id,
                user_id,
                join,
                ..
            },
            Action::Create | Action::Update,
        ) => match join {
            JoinMethod::Invite => Kind::Invite(pb::MatrixInvite {
                room: room_id.clone(),
                user_id: user_id.clone(),
                reason: step.reason.clone(),
            }),
            JoinMethod::Force => Kind::ForceJoin(pb::MatrixForceJoin {
                room: room_id.clone(),
                user_id: user_id.clone(),
            }),
        },
        (
            Target::MatrixMembership {
                room_id,
                user_id,
                on_leave,
                reason,
                ..
            },
            Action::Delete,
        ) => match on_leave {
            LeaveAction::Kick => Kind::Kick(pb::MatrixKick {
                room: room_id.clone(),
                user_id: user_id.clone(),
                reason: reason.clone(),
            }),
            LeaveAction::Ban => Kind::Ban(pb::MatrixBan {
                room: room_id.clone(),
                user_id: user_id.clone(),
                reason: reason.clone(),
            }),
        },
        (Target::MatrixBan { room_id, user_id }, Action::Delete) => {
            return Some((
                Kind::Unban(pb::MatrixUnban {
                    room: room_id.clone(),
                    user_id: user_id.clone(),
                    reason: step.reason.clone(),
                }),
                true,
            ));
        }
        (
            Target::MatrixPowerLevel {
                room_id,
                user_id,
                level,
            },
            Action::Create | Action::Update,
        ) => Kind::SetPowerLevel(pb::MatrixSetPowerLevel {
            room: room_id.clone(),
            user_id: user_id.clone(),
            level: *level,
        }),
        // A reset: the entry goes, so the room's default applies. The step
        // names the level removed (ours) for the ledger, never the agent.
        (
            Target::MatrixPowerLevel {
                room_id, user_id, ..
            },
            Action::Delete,
        ) => Kind::SetPowerLevel(pb::MatrixSetPowerLevel {
            room: room_id.clone(),
            user_id: user_id.clone(),
            level: None,
        }),
        (
            Target::MatrixAccount {
                localpart,
                auth_provider,
                external_id,
                display_name,
                ..
            },
            Action::Create,
        ) => {
            return Some((
                Kind::CreateUser(pb::MatrixCreateUser {
                    localpart: localpart.clone(),
                    auth_provider: auth_provider.clone(),
                    external_id: external_id.clone(),
                    displayname: display_name.clone(),
                }),
                true,
            ));
        }
        _ => return None,
    };
    Some((kind, false))
}

fn unavailable_everywhere(observed: &mut Observed, unavailable: pb::Unavailable) {
    let why = Unavailable {
        transient: unavailable.outcome() == Outcome::Transient,
        reason: format!("Synapse: {}", unavailable.reason),
    };
    for resource in RESOURCES {
        observed.set_unavailable(*resource, why.clone());
    }
}

/// Folds the matrix-agent's report into `observed`: rooms as asked, and
/// each directory user's Matrix ID (their SSO link first, else the
/// localpart rule).
fn absorb(
    response: MatrixObserveResponse,
    server_name: String,
    by_localpart: &BTreeMap<String, String>,
    by_uid: &BTreeMap<String, String>,
    create_users: Option<String>,
    observed: &mut Observed,
) {
    if let Some(unavailable) = response.unavailable {
        unavailable_everywhere(observed, unavailable);
        return;
    }
    let rooms = response
        .rooms
        .into_iter()
        .map(|r| {
            let error = r.error.map(|e| Unavailable {
                transient: e.outcome() == Outcome::Transient,
                reason: e.reason,
            });
            let room = ObservedRoom {
                room_id: r.room_id,
                error,
                joined: r.joined.into_iter().collect(),
                invited: r.invited.into_iter().collect(),
                banned: r.banned.into_iter().collect(),
                power_levels: r.user_power_levels.into_iter().collect(),
                users_default: r.users_default,
                children: r.space_children,
            };
            (r.room, room)
        })
        .collect();
    let accounts: BTreeMap<&str, WireAccount> = response
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u.account()))
        .collect();
    // By external id: the linked user, or "" when nothing is linked. A
    // link that could not be looked up is absent.
    let links: BTreeMap<&str, &str> = response
        .external_ids
        .iter()
        .map(|l| (l.external_id.as_str(), l.user_id.as_str()))
        .collect();
    let mut identities = BTreeMap::new();
    for (username, user_id) in by_localpart {
        let linked = match by_uid.get(username).map(|uid| links.get(uid.as_str())) {
            // Unknown whether they are linked: the localpart could be
            // someone else's account, so nothing is planned for them.
            Some(None) => continue,
            Some(Some(linked)) => Some(*linked).filter(|l| !l.is_empty()),
            None => None,
        };
        let identity = match (linked, accounts.get(user_id.as_str())) {
            (Some(linked), _) => MatrixIdentity {
                user_id: linked.to_string(),
                account: AccountState::Active,
            },
            (None, Some(WireAccount::Active)) => MatrixIdentity {
                user_id: user_id.clone(),
                account: AccountState::Active,
            },
            (None, Some(WireAccount::Deactivated)) => MatrixIdentity {
                user_id: user_id.clone(),
                account: AccountState::Deactivated,
            },
            (None, Some(WireAccount::Absent)) => MatrixIdentity {
                user_id: user_id.clone(),
                account: AccountState::Absent,
            },
            // Not looked up (an error for this user): nothing is planned.
            (None, _) => continue,
        };
        identities.insert(username.clone(), identity);
    }
    observed.matrix = Some(ObservedMatrix {
        server_name,
        rooms,
        identities,
        create_users,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power_step(action: Action, level: Option<i64>) -> Step {
        Step {
            resource: Resource::MatrixPowerLevel,
            key: keys::matrix("!room", "@alice:example.org"),
            action,
            username: "alice".into(),
            groups: crate::group_set::GroupSet::new(),
            target: Target::MatrixPowerLevel {
                room_id: "!room".into(),
                user_id: "@alice:example.org".into(),
                level,
            },
            reason: String::new(),
        }
    }

    fn sent_level(step: &Step) -> Option<i64> {
        match change_kind(step) {
            Some((Kind::SetPowerLevel(set), false)) => set.level,
            other => panic!("not a power level change: {other:?}"),
        }
    }

    #[test]
    fn a_power_level_reset_removes_the_entry() {
        assert_eq!(sent_level(&power_step(Action::Create, Some(50))), Some(50));
        assert_eq!(sent_level(&power_step(Action::Update, Some(60))), Some(60));
        // The delete names the level it takes away (ours, for the ledger);
        // the agent is asked to remove the entry.
        assert_eq!(sent_level(&power_step(Action::Delete, Some(50))), None);
    }
}
