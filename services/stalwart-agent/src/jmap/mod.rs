//! Stalwart's JMAP management API as the agent uses it: the objects, the
//! changes, and [`StalwartApi`], implemented over HTTP by [`StalwartClient`]
//! (and by anything a test wants behind the trait).
//!
//! Wire conventions (stalwartlabs/stalwart v0.16.18, crates/registry/src/types):
//! sets are `{"key": true}` objects (map.rs:119-198), lists are objects keyed
//! by index strings (list.rs:91-172), variants carry `"@type"`.

mod client;
pub(crate) mod wire;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

pub use client::StalwartClient;

use crate::error::Result;

/// The management capability; the session lists it only in
/// `primaryAccounts` and `accountCapabilities` (crates/jmap/src/api/session.rs:48-57).
pub const MANAGEMENT: &str = "urn:stalwart:jmap";
pub const CORE: &str = "urn:ietf:params:jmap:core";

/// What session discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Where method calls are POSTed.
    pub api_url: String,
    /// The caller's account id; calls omit `accountId`, which Stalwart then
    /// resolves to this one (crates/jmap/src/api/request.rs:719-738).
    pub account_id: String,
    pub username: String,
}

/// A change of one object Stalwart refused: the SetError of `notCreated`,
/// `notUpdated` or `notDestroyed` (crates/jmap-proto/src/error/set.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetFailure {
    /// `primaryKeyViolation`, `invalidPatch`, `objectIsLinked`, `notFound`, …
    pub kind: String,
    pub description: String,
    /// The properties (JSON pointers) at fault, when Stalwart names them.
    pub properties: Vec<String>,
}

impl std::fmt::Display for SetFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.description)?;
        if !self.properties.is_empty() {
            write!(f, " ({})", self.properties.join(", "))?;
        }
        Ok(())
    }
}

/// The result of one item of a batch: `key` is the caller's key (a create's
/// client id, or the object id of an update or destroy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemResult<T> {
    pub key: String,
    pub result: std::result::Result<T, SetFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub aliases: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    User,
    Group,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
        }
    }
}

/// An address of an account or list besides its own: `name@<domain>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub name: String,
    pub domain_id: String,
    /// A disabled alias stops resolving but still reserves its address.
    pub enabled: bool,
}

impl Alias {
    pub fn new(name: impl Into<String>, domain_id: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            domain_id: domain_id.into(),
            enabled: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: String,
    pub kind: AccountKind,
    /// The local part.
    pub name: String,
    pub domain_id: String,
    /// `name@domain`, computed by the server.
    pub email_address: Option<String>,
    pub aliases: Vec<Alias>,
    /// `quotas.maxDiskQuota` in bytes.
    pub disk_quota: Option<u64>,
    pub member_group_ids: Vec<String>,
    pub description: Option<String>,
    /// `permissions` as stored (`{"@type": "Inherit"}`, or Merge/Replace
    /// with `enabledPermissions`/`disabledPermissions`).
    pub permissions: Value,
}

impl Account {
    /// Sign-in refused: `authenticate` explicitly disabled, which beats any
    /// role grant (crates/common/src/auth/permissions.rs:212-215).
    pub fn is_suspended(&self) -> bool {
        self.permissions["disabledPermissions"]["authenticate"] == Value::Bool(true)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailingList {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub email_address: Option<String>,
    /// Plain addresses, sorted.
    pub recipients: Vec<String>,
    pub aliases: Vec<Alias>,
    pub description: Option<String>,
}

/// Equality filter for `x:Account/query` (indexed: `@type`, `name`,
/// `domainId`, `memberGroupIds`; there is no address filter, so an address
/// is looked up by name and domain, crates/jmap/src/registry/query.rs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountFilter {
    pub kind: Option<AccountKind>,
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub member_group_id: Option<String>,
}

impl AccountFilter {
    fn to_json(&self) -> Value {
        let mut f = Map::new();
        if let Some(kind) = self.kind {
            f.insert("@type".into(), json!(kind.as_str()));
        }
        if let Some(name) = &self.name {
            f.insert("name".into(), json!(name));
        }
        if let Some(d) = &self.domain_id {
            f.insert("domainId".into(), json!(d));
        }
        if let Some(g) = &self.member_group_id {
            f.insert("memberGroupIds".into(), json!(g));
        }
        Value::Object(f)
    }
}

/// A domain to create. DKIM management is left at Stalwart's default,
/// Automatic (structs_impl.rs:19764-19784).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDomain {
    pub key: String,
    pub name: String,
}

/// An account to create, without a usable password: users sign in through
/// an external directory (OIDC). If the server demands a credential anyway,
/// the client adds a random one it never keeps ([`StalwartClient`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccount {
    pub key: String,
    pub kind: AccountKind,
    pub name: String,
    pub domain_id: String,
    pub aliases: Vec<Alias>,
    pub disk_quota: Option<u64>,
    pub description: Option<String>,
}

/// A change of one account, sent as one patch object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccountPatch {
    pub id: String,
    entries: Map<String, Value>,
}

impl AccountPatch {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            entries: Map::new(),
        }
    }

    /// Replaces every alias.
    pub fn aliases(mut self, aliases: &[Alias]) -> Self {
        self.entries
            .insert("aliases".into(), wire::aliases_json(aliases));
        self
    }

    /// Sets (or with `None` removes) the disk quota, leaving other quotas a
    /// person set alone.
    pub fn disk_quota(mut self, bytes: Option<u64>) -> Self {
        self.entries
            .insert("quotas/maxDiskQuota".into(), json!(bytes));
        self
    }

    /// Refuses sign-in, keeping mail and credentials: the `authenticate`
    /// permission disabled. From `Inherit`, the whole value is replaced (the
    /// pointer form fails on Inherit, structs_impl.rs:30927-30946); from
    /// Merge/Replace, one entry is added so other entries survive.
    pub fn suspend(mut self, current: &Account) -> Self {
        if current.permissions["@type"] == "Inherit" || !current.permissions.is_object() {
            self.entries.insert(
                "permissions".into(),
                json!({"@type": "Merge", "enabledPermissions": {},
                       "disabledPermissions": {"authenticate": true}}),
            );
        } else {
            self.entries.insert(
                "permissions/disabledPermissions/authenticate".into(),
                json!(true),
            );
        }
        self
    }

    /// Undoes [`Self::suspend`]: back to `Inherit` when suspension was the
    /// only entry (what suspending from Inherit made), else only the entry
    /// removed. Credentials and data were never touched.
    pub fn resume(mut self, current: &Account) -> Self {
        let p = &current.permissions;
        let only_suspension = p["@type"] == "Merge"
            && p["enabledPermissions"]
                .as_object()
                .is_none_or(Map::is_empty)
            && p["disabledPermissions"] == json!({"authenticate": true});
        if only_suspension {
            self.entries
                .insert("permissions".into(), json!({"@type": "Inherit"}));
        } else if current.is_suspended() {
            self.entries.insert(
                "permissions/disabledPermissions/authenticate".into(),
                Value::Null,
            );
        }
        self
    }

    pub fn description(mut self, description: Option<&str>) -> Self {
        self.entries
            .insert("description".into(), json!(description));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The patch as sent: top-level properties and JSON-pointer keys.
    pub fn entries(&self) -> &Map<String, Value> {
        &self.entries
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewList {
    pub key: String,
    pub name: String,
    pub domain_id: String,
    pub recipients: Vec<String>,
    pub description: Option<String>,
}

/// Replaces a list's recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRecipients {
    pub id: String,
    pub recipients: Vec<String>,
}

/// Stalwart's management objects, batched: each method sends as few HTTP
/// requests as Stalwart's limits allow (16 calls per request, 500 objects
/// per get or set).
#[async_trait]
pub trait StalwartApi: Send + Sync {
    /// The session; a server without JMAP management (before 0.16) is a
    /// configuration error.
    async fn session(&self) -> Result<Session>;

    /// Domain ids, by exact name if given (all otherwise).
    async fn query_domains(&self, name: Option<&str>) -> Result<Vec<String>>;
    async fn get_domains(&self, ids: &[String]) -> Result<Vec<Domain>>;
    /// Every domain, query and get in one request where possible.
    async fn domains(&self) -> Result<Vec<Domain>>;
    async fn create_domains(&self, new: &[NewDomain]) -> Result<Vec<ItemResult<String>>>;

    async fn query_accounts(&self, filter: &AccountFilter) -> Result<Vec<String>>;
    async fn get_accounts(&self, ids: &[String]) -> Result<Vec<Account>>;
    /// The accounts matching `filter`, query and get in one request where possible.
    async fn accounts(&self, filter: &AccountFilter) -> Result<Vec<Account>>;
    /// The accounts named `(local part, domain id)`, each name a query
    /// and a get of its `#ids`, 8 names per request: the way to look up a
    /// few addresses (there is no address filter).
    async fn accounts_named(&self, names: &[(String, String)]) -> Result<Vec<Account>>;
    async fn create_accounts(&self, new: &[NewAccount]) -> Result<Vec<ItemResult<String>>>;
    async fn update_accounts(&self, patches: &[AccountPatch]) -> Result<Vec<ItemResult<()>>>;
    /// Destroying an account erases all its mail.
    async fn destroy_accounts(&self, ids: &[String]) -> Result<Vec<ItemResult<()>>>;

    async fn query_lists(&self) -> Result<Vec<String>>;
    async fn get_lists(&self, ids: &[String]) -> Result<Vec<MailingList>>;
    async fn lists(&self) -> Result<Vec<MailingList>>;
    async fn create_lists(&self, new: &[NewList]) -> Result<Vec<ItemResult<String>>>;
    async fn update_list_recipients(
        &self,
        changes: &[ListRecipients],
    ) -> Result<Vec<ItemResult<()>>>;
    async fn destroy_lists(&self, ids: &[String]) -> Result<Vec<ItemResult<()>>>;
}
