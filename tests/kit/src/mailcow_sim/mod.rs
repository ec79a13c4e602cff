//! A Mailcow REST API simulator over real HTTP, faithful to Mailcow's own
//! source (`json_api.php` and the `functions.*.inc.php` it calls):
//! routing, API-key sessions and status codes, the message envelopes, and the alias, mailbox (sender_acl), domain and app
//! password functions with their PHP 8.2 / MariaDB quirks. Where Mailcow
//! throws an uncaught PHP error the simulator answers 200 with an empty
//! body, as the real server does.
//!
//! In-process mutators ([`MailcowSim::add_alias`] …) change state the way a
//! person in the Mailcow UI would, without touching the request counters.

mod alias;
mod api;
mod app_passwd;
mod control;
mod domain;
mod envelope;
mod json;
mod mailbox;
mod overlap;
mod php;
mod sql;
mod state;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use tokio::task::JoinHandle;

pub use api::VERSION;

use php::{htmlspecialchars, trim};
use sql::sql_eq;
use state::{Db, PROTOCOLS, now};

/// The API keys and their access rules, as `mailcow.conf` (`API_KEY`,
/// `API_KEY_READ_ONLY`, `API_ALLOW_FROM`) would configure them.
#[derive(Clone, Debug)]
pub struct MailcowSimConfig {
    /// The read/write key.
    pub rw_key: String,
    /// The read-only key, if any.
    pub ro_key: Option<String>,
    /// IPs and CIDRs (v4 or v6) allowed to use the keys; entries may
    /// themselves hold several values separated by space, `,` or `;`.
    pub allow_from: Vec<String>,
    /// Accept the keys from any address.
    pub skip_ip_check: bool,
    /// Behave like servers before 2026-07a: no `sender_acl` key in mailbox
    /// details.
    pub omit_sender_acl: bool,
}

impl Default for MailcowSimConfig {
    fn default() -> Self {
        Self {
            rw_key: "MAILCOW-SIM-RW-KEY".into(),
            ro_key: None,
            allow_from: vec!["127.0.0.1".into(), "::1".into()],
            skip_ip_check: false,
            omit_sender_acl: false,
        }
    }
}

/// An injected failure for the next API request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailMode {
    /// nginx's "502 Bad Gateway" page (php-fpm down).
    Http502,
    /// HTTP 200 with an empty body, like an uncaught PHP error.
    EmptyBody,
    /// Only for the next write (POST): the write is applied, but the answer
    /// is a danger message, as when Mailcow fails on a later step of a
    /// request whose first step already changed the database.
    ErrorAfterWrite,
}

/// When a slow answer's delay happens, relative to the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowMode {
    /// The request is carried out at once; its answer comes `delay` later.
    AfterApplying,
    /// The request waits `delay`, then is carried out and answered: a
    /// client that gave up in between sees the change appear later.
    BeforeApplying,
}

/// An injected slow answer for the next request on one route.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlowAnswer {
    pub route: &'static str,
    pub delay: Duration,
    pub mode: SlowMode,
}

/// An alias as stored (self-aliases of mailboxes excluded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAlias {
    pub id: i64,
    pub address: String,
    pub goto: Vec<String>,
    /// `active = 1`, as Postfix reads it.
    pub active: bool,
    pub sogo_visible: bool,
    pub sender_allowed: bool,
    pub internal: bool,
    /// Empty when the column is NULL.
    pub private_comment: String,
    pub public_comment: String,
}

/// An app password as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimAppPassword {
    pub id: i64,
    pub mailbox: String,
    /// The stored (HTML-escaped) form.
    pub name: String,
    pub active: bool,
    /// The enabled protocols, in column order (`imap_access`, `smtp_access`,
    /// `dav_access`, `eas_access`, `pop3_access`, `sieve_access`).
    pub protocols: Vec<String>,
    pub password_hash: String,
}

/// State shared by the HTTP handlers and the in-process handle.
pub(crate) struct Shared {
    config: MailcowSimConfig,
    db: Mutex<Db>,
    faults: Mutex<VecDeque<FailMode>>,
    /// Failures for requests to one route (`add/app-passwd`), after `faults`.
    route_faults: Mutex<BTreeMap<String, VecDeque<FailMode>>>,
    slow_answers: Mutex<Vec<SlowAnswer>>,
    /// Slow requests taken but not yet carried out and answered.
    slow_in_flight: AtomicU64,
    writes: AtomicU64,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Writes in flight, overall and per object.
    overlap: overlap::Overlap,
    /// What each API request costs beside the database work, in
    /// nanoseconds (see [`MailcowSim::set_request_cost`]).
    request_cost: AtomicU64,
}

/// A panicking test thread must not take the simulator down with it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn db(&self) -> MutexGuard<'_, Db> {
        lock(&self.db)
    }

    fn count(&self, key: &str, write: bool) {
        if write {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        *lock(&self.counts).entry(key.to_owned()).or_default() += 1;
    }

    fn take_failure(&self, route: &str, is_write: bool) -> Option<FailMode> {
        let mut faults = lock(&self.faults);
        match faults.front() {
            Some(FailMode::ErrorAfterWrite) if !is_write => None,
            Some(_) => faults.pop_front(),
            None => lock(&self.route_faults)
                .get_mut(route)
                .and_then(VecDeque::pop_front),
        }
    }

    /// The first slow answer queued for `route` (`add/app-passwd`), if any.
    fn take_slow_answer(&self, route: &str) -> Option<SlowAnswer> {
        let mut slow = lock(&self.slow_answers);
        let at = slow.iter().position(|s| s.route == route)?;
        self.slow_in_flight.fetch_add(1, Ordering::SeqCst);
        Some(slow.remove(at))
    }

    fn slow_done(&self) {
        self.slow_in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }

    fn reset_counts(&self) {
        lock(&self.counts).clear();
        self.writes.store(0, Ordering::Relaxed);
        self.overlap.reset();
    }

    fn request_cost(&self) -> Duration {
        Duration::from_nanos(self.request_cost.load(Ordering::Relaxed))
    }
}

/// A running simulator. Dropping it stops the server.
pub struct MailcowSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for MailcowSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl MailcowSim {
    /// Binds `listen` (port 0 picks a free one) and serves until dropped.
    pub async fn start(config: MailcowSimConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            db: Mutex::new(Db::default()),
            faults: Mutex::new(VecDeque::new()),
            route_faults: Mutex::new(BTreeMap::new()),
            slow_answers: Mutex::new(Vec::new()),
            slow_in_flight: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            counts: Mutex::new(BTreeMap::new()),
            overlap: overlap::Overlap::default(),
            request_cost: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .merge(control::routes())
            .fallback(api::handle)
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(error) = axum::serve(listener, service).await {
                tracing::error!(%error, "mailcow-sim: server stopped");
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

    pub fn config(&self) -> &MailcowSimConfig {
        &self.shared.config
    }

    /// A domain with generous limits (see [`Self::set_domain_limits`]).
    pub fn add_domain(&self, domain: &str) {
        expect(self.shared.db().create_domain(domain));
    }

    /// An alias domain pointing at an existing domain.
    pub fn add_alias_domain(&self, alias_domain: &str, target_domain: &str) {
        expect(
            self.shared
                .db()
                .create_alias_domain(alias_domain, target_domain),
        );
    }

    /// Lowers (or raises) a domain's alias limit and total quota (MiB), to
    /// provoke `max_alias_exceeded` / `mailbox_quota_left_exceeded`.
    pub fn set_domain_limits(&self, domain: &str, max_aliases: i64, quota_mib: i64) {
        let mut db = self.shared.db();
        let row = db
            .domain_mut(domain)
            .unwrap_or_else(|| panic!("mailcow-sim: unknown domain {domain}"));
        row.max_aliases = max_aliases;
        row.quota = quota_mib;
        row.modified = Some(now());
    }

    /// A mailbox (3 GiB quota, Mailcow's default attributes) and its
    /// self-alias row; creates the domain if needed.
    pub fn add_mailbox(&self, username: &str) {
        expect(self.shared.db().create_mailbox(username));
    }

    /// An alias as made in the UI: active and visible in SOGo. Returns its id.
    pub fn add_alias(
        &self,
        address: &str,
        goto: &[&str],
        sender_allowed: bool,
        private_comment: &str,
    ) -> i64 {
        expect(
            self.shared
                .db()
                .create_alias(address, goto, sender_allowed, private_comment),
        )
    }

    /// A raw `sender_acl` row, e.g. one a person added in the UI.
    pub fn add_sender_acl_row(&self, login: &str, send_as: &str, external: bool) {
        self.shared
            .db()
            .insert_sender_acl(login, send_as, i64::from(external));
    }

    /// An app password as made in the UI: active, every protocol enabled.
    /// Returns its id.
    pub fn add_app_password(&self, mailbox: &str, name: &str, plaintext: &str) -> i64 {
        expect(
            self.shared
                .db()
                .create_app_password(mailbox, name, plaintext),
        )
    }

    /// Removes an app password behind the API's back (drift).
    pub fn delete_app_password(&self, id: i64) {
        self.shared.db().app_passwd.retain(|p| p.id != id);
    }

    /// The password policy's minimum length (Redis `PASSWD_POLICY`, default 6).
    pub fn set_password_min_length(&self, length: i64) {
        self.shared.db().policy.length = length;
    }

    /// The login's internal (`external = 0`) send-as entries, in table order.
    pub fn sender_acl(&self, login: &str) -> Vec<String> {
        self.sender_acl_rows(login, 0)
    }

    /// The login's external send-as entries (`extended_sender_acl`).
    pub fn external_sender_acl(&self, login: &str) -> Vec<String> {
        self.sender_acl_rows(login, 1)
    }

    fn sender_acl_rows(&self, login: &str, external: i64) -> Vec<String> {
        self.shared
            .db()
            .sender_acl
            .iter()
            .filter(|r| r.external == external && sql_eq(&r.logged_in_as, login))
            .map(|r| r.send_as.clone())
            .collect()
    }

    /// The mailbox's app passwords, in id order.
    pub fn app_passwords(&self, mailbox: &str) -> Vec<SimAppPassword> {
        self.shared
            .db()
            .app_passwd
            .iter()
            .filter(|p| sql_eq(&p.mailbox, mailbox))
            .map(|p| SimAppPassword {
                id: p.id,
                mailbox: p.mailbox.clone(),
                name: p.name.clone(),
                active: p.active == 1,
                protocols: PROTOCOLS
                    .iter()
                    .zip(p.flags())
                    .filter(|(_, flag)| *flag == 1)
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
                password_hash: p.password.clone(),
            })
            .collect()
    }

    /// Does any app password of `mailbox` named `name` (as given or in its
    /// stored, escaped form) accept `plaintext`?
    pub fn verify_app_password(&self, mailbox: &str, name: &str, plaintext: &str) -> bool {
        let escaped = htmlspecialchars(trim(name));
        self.shared
            .db()
            .app_passwd
            .iter()
            .filter(|p| sql_eq(&p.mailbox, mailbox) && (p.name == name || p.name == escaped))
            .any(|p| app_passwd::verify_hash(&p.password, plaintext))
    }

    /// Every alias except mailboxes' self-aliases, in id order.
    pub fn aliases(&self) -> Vec<SimAlias> {
        self.shared
            .db()
            .aliases()
            .iter()
            .filter(|a| !a.is_self_alias())
            .map(|a| SimAlias {
                id: a.id,
                address: a.address.clone(),
                goto: a.goto_list(),
                active: a.active == 1,
                sogo_visible: a.sogo_visible == 1,
                sender_allowed: a.sender_allowed == 1,
                internal: a.internal == 1,
                private_comment: a.private_comment.clone().unwrap_or_default(),
                public_comment: a.public_comment.clone().unwrap_or_default(),
            })
            .collect()
    }

    /// Writes (`add`/`edit`/`delete` calls an authenticated read/write
    /// session got through to a handler) since start or the last reset.
    pub fn write_count(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }

    /// API requests by kind and route: `read get/mailbox`,
    /// `write edit/mailbox`, `rejected add/alias` (auth, method or body
    /// refused before a handler ran), `fault get/alias` (injected).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.counts()
    }

    /// Resets the counters above and the in-flight maxima below.
    pub fn reset_counts(&self) {
        self.shared.reset_counts();
    }

    /// The most API writes (`add`/`edit`/`delete` POSTs) that were in
    /// flight at once since start or the last reset.
    pub fn max_writes_in_flight(&self) -> usize {
        self.shared.overlap.maxima().0
    }

    /// The most writes in flight at once on one object: a mailbox (its
    /// `sender_acl`, its app passwords) or an alias. Above 1, two writes
    /// raced on one object (a whole-list edit could have lost the other's
    /// change).
    pub fn max_writes_in_flight_per_object(&self) -> usize {
        self.shared.overlap.maxima().1
    }

    /// Every API request from now on takes `cost` longer, spent waiting
    /// outside the database lock, as a php-fpm worker waits on PHP start,
    /// MariaDB round trips and Redis: requests overlap during it (a real
    /// Mailcow runs many workers), and the work itself stays serial. Zero
    /// (the default) answers as fast as the simulator can.
    pub fn set_request_cost(&self, cost: Duration) {
        let nanos = u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX);
        self.shared.request_cost.store(nanos, Ordering::Relaxed);
    }

    /// The next `n` API requests (not `/__sim/*`) fail as `mode` says,
    /// after any failures still queued.
    pub fn fail_next(&self, n: usize, mode: FailMode) {
        lock(&self.shared.faults).extend(std::iter::repeat_n(mode, n));
    }

    /// The next `n` requests to `route` (`<action>/<category>` of the API
    /// path, e.g. `add/app-passwd`) fail as `mode` says; other requests go
    /// through. Models a write that fails while others succeed.
    pub fn fail_next_on(&self, route: &str, n: usize, mode: FailMode) {
        lock(&self.shared.route_faults)
            .entry(route.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(mode, n));
    }

    /// The next request on `route` (`action/category`, e.g.
    /// `add/app-passwd`) is answered `delay` late, its work done before or
    /// after the wait as `mode` says — what a client with a shorter timeout
    /// sees of a slow PHP worker.
    pub fn slow_next(&self, route: &'static str, delay: Duration, mode: SlowMode) {
        lock(&self.shared.slow_answers).push(SlowAnswer { route, delay, mode });
    }

    /// Slow requests ([`Self::slow_next`]) not yet carried out and
    /// answered, whether or not their client still waits.
    pub fn slow_in_flight(&self) -> u64 {
        self.shared.slow_in_flight.load(Ordering::SeqCst)
    }

    /// Applies a seed document, the body `POST /__sim/seed` takes:
    /// `{"domains": [..], "alias_domains": [{"alias_domain",
    /// "target_domain"}], "mailboxes": [..], "aliases": [{"address", "goto":
    /// [..], "sender_allowed"? (default true), "private_comment"?}],
    /// "sender_acl": [{"logged_in_as", "send_as", "external"?}],
    /// "app_passwords": [{"mailbox", "name", "password"}]}`, every key
    /// optional; what exists is skipped. Returns row counts by table.
    pub fn seed(&self, seed: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let seed: control::Seed = serde_json::from_value(seed)?;
        control::apply_seed(&mut self.shared.db(), &seed).map_err(anyhow::Error::msg)
    }

    /// What `GET /__sim/state` returns.
    pub fn state(&self) -> serde_json::Value {
        control::dump(&self.shared.db())
    }
}

fn expect<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|error| panic!("mailcow-sim: {error}"))
}
