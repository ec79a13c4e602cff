//! An Authentik API simulator over real HTTP, faithful to Authentik's own
//! API (its DRF viewsets and serializers): the core users/groups API with Authentik's pagination envelope, filters and
//! object shapes (2025.12+ `parents`, or ≤ 2025.10 `parent`), the real
//! write endpoints, webhook notifications as our shipped body mapping sends
//! them, the events API that records every one of those events, and fault injection for tests and benchmarks.
//!
//! In-process mutators ([`AuthentikSim::add_user`] …) change state silently,
//! like Authentik's background tasks (LDAP sync, expiry) that emit no
//! `model_*` events; only writes through the HTTP API notify the webhook.

mod api;
mod control;
mod drf;
mod events;
mod fault;
mod generate;
mod model;
mod webhook;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use fault::{ListFault, Listing};
pub use generate::{GeneratedDirectory, generate_alias_directory, generate_directory};
pub use webhook::WebhookConfig;

use model::{Directory, Shape, display_name, now_iso};

/// How the simulated server behaves.
#[derive(Clone, Debug)]
pub struct AuthentikSimConfig {
    /// The API token (`Authorization: Bearer <token>`).
    pub token: String,
    /// The tenant's `pagination_default_page_size` (2025.12+: 20).
    pub default_page_size: usize,
    /// The tenant's `pagination_max_page_size` (2025.12+: 100).
    pub max_page_size: usize,
    /// Render groups as ≤ 2025.10 did: one `parent` + `parent_name` instead
    /// of `parents` / `parents_obj` (and no user roles).
    pub legacy_parent: bool,
    /// Where to POST notifications for API writes, if anywhere.
    pub webhook: Option<WebhookConfig>,
}

impl Default for AuthentikSimConfig {
    fn default() -> Self {
        Self {
            token: "authentik-test-token".into(),
            default_page_size: 20,
            max_page_size: 100,
            legacy_parent: false,
            webhook: None,
        }
    }
}

/// State shared by the HTTP handlers and the in-process handle.
pub(crate) struct Shared {
    config: AuthentikSimConfig,
    directory: Mutex<Directory>,
    fail_next: AtomicUsize,
    hide_users: AtomicBool,
    list_faults: Mutex<BTreeMap<Listing, ListFault>>,
    total_requests: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
    /// The audit log behind `GET /api/v3/events/events/`, oldest first.
    events: Mutex<Vec<events::StoredEvent>>,
    /// While set, events are recorded but no webhook is sent (a lost
    /// delivery).
    webhooks_paused: AtomicBool,
    http: reqwest::Client,
    /// What each API request costs beside the simulator's own work, in
    /// nanoseconds (see [`AuthentikSim::set_request_cost`]).
    request_cost: AtomicU64,
}

impl Shared {
    fn directory(&self) -> MutexGuard<'_, Directory> {
        // A panicking test thread must not take the simulator down with it.
        self.directory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn shape(&self) -> Shape {
        Shape {
            legacy_parent: self.config.legacy_parent,
        }
    }

    fn page_sizes(&self) -> drf::PageSizes {
        drf::PageSizes {
            default: self.config.default_page_size,
            max: self.config.max_page_size,
        }
    }

    fn request_cost(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.request_cost.load(Ordering::Relaxed))
    }

    fn count(&self, route: String) {
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry(route).or_default() += 1;
    }

    /// Consumes one injected failure, if any are pending.
    fn take_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reset_counts(&self) {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.total_requests.store(0, Ordering::Relaxed);
    }

    fn users_hidden(&self) -> bool {
        self.hide_users.load(Ordering::SeqCst)
    }

    fn list_fault(&self, listing: Listing) -> Option<ListFault> {
        self.list_faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&listing)
            .cloned()
    }

    fn set_list_fault(&self, listing: Listing, fault: Option<ListFault>) {
        let mut faults = self
            .list_faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match fault {
            Some(fault) => faults.insert(listing, fault),
            None => faults.remove(&listing),
        };
    }

    fn events(&self) -> MutexGuard<'_, Vec<events::StoredEvent>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the events in the audit log, then delivers them unless
    /// deliveries are paused.
    fn notify(&self, emitted: Vec<webhook::ModelEvent>) {
        let recorded: Vec<events::StoredEvent> = {
            let mut log = self.events();
            emitted
                .iter()
                .map(|event| {
                    let stored = events::StoredEvent::new(log.len() as i64, event);
                    log.push(stored.clone());
                    stored
                })
                .collect()
        };
        if self.webhooks_paused.load(Ordering::SeqCst) {
            return;
        }
        if let Some(config) = &self.config.webhook {
            webhook::dispatch(&self.http, config, &recorded);
        }
    }
}

/// A running simulator. Dropping it stops the server.
pub struct AuthentikSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for AuthentikSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn parse_uuid(uuid: &str) -> Uuid {
    Uuid::parse_str(uuid).unwrap_or_else(|_| panic!("authentik-sim: {uuid:?} is not a UUID"))
}

impl AuthentikSim {
    /// Binds `listen` (port 0 picks a free one) and serves until dropped.
    pub async fn start(config: AuthentikSimConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        // reqwest is built with `rustls-no-provider`; a process-wide provider
        // must exist before any client is built. Err means one already does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let shared = Arc::new(Shared {
            config,
            directory: Mutex::new(Directory::new()),
            fail_next: AtomicUsize::new(0),
            hide_users: AtomicBool::new(false),
            list_faults: Mutex::new(BTreeMap::new()),
            total_requests: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
            webhooks_paused: AtomicBool::new(false),
            http,
            request_cost: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = api::router(shared.clone()).merge(control::router(shared.clone()));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "authentik-sim: server stopped");
            }
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on (the port it got when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &AuthentikSimConfig {
        &self.shared.config
    }

    /// An active internal user; the display name is derived from the
    /// username (`jane.doe` → `Jane Doe`). Returns the user's pk.
    pub fn add_user(&self, username: &str, email: &str) -> i64 {
        self.shared
            .directory()
            .create_user(username, &display_name(username), email)
    }

    pub fn set_user_active(&self, pk: i64, active: bool) {
        self.with_user(pk, |user| user.is_active = active);
    }

    pub fn set_user_email(&self, pk: i64, email: &str) {
        self.with_user(pk, |user| user.email = email.to_owned());
    }

    /// Replaces the user's `attributes` (a JSON object).
    pub fn set_user_attributes(&self, pk: i64, attributes: Value) {
        self.with_user(pk, |user| user.attributes = attributes);
    }

    /// Removes the user and its memberships; unknown pks are ignored.
    pub fn delete_user(&self, pk: i64) {
        self.shared.directory().delete_user(pk);
    }

    /// A group with no parents and no members. Returns its dashed UUID.
    pub fn add_group(&self, name: &str, attributes: Value) -> String {
        self.shared
            .directory()
            .create_group(name, attributes)
            .to_string()
    }

    /// Removes the group; its children lose it as a parent.
    pub fn delete_group(&self, uuid: &str) {
        self.shared.directory().delete_group(parse_uuid(uuid));
    }

    pub fn set_group_attributes(&self, uuid: &str, attributes: Value) {
        self.with_group(uuid, |group| group.attributes = attributes);
    }

    /// Replaces the group's parents (dashed or undashed UUIDs). Cycles are
    /// accepted, as by Authentik 2025.12+.
    pub fn set_group_parents(&self, uuid: &str, parents: &[&str]) {
        let parents: Vec<Uuid> = parents.iter().map(|p| parse_uuid(p)).collect();
        let mut directory = self.shared.directory();
        for parent in &parents {
            assert!(
                directory.groups.contains_key(parent),
                "authentik-sim: unknown parent group {parent}"
            );
        }
        let group = directory
            .groups
            .get_mut(&parse_uuid(uuid))
            .unwrap_or_else(|| panic!("authentik-sim: unknown group {uuid}"));
        group.parents = parents;
    }

    pub fn set_group_superuser(&self, uuid: &str, is_superuser: bool) {
        self.with_group(uuid, |group| group.is_superuser = is_superuser);
    }

    pub fn add_member(&self, group_uuid: &str, user_pk: i64) {
        self.assert_user(user_pk);
        self.with_group(group_uuid, |group| {
            group.users.insert(user_pk);
        });
    }

    pub fn remove_member(&self, group_uuid: &str, user_pk: i64) {
        self.with_group(group_uuid, |group| {
            group.users.remove(&user_pk);
        });
    }

    /// The next `n` API requests (not `/__sim/*`) answer 500 with Django's
    /// HTML error page. Adds to failures still pending.
    pub fn fail_next(&self, n: usize) {
        self.shared.fail_next.fetch_add(n, Ordering::SeqCst);
    }

    /// Emulates a sync account that lost `view_user`: the user list comes
    /// back empty (count 0, no error) and single users are 404.
    pub fn set_hide_users(&self, hide: bool) {
        self.shared.hide_users.store(hide, Ordering::SeqCst);
    }

    /// Makes every read of `listing` go wrong as `fault` says, until
    /// cleared with `None`. Single-object reads and writes are unaffected.
    pub fn set_list_fault(&self, listing: Listing, fault: Option<ListFault>) {
        self.shared.set_list_fault(listing, fault);
    }

    /// While paused, API writes still record their events (the events API
    /// lists them) but send no webhook: a lost delivery.
    pub fn set_webhooks_paused(&self, paused: bool) {
        self.shared.webhooks_paused.store(paused, Ordering::SeqCst);
    }

    /// The recorded events, oldest first, as the events API renders them.
    pub fn events(&self) -> Vec<Value> {
        self.shared.events().iter().map(|e| e.json()).collect()
    }

    /// Every API request from now on also costs `cost` (a sleep before it
    /// is answered, holding no lock, so requests overlap): what a real
    /// Authentik spends per request (Django, its database; 100–200 ms a
    /// page of users is common), which sets how fast jobs can run. Zero
    /// (the default) answers at once.
    pub fn set_request_cost(&self, cost: std::time::Duration) {
        let nanos = u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX);
        self.shared.request_cost.store(nanos, Ordering::Relaxed);
    }

    /// API requests received since start or the last [`Self::reset_counts`],
    /// including failed and unauthenticated ones.
    pub fn request_count(&self) -> u64 {
        self.shared.total_requests.load(Ordering::Relaxed)
    }

    /// Requests per route, keyed like `GET /api/v3/core/users/{pk}/`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.counts()
    }

    pub fn reset_counts(&self) {
        self.shared.reset_counts();
    }

    /// Applies a seed document, the body `POST /__sim/seed` takes:
    /// `{"users": [{"username", "email", "name"?, "is_active"?}], "groups":
    /// [{"name", "attributes"?, "parents"?: [names], "members"?: [usernames]}]}`.
    /// Returns `{"users": {username: pk}, "groups": {name: uuid}}`.
    pub fn seed(&self, seed: Value) -> anyhow::Result<Value> {
        let seed: control::Seed = serde_json::from_value(seed)?;
        control::apply_seed(&mut self.shared.directory(), &seed).map_err(anyhow::Error::msg)
    }

    /// A user's pk by username, for tests that seeded over HTTP.
    pub fn user_pk(&self, username: &str) -> Option<i64> {
        self.shared
            .directory()
            .user_by_username(username)
            .map(|u| u.pk)
    }

    /// A user's `uid` (what Authentik serves as `uid`: the OIDC subject of
    /// the default "hashed user id" mode).
    pub fn user_uid(&self, pk: i64) -> String {
        self.shared
            .directory()
            .users
            .get(&pk)
            .map(|u| u.uid.clone())
            .unwrap_or_else(|| panic!("authentik-sim: unknown user pk {pk}"))
    }

    /// A group's dashed UUID by name.
    pub fn group_uuid(&self, name: &str) -> Option<String> {
        self.shared
            .directory()
            .group_by_name(name)
            .map(|g| g.uuid.to_string())
    }

    fn assert_user(&self, pk: i64) {
        assert!(
            self.shared.directory().users.contains_key(&pk),
            "authentik-sim: unknown user pk {pk}"
        );
    }

    /// A save of the user row: bumps `last_updated` like Django's `auto_now`.
    fn with_user(&self, pk: i64, change: impl FnOnce(&mut model::User)) {
        let mut directory = self.shared.directory();
        let user = directory
            .users
            .get_mut(&pk)
            .unwrap_or_else(|| panic!("authentik-sim: unknown user pk {pk}"));
        change(user);
        user.last_updated = now_iso();
    }

    fn with_group(&self, uuid: &str, change: impl FnOnce(&mut model::Group)) {
        let mut directory = self.shared.directory();
        let group = directory
            .groups
            .get_mut(&parse_uuid(uuid))
            .unwrap_or_else(|| panic!("authentik-sim: unknown group {uuid}"));
        change(group);
    }
}
