//! `/api/v3/core/users/` and `/api/v3/core/groups/`: routing, the request
//! gate (counting, injected faults, bearer auth) and the read endpoints.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use uuid::Uuid;

use super::Shared;
use super::drf::{
    ApiError, Params, SortKey, attributes_filter, attributes_match, envelope, ordering, paginate,
    python_int, search_matches, sort_by,
};
use super::fault::Listing;
use super::model::{Group, GroupRender, USER_TYPES, User};
use super::write;

pub(crate) type St = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/api/v3/core/users/",
            get(list_users).post(write::create_user),
        )
        .route(
            "/api/v3/core/users/{pk}/",
            get(retrieve_user)
                .patch(write::patch_user)
                .put(write::put_user)
                .delete(write::delete_user),
        )
        .route(
            "/api/v3/core/groups/",
            get(list_groups).post(write::create_group),
        )
        .route(
            "/api/v3/core/groups/{uuid}/",
            get(retrieve_group)
                .patch(write::patch_group)
                .put(write::put_group)
                .delete(write::delete_group),
        )
        .route(
            "/api/v3/core/groups/{uuid}/add_user/",
            post(write::add_user),
        )
        .route(
            "/api/v3/core/groups/{uuid}/remove_user/",
            post(write::remove_user),
        )
        .route("/api/v3/events/events/", get(super::events::list_events))
        // route_layer: unknown URLs 404 before any auth check, as Django
        // resolves the URL before DRF authenticates.
        .route_layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Django's production 500 page (`DEBUG = False`).
const SERVER_ERROR_HTML: &str = "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Server Error (500)</title>\n</head>\n<body>\n  <h1>Server Error (500)</h1><p></p>\n</body>\n</html>\n";

pub(crate) fn server_error() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        SERVER_ERROR_HTML,
    )
        .into_response()
}

/// Counts the request, then plays an injected fault, then authenticates.
async fn gate(State(shared): St, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    shared.count(format!("{} {route}", request.method()));
    if shared.take_failure() {
        return server_error();
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if let Err(error) = authenticate(authorization, &shared.config.token) {
        return error.into_response();
    }
    let cost = shared.request_cost();
    if !cost.is_zero() {
        tokio::time::sleep(cost).await;
    }
    next.run(request).await
}

/// `authentik/api/authentication.py`. No header (or one without a space)
/// means "not authenticated"; a present but bad one fails authentication.
/// `TokenAuthentication` sets no `WWW-Authenticate`, so DRF answers 403 for
/// both.
fn authenticate(raw: &[u8], token: &str) -> Result<(), ApiError> {
    let forbidden = |detail| Err(ApiError::detail(StatusCode::FORBIDDEN, detail));
    let value = String::from_utf8_lossy(raw);
    let value = value.trim();
    let Some((kind, credentials)) = value.split_once(' ') else {
        return forbidden("Authentication credentials were not provided.");
    };
    if !kind.eq_ignore_ascii_case("bearer") {
        return forbidden("Unsupported authentication type");
    }
    if credentials.is_empty() {
        return forbidden("Malformed header");
    }
    if credentials != token {
        return forbidden("Token invalid/expired");
    }
    Ok(())
}

/// `"Select a valid choice. X is not one of the available choices."`
pub(crate) fn invalid_choice(field: &str, value: &str) -> ApiError {
    ApiError::field(
        field,
        format!("Select a valid choice. {value} is not one of the available choices."),
    )
}

/// Django's `UUIDField` rejecting a malformed value.
pub(crate) fn invalid_uuid_message(value: &str) -> String {
    format!("“{value}” is not a valid UUID.")
}

fn user_sort_key<'a>(user: &'a User, field: &str) -> SortKey<'a> {
    match field {
        "pk" => SortKey::Int(user.pk),
        "username" => SortKey::Text(&user.username),
        "name" => SortKey::Text(&user.name),
        "email" => SortKey::Text(&user.email),
        "is_active" => SortKey::Bool(user.is_active),
        "last_login" => user
            .last_login
            .as_deref()
            .map_or(SortKey::Null, SortKey::Text),
        "date_joined" => SortKey::Text(&user.date_joined),
        "last_updated" => SortKey::Text(&user.last_updated),
        "path" => SortKey::Text(&user.path),
        "type" => SortKey::Text(&user.user_type),
        "uuid" => SortKey::Uuid(user.uuid),
        _ => SortKey::Null,
    }
}

const USER_ORDERING: &[&str] = &[
    "pk",
    "username",
    "name",
    "email",
    "is_active",
    "last_login",
    "date_joined",
    "last_updated",
    "path",
    "type",
    "uuid",
];

async fn list_users(
    State(shared): St,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(query);
    let directory = shared.directory();
    let index = directory.index();
    let mut users: Vec<&User> = if shared.users_hidden() {
        Vec::new()
    } else {
        directory.users.values().collect()
    };

    for (key, get) in [
        (
            "username",
            (|u: &User| u.username.clone()) as fn(&User) -> String,
        ),
        ("email", |u| u.email.clone()),
        ("name", |u| u.name.clone()),
        ("path", |u| u.path.clone()),
    ] {
        if let Some(wanted) = params.filter(key) {
            users.retain(|u| get(u) == wanted);
        }
    }
    if let Some(prefix) = params.filter("path_startswith") {
        users.retain(|u| u.path.starts_with(prefix));
    }
    if let Some(raw) = params.filter("uuid") {
        let uuid =
            Uuid::parse_str(raw).map_err(|_| ApiError::field("uuid", "Enter a valid UUID."))?;
        users.retain(|u| u.uuid == uuid);
    }
    if let Some(active) = params.boolean_filter("is_active") {
        users.retain(|u| u.is_active == active);
    }
    if let Some(superuser) = params.boolean_filter("is_superuser") {
        // Direct groups only, unlike the computed `is_superuser` field.
        users.retain(|u| {
            index.user_groups.get(&u.pk).is_some_and(|groups| {
                groups
                    .iter()
                    .any(|g| directory.groups[g].is_superuser == superuser)
            })
        });
    }
    let types = params.all("type");
    if !types.is_empty() {
        if let Some(bad) = types.iter().find(|t| !USER_TYPES.contains(t)) {
            return Err(invalid_choice("type", bad));
        }
        users.retain(|u| types.contains(&u.user_type.as_str()));
    }
    // Each filter keeps users directly in any of its groups; both together
    // must hold.
    let in_any = |users: &mut Vec<&User>, groups: &HashSet<Uuid>| {
        users.retain(|u| {
            index
                .user_groups
                .get(&u.pk)
                .is_some_and(|gs| gs.iter().any(|g| groups.contains(g)))
        });
    };
    let names = params.all("groups_by_name");
    if !names.is_empty() {
        let mut groups = HashSet::new();
        for name in names {
            let group = directory
                .group_by_name(name)
                .ok_or_else(|| invalid_choice("groups_by_name", name))?;
            groups.insert(group.uuid);
        }
        in_any(&mut users, &groups);
    }
    let pks = params.all("groups_by_pk");
    if !pks.is_empty() {
        let mut groups = HashSet::new();
        for raw in pks {
            let uuid = Uuid::parse_str(raw)
                .map_err(|_| ApiError::field("groups_by_pk", invalid_uuid_message(raw)))?;
            if !directory.groups.contains_key(&uuid) {
                return Err(invalid_choice("groups_by_pk", raw));
            }
            groups.insert(uuid);
        }
        in_any(&mut users, &groups);
    }
    if let Some(raw) = params.filter("attributes") {
        let lookups = attributes_filter(raw)?;
        users.retain(|u| attributes_match(&u.attributes, &lookups));
    }
    if let Some(search) = params.filter("search") {
        users.retain(|u| {
            search_matches(
                search,
                &[&u.email, &u.name, &u.uuid.to_string(), &u.username],
            )
        });
    }

    let terms = ordering(&params, USER_ORDERING, "username");
    sort_by(&mut users, &terms, user_sort_key, |u| SortKey::Int(u.pk));
    let fault = shared.list_fault(Listing::Users);
    if let Some(fault) = &fault {
        users.truncate(fault.visible(users.len()));
    }
    let mut page = paginate(users.len(), &params, shared.page_sizes())?;
    if let Some(fault) = &fault {
        fault.distort(&mut page);
    }
    let include_groups = params.switch("include_groups", true);
    let shape = shared.shape();
    let results = users[page.range]
        .iter()
        .map(|u| directory.user_json(&index, u, include_groups, shape))
        .collect();
    Ok(Json(envelope(page.pagination, results)))
}

/// Looks up a user by the URL's pk, or answers 404 like DRF.
pub(crate) fn user_pk_from_path(shared: &Shared, raw: &str) -> Result<i64, ApiError> {
    let pk = python_int(raw).ok_or_else(ApiError::not_found)?;
    if shared.users_hidden() || !shared.directory().users.contains_key(&pk) {
        return Err(ApiError::no_match("User"));
    }
    Ok(pk)
}

async fn retrieve_user(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(query);
    let pk = user_pk_from_path(&shared, &raw)?;
    let directory = shared.directory();
    let index = directory.index();
    let user = &directory.users[&pk];
    let include_groups = params.switch("include_groups", true);
    Ok(Json(directory.user_json(
        &index,
        user,
        include_groups,
        shared.shape(),
    )))
}

fn group_sort_key<'a>(group: &'a Group, field: &str) -> SortKey<'a> {
    match field {
        "pk" => SortKey::Uuid(group.uuid),
        "name" => SortKey::Text(&group.name),
        "is_superuser" => SortKey::Bool(group.is_superuser),
        _ => SortKey::Null,
    }
}

const GROUP_ORDERING: &[&str] = &["pk", "name", "is_superuser"];

pub(crate) fn group_render(params: &Params) -> GroupRender {
    GroupRender {
        include_users: params.switch("include_users", true),
        include_children: params.switch("include_children", false),
        include_parents: params.switch("include_parents", false),
        include_inherited_roles: params.switch("include_inherited_roles", false),
    }
}

async fn list_groups(
    State(shared): St,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(query);
    let directory = shared.directory();
    let index = directory.index();
    let mut groups: Vec<&Group> = directory.groups.values().collect();

    if let Some(name) = params.filter("name") {
        groups.retain(|g| g.name == name);
    }
    if let Some(superuser) = params.boolean_filter("is_superuser") {
        groups.retain(|g| g.is_superuser == superuser);
    }
    let raw_pks = params.all("members_by_pk");
    if !raw_pks.is_empty() {
        let mut pks = HashSet::new();
        for raw in raw_pks {
            let pk = python_int(raw).ok_or_else(|| {
                ApiError::field("members_by_pk", format!("“{raw}” is not a valid value."))
            })?;
            if !directory.users.contains_key(&pk) {
                return Err(invalid_choice("members_by_pk", raw));
            }
            pks.insert(pk);
        }
        groups.retain(|g| g.users.iter().any(|pk| pks.contains(pk)));
    }
    let usernames = params.all("members_by_username");
    if !usernames.is_empty() {
        let mut pks = HashSet::new();
        for username in usernames {
            let user = directory
                .user_by_username(username)
                .ok_or_else(|| invalid_choice("members_by_username", username))?;
            pks.insert(user.pk);
        }
        groups.retain(|g| g.users.iter().any(|pk| pks.contains(pk)));
    }
    if let Some(raw) = params.filter("attributes") {
        let lookups = attributes_filter(raw)?;
        groups.retain(|g| attributes_match(&g.attributes, &lookups));
    }
    if let Some(search) = params.filter("search") {
        groups.retain(|g| search_matches(search, &[&g.name]));
    }

    let terms = ordering(&params, GROUP_ORDERING, "name");
    sort_by(&mut groups, &terms, group_sort_key, |g| {
        SortKey::Uuid(g.uuid)
    });
    let fault = shared.list_fault(Listing::Groups);
    if let Some(fault) = &fault {
        groups.truncate(fault.visible(groups.len()));
    }
    let mut page = paginate(groups.len(), &params, shared.page_sizes())?;
    if let Some(fault) = &fault {
        fault.distort(&mut page);
    }
    let render = group_render(&params);
    let shape = shared.shape();
    let results = groups[page.range]
        .iter()
        .map(|g| directory.group_json(&index, g, render, shape))
        .collect();
    Ok(Json(envelope(page.pagination, results)))
}

/// Looks up a group by the URL's UUID (dashed or not), or answers 404.
pub(crate) fn group_uuid_from_path(shared: &Shared, raw: &str) -> Result<Uuid, ApiError> {
    let uuid = Uuid::parse_str(raw).map_err(|_| ApiError::not_found())?;
    if !shared.directory().groups.contains_key(&uuid) {
        return Err(ApiError::no_match("Group"));
    }
    Ok(uuid)
}

async fn retrieve_group(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(query);
    let uuid = group_uuid_from_path(&shared, &raw)?;
    let directory = shared.directory();
    let index = directory.index();
    let group = &directory.groups[&uuid];
    Ok(Json(directory.group_json(
        &index,
        group,
        group_render(&params),
        shared.shape(),
    )))
}
