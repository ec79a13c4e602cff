//! The write endpoints: create / update / delete users and groups, and
//! `add_user` / `remove_user`. Each emits the audit events Authentik's
//! middleware would (see `webhook.rs`).

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::api::{
    St, group_render, group_uuid_from_path, invalid_uuid_message, server_error, user_pk_from_path,
};
use super::drf::{ApiError, FieldErrors, Params};
use super::model::{Directory, USER_TYPES, now_iso};
use super::webhook::ModelEvent;

type QueryPairs = Query<Vec<(String, String)>>;

/// Authentik only installs DRF's `JSONParser`; an empty body is `{}`.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::detail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Unsupported media type \"{content_type}\" in request."),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::field(
            "non_field_errors",
            format!(
                "Invalid data. Expected a dictionary, but got {}.",
                python_type(&other)
            ),
        )),
        Err(error) => Err(ApiError::detail(
            StatusCode::BAD_REQUEST,
            &format!("JSON parse error - {error}"),
        )),
    }
}

fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

const REQUIRED: &str = "This field is required.";
const NOT_NULL: &str = "This field may not be null.";

/// Reads the serializer fields of one request body, collecting every error.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    /// Create and PUT require fields that PATCH may omit.
    partial: bool,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    fn present(&mut self, key: &str, required: bool) -> Option<&'a Value> {
        let body = self.body;
        match body.get(key) {
            None => {
                if required && !self.partial {
                    self.errors.add(key, REQUIRED);
                }
                None
            }
            Some(Value::Null) => {
                self.errors.add(key, NOT_NULL);
                None
            }
            Some(value) => Some(value),
        }
    }

    /// DRF `CharField`: numbers are coerced, other types are refused.
    fn string(&mut self, key: &str, required: bool, allow_blank: bool) -> Option<String> {
        let value = match self.present(key, required)? {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => {
                self.errors.add(key, "Not a valid string.");
                return None;
            }
        };
        if value.is_empty() && !allow_blank {
            self.errors.add(key, "This field may not be blank.");
            return None;
        }
        Some(value)
    }

    /// DRF `BooleanField` and its accepted spellings.
    fn boolean(&mut self, key: &str) -> Option<bool> {
        let parsed = match self.present(key, false)? {
            Value::Bool(b) => Some(*b),
            Value::Number(n) => match n.as_i64() {
                Some(1) => Some(true),
                Some(0) => Some(false),
                _ => None,
            },
            Value::String(s) => match s.as_str() {
                "t" | "T" | "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on"
                | "On" | "ON" | "1" => Some(true),
                "f" | "F" | "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE"
                | "off" | "Off" | "OFF" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.errors.add(key, "Must be a valid boolean.");
        }
        parsed
    }

    /// `JSONDictField`.
    fn dict(&mut self, key: &str) -> Option<Value> {
        match self.present(key, false)? {
            value @ Value::Object(_) => Some(value.clone()),
            other => {
                self.errors.add(
                    key,
                    format!(
                        "Expected a dictionary of items but got type \"{}\".",
                        python_type(other)
                    ),
                );
                None
            }
        }
    }

    fn list(&mut self, key: &str) -> Option<&'a Vec<Value>> {
        match self.present(key, false)? {
            Value::Array(items) => Some(items),
            other => {
                self.errors.add(
                    key,
                    format!(
                        "Expected a list of items but got type \"{}\".",
                        python_type(other)
                    ),
                );
                None
            }
        }
    }

    /// A many `PrimaryKeyRelatedField` onto groups (UUID pks).
    fn group_pks(&mut self, key: &str, directory: &Directory) -> Option<Vec<Uuid>> {
        let items = self.list(key)?;
        let mut out = Vec::new();
        for item in items {
            let Value::String(raw) = item else {
                self.errors.add(
                    key,
                    format!(
                        "Incorrect type. Expected pk value, received {}.",
                        python_type(item)
                    ),
                );
                continue;
            };
            match Uuid::parse_str(raw) {
                Err(_) => self.errors.add(key, invalid_uuid_message(raw)),
                Ok(uuid) if !directory.groups.contains_key(&uuid) => self.errors.add(
                    key,
                    format!("Invalid pk \"{raw}\" - object does not exist."),
                ),
                Ok(uuid) => {
                    if !out.contains(&uuid) {
                        out.push(uuid);
                    }
                }
            }
        }
        Some(out)
    }

    /// A many `PrimaryKeyRelatedField` onto users (int pks).
    fn user_pks(&mut self, key: &str, directory: &Directory) -> Option<BTreeSet<i64>> {
        let items = self.list(key)?;
        let mut out = BTreeSet::new();
        for item in items {
            let pk = match item {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match pk {
                None => self.errors.add(
                    key,
                    format!(
                        "Incorrect type. Expected pk value, received {}.",
                        python_type(item)
                    ),
                ),
                Some(pk) if !directory.users.contains_key(&pk) => self
                    .errors
                    .add(key, format!("Invalid pk \"{pk}\" - object does not exist.")),
                Some(pk) => {
                    out.insert(pk);
                }
            }
        }
        Some(out)
    }

    /// No roles are simulated, so only an empty list is valid.
    fn roles(&mut self, key: &str) {
        if let Some(items) = self.list(key) {
            for item in items {
                self.errors.add(
                    key,
                    format!(
                        "Invalid pk \"{}\" - object does not exist.",
                        item.as_str().unwrap_or_default()
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------- users

#[derive(Default)]
struct UserChanges {
    username: Option<String>,
    name: Option<String>,
    email: Option<String>,
    is_active: Option<bool>,
    attributes: Option<Value>,
    path: Option<String>,
    user_type: Option<String>,
    groups: Option<Vec<Uuid>>,
}

fn read_user(
    directory: &Directory,
    body: &Map<String, Value>,
    existing: Option<i64>,
    partial: bool,
) -> Result<UserChanges, ApiError> {
    let mut f = Fields {
        body,
        partial,
        errors: FieldErrors::default(),
    };
    let mut changes = UserChanges {
        username: f.string("username", true, false),
        name: f.string("name", true, true),
        email: f.string("email", false, true),
        is_active: f.boolean("is_active"),
        attributes: f.dict("attributes"),
        path: f.string("path", false, false),
        user_type: f.string("type", false, false),
        groups: f.group_pks("groups", directory),
    };
    f.roles("roles");
    if let Some(username) = &changes.username {
        if username.chars().count() > 150 {
            f.errors.add(
                "username",
                "Ensure this field has no more than 150 characters.",
            );
        }
        if directory
            .users
            .values()
            .any(|u| &u.username == username && Some(u.pk) != existing)
        {
            f.errors.add("username", "This field must be unique.");
        }
    }
    if let Some(email) = &changes.email {
        let valid = email.is_empty()
            || email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !email.contains(char::is_whitespace)
            });
        if !valid {
            f.errors.add("email", "Enter a valid email address.");
        }
    }
    if let Some(path) = &changes.path {
        if path.starts_with('/') || path.ends_with('/') {
            f.errors
                .add("path", "No leading or trailing slashes allowed.");
        } else if path.split('/').any(str::is_empty) {
            f.errors
                .add("path", "No empty segments in user path allowed.");
        }
    }
    if let Some(user_type) = &changes.user_type {
        if !USER_TYPES.contains(&user_type.as_str()) {
            f.errors
                .add("type", format!("\"{user_type}\" is not a valid choice."));
        } else if existing.is_none() && user_type == "internal_service_account" {
            f.errors.add(
                "type",
                "Setting a user to internal service account is not allowed.",
            );
        } else if let Some(pk) = existing
            && directory.users[&pk].user_type == "internal_service_account"
            && user_type != "internal_service_account"
        {
            f.errors.add(
                "type",
                "Can't change internal service account to other user type.",
            );
        }
    }
    // `groups` has `default=list`: a full write without it clears them.
    if !partial && changes.groups.is_none() && !body.contains_key("groups") {
        changes.groups = Some(Vec::new());
    }
    f.errors.check()?;
    Ok(changes)
}

/// Saves the user (one `post_save`), then sets its groups from the user side
/// (`pre_remove` / `pre_add`, each an event for the *user*).
fn apply_user(
    directory: &mut Directory,
    pk: i64,
    changes: UserChanges,
    action: &'static str,
) -> Vec<ModelEvent> {
    let user = directory.users.get_mut(&pk).expect("user exists");
    if let Some(v) = changes.username {
        user.username = v;
    }
    if let Some(v) = changes.name {
        user.name = v;
    }
    if let Some(v) = changes.email {
        user.email = v;
    }
    if let Some(v) = changes.is_active {
        user.is_active = v;
    }
    if let Some(v) = changes.attributes {
        user.attributes = v;
    }
    if let Some(v) = changes.path {
        user.path = v;
    }
    if let Some(v) = changes.user_type {
        user.user_type = v;
    }
    user.last_updated = now_iso();
    let mut events = vec![ModelEvent::user(action, user)];
    if let Some(wanted) = changes.groups {
        let (mut removed, mut added) = (false, false);
        for group in directory.groups.values_mut() {
            let want = wanted.contains(&group.uuid);
            if want && group.users.insert(pk) {
                added = true;
            } else if !want && group.users.remove(&pk) {
                removed = true;
            }
        }
        let user = &directory.users[&pk];
        // Django's `set()` removes first, then adds.
        for changed in [removed, added] {
            if changed {
                events.push(ModelEvent::user("model_updated", user));
            }
        }
    }
    events
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (status, Json(value)).into_response()
}

pub(crate) async fn create_user(
    State(shared): St,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&headers, &body)?;
    let params = Params(query);
    let (events, rendered) = {
        let mut directory = shared.directory();
        let changes = read_user(&directory, &body, None, false)?;
        let username = changes.username.clone().unwrap_or_default();
        let name = changes.name.clone().unwrap_or_default();
        let email = changes.email.clone().unwrap_or_default();
        let pk = directory.create_user(&username, &name, &email);
        let events = apply_user(&mut directory, pk, changes, "model_created");
        let index = directory.index();
        let rendered = directory.user_json(
            &index,
            &directory.users[&pk],
            params.switch("include_groups", true),
            shared.shape(),
        );
        (events, rendered)
    };
    shared.notify(events);
    Ok(json_response(StatusCode::CREATED, rendered))
}

async fn update_user(
    shared: &super::Shared,
    raw: &str,
    params: Params,
    headers: &HeaderMap,
    body: &Bytes,
    partial: bool,
) -> Result<Response, ApiError> {
    let pk = user_pk_from_path(shared, raw)?;
    let body = parse_body(headers, body)?;
    let (events, rendered) = {
        let mut directory = shared.directory();
        let changes = read_user(&directory, &body, Some(pk), partial)?;
        let events = apply_user(&mut directory, pk, changes, "model_updated");
        let index = directory.index();
        let rendered = directory.user_json(
            &index,
            &directory.users[&pk],
            params.switch("include_groups", true),
            shared.shape(),
        );
        (events, rendered)
    };
    shared.notify(events);
    Ok(json_response(StatusCode::OK, rendered))
}

pub(crate) async fn patch_user(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    update_user(&shared, &raw, Params(query), &headers, &body, true).await
}

pub(crate) async fn put_user(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    update_user(&shared, &raw, Params(query), &headers, &body, false).await
}

pub(crate) async fn delete_user(
    State(shared): St,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let pk = user_pk_from_path(&shared, &raw)?;
    let user = shared.directory().delete_user(pk);
    // `pre_delete` only; the membership rows go by cascade, without m2m
    // signals, so no group event.
    if let Some(user) = user {
        shared.notify(vec![ModelEvent::user("model_deleted", &user)]);
    }
    Ok(StatusCode::NO_CONTENT)
}

// --------------------------------------------------------------- groups

#[derive(Default)]
struct GroupChanges {
    name: Option<String>,
    is_superuser: Option<bool>,
    attributes: Option<Value>,
    /// 2025.12+: the many-to-many `parents`.
    parents: Option<Vec<Uuid>>,
    /// ≤ 2025.10: the `parent` foreign key (saved with the row).
    parent: Option<Option<Uuid>>,
    users: Option<BTreeSet<i64>>,
}

fn read_group(
    directory: &Directory,
    body: &Map<String, Value>,
    existing: Option<Uuid>,
    partial: bool,
    legacy: bool,
) -> Result<GroupChanges, ApiError> {
    let mut f = Fields {
        body,
        partial,
        errors: FieldErrors::default(),
    };
    let mut changes = GroupChanges {
        name: f.string("name", true, false),
        is_superuser: f.boolean("is_superuser"),
        attributes: f.dict("attributes"),
        users: f.user_pks("users", directory),
        ..GroupChanges::default()
    };
    f.roles("roles");
    if legacy {
        changes.parent = match body.get("parent") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(raw)) => match Uuid::parse_str(raw) {
                Err(_) => {
                    f.errors.add("parent", invalid_uuid_message(raw));
                    None
                }
                Ok(uuid) if !directory.groups.contains_key(&uuid) => {
                    f.errors.add(
                        "parent",
                        format!("Invalid pk \"{raw}\" - object does not exist."),
                    );
                    None
                }
                Ok(uuid) if Some(uuid) == existing => {
                    f.errors
                        .add("parent", "Cannot set group as parent of itself.");
                    None
                }
                Ok(uuid) => Some(Some(uuid)),
            },
            Some(other) => {
                f.errors.add(
                    "parent",
                    format!(
                        "Incorrect type. Expected pk value, received {}.",
                        python_type(other)
                    ),
                );
                None
            }
        };
    } else {
        // No cycle check: 2025.12+ accepts any parent graph.
        changes.parents = f.group_pks("parents", directory);
    }
    if let Some(name) = &changes.name
        && directory
            .groups
            .values()
            .any(|g| &g.name == name && Some(g.uuid) != existing)
    {
        // ≤ 2025.10 used an explicit UniqueValidator; 2025.12 has a DB
        // constraint, which DRF words after the model.
        let message = if legacy {
            "This field must be unique."
        } else {
            "group with this name already exists."
        };
        f.errors.add("name", message);
    }
    // `users` has `default=list`: a full write without it clears them.
    if !partial && changes.users.is_none() && !body.contains_key("users") {
        changes.users = Some(BTreeSet::new());
    }
    f.errors.check()?;
    Ok(changes)
}

/// Saves the group (one `post_save`), then sets `parents` and `users`; each
/// non-empty removal or addition is one more `model_updated` for the group.
fn apply_group(
    directory: &mut Directory,
    uuid: Uuid,
    changes: GroupChanges,
    action: &'static str,
) -> Vec<ModelEvent> {
    let group = directory.groups.get_mut(&uuid).expect("group exists");
    if let Some(v) = changes.name {
        group.name = v;
    }
    if let Some(v) = changes.is_superuser {
        group.is_superuser = v;
    }
    if let Some(v) = changes.attributes {
        group.attributes = v;
    }
    if let Some(parent) = changes.parent {
        group.parents = parent.into_iter().collect();
    }
    let mut events = vec![ModelEvent::group(action, group)];
    let mut m2m_changes = 0;
    if let Some(parents) = changes.parents {
        let removed = group.parents.iter().any(|p| !parents.contains(p));
        let added = parents.iter().any(|p| !group.parents.contains(p));
        // Keep surviving rows in place and append new ones, like a through
        // table would.
        group.parents.retain(|p| parents.contains(p));
        for parent in parents {
            if !group.parents.contains(&parent) {
                group.parents.push(parent);
            }
        }
        m2m_changes += usize::from(removed) + usize::from(added);
    }
    if let Some(users) = changes.users {
        let removed = group.users.difference(&users).next().is_some();
        let added = users.difference(&group.users).next().is_some();
        group.users = users;
        m2m_changes += usize::from(removed) + usize::from(added);
    }
    for _ in 0..m2m_changes {
        events.push(ModelEvent::group("model_updated", group));
    }
    events
}

pub(crate) async fn create_group(
    State(shared): St,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&headers, &body)?;
    let params = Params(query);
    let legacy = shared.config.legacy_parent;
    let (events, rendered) = {
        let mut directory = shared.directory();
        let changes = read_group(&directory, &body, None, false, legacy)?;
        let name = changes.name.clone().unwrap_or_default();
        let uuid = directory.create_group(&name, Value::Object(Map::new()));
        let events = apply_group(&mut directory, uuid, changes, "model_created");
        let index = directory.index();
        let rendered = directory.group_json(
            &index,
            &directory.groups[&uuid],
            group_render(&params),
            shared.shape(),
        );
        (events, rendered)
    };
    shared.notify(events);
    Ok(json_response(StatusCode::CREATED, rendered))
}

async fn update_group(
    shared: &super::Shared,
    raw: &str,
    params: Params,
    headers: &HeaderMap,
    body: &Bytes,
    partial: bool,
) -> Result<Response, ApiError> {
    let uuid = group_uuid_from_path(shared, raw)?;
    let body = parse_body(headers, body)?;
    let legacy = shared.config.legacy_parent;
    let (events, rendered) = {
        let mut directory = shared.directory();
        let changes = read_group(&directory, &body, Some(uuid), partial, legacy)?;
        let events = apply_group(&mut directory, uuid, changes, "model_updated");
        let index = directory.index();
        let rendered = directory.group_json(
            &index,
            &directory.groups[&uuid],
            group_render(&params),
            shared.shape(),
        );
        (events, rendered)
    };
    shared.notify(events);
    Ok(json_response(StatusCode::OK, rendered))
}

pub(crate) async fn patch_group(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    update_group(&shared, &raw, Params(query), &headers, &body, true).await
}

pub(crate) async fn put_group(
    State(shared): St,
    Path(raw): Path<String>,
    Query(query): QueryPairs,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    update_group(&shared, &raw, Params(query), &headers, &body, false).await
}

pub(crate) async fn delete_group(
    State(shared): St,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let uuid = group_uuid_from_path(&shared, &raw)?;
    let group = shared.directory().delete_group(uuid);
    if let Some(group) = group {
        shared.notify(vec![ModelEvent::group("model_deleted", &group)]);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Clone, Copy)]
enum Membership {
    Add,
    Remove,
}

/// `add_user` / `remove_user`: the view reads `request.data.get("pk")`
/// without validating it and filters the users the caller may view.
async fn membership(
    shared: &super::Shared,
    raw: &str,
    headers: &HeaderMap,
    body: &Bytes,
    op: Membership,
) -> Result<Response, ApiError> {
    let uuid = group_uuid_from_path(shared, raw)?;
    let body = parse_body(headers, body)?;
    let pk = match body.get("pk") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(pk) => Some(pk),
            // Django raises ValueError ("Field 'id' expected a number"),
            // which nothing catches.
            Err(_) => return Ok(server_error()),
        },
        _ => None,
    };
    let event = {
        let mut directory = shared.directory();
        let visible = pk.filter(|pk| !shared.users_hidden() && directory.users.contains_key(pk));
        let Some(pk) = visible else {
            return Err(ApiError::not_found());
        };
        let group = directory.groups.get_mut(&uuid).expect("group exists");
        match op {
            Membership::Add => {
                group.users.insert(pk);
            }
            Membership::Remove => {
                group.users.remove(&pk);
            }
        }
        // `group.users.add(user)` sends `pre_add` even when the user is
        // already a member (and `remove` likewise), so there is always an
        // event, for the group.
        ModelEvent::group("model_updated", group)
    };
    shared.notify(vec![event]);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn add_user(
    State(shared): St,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    membership(&shared, &raw, &headers, &body, Membership::Add).await
}

pub(crate) async fn remove_user(
    State(shared): St,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    membership(&shared, &raw, &headers, &body, Membership::Remove).await
}
