//! An in-memory Stalwart behind [`StalwartApi`], for tests that run the
//! agent in process. Objects are kept as `/get` shows them and read back
//! through the client's own parsing, and it refuses changes the way
//! Stalwart 0.16 does where the agent depends on it: a second object with
//! one address (`local@domain`, own or alias) is `primaryKeyViolation`, a
//! domain id that does not exist `invalidForeignKey`, an unknown id
//! `notFound`. A switch makes every call fail (Stalwart down, the key
//! refused), or one method only. Every `/set` is logged, so a test can say
//! "nothing was sent".

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::jmap::{
    Account, AccountFilter, AccountPatch, Domain, ItemResult, ListRecipients, MailingList,
    NewAccount, NewDomain, NewList, Session, SetFailure, StalwartApi, wire,
};

type Fault = Box<dyn Fn() -> Error + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Domain,
    Account,
    List,
}

#[derive(Default)]
struct World {
    next_id: u64,
    objects: BTreeMap<(Kind, String), Value>,
    /// One line per object a `/set` changed (or tried to), in order.
    writes: Vec<String>,
    /// Method calls, by trait method name, in order.
    calls: Vec<&'static str>,
}

#[derive(Default)]
pub struct FakeStalwart {
    world: Mutex<World>,
    fault: Mutex<Option<Fault>>,
    /// Faults of single methods, by trait method name.
    call_faults: Mutex<BTreeMap<&'static str, Fault>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn failure(kind: &str, description: &str) -> SetFailure {
    SetFailure {
        kind: kind.into(),
        description: description.into(),
        properties: Vec::new(),
    }
}

impl FakeStalwart {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call fails with what `fault` makes, until [`Self::heal`].
    pub fn break_with(&self, fault: impl Fn() -> Error + Send + Sync + 'static) {
        *lock(&self.fault) = Some(Box::new(fault));
    }

    /// Only the trait method `call` (`accounts`, `create_domains`, …)
    /// fails, until [`Self::heal`].
    pub fn break_call(
        &self,
        call: &'static str,
        fault: impl Fn() -> Error + Send + Sync + 'static,
    ) {
        lock(&self.call_faults).insert(call, Box::new(fault));
    }

    pub fn heal(&self) {
        *lock(&self.fault) = None;
        lock(&self.call_faults).clear();
    }

    /// The `/set` writes so far (`create Account alice@example.com`, …).
    pub fn writes(&self) -> Vec<String> {
        lock(&self.world).writes.clone()
    }

    /// The trait's methods called so far, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        lock(&self.world).calls.clone()
    }

    /// A domain, as a person would add it. Returns its id.
    pub fn add_domain(&self, name: &str) -> String {
        let mut w = lock(&self.world);
        let id = w.new_id("d");
        let domain = json!({"id": id, "name": name.to_lowercase(), "aliases": {}});
        w.objects.insert((Kind::Domain, id.clone()), domain);
        id
    }

    /// A user `local@domain` a person made. Returns its id.
    pub fn add_user(&self, address: &str) -> String {
        let (local, domain) = address.split_once('@').unwrap_or((address, ""));
        let mut w = lock(&self.world);
        let domain_id = w.domain_id(domain).unwrap_or_default();
        let new = NewAccount {
            key: String::new(),
            kind: crate::jmap::AccountKind::User,
            name: local.into(),
            domain_id,
            aliases: Vec::new(),
            disk_quota: None,
            description: None,
        };
        let mut v = wire::new_account(&new, None);
        let id = w.new_id("a");
        w.complete_account(&mut v, &id);
        w.objects.insert((Kind::Account, id.clone()), v);
        id
    }

    /// An object as `/get` shows it, by address (accounts and lists) or
    /// name (domains).
    pub fn account(&self, address: &str) -> Option<Account> {
        let w = lock(&self.world);
        w.find(Kind::Account, address)
            .and_then(|v| wire::account(v).ok())
    }

    pub fn list(&self, address: &str) -> Option<MailingList> {
        let w = lock(&self.world);
        w.find(Kind::List, address).and_then(|v| wire::list(v).ok())
    }

    pub fn domain(&self, name: &str) -> Option<Domain> {
        let w = lock(&self.world);
        w.objects
            .iter()
            .filter(|((k, _), _)| *k == Kind::Domain)
            .find(|(_, v)| v["name"] == name)
            .and_then(|(_, v)| wire::domain(v).ok())
    }

    fn enter(&self, call: &'static str) -> Result<MutexGuard<'_, World>> {
        if let Some(fault) = lock(&self.fault).as_ref() {
            return Err(fault());
        }
        if let Some(fault) = lock(&self.call_faults).get(call) {
            return Err(fault());
        }
        let mut w = lock(&self.world);
        w.calls.push(call);
        Ok(w)
    }
}

impl World {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    fn domain_id(&self, name: &str) -> Option<String> {
        self.objects
            .iter()
            .find(|((k, _), v)| *k == Kind::Domain && v["name"] == name)
            .map(|((_, id), _)| id.clone())
    }

    fn domain_name(&self, id: &str) -> Option<String> {
        self.objects
            .get(&(Kind::Domain, id.to_owned()))
            .and_then(|d| d["name"].as_str())
            .map(str::to_owned)
    }

    fn find(&self, kind: Kind, address: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|((k, _), v)| *k == kind && v["emailAddress"] == address)
            .map(|(_, v)| v)
    }

    /// Server-set fields and defaults, as `/get` shows them.
    fn complete_account(&self, v: &mut Value, id: &str) {
        v["id"] = json!(id);
        if v.get("permissions").is_none() {
            v["permissions"] = json!({"@type": "Inherit"});
        }
        if v.get("quotas").is_none() {
            v["quotas"] = json!({});
        }
        if let Some(secret) = v.pointer_mut("/credentials/0/secret") {
            *secret = json!("****");
        }
        self.address(v);
    }

    fn address(&self, v: &mut Value) {
        let domain = self
            .domain_name(v["domainId"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let local = v["name"].as_str().unwrap_or_default().to_lowercase();
        v["emailAddress"] = json!(format!("{local}@{domain}"));
    }

    /// Every address `v` holds: its own and its aliases', as (local, domain id).
    fn addresses(v: &Value) -> Vec<(String, String)> {
        let own = (
            v["name"].as_str().unwrap_or_default().to_lowercase(),
            v["domainId"].as_str().unwrap_or_default().to_owned(),
        );
        let aliases = v["aliases"]
            .as_object()
            .into_iter()
            .flat_map(|a| a.values())
            .map(|a| {
                (
                    a["name"].as_str().unwrap_or_default().to_lowercase(),
                    a["domainId"].as_str().unwrap_or_default().to_owned(),
                )
            });
        std::iter::once(own).chain(aliases).collect()
    }

    /// Foreign keys and unique addresses (Stalwart's one unique key over
    /// the local part and domain id of accounts, lists and their aliases).
    fn check(&self, v: &Value, self_key: Option<&(Kind, String)>) -> Result<(), SetFailure> {
        let mine = Self::addresses(v);
        for (_, domain_id) in &mine {
            if !self
                .objects
                .contains_key(&(Kind::Domain, domain_id.clone()))
            {
                return Err(failure("invalidForeignKey", "Invalid foreign key"));
            }
        }
        let clash = self
            .objects
            .iter()
            .filter(|(key, _)| key.0 != Kind::Domain && Some(*key) != self_key)
            .any(|(_, other)| {
                let theirs = Self::addresses(other);
                mine.iter().any(|m| theirs.contains(m))
            });
        if clash {
            let mut f = failure("primaryKeyViolation", "Primary key violation");
            f.properties.push("email".into());
            return Err(f);
        }
        Ok(())
    }

    fn all(&self, kind: Kind) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(move |((k, _), _)| *k == kind)
            .map(|(_, v)| v)
    }

    fn create(&mut self, kind: Kind, prefix: &str, mut v: Value) -> Result<String, SetFailure> {
        let id = self.new_id(prefix);
        match kind {
            Kind::Account => self.complete_account(&mut v, &id),
            _ => {
                v["id"] = json!(id);
                self.address(&mut v);
            }
        }
        self.check(&v, None)?;
        self.objects.insert((kind, id.clone()), v);
        Ok(id)
    }

    fn update(
        &mut self,
        kind: Kind,
        id: &str,
        patch: &Map<String, Value>,
    ) -> Result<(), SetFailure> {
        let key = (kind, id.to_owned());
        let mut v = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| failure("notFound", "Object not found"))?;
        for (path, value) in patch {
            set_pointer(&mut v, path, value.clone())?;
        }
        self.check(&v, Some(&key))?;
        self.objects.insert(key, v);
        Ok(())
    }

    fn destroy(&mut self, kind: Kind, id: &str) -> Result<(), SetFailure> {
        self.objects
            .remove(&(kind, id.to_owned()))
            .map(|_| ())
            .ok_or_else(|| failure("notFound", "Object not found"))
    }

    fn log(&mut self, op: &str, kind: Kind, what: &str) {
        self.writes.push(format!("{op} {kind:?} {what}"));
    }
}

/// A patch entry: a top-level property or a JSON pointer without the
/// leading `/`; `null` removes what it names (registry/src/types/map.rs).
fn set_pointer(v: &mut Value, path: &str, value: Value) -> Result<(), SetFailure> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts
        .pop()
        .ok_or_else(|| failure("invalidPatch", "Invalid JSON Pointer path"))?;
    let mut at = v;
    for part in parts {
        at = at
            .get_mut(part)
            .filter(|p| p.is_object())
            .ok_or_else(|| failure("invalidPatch", "Invalid JSON Pointer path"))?;
    }
    let object = at
        .as_object_mut()
        .ok_or_else(|| failure("invalidPatch", "Invalid JSON Pointer path"))?;
    if value.is_null() {
        object.remove(last);
    } else {
        object.insert(last.to_owned(), value);
    }
    Ok(())
}

fn results<T>(items: Vec<(String, std::result::Result<T, SetFailure>)>) -> Vec<ItemResult<T>> {
    items
        .into_iter()
        .map(|(key, result)| ItemResult { key, result })
        .collect()
}

fn parsed<T>(values: Vec<Value>, parse: fn(&Value) -> Result<T>) -> Result<Vec<T>> {
    values.iter().map(parse).collect()
}

#[async_trait]
impl StalwartApi for FakeStalwart {
    async fn session(&self) -> Result<Session> {
        let _w = self.enter("session")?;
        Ok(Session {
            api_url: "http://stalwart.invalid/jmap/".into(),
            account_id: "admin-id".into(),
            username: "admin".into(),
        })
    }

    async fn query_domains(&self, name: Option<&str>) -> Result<Vec<String>> {
        let w = self.enter("query_domains")?;
        Ok(w.all(Kind::Domain)
            .filter(|d| name.is_none_or(|n| d["name"] == n))
            .filter_map(|d| d["id"].as_str().map(str::to_owned))
            .collect())
    }

    async fn get_domains(&self, ids: &[String]) -> Result<Vec<Domain>> {
        let w = self.enter("get_domains")?;
        let found = ids
            .iter()
            .filter_map(|id| w.objects.get(&(Kind::Domain, id.clone())).cloned())
            .collect();
        parsed(found, wire::domain)
    }

    async fn domains(&self) -> Result<Vec<Domain>> {
        let w = self.enter("domains")?;
        parsed(w.all(Kind::Domain).cloned().collect(), wire::domain)
    }

    async fn create_domains(&self, new: &[NewDomain]) -> Result<Vec<ItemResult<String>>> {
        let mut w = self.enter("create_domains")?;
        let mut out = Vec::new();
        for d in new {
            let name = d.name.to_lowercase();
            w.log("create", Kind::Domain, &name);
            let result = if w.domain_id(&name).is_some() {
                Err(failure("primaryKeyViolation", "Primary key violation"))
            } else {
                let id = w.new_id("d");
                let v = json!({"id": id, "name": name, "aliases": {}});
                w.objects.insert((Kind::Domain, id.clone()), v);
                Ok(id)
            };
            out.push((d.key.clone(), result));
        }
        Ok(results(out))
    }

    async fn query_accounts(&self, filter: &AccountFilter) -> Result<Vec<String>> {
        let w = self.enter("query_accounts")?;
        Ok(matching(&w, filter)
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect())
    }

    async fn get_accounts(&self, ids: &[String]) -> Result<Vec<Account>> {
        let w = self.enter("get_accounts")?;
        let found = ids
            .iter()
            .filter_map(|id| w.objects.get(&(Kind::Account, id.clone())).cloned())
            .collect();
        parsed(found, wire::account)
    }

    async fn accounts(&self, filter: &AccountFilter) -> Result<Vec<Account>> {
        let w = self.enter("accounts")?;
        parsed(matching(&w, filter).cloned().collect(), wire::account)
    }

    async fn accounts_named(&self, names: &[(String, String)]) -> Result<Vec<Account>> {
        let w = self.enter("accounts_named")?;
        let found = w
            .all(Kind::Account)
            .filter(|a| {
                names
                    .iter()
                    .any(|(n, d)| a["name"] == n.as_str() && a["domainId"] == d.as_str())
            })
            .cloned()
            .collect();
        parsed(found, wire::account)
    }

    async fn create_accounts(&self, new: &[NewAccount]) -> Result<Vec<ItemResult<String>>> {
        let mut w = self.enter("create_accounts")?;
        let mut out = Vec::new();
        for a in new {
            w.log("create", Kind::Account, &a.name);
            let result = w.create(Kind::Account, "a", wire::new_account(a, None));
            out.push((a.key.clone(), result));
        }
        Ok(results(out))
    }

    async fn update_accounts(&self, patches: &[AccountPatch]) -> Result<Vec<ItemResult<()>>> {
        let mut w = self.enter("update_accounts")?;
        let mut out = Vec::new();
        for p in patches.iter().filter(|p| !p.is_empty()) {
            let keys: Vec<&str> = p.entries().keys().map(String::as_str).collect();
            w.log(
                "update",
                Kind::Account,
                &format!("{} {}", p.id, keys.join(",")),
            );
            let result = w.update(Kind::Account, &p.id, p.entries());
            out.push((p.id.clone(), result));
        }
        Ok(results(out))
    }

    async fn destroy_accounts(&self, ids: &[String]) -> Result<Vec<ItemResult<()>>> {
        let mut w = self.enter("destroy_accounts")?;
        let mut out = Vec::new();
        for id in ids {
            w.log("destroy", Kind::Account, id);
            out.push((id.clone(), w.destroy(Kind::Account, id)));
        }
        Ok(results(out))
    }

    async fn query_lists(&self) -> Result<Vec<String>> {
        let w = self.enter("query_lists")?;
        Ok(w.all(Kind::List)
            .filter_map(|l| l["id"].as_str().map(str::to_owned))
            .collect())
    }

    async fn get_lists(&self, ids: &[String]) -> Result<Vec<MailingList>> {
        let w = self.enter("get_lists")?;
        let found = ids
            .iter()
            .filter_map(|id| w.objects.get(&(Kind::List, id.clone())).cloned())
            .collect();
        parsed(found, wire::list)
    }

    async fn lists(&self) -> Result<Vec<MailingList>> {
        let w = self.enter("lists")?;
        parsed(w.all(Kind::List).cloned().collect(), wire::list)
    }

    async fn create_lists(&self, new: &[NewList]) -> Result<Vec<ItemResult<String>>> {
        let mut w = self.enter("create_lists")?;
        let mut out = Vec::new();
        for l in new {
            w.log("create", Kind::List, &l.name);
            let mut v = wire::new_list(l);
            v["aliases"] = json!({});
            out.push((l.key.clone(), w.create(Kind::List, "l", v)));
        }
        Ok(results(out))
    }

    async fn update_list_recipients(
        &self,
        changes: &[ListRecipients],
    ) -> Result<Vec<ItemResult<()>>> {
        let mut w = self.enter("update_list_recipients")?;
        let mut out = Vec::new();
        for c in changes {
            w.log("update", Kind::List, &format!("{} recipients", c.id));
            let patch =
                Map::from_iter([("recipients".to_owned(), wire::recipients(&c.recipients))]);
            out.push((c.id.clone(), w.update(Kind::List, &c.id, &patch)));
        }
        Ok(results(out))
    }

    async fn destroy_lists(&self, ids: &[String]) -> Result<Vec<ItemResult<()>>> {
        let mut w = self.enter("destroy_lists")?;
        let mut out = Vec::new();
        for id in ids {
            w.log("destroy", Kind::List, id);
            out.push((id.clone(), w.destroy(Kind::List, id)));
        }
        Ok(results(out))
    }
}

fn matching<'a>(w: &'a World, f: &'a AccountFilter) -> impl Iterator<Item = &'a Value> {
    w.all(Kind::Account).filter(move |a| {
        f.kind.is_none_or(|k| a["@type"] == k.as_str())
            && f.name.as_ref().is_none_or(|n| a["name"] == n.as_str())
            && f.domain_id
                .as_ref()
                .is_none_or(|d| a["domainId"] == d.as_str())
            && f.member_group_id
                .as_ref()
                .is_none_or(|g| a["memberGroupIds"][g.as_str()] == true)
    })
}
