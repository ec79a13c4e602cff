//! `/__sim/*`: unauthenticated, uncounted control endpoints for shell demos
//! (seed the directory, inject faults, read counters). They change state
//! silently, like the in-process mutators.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::fault::{ListFault, Listing};
use super::model::{Directory, display_name, now_iso};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Seed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub groups: Vec<SeedGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedUser {
    pub username: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedGroup {
    pub name: String,
    #[serde(default)]
    pub attributes: Option<Value>,
    /// Parent group names; may name groups that appear later in the seed.
    #[serde(default)]
    pub parents: Vec<String>,
    /// Member usernames.
    #[serde(default)]
    pub members: Vec<String>,
}

/// What seeding created, by name: `{"users": {username: pk}, "groups": {name: uuid}}`.
pub(crate) fn apply_seed(directory: &mut Directory, seed: &Seed) -> Result<Value, String> {
    // Validate every reference before changing anything.
    let known_user = |d: &Directory, name: &str| {
        d.user_by_username(name).is_some() || seed.users.iter().any(|u| u.username == name)
    };
    let known_group = |d: &Directory, name: &str| {
        d.group_by_name(name).is_some() || seed.groups.iter().any(|g| g.name == name)
    };
    for group in &seed.groups {
        if let Some(parent) = group.parents.iter().find(|p| !known_group(directory, p)) {
            return Err(format!("group {:?}: unknown parent {parent:?}", group.name));
        }
        if let Some(member) = group.members.iter().find(|m| !known_user(directory, m)) {
            return Err(format!("group {:?}: unknown member {member:?}", group.name));
        }
        if !matches!(group.attributes, None | Some(Value::Object(_))) {
            return Err(format!(
                "group {:?}: attributes must be an object",
                group.name
            ));
        }
    }

    let mut users = BTreeMap::new();
    for seed_user in &seed.users {
        // Re-seeding updates in place, so a demo script can be re-run.
        let pk = match directory.user_by_username(&seed_user.username) {
            Some(user) => user.pk,
            None => {
                let name = seed_user
                    .name
                    .clone()
                    .unwrap_or_else(|| display_name(&seed_user.username));
                directory.create_user(&seed_user.username, &name, &seed_user.email)
            }
        };
        let user = directory.users.get_mut(&pk).expect("just found or created");
        user.email = seed_user.email.clone();
        if let Some(name) = &seed_user.name {
            user.name = name.clone();
        }
        if let Some(active) = seed_user.is_active {
            user.is_active = active;
        }
        user.last_updated = now_iso();
        users.insert(seed_user.username.clone(), json!(pk));
    }

    let mut groups = BTreeMap::new();
    for seed_group in &seed.groups {
        let uuid = match directory.group_by_name(&seed_group.name) {
            Some(group) => group.uuid,
            None => directory.create_group(&seed_group.name, json!({})),
        };
        if let Some(attributes) = &seed_group.attributes {
            directory.groups.get_mut(&uuid).expect("exists").attributes = attributes.clone();
        }
        groups.insert(seed_group.name.clone(), uuid);
    }
    for seed_group in &seed.groups {
        let parents: Vec<_> = seed_group
            .parents
            .iter()
            .filter_map(|name| directory.group_by_name(name).map(|g| g.uuid))
            .collect();
        let members: Vec<i64> = seed_group
            .members
            .iter()
            .filter_map(|name| directory.user_by_username(name).map(|u| u.pk))
            .collect();
        let group = directory
            .groups
            .get_mut(&groups[&seed_group.name])
            .expect("created above");
        for parent in parents {
            if !group.parents.contains(&parent) {
                group.parents.push(parent);
            }
        }
        group.users.extend(members);
    }
    let groups: BTreeMap<String, Value> = groups
        .into_iter()
        .map(|(name, uuid)| (name, json!(uuid.to_string())))
        .collect();
    Ok(json!({ "users": users, "groups": groups }))
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__sim/seed", post(seed))
        .route("/__sim/fail", post(fail))
        .route("/__sim/hide_users", post(hide_users))
        .route("/__sim/list_fault", post(list_fault))
        .route("/__sim/counts", get(counts).delete(reset_counts))
        .with_state(shared)
}

async fn seed(
    State(shared): State<Arc<Shared>>,
    Json(seed): Json<Seed>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let mut directory = shared.directory();
    apply_seed(&mut directory, &seed)
        .map(Json)
        .map_err(|error| (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))))
}

#[derive(Deserialize)]
struct Fail {
    n: usize,
}

async fn fail(State(shared): State<Arc<Shared>>, Json(fail): Json<Fail>) -> Json<Value> {
    let pending = shared.fail_next.fetch_add(fail.n, Ordering::SeqCst) + fail.n;
    Json(json!({ "pending_failures": pending }))
}

#[derive(Deserialize)]
struct Hide {
    hide: bool,
}

async fn hide_users(State(shared): State<Arc<Shared>>, Json(hide): Json<Hide>) -> StatusCode {
    shared.hide_users.store(hide.hide, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

/// `{"listing": "users"|"groups", "fault": {"kind": …} | null}`; see
/// [`ListFault`] for the kinds. `null` clears the listing's fault.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetListFault {
    listing: Listing,
    fault: Option<ListFault>,
}

async fn list_fault(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<SetListFault>,
) -> StatusCode {
    shared.set_list_fault(request.listing, request.fault);
    StatusCode::NO_CONTENT
}

async fn counts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "total": shared.total_requests.load(Ordering::Relaxed),
        "routes": shared.counts(),
    }))
}

async fn reset_counts(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_counts();
    StatusCode::NO_CONTENT
}
