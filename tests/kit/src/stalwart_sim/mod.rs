//! A Stalwart 0.16 management API simulator over real HTTP, faithful to
//! stalwartlabs/stalwart v0.16.18 (source paths cited at each rule, relative
//! to `crates/`): the session document (`GET /jmap/session`, the management
//! capability `urn:stalwart:jmap` only in `primaryAccounts` and
//! `accountCapabilities`), `POST /jmap/` with `x:Domain`, `x:Account` (User,
//! Group) and `x:MailingList` through `/get`, `/query` and `/set`, SetErrors,
//! method- and request-level errors, Basic and Bearer authentication. It
//! also plays Stalwart's webhook sender ([`webhook`]).
//!
//! The side channel ([`StalwartSim`]'s methods in process, `/__sim/*` over
//! HTTP, unauthenticated and uncounted) adds objects the way a person in
//! the admin UI would, tries sign-ins, reads the state and injects faults.
//!
//! Not simulated: DKIM signature objects (which, in Stalwart, also link an
//! Automatic-DKIM domain and so block its destroy), tenants, roles as
//! objects, `x:WebHook` and the other registry objects.

mod http;
mod jmap;
mod store;
pub mod webhook;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use store::{ObjectType, SignIn};
pub use webhook::{Delivery, WebhookSender};

/// The server's credentials and version.
#[derive(Clone, Debug)]
pub struct StalwartSimConfig {
    /// HTTP Basic login of the admin (the address or `admin`).
    pub admin_user: String,
    pub admin_password: String,
    /// Secrets accepted as `Authorization: Bearer <secret>` (API keys).
    pub api_keys: Vec<String>,
    /// false: a server before 0.16, without JMAP management (no
    /// `urn:stalwart:jmap` in the session, `unknownMethod` for `x:` calls).
    pub management: bool,
    /// The base URL the session's `apiUrl` is built from; by default the
    /// address it listens on.
    pub public_url: Option<String>,
}

impl Default for StalwartSimConfig {
    fn default() -> Self {
        Self {
            admin_user: "admin".into(),
            admin_password: "Sim-Admin-Passw0rd!".into(),
            api_keys: vec!["STALWART-SIM-API-KEY".into()],
            management: true,
            public_url: None,
        }
    }
}

/// An injected failure for the next API request (session or JMAP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 502 from a reverse proxy whose Stalwart is down (over HTTP; in
    /// process, [`StalwartSim::go_down`] refuses connections for real).
    Down,
    /// 500, as when Stalwart fails internally.
    Http500,
    /// 401 as for credentials Stalwart does not accept.
    Unauthorized,
}

impl Fault {
    fn parse(mode: &str) -> Option<Self> {
        match mode {
            "down" => Some(Self::Down),
            "500" => Some(Self::Http500),
            "401" => Some(Self::Unauthorized),
            _ => None,
        }
    }
}

pub(crate) struct Shared {
    config: StalwartSimConfig,
    base_url: String,
    store: Mutex<store::Store>,
    faults: Mutex<VecDeque<Fault>>,
    counts: Mutex<BTreeMap<String, u64>>,
}

/// A panicking test thread must not take the simulator down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn count(&self, key: &str) {
        *lock(&self.counts).entry(key.to_owned()).or_default() += 1;
    }

    /// The account id of the admin: the recovery admin is u32::MAX
    /// (common/src/auth/mod.rs:35).
    fn admin_account_id(&self) -> String {
        store::encode_id(u64::from(u32::MAX))
    }
}

struct Running {
    handle: JoinHandle<()>,
    shutdown: oneshot::Sender<()>,
}

/// A running simulator. Dropping it stops the server.
pub struct StalwartSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
}

impl Drop for StalwartSim {
    fn drop(&mut self) {
        if let Some(running) = lock(&self.running).take() {
            running.handle.abort();
        }
    }
}

impl StalwartSim {
    /// Binds `listen` (port 0 picks a free one) and serves until dropped.
    pub async fn start(config: StalwartSimConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let base_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        let shared = Arc::new(Shared {
            config,
            base_url,
            store: Mutex::new(store::Store::default()),
            faults: Mutex::new(VecDeque::new()),
            counts: Mutex::new(BTreeMap::new()),
        });
        let sim = Self {
            shared,
            addr,
            running: Mutex::new(None),
        };
        sim.serve(listener);
        Ok(sim)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = http::routes(self.shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "stalwart-sim: server stopped");
            }
        });
        *lock(&self.running) = Some(Running { handle, shutdown });
    }

    /// Stops listening and closes idle connections: clients get
    /// "connection refused", as with a stopped Stalwart.
    pub async fn go_down(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            let _ = running.shutdown.send(());
            let _ = running.handle.await;
        }
    }

    /// Listens again on the same address, state kept.
    pub async fn come_up(&self) -> anyhow::Result<()> {
        if lock(&self.running).is_some() {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &StalwartSimConfig {
        &self.shared.config
    }

    /// The first configured API key, for a client's `Bearer`.
    pub fn api_key(&self) -> &str {
        self.shared
            .config
            .api_keys
            .first()
            .map_or("", String::as_str)
    }

    /// Calls by method name (`x:Account/set`), and HTTP requests:
    /// `POST /jmap` (each request to apiUrl), `GET /jmap/session`,
    /// `unauthorized` (401 answered) and `fault` (injected).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.counts).clone()
    }

    /// One entry of [`Self::counts`], 0 if absent.
    pub fn count(&self, key: &str) -> u64 {
        lock(&self.shared.counts).get(key).copied().unwrap_or(0)
    }

    pub fn reset_counts(&self) {
        lock(&self.shared.counts).clear();
    }

    /// The next `n` API requests fail as `fault` says.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        lock(&self.shared.faults).extend(std::iter::repeat_n(fault, n));
    }

    /// Every new user must be created with a password (a setup without an
    /// external directory): creating one without gives `validationFailed`.
    pub fn set_require_password(&self, require: bool) {
        lock(&self.shared.store).require_password = require;
    }

    /// Creates an object as a person in the admin UI would (through the
    /// same rules as `/set`, uncounted). Returns its id, or the SetError.
    pub fn create(&self, object: ObjectType, properties: Value) -> Result<String, Value> {
        let Value::Object(props) = properties else {
            return Err(json!({"type": "invalidProperties", "description": "not an object"}));
        };
        let mut store = lock(&self.shared.store);
        store
            .create(object, &props)
            .map(store::encode_id)
            .map_err(|e| e.to_json())
    }

    /// Applies a patch as a person would. Returns the SetError on refusal.
    pub fn update(&self, object: ObjectType, id: &str, patch: Value) -> Result<(), Value> {
        let Value::Object(patch) = patch else {
            return Err(json!({"type": "invalidPatch", "description": "not an object"}));
        };
        let n = store::decode_id(id).ok_or_else(|| json!({"type": "notFound"}))?;
        lock(&self.shared.store)
            .update(object, n, &patch)
            .map_err(|e| e.to_json())
    }

    /// A domain (Automatic DKIM, as the admin UI creates it). Returns its id.
    pub fn add_domain(&self, name: &str) -> String {
        expect(self.create(ObjectType::Domain, json!({"name": name})))
    }

    fn domain_id(&self, domain: &str) -> String {
        let store = lock(&self.shared.store);
        let id = store
            .domain_by_name(domain)
            .unwrap_or_else(|| panic!("stalwart-sim: unknown domain {domain}"));
        store::encode_id(id)
    }

    /// A user `local@domain` (the domain must exist), with a password if
    /// given. Returns its id.
    pub fn add_user(&self, address: &str, password: Option<&str>) -> String {
        let (local, domain) = address
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("stalwart-sim: {address} is not an address"));
        let mut props = json!({"@type": "User", "name": local, "domainId": self.domain_id(domain)});
        if let Some(p) = password {
            props["credentials"] = json!({"0": {"@type": "Password", "secret": p}});
        }
        expect(self.create(ObjectType::Account, props))
    }

    /// A group `local@domain`. Returns its id.
    pub fn add_group(&self, address: &str) -> String {
        let (local, domain) = address
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("stalwart-sim: {address} is not an address"));
        let props = json!({"@type": "Group", "name": local, "domainId": self.domain_id(domain)});
        expect(self.create(ObjectType::Account, props))
    }

    /// A mailing list `local@domain` with its recipients. Returns its id.
    pub fn add_list(&self, address: &str, recipients: &[&str]) -> String {
        let (local, domain) = address
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("stalwart-sim: {address} is not an address"));
        let recipients: Map<String, Value> = recipients
            .iter()
            .map(|r| ((*r).to_owned(), json!(true)))
            .collect();
        let props = json!({"name": local, "domainId": self.domain_id(domain),
                           "recipients": recipients});
        expect(self.create(ObjectType::MailingList, props))
    }

    /// Adds an alias `local@domain` to an account or list, as a person would.
    pub fn add_alias(&self, object: ObjectType, id: &str, alias: &str) {
        let (local, domain) = alias
            .rsplit_once('@')
            .unwrap_or_else(|| panic!("stalwart-sim: {alias} is not an address"));
        let domain_id = self.domain_id(domain);
        let current = self
            .get(object, id)
            .unwrap_or_else(|| panic!("stalwart-sim: no {} {id}", object.name()));
        let next = current["aliases"].as_object().map_or(0, Map::len);
        let patch = json!({ format!("aliases/{next}"):
            {"name": local, "domainId": domain_id, "enabled": true, "description": null} });
        expect(self.update(object, id, patch));
    }

    /// One object as `/get` shows it.
    pub fn get(&self, object: ObjectType, id: &str) -> Option<Value> {
        let n = store::decode_id(id)?;
        lock(&self.shared.store).render(object, n)
    }

    /// The account or list whose address (`emailAddress`) is `address`.
    pub fn find(&self, object: ObjectType, address: &str) -> Option<Value> {
        let store = lock(&self.shared.store);
        store
            .ids(object)
            .into_iter()
            .filter_map(|n| store.render(object, n))
            .find(|o| o["emailAddress"].as_str() == Some(&address.to_lowercase()))
    }

    /// May `login` sign in? `secret` is a password, or `None` for a
    /// sign-in an external directory (OIDC) vouched for.
    pub fn sign_in(&self, login: &str, secret: Option<&str>) -> SignIn {
        lock(&self.shared.store).sign_in(login, secret)
    }

    /// Every object as `/get` shows it: `{"domains": [..], "accounts": [..],
    /// "mailingLists": [..]}`, each in id order. What `GET /__sim/state` returns.
    pub fn state(&self) -> Value {
        dump(&lock(&self.shared.store))
    }
}

fn dump(store: &store::Store) -> Value {
    let all = |t: ObjectType| -> Vec<Value> {
        store
            .ids(t)
            .into_iter()
            .filter_map(|n| store.render(t, n))
            .collect()
    };
    json!({
        "domains": all(ObjectType::Domain),
        "accounts": all(ObjectType::Account),
        "mailingLists": all(ObjectType::MailingList),
    })
}

fn expect<T>(result: Result<T, Value>) -> T {
    result.unwrap_or_else(|error| panic!("stalwart-sim: {error}"))
}
