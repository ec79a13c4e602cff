//! A real Synapse for the matrix-agent tests and the demo: `matrix-synapse`
//! from PyPI in a cached virtualenv (`scripts/lib/synapse.sh` installs it),
//! started privately per test in a temp dir with SQLite, listening on
//! 127.0.0.1 only, on a port of the kernel's choosing (read from the kernel,
//! [`ports::listening_ports`]), with nothing federating out. Killed on drop.
//!
//! Helpers act as a given user ([`MatrixUser`], from shared-secret
//! registration) for setting rooms up, and as the harness's own admin for
//! looking at what Synapse holds, so a test observes Synapse itself, never
//! the client it tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::ports;

pub const SERVER_NAME: &str = "matrix.test";
const SHARED_SECRET: &str = "harness-registration-secret";
const START_DEADLINE: Duration = Duration::from_secs(90);

/// Synapse's rate limits for a test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimits {
    /// Every `rc_*` limiter at 1000 per second, burst 1000: a test that is
    /// not about rate limits never meets one.
    Generous,
    /// `rc_message` (every event a user sends, membership events and power
    /// levels included) at this rate and burst; the rest generous.
    TightMessages { per_second: f64, burst_count: u32 },
}

/// A user Synapse registered, with the token to act as them.
#[derive(Debug, Clone)]
pub struct MatrixUser {
    pub user_id: String,
    pub access_token: String,
}

/// A room to create ([`Synapse::create_room`]).
#[derive(Debug, Clone, Default)]
pub struct RoomSpec {
    /// A space (`creation_content.type = m.space`).
    pub space: bool,
    /// Local alias name: `team` becomes `#team:<server>`.
    pub alias: Option<String>,
    /// `public_chat` instead of `private_chat` (join rule `public`).
    pub public: bool,
}

pub struct Synapse {
    dir: tempfile::TempDir,
    process: Option<Child>,
    pub addr: SocketAddr,
    http: reqwest::Client,
    /// The harness's own server admin, for observing.
    observer: MatrixUser,
    /// From spawn to `/_matrix/client/versions` answering.
    pub started_in: Duration,
}

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A room ID, alias or user ID as one URL path segment.
fn seg(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The virtualenv `scripts/lib/synapse.sh` installs into (same variable,
/// same default).
pub fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("SYNAPSE_VENV") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/authentik-reconciler/synapse-venv")
}

impl Synapse {
    pub async fn start() -> Self {
        Self::start_with(RateLimits::Generous).await
    }

    pub async fn start_with(rate_limits: RateLimits) -> Self {
        reconciler_runtime::install_crypto_provider();
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `bash scripts/lib/synapse.sh` (scripts/test.sh does)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        write_config(dir.path(), rate_limits);
        let start = Instant::now();
        let mut process = spawn(dir.path());
        let port = wait_for_port(&mut process, dir.path(), start).await;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        wait_until_serving(&http, &mut process, dir.path(), addr, start).await;
        let started_in = start.elapsed();
        let mut synapse = Self {
            dir,
            process: Some(process),
            addr,
            http,
            observer: MatrixUser {
                user_id: String::new(),
                access_token: String::new(),
            },
            started_in,
        };
        synapse.observer = synapse.register("harness-observer", true).await;
        // The observer's reads and settings must never be rate limited.
        let observer = synapse.observer.user_id.clone();
        synapse.exempt_from_rate_limits(&observer).await;
        synapse
    }

    /// `http://127.0.0.1:<port>`: `MATRIX_HOMESERVER_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn server_name(&self) -> &str {
        SERVER_NAME
    }

    /// `@<localpart>:<server>`.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{SERVER_NAME}")
    }

    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("synapse.log"), read("synapse.stderr"))
    }

    /// Kills Synapse (SIGKILL, like a crash); its URL then refuses
    /// connections until the port is reused.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts Synapse again after [`Synapse::stop`] (or a crash), on the
    /// same port with the same data (SQLite database, signing key), and
    /// returns once it serves: every token and room is still there.
    pub async fn restart(&mut self) {
        self.stop();
        let config = self.dir.path().join("homeserver.yaml");
        let text = std::fs::read_to_string(&config).expect("homeserver.yaml");
        // The first start let the kernel pick the port; keep that one, so
        // the URL the agents were given stays right.
        let pinned = text.replacen(
            "  - port: 0\n",
            &format!("  - port: {}\n", self.addr.port()),
            1,
        );
        std::fs::write(&config, pinned).expect("homeserver.yaml");
        let start = Instant::now();
        let mut process = spawn(self.dir.path());
        wait_until_serving(&self.http, &mut process, self.dir.path(), self.addr, start).await;
        self.process = Some(process);
    }

    /// A `METHOD path` as `token`; the JSON answer and status.
    pub async fn request(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url()));
        // Registration is the one call made without a token.
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Like [`Synapse::request`], and asserts a 2xx.
    async fn expect_ok(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, answer) = self.request(token, method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    /// Registers `localpart` through shared-secret registration (HMAC-SHA1
    /// of nonce, user, password and admin flag), which also logs them in.
    pub async fn register(&self, localpart: &str, admin: bool) -> MatrixUser {
        let path = "/_synapse/admin/v1/register";
        let (status, nonce) = self.request("", reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "register nonce: {nonce}");
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let password = format!("{localpart}-password");
        let flag = if admin { "admin" } else { "notadmin" };
        let message = format!("{nonce}\0{localpart}\0{password}\0{flag}");
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            SHARED_SECRET.as_bytes(),
        );
        let mac: String = ring::hmac::sign(&key, message.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = json!({
            "nonce": nonce, "username": localpart, "password": password,
            "admin": admin, "mac": mac,
        });
        let answer = self
            .expect_ok("", reqwest::Method::POST, path, Some(body))
            .await;
        MatrixUser {
            user_id: answer["user_id"].as_str().expect("user_id").to_owned(),
            access_token: answer["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
        }
    }

    /// Creates a room (or space) as `creator` and returns its ID. Rooms are
    /// `private_chat` (invite only, invite power 0) unless `public`.
    pub async fn create_room(&self, creator: &MatrixUser, spec: RoomSpec) -> String {
        let mut body = json!({
            "preset": if spec.public { "public_chat" } else { "private_chat" },
        });
        if spec.space {
            body["creation_content"] = json!({"type": "m.space"});
        }
        if let Some(alias) = &spec.alias {
            body["room_alias_name"] = json!(alias);
        }
        let answer = self
            .expect_ok(
                &creator.access_token,
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(body),
            )
            .await;
        answer["room_id"].as_str().expect("room_id").to_owned()
    }

    /// Lists `child` in `space` (`m.space.child`, via this server), as `by`.
    pub async fn add_space_child(&self, by: &MatrixUser, space: &str, child: &str) {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
            seg(space),
            seg(child)
        );
        let body = json!({"via": [SERVER_NAME]});
        self.expect_ok(&by.access_token, reqwest::Method::PUT, &path, Some(body))
            .await;
    }

    pub async fn invite(&self, by: &MatrixUser, room: &str, user_id: &str) {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", seg(room));
        let body = json!({"user_id": user_id});
        self.expect_ok(&by.access_token, reqwest::Method::POST, &path, Some(body))
            .await;
    }

    /// `user` joins `room` (an ID or alias) themselves.
    pub async fn join(&self, user: &MatrixUser, room: &str) {
        let path = format!("/_matrix/client/v3/join/{}", seg(room));
        self.expect_ok(
            &user.access_token,
            reqwest::Method::POST,
            &path,
            Some(json!({})),
        )
        .await;
    }

    /// Sets `user_id`'s power level in `room`, as `by` (read–modify–write
    /// of `m.room.power_levels`).
    pub async fn set_power_level(&self, by: &MatrixUser, room: &str, user_id: &str, level: i64) {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels",
            seg(room)
        );
        let mut levels = self
            .expect_ok(&by.access_token, reqwest::Method::GET, &path, None)
            .await;
        levels["users"][user_id] = json!(level);
        self.expect_ok(&by.access_token, reqwest::Method::PUT, &path, Some(levels))
            .await;
    }

    /// Lifts `user_id`'s rate limits (`override_ratelimit`).
    pub async fn exempt_from_rate_limits(&self, user_id: &str) {
        let path = format!(
            "/_synapse/admin/v1/users/{}/override_ratelimit",
            seg(user_id)
        );
        let body = json!({"messages_per_second": 0, "burst_count": 0});
        self.expect_ok(
            &self.observer.access_token,
            reqwest::Method::POST,
            &path,
            Some(body),
        )
        .await;
    }

    /// Creates `@<localpart>:<server>` through the admin user API (`PUT
    /// /_synapse/admin/v2/users/<id>`), linked to `external_id` at
    /// `auth_provider`, as an SSO login or a provisioner would have made
    /// it. Returns the user ID.
    pub async fn create_linked_user(
        &self,
        localpart: &str,
        auth_provider: &str,
        external_id: &str,
    ) -> String {
        let user_id = self.user_id(localpart);
        let path = format!("/_synapse/admin/v2/users/{}", seg(&user_id));
        let body = json!({
            "external_ids": [{"auth_provider": auth_provider, "external_id": external_id}],
        });
        let (status, answer) = self
            .request(
                &self.observer.access_token,
                reqwest::Method::PUT,
                &path,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "create {user_id}: {answer}");
        user_id
    }

    // What Synapse holds, read as the harness's admin.

    /// Every event of the room's timeline, oldest first (admin room
    /// messages API, paged): what was sent, not only what stands.
    pub async fn timeline(&self, room: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut path = format!(
                "/_synapse/admin/v1/rooms/{}/messages?dir=f&limit=100",
                seg(room)
            );
            if let Some(token) = &from {
                path.push_str(&format!("&from={}", seg(token)));
            }
            let answer = self
                .expect_ok(
                    &self.observer.access_token,
                    reqwest::Method::GET,
                    &path,
                    None,
                )
                .await;
            let chunk = answer["chunk"].as_array().cloned().unwrap_or_default();
            if chunk.is_empty() {
                return events;
            }
            events.extend(chunk);
            match answer["end"].as_str() {
                Some(end) => from = Some(end.to_owned()),
                None => return events,
            }
        }
    }

    /// The `membership` of each `m.room.member` event about `user_id` the
    /// room ever saw, oldest first (`invite`, `join`, `leave`, `ban`, …).
    pub async fn membership_history(&self, room: &str, user_id: &str) -> Vec<String> {
        self.timeline(room)
            .await
            .iter()
            .filter(|e| e["type"] == "m.room.member" && e["state_key"] == user_id)
            .filter_map(|e| e["content"]["membership"].as_str().map(str::to_owned))
            .collect()
    }

    /// `user_id`'s rate-limit override (`{}` when none is set).
    pub async fn rate_limit_override(&self, user_id: &str) -> Value {
        let path = format!(
            "/_synapse/admin/v1/users/{}/override_ratelimit",
            seg(user_id)
        );
        self.expect_ok(
            &self.observer.access_token,
            reqwest::Method::GET,
            &path,
            None,
        )
        .await
    }

    /// Joined members (admin members API).
    pub async fn joined_members(&self, room: &str) -> Vec<String> {
        let path = format!("/_synapse/admin/v1/rooms/{}/members", seg(room));
        let answer = self
            .expect_ok(
                &self.observer.access_token,
                reqwest::Method::GET,
                &path,
                None,
            )
            .await;
        let mut members: Vec<String> = answer["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect();
        members.sort();
        members
    }

    /// The room's current state events (admin state API).
    pub async fn state(&self, room: &str) -> Vec<Value> {
        let path = format!("/_synapse/admin/v1/rooms/{}/state", seg(room));
        let answer = self
            .expect_ok(
                &self.observer.access_token,
                reqwest::Method::GET,
                &path,
                None,
            )
            .await;
        answer["state"].as_array().expect("state").clone()
    }

    /// The IDs of the room's current state events, sorted: equal before
    /// and after a call that sent no state event (membership included).
    pub async fn state_event_ids(&self, room: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .state(room)
            .await
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// The content of `user_id`'s `m.room.member` event, if any.
    pub async fn member_event(&self, room: &str, user_id: &str) -> Option<Value> {
        self.state(room)
            .await
            .into_iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == user_id)
            .map(|e| e["content"].clone())
    }

    /// `join`, `invite`, `leave`, `ban`, … or `None` without a member event.
    pub async fn membership(&self, room: &str, user_id: &str) -> Option<String> {
        self.member_event(room, user_id)
            .await
            .and_then(|c| c["membership"].as_str().map(str::to_owned))
    }

    /// The content of `m.room.power_levels`.
    pub async fn power_levels(&self, room: &str) -> Value {
        self.state(room)
            .await
            .into_iter()
            .find(|e| e["type"] == "m.room.power_levels" && e["state_key"] == "")
            .map(|e| e["content"].clone())
            .expect("m.room.power_levels")
    }

    /// The Matrix ID Synapse links to `external_id` at `auth_provider`
    /// (admin external-ID lookup); `None` when nothing is linked.
    pub async fn user_by_external_id(
        &self,
        auth_provider: &str,
        external_id: &str,
    ) -> Option<String> {
        let path = format!(
            "/_synapse/admin/v1/auth_providers/{}/users/{}",
            seg(auth_provider),
            seg(external_id)
        );
        let (status, answer) = self
            .request(
                &self.observer.access_token,
                reqwest::Method::GET,
                &path,
                None,
            )
            .await;
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "external id {external_id}: {answer}");
        answer["user_id"].as_str().map(str::to_owned)
    }

    /// The external IDs Synapse links to `user_id` (admin user API), as
    /// `(auth_provider, external_id)`; `None` when the user does not exist.
    pub async fn external_ids(&self, user_id: &str) -> Option<Vec<(String, String)>> {
        let path = format!("/_synapse/admin/v2/users/{}", seg(user_id));
        let (status, answer) = self
            .request(
                &self.observer.access_token,
                reqwest::Method::GET,
                &path,
                None,
            )
            .await;
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "user {user_id}: {answer}");
        let ids = answer["external_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Some(
            ids.iter()
                .map(|i| {
                    let text = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
                    (text("auth_provider"), text("external_id"))
                })
                .collect(),
        )
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs Synapse on the config in `dir`, its output in `dir`'s log files
/// (appended to, so a restart keeps the earlier run's lines).
fn spawn(dir: &Path) -> Child {
    let python = venv().join("bin/python");
    let log = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "-c"])
        .arg(dir.join("homeserver.yaml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log("synapse.log"))
        .stderr(log("synapse.stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()))
}

/// The port Synapse bound (its listener asks for port 0), from the kernel.
async fn wait_for_port(process: &mut Child, dir: &Path, start: Instant) -> u16 {
    loop {
        if let Some(port) = ports::listening_ports(process.id()).first() {
            return *port;
        }
        check_alive(process, dir, start);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Listening is not serving: Synapse binds before its reactor runs.
async fn wait_until_serving(
    http: &reqwest::Client,
    process: &mut Child,
    dir: &Path,
    addr: SocketAddr,
    start: Instant,
) {
    let url = format!("http://{addr}/_matrix/client/versions");
    loop {
        let answered = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            return;
        }
        check_alive(process, dir, start);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn check_alive(process: &mut Child, dir: &Path, start: Instant) {
    let logs = || {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        format!("{}{}", read("synapse.log"), read("synapse.stderr"))
    };
    if let Ok(Some(status)) = process.try_wait() {
        panic!("Synapse exited during start-up ({status}):\n{}", logs());
    }
    assert!(
        start.elapsed() < START_DEADLINE,
        "Synapse did not answer within {START_DEADLINE:?}:\n{}",
        logs()
    );
}

/// `homeserver.yaml` and a signing key in `dir` (a minimal
/// config: SQLite, one 127.0.0.1 listener with the client resource, which
/// also serves the admin API; no federation, no key servers, no stats).
fn write_config(dir: &Path, rate_limits: RateLimits) {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let seed = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
    std::fs::write(dir.join("signing.key"), format!("ed25519 a_test {seed}\n"))
        .expect("signing key");
    let d = dir.display();
    let generous = "{per_second: 1000, burst_count: 1000}";
    let message = match rate_limits {
        RateLimits::Generous => generous.to_owned(),
        RateLimits::TightMessages {
            per_second,
            burst_count,
        } => {
            format!("{{per_second: {per_second}, burst_count: {burst_count}}}")
        }
    };
    let config = format!(
        r#"server_name: {SERVER_NAME}
pid_file: {d}/homeserver.pid
listeners:
  - port: 0
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/signing.key
registration_shared_secret: {SHARED_SECRET}
macaroon_secret_key: harness-macaroon
form_secret: harness-form
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
# Registration and login hash passwords; the default cost takes 0.2 s a user.
bcrypt_rounds: 4
rc_message: {message}
rc_login:
  address: {generous}
  account: {generous}
  failed_attempts: {generous}
rc_registration: {generous}
rc_joins:
  local: {generous}
  remote: {generous}
rc_joins_per_room: {generous}
rc_invites:
  per_room: {generous}
  per_user: {generous}
  per_issuer: {generous}
rc_room_creation: {generous}
rc_admin_redaction: {generous}
"#
    );
    std::fs::write(dir.join("homeserver.yaml"), config).expect("homeserver.yaml");
}
