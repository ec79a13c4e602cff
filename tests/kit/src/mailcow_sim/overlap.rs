//! Writes in flight at once, overall and per object, so a test can see
//! that a client writes side by side but never twice to one mailbox (or
//! alias) at a time. Mailcow's edits replace whole lists (a mailbox's
//! `sender_acl`): two at once on one mailbox would lose one of them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::Value;

use super::lock;
use super::sql::sql_eq;
use super::state::Db;

#[derive(Debug, Default)]
pub(crate) struct Overlap {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    writes: usize,
    max_writes: usize,
    per_object: HashMap<String, usize>,
    max_per_object: usize,
}

/// One write in flight until dropped.
pub(crate) struct InFlight<'a> {
    overlap: &'a Overlap,
    objects: Vec<String>,
}

impl Overlap {
    pub(crate) fn begin(&self, objects: Vec<String>) -> InFlight<'_> {
        let mut state = lock(&self.state);
        state.writes += 1;
        state.max_writes = state.max_writes.max(state.writes);
        for object in &objects {
            let n = state.per_object.entry(object.clone()).or_default();
            *n += 1;
            let n = *n;
            state.max_per_object = state.max_per_object.max(n);
        }
        InFlight {
            overlap: self,
            objects,
        }
    }

    /// (most writes in flight at once, most on one object at once).
    pub(crate) fn maxima(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.max_writes, state.max_per_object)
    }

    /// Forgets the maxima (writes in flight now stay counted).
    pub(crate) fn reset(&self) {
        let mut state = lock(&self.state);
        state.max_writes = state.writes;
        state.max_per_object = state.per_object.values().copied().max().unwrap_or(0);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.overlap.state);
        state.writes -= 1;
        for object in &self.objects {
            if let Some(n) = state.per_object.get_mut(object) {
                *n -= 1;
                if *n == 0 {
                    state.per_object.remove(object);
                }
            }
        }
    }
}

/// The objects a write to `route` (`edit/mailbox`, …) with JSON `body`
/// names: `mailbox:<username>` for a mailbox's sender_acl and app
/// passwords, `alias:<address>` for an alias; lowercased. A body that does
/// not parse names none (the write is still counted overall).
pub(crate) fn written_objects(route: &str, body: &[u8], db: &Db) -> Vec<String> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let items = || -> Vec<Value> {
        match body.get("items") {
            Some(Value::Array(items)) => items.clone(),
            Some(one) => vec![one.clone()],
            None => Vec::new(),
        }
    };
    let ids = |values: Vec<Value>| -> Vec<i64> {
        values
            .iter()
            .filter_map(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .collect()
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mailbox_of_app_passwords = |ids: Vec<i64>| -> Vec<String> {
        db.app_passwd
            .iter()
            .filter(|p| ids.contains(&p.id))
            .map(|p| p.mailbox.clone())
            .collect()
    };
    let aliases_named = |keys: Vec<Value>| -> Vec<String> {
        keys.iter()
            .filter_map(|k| {
                let key = k.as_i64().map(|id| id.to_string()).or_else(|| text(k))?;
                db.aliases()
                    .iter()
                    .find(|a| a.id.to_string() == key || sql_eq(&a.address, &key))
                    .map(|a| a.address.clone())
            })
            .collect()
    };
    let (kind, names): (&str, Vec<String>) = match route {
        "edit/mailbox" => ("mailbox", items().iter().filter_map(text).collect()),
        "add/app-passwd" => (
            "mailbox",
            body.get("username").and_then(text).into_iter().collect(),
        ),
        "edit/app-passwd" => ("mailbox", mailbox_of_app_passwords(ids(items()))),
        "delete/app-passwd" => (
            "mailbox",
            mailbox_of_app_passwords(ids(body.as_array().cloned().unwrap_or_default())),
        ),
        "add/alias" => (
            "alias",
            body.get("address")
                .and_then(text)
                .map(|a| {
                    a.split([',', ' ', ';'])
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "edit/alias" => ("alias", aliases_named(items())),
        "delete/alias" => (
            "alias",
            aliases_named(body.as_array().cloned().unwrap_or_default()),
        ),
        _ => return Vec::new(),
    };
    let unique: BTreeSet<String> = names
        .into_iter()
        .map(|n| format!("{kind}:{}", n.trim().to_lowercase()))
        .collect();
    unique.into_iter().collect()
}
