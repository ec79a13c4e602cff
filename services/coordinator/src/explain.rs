//! What operators ask first: what does this user hold, through which
//! groups, and what is about to change for them (gRPC `Explain`,
//! `coordinator explain`). Also the wire form of planned changes, shared
//! with `Plan`.

use reconciler_proto::coordinator as pb;

use crate::directory::Directory;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::grpc::wire;
use crate::plan::Step;
use crate::subject::Subject;
use crate::targets::Adapters;

/// A planned step as operators read it: which agent, whose, granted by
/// which groups (by name), and why.
pub fn planned_change(
    step: &Step,
    directory: &Directory,
    adapters: &Adapters,
) -> pb::PlannedChange {
    pb::PlannedChange {
        action: wire::action(step.action) as i32,
        resource: wire::resource(step.resource) as i32,
        key: step.key.to_string(),
        detail: serde_json::to_string(&step.target).unwrap_or_default(),
        target: adapters
            .owner(step.resource)
            .map(|a| a.name().to_owned())
            .unwrap_or_default(),
        user: step.username.clone(),
        groups: step
            .groups
            .iter()
            .map(|g| {
                directory
                    .groups
                    .get(g)
                    .map_or_else(|| g.to_owned(), |x| x.name.clone())
            })
            .collect(),
        reason: step.reason.clone(),
    }
}

/// Everything `needle` (a username, email or pk) holds and has pending.
pub async fn explain(engine: &Engine, needle: &str) -> Result<pb::ExplainResponse> {
    let needle = needle.trim();
    if needle.is_empty() {
        return Err(Error::InvalidInput("name a user".into()));
    }
    let prepared = engine
        .prepare(&Subject::User(needle.to_owned()), false)
        .await?;
    let directory = &prepared.directory;
    let user = directory.find_user(needle);
    let username = user.map_or_else(|| needle.to_owned(), |u| u.username.clone());
    let adapters = engine.adapters();
    let store = engine.store();
    let rows: Vec<_> = store
        .ledger_rows(None)
        .await?
        .into_iter()
        .filter(|r| r.username == username)
        .collect();
    let grants = rows
        .iter()
        .map(|row| {
            let resource = wire::resource_named(&row.resource);
            let chains = row
                .groups
                .iter()
                .filter_map(|g| {
                    let chain = user.and_then(|u| directory.group_chain(u, g));
                    match chain {
                        Some(chain) => Some(chain.join(" ← ")),
                        // Not (or no longer) in it: say which group it was.
                        None => directory
                            .groups
                            .get(g)
                            .map(|x| format!("{} (not a member now)", x.name)),
                    }
                })
                .collect();
            pb::Grant {
                resource: resource as i32,
                key: row.key.to_string(),
                state: wire::ledger_state(row.state) as i32,
                target: crate::plan::Resource::ALL
                    .into_iter()
                    .find(|r| r.as_str() == row.resource)
                    .and_then(|r| adapters.owner(r))
                    .map(|a| a.name().to_owned())
                    .unwrap_or_default(),
                chains,
            }
        })
        .collect();
    let groups = user
        .map(|u| {
            directory
                .effective_groups(u)
                .iter()
                .filter_map(|g| directory.groups.get(g).map(|x| x.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let pending = prepared
        .plan
        .steps
        .iter()
        .map(|s| planned_change(s, directory, adapters))
        .collect();
    let pending_removals = store
        .pending_removals()
        .await?
        .into_iter()
        .filter(|p| p.username == username)
        .map(wire::pending_removal)
        .collect();
    let keys: std::collections::BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r.resource.clone(), r.key.to_string()))
        .chain(
            prepared
                .plan
                .steps
                .iter()
                .map(|s| (s.resource.as_str().to_owned(), s.key.to_string())),
        )
        .collect();
    let failing = store
        .backoffs()
        .await?
        .into_iter()
        .filter(|(key, _)| keys.contains(key))
        .map(|((resource, key), b)| pb::FailingChange {
            resource: wire::resource_named(&resource) as i32,
            key,
            failures: b.failures,
            next_attempt_ms: b.next_attempt_ms,
            last_error: b.last_error,
        })
        .collect();
    Ok(pb::ExplainResponse {
        user: username,
        in_directory: user.is_some(),
        groups,
        grants,
        pending,
        pending_removals,
        failing,
        warnings: prepared.plan.warnings,
    })
}
