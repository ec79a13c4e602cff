//! The registry objects the simulator keeps (`x:Domain`, `x:Account`,
//! `x:MailingList`), stored as the property maps Stalwart shows on the wire,
//! and the rules of `/set`: patches, validation, uniqueness and referential
//! integrity. Source: stalwartlabs/stalwart v0.16.18, `crates/registry` and
//! `crates/jmap/src/registry` (paths named at each rule).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The three object types the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectType {
    Domain,
    Account,
    MailingList,
}

impl ObjectType {
    pub const ALL: [ObjectType; 3] = [Self::Domain, Self::Account, Self::MailingList];

    /// The name in method names (`x:<name>/get`) and in `objectId`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Domain => "Domain",
            Self::Account => "Account",
            Self::MailingList => "MailingList",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Ids are opaque base32 strings (types/src/id.rs); this alphabet is the
/// one Stalwart's `Id` display uses.
const ID_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz792013";

pub fn encode_id(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(ID_ALPHABET[(n & 31) as usize]);
        n >>= 5;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

pub fn decode_id(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 13 {
        return None;
    }
    let mut n: u64 = 0;
    for b in id.bytes() {
        let digit = ID_ALPHABET.iter().position(|a| *a == b)? as u64;
        n = n.checked_mul(32)?.checked_add(digit)?;
    }
    (encode_id(n) == id).then_some(n)
}

/// A SetError (jmap-proto/src/error/set.rs:15-48).
#[derive(Clone, Debug, PartialEq)]
pub struct SetError {
    pub kind: &'static str,
    pub description: String,
    pub properties: Vec<String>,
    /// Boxed: keeps `Result<_, SetError>` small.
    pub object_id: Option<Box<(ObjectType, String)>>,
    pub linked: Vec<(ObjectType, String)>,
    pub validation: Vec<(&'static str, String)>,
}

impl SetError {
    pub fn new(kind: &'static str, description: impl Into<String>) -> Self {
        Self {
            kind,
            description: description.into(),
            properties: Vec::new(),
            object_id: None,
            linked: Vec::new(),
            validation: Vec::new(),
        }
    }

    fn property(mut self, property: impl Into<String>) -> Self {
        self.properties.push(property.into());
        self
    }

    /// `invalidPatch` with the offending JSON pointer (no leading `/`,
    /// error/set.rs:328-339).
    fn patch(description: impl Into<String>, property: impl Into<String>) -> Self {
        Self::new("invalidPatch", description).property(property)
    }

    fn required(property: &str) -> Self {
        let mut e = Self::new("validationFailed", format!("{property} is required"));
        e.validation.push(("Required", property.to_owned()));
        e
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), json!(self.kind));
        out.insert("description".into(), json!(self.description));
        if !self.properties.is_empty() {
            out.insert("properties".into(), json!(self.properties));
        }
        if let Some((t, id)) = self.object_id.as_deref() {
            out.insert("objectId".into(), json!({"object": t.name(), "id": id}));
        }
        if !self.linked.is_empty() {
            let linked: Vec<Value> = self
                .linked
                .iter()
                .map(|(t, id)| json!({"object": t.name(), "id": id}))
                .collect();
            out.insert("linkedObjects".into(), json!(linked));
        }
        if !self.validation.is_empty() {
            let v: Vec<Value> = self
                .validation
                .iter()
                .map(|(t, p)| json!({"type": t, "property": p}))
                .collect();
            out.insert("validationErrors".into(), json!(v));
        }
        Value::Object(out)
    }
}

pub type Props = Map<String, Value>;

/// Every object, by type and numeric id. Ids come from one counter.
#[derive(Default)]
pub struct Store {
    next_id: u64,
    objects: BTreeMap<(ObjectType, u64), Props>,
    /// Bumped on every write; `queryState` and the state dump show it.
    pub version: u64,
    /// Simulates a server whose policy demands a password on every new
    /// user (an external-directory-less setup some operators choose).
    pub require_password: bool,
}

/// What `x:Account` accepts besides `@type`, per type
/// (registry/src/schema/structs_impl.rs:46771-46970 User, 21343-21500 Group).
const USER_PROPS: &[&str] = &[
    "name",
    "domainId",
    "credentials",
    "memberGroupIds",
    "memberTenantId",
    "roles",
    "permissions",
    "quotas",
    "aliases",
    "description",
    "locale",
    "timeZone",
    "encryptionAtRest",
];
const GROUP_PROPS: &[&str] = &[
    "name",
    "domainId",
    "memberTenantId",
    "roles",
    "permissions",
    "quotas",
    "aliases",
    "description",
    "locale",
    "timeZone",
];
const ACCOUNT_SERVER_SET: &[&str] = &["id", "createdAt", "emailAddress", "usedDiskQuota"];
/// structs_impl.rs:19640-19859.
const DOMAIN_PROPS: &[&str] = &[
    "name",
    "aliases",
    "isEnabled",
    "description",
    "logo",
    "certificateManagement",
    "dkimManagement",
    "dnsManagement",
    "memberTenantId",
    "directoryId",
    "allowRelaying",
    "reportAddressUri",
    "catchAllAddress",
    "subAddressing",
];
const DOMAIN_SERVER_SET: &[&str] = &["id", "createdAt", "dnsZoneFile"];
/// structs_impl.rs:24178-24312.
const LIST_PROPS: &[&str] = &[
    "name",
    "domainId",
    "description",
    "aliases",
    "memberTenantId",
    "recipients",
];
const LIST_SERVER_SET: &[&str] = &["id", "emailAddress"];

/// Properties whose values are JSON sets (`{"key": true}`), where a patch
/// value of `false` removes the member (registry/src/types/map.rs:119-198).
const SET_PROPERTIES: &[&str] = &[
    "recipients",
    "memberGroupIds",
    "enabledPermissions",
    "disabledPermissions",
    "roleIds",
    "allowedIps",
    "events",
];

/// Index-keyed lists (registry/src/types/list.rs:91-172).
const LIST_PROPERTIES: &[&str] = &["aliases", "credentials"];

fn defaults(t: ObjectType, account_type: Option<&str>) -> Props {
    let value = match t {
        // Domain defaults: structs_impl.rs:19764-19784.
        ObjectType::Domain => json!({
            "aliases": {},
            "isEnabled": true,
            "description": null,
            "logo": null,
            "certificateManagement": {"@type": "Manual"},
            "dkimManagement": {
                "@type": "Automatic",
                "algorithms": {"Dkim1Ed25519Sha256": true, "Dkim1RsaSha256": true},
                "rotateAfter": 7_776_000_000_u64,
                "retireAfter": 604_800_000_u64,
                "deleteAfter": 2_592_000_000_u64,
                "selectorTemplate": "v{version}-{algorithm}-{date-%Y%m%d}"
            },
            "dnsManagement": {"@type": "Manual"},
            "memberTenantId": null,
            "directoryId": null,
            "allowRelaying": false,
            "reportAddressUri": "mailto:postmaster",
            "catchAllAddress": null,
            "subAddressing": {"@type": "Enabled"}
        }),
        ObjectType::Account if account_type == Some("Group") => json!({
            "@type": "Group",
            "memberTenantId": null,
            "roles": {"@type": "Default"},
            "permissions": {"@type": "Inherit"},
            "quotas": {},
            "aliases": {},
            "description": null,
            "locale": "en_US",
            "timeZone": null
        }),
        ObjectType::Account => json!({
            "@type": "User",
            "credentials": {},
            "memberGroupIds": {},
            "memberTenantId": null,
            "roles": {"@type": "User"},
            "permissions": {"@type": "Inherit"},
            "quotas": {},
            "aliases": {},
            "description": null,
            "locale": "en_US",
            "timeZone": null,
            "encryptionAtRest": {"@type": "Disabled"}
        }),
        ObjectType::MailingList => json!({
            "description": null,
            "aliases": {},
            "memberTenantId": null,
            "recipients": {}
        }),
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The local-part sanitizer (utils/src/lib.rs:337-375): whitespace
/// stripped, lowercased, alphanumerics plus ``!#$%&'*+-/=?^_`{|}~`` and
/// inner, single dots.
pub fn sanitize_local_part(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if s.is_empty() || s.starts_with('.') || s.ends_with('.') || s.contains("..") {
        return None;
    }
    s.chars()
        .all(|c| c.is_alphanumeric() || c == '.' || "!#$%&'*+-/=?^_`{|}~".contains(c))
        .then_some(s)
}

/// The TLDs Stalwart accepts besides public suffixes (utils/src/lib.rs:377-430).
const PRIVATE_TLDS: &[&str] = &[
    "test",
    "localhost",
    "local",
    "internal",
    "lan",
    "home",
    "corp",
    "intranet",
    "private",
    "localdomain",
];

/// The domain sanitizer (utils/src/lib.rs:377-430): lowercased, a dot
/// required, the TLD a public suffix or one of [`PRIVATE_TLDS`]. The
/// simulator has no public-suffix list: it takes any alphabetic TLD of two
/// letters or more as public, and `example`-style single labels are refused.
pub fn sanitize_domain(raw: &str) -> Option<String> {
    let s = raw.trim().to_lowercase();
    let (_, tld) = s.rsplit_once('.')?;
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    let tld_ok = PRIVATE_TLDS.contains(&tld)
        || (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    (labels_ok && tld_ok).then_some(s)
}

fn sanitize_email(raw: &str) -> Option<String> {
    let (local, domain) = raw.trim().rsplit_once('@')?;
    Some(format!(
        "{}@{}",
        sanitize_local_part(local)?,
        sanitize_domain(domain)?
    ))
}

/// The password policy's default (structs_impl.rs:3409-3413;
/// common/src/network/security.rs:394-417): 8 to 128 characters and a
/// zxcvbn score of 3 or more. zxcvbn is not reimplemented: fewer than three
/// character classes under 16 characters stands for a low score.
fn password_is_weak(secret: &str) -> bool {
    let len = secret.chars().count();
    let classes = [
        secret.chars().any(|c| c.is_ascii_lowercase()),
        secret.chars().any(|c| c.is_ascii_uppercase()),
        secret.chars().any(|c| c.is_ascii_digit()),
        secret.chars().any(|c| !c.is_ascii_alphanumeric()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    !(8..=128).contains(&len) || (classes < 3 && len < 16)
}

/// Does the patch value `false`/`null` at `path` remove a set member or a
/// list item, rather than store `false`?
fn removes(path: &[&str], value: &Value) -> bool {
    if value.is_null() {
        return true;
    }
    let parent = path.len().checked_sub(2).and_then(|i| path.get(i));
    value == &Value::Bool(false) && parent.is_some_and(|p| SET_PROPERTIES.contains(p))
}

impl Store {
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn get(&self, t: ObjectType, id: u64) -> Option<&Props> {
        self.objects.get(&(t, id))
    }

    pub fn ids(&self, t: ObjectType) -> Vec<u64> {
        self.objects
            .keys()
            .filter(|(kind, _)| *kind == t)
            .map(|(_, id)| *id)
            .collect()
    }

    pub fn iter(&self, t: ObjectType) -> impl Iterator<Item = (u64, &Props)> {
        self.objects
            .iter()
            .filter(move |((kind, _), _)| *kind == t)
            .map(|((_, id), props)| (*id, props))
    }

    fn domain_name(&self, id: &str) -> Option<String> {
        let props = self.get(ObjectType::Domain, decode_id(id)?)?;
        props.get("name").and_then(Value::as_str).map(str::to_owned)
    }

    /// The id of the domain named `name` or having it as an alias.
    pub fn domain_by_name(&self, name: &str) -> Option<u64> {
        let name = name.to_lowercase();
        self.iter(ObjectType::Domain)
            .find(|(_, p)| {
                p.get("name").and_then(Value::as_str) == Some(name.as_str())
                    || p.get("aliases")
                        .and_then(Value::as_object)
                        .is_some_and(|a| a.contains_key(&name))
            })
            .map(|(id, _)| id)
    }

    /// What `/get` shows: the stored properties, the id, the computed
    /// `emailAddress` (get.rs:258-273) and `usedDiskQuota` (get.rs:249-257),
    /// secrets masked as `"****"` (structs_impl.rs:30823-30835).
    pub fn render(&self, t: ObjectType, id: u64) -> Option<Value> {
        let mut props = self.get(t, id)?.clone();
        props.insert("id".into(), json!(encode_id(id)));
        if t != ObjectType::Domain {
            let domain = props
                .get("domainId")
                .and_then(Value::as_str)
                .and_then(|d| self.domain_name(d));
            let name = props.get("name").and_then(Value::as_str);
            if let (Some(name), Some(domain)) = (name, domain) {
                props.insert("emailAddress".into(), json!(format!("{name}@{domain}")));
            }
        }
        if t == ObjectType::Account {
            props.insert("usedDiskQuota".into(), json!(0));
            if let Some(Value::Object(creds)) = props.get_mut("credentials") {
                for cred in creds.values_mut() {
                    if let Some(secret) = cred.get_mut("secret") {
                        *secret = json!("****");
                    }
                }
            }
        }
        Some(Value::Object(props))
    }

    /// Creates one object from its create map (references already resolved).
    pub fn create(&mut self, t: ObjectType, input: &Props) -> Result<u64, SetError> {
        let account_type = if t == ObjectType::Account {
            match input.get("@type").and_then(Value::as_str) {
                Some(kind @ ("User" | "Group")) => Some(kind),
                // registry/src/jmap/patch.rs:420-435
                _ => {
                    return Err(SetError::patch(
                        "Missing or invalid '@type' property in object",
                        "@type",
                    ));
                }
            }
        } else {
            None
        };
        let mut props = defaults(t, account_type);
        for (key, value) in input {
            if key == "@type" && t == ObjectType::Account {
                continue;
            }
            apply_patch(t, &mut props, key, value)?;
        }
        if t == ObjectType::Account && account_type == Some("User") && self.require_password {
            let has_password = props
                .get("credentials")
                .and_then(Value::as_object)
                .is_some_and(|c| !c.is_empty());
            if !has_password {
                return Err(SetError::required("credentials"));
            }
        }
        let now = now_utc();
        if t != ObjectType::MailingList {
            props.insert("createdAt".into(), json!(now));
        }
        self.validate(t, &mut props, None, None)?;
        let id = self.new_id();
        self.objects.insert((t, id), props);
        self.version += 1;
        Ok(id)
    }

    /// Applies a patch object to one existing object.
    pub fn update(&mut self, t: ObjectType, id: u64, patch: &Props) -> Result<(), SetError> {
        let old = self
            .get(t, id)
            .cloned()
            .ok_or_else(|| SetError::new("notFound", "Object not found"))?;
        let mut props = old.clone();
        for (key, value) in patch {
            if key == "@type" && t == ObjectType::Account {
                // Sending a different type re-creates the object in general
                // (set.rs:348-427), but accounts refuse it (mapping/principal.rs:248-255).
                if props.get("@type") != Some(value) {
                    return Err(SetError::new(
                        "invalidProperties",
                        "Cannot change the type of an existing account.",
                    )
                    .property("@type"));
                }
                continue;
            }
            apply_patch(t, &mut props, key, value)?;
        }
        self.validate(t, &mut props, Some(id), Some(&old))?;
        self.objects.insert((t, id), props);
        self.version += 1;
        Ok(())
    }

    /// Destroys one object, refusing while others link to it (write.rs:375-385).
    pub fn destroy(&mut self, t: ObjectType, id: u64) -> Result<(), SetError> {
        if self.get(t, id).is_none() {
            return Err(SetError::new("notFound", "Object not found"));
        }
        let linked = self.linked_to(t, id);
        if !linked.is_empty() {
            let mut e = SetError::new(
                "objectIsLinked",
                "Object is linked to other objects and cannot be destroyed",
            );
            e.object_id = Some(Box::new((t, encode_id(id))));
            e.linked = linked;
            return Err(e);
        }
        self.objects.remove(&(t, id));
        self.version += 1;
        Ok(())
    }

    /// The objects that hold a foreign key to (`t`, `id`): for a domain the
    /// accounts, groups and lists in it or with an alias in it; for a group
    /// the users that are its members.
    fn linked_to(&self, t: ObjectType, id: u64) -> Vec<(ObjectType, String)> {
        let target = encode_id(id);
        let mut linked = Vec::new();
        for kind in [ObjectType::Account, ObjectType::MailingList] {
            for (other, props) in self.iter(kind) {
                let hit = match t {
                    ObjectType::Domain => {
                        props.get("domainId").and_then(Value::as_str) == Some(&target)
                            || aliases(props)
                                .iter()
                                .any(|(_, d)| d.as_deref() == Some(&target))
                    }
                    ObjectType::Account => props
                        .get("memberGroupIds")
                        .and_then(Value::as_object)
                        .is_some_and(|m| m.contains_key(&target)),
                    ObjectType::MailingList => false,
                };
                if hit {
                    linked.push((kind, encode_id(other)));
                }
            }
        }
        linked
    }

    /// Checks and normalizes a whole object after its patch: required
    /// fields, value shapes, foreign keys and unique addresses.
    fn validate(
        &self,
        t: ObjectType,
        props: &mut Props,
        self_id: Option<u64>,
        old: Option<&Props>,
    ) -> Result<(), SetError> {
        match t {
            ObjectType::Domain => self.validate_domain(props, self_id),
            ObjectType::Account | ObjectType::MailingList => {
                self.validate_addressable(t, props, self_id, old)
            }
        }
    }

    fn validate_domain(&self, props: &mut Props, self_id: Option<u64>) -> Result<(), SetError> {
        let raw = props.get("name").and_then(Value::as_str).unwrap_or("");
        if raw.trim().is_empty() {
            return Err(SetError::required("name"));
        }
        let name =
            sanitize_domain(raw).ok_or_else(|| SetError::patch("Invalid domain name", "name"))?;
        props.insert("name".into(), json!(name));
        let mut aliases = Map::new();
        for (alias, v) in set_members(props, "aliases")? {
            if v {
                let a = sanitize_domain(&alias)
                    .ok_or_else(|| SetError::patch("Invalid domain name", "aliases"))?;
                aliases.insert(a, json!(true));
            }
        }
        props.insert("aliases".into(), Value::Object(aliases.clone()));
        check_bool(props, "isEnabled")?;
        check_bool(props, "allowRelaying")?;
        for key in [
            "certificateManagement",
            "dkimManagement",
            "dnsManagement",
            "subAddressing",
        ] {
            check_tagged(props, key)?;
        }
        if let Some(Value::String(c)) = props.get("catchAllAddress") {
            let c = sanitize_email(c)
                .ok_or_else(|| SetError::patch("Invalid email address", "catchAllAddress"))?;
            props.insert("catchAllAddress".into(), json!(c));
        }
        // mapping/domain.rs:64-101: names and aliases are one namespace.
        for (other, p) in self.iter(ObjectType::Domain) {
            if Some(other) == self_id {
                continue;
            }
            let other_names: Vec<String> = p
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .into_iter()
                .chain(
                    p.get("aliases")
                        .and_then(Value::as_object)
                        .map(|a| a.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default(),
                )
                .collect();
            let clash = |n: &str| other_names.iter().any(|o| o == n);
            let property = if clash(&name) {
                Some("name")
            } else if aliases.keys().any(|a| clash(a)) {
                Some("aliases")
            } else {
                None
            };
            if let Some(property) = property {
                let mut e = SetError::new("primaryKeyViolation", "Primary key violation")
                    .property(property);
                e.object_id = Some(Box::new((ObjectType::Domain, encode_id(other))));
                return Err(e);
            }
        }
        Ok(())
    }

    fn check_domain_id(&self, value: Option<&Value>, property: &str) -> Result<String, SetError> {
        let id = match value {
            None | Some(Value::Null) => return Err(SetError::required(property)),
            Some(Value::String(s)) if s.is_empty() => return Err(SetError::required(property)),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(SetError::patch("Invalid value", property)),
        };
        if decode_id(&id)
            .and_then(|n| self.get(ObjectType::Domain, n))
            .is_none()
        {
            // write.rs:200-282
            let mut e = SetError::new("invalidForeignKey", "Invalid foreign key");
            e.object_id = Some(Box::new((ObjectType::Domain, id.clone())));
            e.properties.push(property.to_owned());
            return Err(e);
        }
        Ok(id)
    }

    fn validate_addressable(
        &self,
        t: ObjectType,
        props: &mut Props,
        self_id: Option<u64>,
        old: Option<&Props>,
    ) -> Result<(), SetError> {
        let raw = props.get("name").and_then(Value::as_str).unwrap_or("");
        if raw.trim().is_empty() {
            return Err(SetError::required("name"));
        }
        let name = sanitize_local_part(raw)
            .ok_or_else(|| SetError::patch("Invalid email local part", "name"))?;
        props.insert("name".into(), json!(name));
        let domain_id = self.check_domain_id(props.get("domainId"), "domainId")?;

        // Aliases: {"0": {name, domainId, enabled, description}} (structs.rs:2794-2803).
        let mut aliases_out = Map::new();
        if let Some(list) = props.get("aliases") {
            let list = list
                .as_object()
                .ok_or_else(|| SetError::patch("Invalid value", "aliases"))?;
            for (i, alias) in list.values().enumerate() {
                let at = |p: &str| format!("aliases/{i}/{p}");
                let alias = alias
                    .as_object()
                    .ok_or_else(|| SetError::patch("Invalid value", format!("aliases/{i}")))?;
                for key in alias.keys() {
                    if !["name", "domainId", "enabled", "description"].contains(&key.as_str()) {
                        return Err(SetError::patch("Invalid property", at(key)));
                    }
                }
                let a_raw = alias.get("name").and_then(Value::as_str).unwrap_or("");
                if a_raw.trim().is_empty() {
                    return Err(SetError::required(&at("name")));
                }
                let a_name = sanitize_local_part(a_raw)
                    .ok_or_else(|| SetError::patch("Invalid email local part", at("name")))?;
                let a_domain = self.check_domain_id(alias.get("domainId"), &at("domainId"))?;
                let enabled = match alias.get("enabled") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => return Err(SetError::patch("Invalid value", at("enabled"))),
                };
                let description = alias.get("description").cloned().unwrap_or(Value::Null);
                aliases_out.insert(
                    i.to_string(),
                    json!({"name": a_name, "domainId": a_domain, "enabled": enabled,
                           "description": description}),
                );
            }
        }
        props.insert("aliases".into(), Value::Object(aliases_out));

        if t == ObjectType::MailingList {
            let mut recipients = Map::new();
            for (r, v) in set_members(props, "recipients")? {
                if v {
                    let r = sanitize_email(&r).ok_or_else(|| {
                        SetError::patch("Invalid email address", format!("recipients/{r}"))
                    })?;
                    recipients.insert(r, json!(true));
                }
            }
            props.insert("recipients".into(), Value::Object(recipients));
        } else {
            self.validate_account(props, old)?;
        }

        // One unique key over (local part, domainId) of accounts, groups,
        // lists and their aliases (structs_impl.rs:46820,21380,24217,20328).
        let mine: Vec<(String, String)> = std::iter::once((name, domain_id))
            .chain(
                aliases(props)
                    .into_iter()
                    .filter_map(|(n, d)| Some((n, d?))),
            )
            .collect();
        for kind in [ObjectType::Account, ObjectType::MailingList] {
            for (other, p) in self.iter(kind) {
                if kind == t && Some(other) == self_id {
                    continue;
                }
                let theirs = addresses(p);
                if mine.iter().any(|m| theirs.contains(m)) {
                    let mut e = SetError::new("primaryKeyViolation", "Primary key violation")
                        .property("email");
                    e.object_id = Some(Box::new((kind, encode_id(other))));
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn validate_account(&self, props: &mut Props, old: Option<&Props>) -> Result<(), SetError> {
        let is_user = props.get("@type").and_then(Value::as_str) == Some("User");
        // Credentials (jmap/src/registry/mapping/principal.rs:76-330).
        if is_user {
            let creds = props
                .get("credentials")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| SetError::patch("Invalid value", "credentials"))?;
            let mut out = Map::new();
            let mut passwords = 0;
            for (i, cred) in creds.values().enumerate() {
                let kind = cred.get("@type").and_then(Value::as_str);
                match kind {
                    Some("Password") => passwords += 1,
                    Some("AppPassword" | "ApiKey") => {
                        return Err(SetError::new(
                            "invalidProperties",
                            "Secondary credentials cannot be set directly.",
                        )
                        .property("credentials"));
                    }
                    _ => {
                        return Err(SetError::patch(
                            "Missing or invalid '@type' property in object",
                            format!("credentials/{i}/@type"),
                        ));
                    }
                }
                if passwords > 1 {
                    return Err(SetError::new(
                        "invalidProperties",
                        "Only one password credential is allowed.",
                    )
                    .property("credentials"));
                }
                let mut cred = cred.clone();
                let secret = cred.get("secret").and_then(Value::as_str).unwrap_or("");
                if secret == "****" {
                    // Sending the mask back keeps the stored hash (principal.rs:108-118).
                    let kept = old
                        .and_then(|o| o.get("credentials"))
                        .and_then(Value::as_object)
                        .and_then(|c| c.values().find(|c| c["@type"] == "Password"))
                        .and_then(|c| c.get("secret"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    cred["secret"] = kept;
                } else if password_is_weak(secret) {
                    return Err(SetError::new(
                        "invalidProperties",
                        "Password is too weak. Add another word or two.",
                    )
                    .property("secret"));
                }
                cred["credentialId"] = json!(i);
                out.insert(i.to_string(), cred);
            }
            props.insert("credentials".into(), Value::Object(out));

            for (group, v) in set_members(props, "memberGroupIds")? {
                let is_group = decode_id(&group)
                    .and_then(|n| self.get(ObjectType::Account, n))
                    .is_some_and(|g| g.get("@type").and_then(Value::as_str) == Some("Group"));
                if v && !is_group {
                    let mut e = SetError::new("invalidForeignKey", "Invalid foreign key");
                    e.object_id = Some(Box::new((ObjectType::Account, group)));
                    e.properties.push("memberGroupIds".into());
                    return Err(e);
                }
            }
        }
        let perms = props
            .get("permissions")
            .and_then(Value::as_object)
            .ok_or_else(|| SetError::patch("Invalid value", "permissions"))?;
        match perms.get("@type").and_then(Value::as_str) {
            Some("Inherit") => {}
            Some("Merge" | "Replace") => {
                for key in ["enabledPermissions", "disabledPermissions"] {
                    if !perms.get(key).is_none_or(Value::is_object) {
                        return Err(SetError::patch(
                            "Invalid value",
                            format!("permissions/{key}"),
                        ));
                    }
                }
                let mut perms = perms.clone();
                for key in ["enabledPermissions", "disabledPermissions"] {
                    perms.entry(key).or_insert_with(|| json!({}));
                }
                props.insert("permissions".into(), Value::Object(perms));
            }
            _ => {
                return Err(SetError::patch(
                    "Missing or invalid '@type' property in object",
                    "permissions/@type",
                ));
            }
        }
        let roles_ok = match props
            .get("roles")
            .and_then(|r| r.get("@type"))
            .and_then(Value::as_str)
        {
            Some("User" | "Admin") => is_user,
            Some("Default") => !is_user,
            Some("Custom") => true,
            _ => false,
        };
        if !roles_ok {
            return Err(SetError::patch("Invalid value", "roles"));
        }
        let quotas = props
            .get("quotas")
            .and_then(Value::as_object)
            .ok_or_else(|| SetError::patch("Invalid value", "quotas"))?;
        for (key, value) in quotas {
            // The StorageQuota names all start with `max` (stalwartlabs/website docs/ref/object/account.md, StorageQuota).
            if !key.starts_with("max") || !value.is_u64() {
                return Err(SetError::patch("Invalid value", format!("quotas/{key}")));
            }
        }
        Ok(())
    }

    /// May `login` sign in? `secret` is the password offered, or `None` for a
    /// sign-in vouched for by an external directory (OIDC), where only the
    /// permission check runs (common/src/auth/authentication.rs:40-44).
    pub fn sign_in(&self, login: &str, secret: Option<&str>) -> SignIn {
        let Some((local, domain)) = login
            .trim()
            .to_lowercase()
            .rsplit_once('@')
            .map(|(l, d)| (l.to_owned(), d.to_owned()))
        else {
            return SignIn::BadCredentials;
        };
        let Some(domain_id) = self.domain_by_name(&domain).map(encode_id) else {
            return SignIn::BadCredentials;
        };
        let found = self.iter(ObjectType::Account).find_map(|(_, p)| {
            if p.get("@type").and_then(Value::as_str) != Some("User") {
                return None;
            }
            let by_name = p.get("name").and_then(Value::as_str) == Some(local.as_str())
                && p.get("domainId").and_then(Value::as_str) == Some(domain_id.as_str());
            let by_alias = aliases(p)
                .iter()
                .any(|(n, d)| n == &local && d.as_deref() == Some(domain_id.as_str()));
            (by_name || by_alias).then_some((p, by_alias && !by_name))
        });
        let Some((account, via_alias)) = found else {
            return SignIn::BadCredentials;
        };
        if let Some(secret) = secret {
            let stored = account
                .get("credentials")
                .and_then(Value::as_object)
                .and_then(|c| c.values().find(|c| c["@type"] == "Password"))
                .and_then(|c| c.get("secret"))
                .and_then(Value::as_str);
            if stored != Some(secret) {
                return SignIn::BadCredentials;
            }
        }
        // authentication.rs:250-258: an alias login needs its own permission.
        if via_alias && !has_permission(account, "authenticateWithAlias", false) {
            return SignIn::Forbidden;
        }
        if has_permission(account, "authenticate", true) {
            SignIn::Allowed
        } else {
            SignIn::Forbidden
        }
    }
}

/// The outcome of a sign-in attempt through the side channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SignIn {
    Allowed,
    /// Unknown login or wrong password: HTTP 401.
    BadCredentials,
    /// Credentials right, `authenticate` missing (suspended): HTTP 403 and
    /// `security.unauthorized` (common/src/auth/authentication.rs:40-44;
    /// http/src/api/mod.rs:311-321).
    Forbidden,
}

/// Whether the account's effective permissions include `permission`.
/// `by_role` says whether the built-in User/Admin roles grant it; explicit
/// disabled entries beat any grant (common/src/auth/permissions.rs:212-215).
fn has_permission(account: &Props, permission: &str, by_role: bool) -> bool {
    let perms = account.get("permissions");
    let listed = |key: &str| {
        perms
            .and_then(|p| p.get(key))
            .and_then(Value::as_object)
            .is_some_and(|s| s.get(permission) == Some(&Value::Bool(true)))
    };
    if listed("disabledPermissions") {
        return false;
    }
    let kind = perms.and_then(|p| p.get("@type")).and_then(Value::as_str);
    let role = account
        .get("roles")
        .and_then(|r| r.get("@type"))
        .and_then(Value::as_str);
    let role_grants = by_role && matches!(role, Some("User" | "Admin"));
    match kind {
        Some("Replace") => listed("enabledPermissions"),
        _ => role_grants || listed("enabledPermissions"),
    }
}

/// `(local part, domainId)` of every alias, enabled or not: a disabled
/// alias still reserves its address (structs_impl.rs:20327-20331).
fn aliases(props: &Props) -> Vec<(String, Option<String>)> {
    props
        .get("aliases")
        .and_then(Value::as_object)
        .map(|a| {
            a.values()
                .filter_map(|v| {
                    Some((
                        v.get("name")?.as_str()?.to_owned(),
                        v.get("domainId").and_then(Value::as_str).map(str::to_owned),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn addresses(props: &Props) -> Vec<(String, String)> {
    let own = props
        .get("name")
        .and_then(Value::as_str)
        .zip(props.get("domainId").and_then(Value::as_str))
        .map(|(n, d)| (n.to_owned(), d.to_owned()));
    own.into_iter()
        .chain(
            aliases(props)
                .into_iter()
                .filter_map(|(n, d)| Some((n, d?))),
        )
        .collect()
}

fn set_members(props: &Props, key: &str) -> Result<Vec<(String, bool)>, SetError> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::Bool(b) => Ok((k.clone(), *b)),
                _ => Err(SetError::patch("Invalid value", format!("{key}/{k}"))),
            })
            .collect(),
        // Sets are objects, never arrays (types/map.rs:119-198).
        Some(_) => Err(SetError::patch("Invalid value", key)),
    }
}

fn check_bool(props: &Props, key: &str) -> Result<(), SetError> {
    match props.get(key) {
        None | Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(SetError::patch("Invalid value", key)),
    }
}

fn check_tagged(props: &Props, key: &str) -> Result<(), SetError> {
    match props.get(key) {
        Some(Value::Object(o)) if o.get("@type").is_some_and(Value::is_string) => Ok(()),
        None => Ok(()),
        Some(_) => Err(SetError::patch(
            "Missing or invalid '@type' property in object",
            format!("{key}/@type"),
        )),
    }
}

/// Applies one patch entry: a top-level property, or a JSON-pointer key
/// (`"permissions/disabledPermissions/authenticate"`) whose parents must
/// exist (structs_impl.rs:30927-30946: "Invalid JSON Pointer path").
fn apply_patch(t: ObjectType, props: &mut Props, key: &str, value: &Value) -> Result<(), SetError> {
    let path: Vec<&str> = key.split('/').collect();
    let top = path.first().copied().unwrap_or_default();
    let account_type = props.get("@type").and_then(Value::as_str);
    let (allowed, server_set): (&[&str], &[&str]) = match t {
        ObjectType::Domain => (DOMAIN_PROPS, DOMAIN_SERVER_SET),
        ObjectType::Account if account_type == Some("Group") => (GROUP_PROPS, ACCOUNT_SERVER_SET),
        ObjectType::Account => (USER_PROPS, ACCOUNT_SERVER_SET),
        ObjectType::MailingList => (LIST_PROPS, LIST_SERVER_SET),
    };
    if server_set.contains(&top) {
        // patch.rs:123-128
        return Err(SetError::patch("Cannot modify server set property", key));
    }
    if !allowed.contains(&top) {
        return Err(SetError::patch("Invalid property", key));
    }
    if path.len() == 1 {
        props.insert(top.to_owned(), value.clone());
        return Ok(());
    }
    let invalid = || SetError::patch("Invalid JSON Pointer path", key);
    let mut cur = props.get_mut(top).ok_or_else(invalid)?;
    let (last, middle) = path[1..].split_last().ok_or_else(invalid)?;
    for seg in middle {
        cur = cur
            .as_object_mut()
            .and_then(|o| o.get_mut(*seg))
            .ok_or_else(invalid)?;
    }
    let container = cur.as_object_mut().ok_or_else(invalid)?;
    if removes(&path, value) {
        container.remove(*last);
    } else {
        container.insert((*last).to_owned(), value.clone());
    }
    if path.len() == 2 && LIST_PROPERTIES.contains(&top) {
        // Lists stay keyed 0..n after an item is removed.
        let items: Vec<Value> = container.values().cloned().collect();
        *container = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect();
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` (registry/src/types/datetime.rs:206-216).
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
