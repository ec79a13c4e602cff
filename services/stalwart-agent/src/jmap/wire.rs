//! JSON shapes to and from Stalwart's registry objects. Reading is lenient
//! (a missing optional field is a default); writing follows
//! crates/registry/src/schema/structs.rs at v0.16.18.

use serde_json::{Map, Value, json};

use super::{Account, AccountKind, Alias, Domain, MailingList, NewAccount, NewList, SetFailure};
use crate::error::{Error, Result};

/// `{"0": {name, domainId, enabled, description}}` (structs.rs:2794-2803).
pub(crate) fn aliases_json(aliases: &[Alias]) -> Value {
    let map: Map<String, Value> = aliases
        .iter()
        .enumerate()
        .map(|(i, a)| {
            (
                i.to_string(),
                json!({"name": a.name, "domainId": a.domain_id, "enabled": a.enabled,
                       "description": null}),
            )
        })
        .collect();
    Value::Object(map)
}

fn set_json<'a>(members: impl IntoIterator<Item = &'a String>) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|m| (m.clone(), json!(true)))
            .collect(),
    )
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn required(v: &Value, key: &str, object: &str) -> Result<String> {
    str_of(v, key).ok_or_else(|| Error::Permanent(format!("{object} without `{key}` in /get")))
}

fn set_members(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .get(key)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn aliases_of(v: &Value) -> Vec<Alias> {
    let Some(list) = v.get("aliases").and_then(Value::as_object) else {
        return Vec::new();
    };
    // Index-keyed: order by the number, not the string.
    let mut items: Vec<(usize, &Value)> = list
        .iter()
        .map(|(k, a)| (k.parse().unwrap_or(usize::MAX), a))
        .collect();
    items.sort_by_key(|(i, _)| *i);
    items
        .into_iter()
        .filter_map(|(_, a)| {
            Some(Alias {
                name: str_of(a, "name")?,
                domain_id: str_of(a, "domainId")?,
                enabled: a.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            })
        })
        .collect()
}

pub(crate) fn domain(v: &Value) -> Result<Domain> {
    Ok(Domain {
        id: required(v, "id", "Domain")?,
        name: required(v, "name", "Domain")?,
        aliases: set_members(v, "aliases"),
    })
}

pub(crate) fn account(v: &Value) -> Result<Account> {
    let kind = match v.get("@type").and_then(Value::as_str) {
        Some("User") => AccountKind::User,
        Some("Group") => AccountKind::Group,
        other => {
            return Err(Error::Permanent(format!(
                "Account with @type {other:?} in /get"
            )));
        }
    };
    Ok(Account {
        id: required(v, "id", "Account")?,
        kind,
        name: required(v, "name", "Account")?,
        domain_id: required(v, "domainId", "Account")?,
        email_address: str_of(v, "emailAddress"),
        aliases: aliases_of(v),
        disk_quota: v["quotas"]["maxDiskQuota"].as_u64(),
        member_group_ids: set_members(v, "memberGroupIds"),
        description: str_of(v, "description"),
        permissions: v
            .get("permissions")
            .cloned()
            .unwrap_or_else(|| json!({"@type": "Inherit"})),
    })
}

pub(crate) fn list(v: &Value) -> Result<MailingList> {
    Ok(MailingList {
        id: required(v, "id", "MailingList")?,
        name: required(v, "name", "MailingList")?,
        domain_id: required(v, "domainId", "MailingList")?,
        email_address: str_of(v, "emailAddress"),
        recipients: set_members(v, "recipients"),
        aliases: aliases_of(v),
        description: str_of(v, "description"),
    })
}

/// The create map of an account. `@type` is required on create
/// (crates/registry/src/jmap/patch.rs:420-435). A user gets no
/// credentials unless `password` is given.
pub(crate) fn new_account(a: &NewAccount, password: Option<&str>) -> Value {
    let mut v = json!({
        "@type": a.kind.as_str(),
        "name": a.name,
        "domainId": a.domain_id,
        "aliases": aliases_json(&a.aliases),
        "description": a.description,
    });
    if let Some(q) = a.disk_quota {
        v["quotas"] = json!({ "maxDiskQuota": q });
    }
    if let Some(secret) = password {
        v["credentials"] = json!({"0": {"@type": "Password", "secret": secret}});
    }
    v
}

pub(crate) fn new_list(l: &NewList) -> Value {
    json!({
        "name": l.name,
        "domainId": l.domain_id,
        "recipients": set_json(&l.recipients),
        "description": l.description,
    })
}

pub(crate) fn recipients(r: &[String]) -> Value {
    set_json(r)
}

/// A SetError (crates/jmap-proto/src/error/set.rs:15-48). The properties
/// of `validationErrors` (`validationFailed`, registry/src/types/error.rs:14-23)
/// join `properties`.
pub(crate) fn set_failure(v: &Value) -> SetFailure {
    let mut properties: Vec<String> = v
        .get("properties")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(errors) = v.get("validationErrors").and_then(Value::as_array) {
        properties.extend(errors.iter().filter_map(|e| str_of(e, "property")));
    }
    SetFailure {
        kind: str_of(v, "type").unwrap_or_else(|| "unknown".into()),
        description: str_of(v, "description").unwrap_or_default(),
        properties,
    }
}
