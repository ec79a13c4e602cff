//! The whole system on loopback: Authentik and Mailcow simulators in this
//! process, the real mailcow-agent and coordinator binaries as children.
//! Everything listens on port 0: the simulators' addresses are read from
//! their listeners, the binaries announce theirs ([`Service::listeners`]).
//!
//! Agents are reached over plaintext HTTP/2 (`AGENT_INSECURE=true`) unless
//! [`StackOptions::tls`] names certificates: then over mutual TLS, as in
//! production (tests/e2e/suite/mtls.rs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::postgres::Postgres;
use super::process::Service;
use super::tls::CertDir;
use crate::authentik_sim::{AuthentikSim, AuthentikSimConfig};
use crate::mailcow_sim::{MailcowSim, MailcowSimConfig};

pub const WEBHOOK_TOKEN: &str = "test-webhook-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const MAILCOW_KEY: &str = "ABCDEF-012345-ABCDEF-012345-ABCDEF";
/// What the coordinator presents to every agent (`AGENT_TOKEN`).
pub const AGENT_TOKEN: &str = "test-agent-token-0123456789";

/// A gRPC client that presents `token` (and trace context), like the
/// coordinator does to agents and operators do to the coordinator.
pub type Authed = tonic::service::interceptor::InterceptedService<
    tonic::transport::Channel,
    reconciler_runtime::auth::SendToken,
>;

async fn authed_channel(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

/// Parses one `NAME=VALUE` argument (a benchmark's `--coordinator-env`,
/// as a clap `value_parser`): anything else is refused with a message,
/// so a typo is not silently left out of the environment measured.
pub fn env_pair(arg: &str) -> Result<(String, String), String> {
    let is_name = |name: &str| {
        name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match arg.split_once('=') {
        Some((name, value)) if is_name(name) => Ok((name.to_owned(), value.to_owned())),
        // Names only: the value may be a secret.
        Some((name, _)) => Err(format!(
            "`{name}=…` is not NAME=VALUE (NAME: letters, digits and _, not starting with a digit)"
        )),
        None => Err("an argument without `=` is not NAME=VALUE".to_owned()),
    }
}

#[derive(Clone, Debug)]
pub struct StackOptions {
    pub workers: usize,
    pub max_attempts: u32,
    pub authentik_max_page_size: usize,
    /// Extra coordinator environment.
    pub coordinator_env: Vec<(String, String)>,
    /// Extra mailcow-agent environment.
    pub agent_env: Vec<(String, String)>,
    /// How long [`Stack::wait_job`] waits before failing the test.
    pub job_timeout: Duration,
    /// How long a binary may take to start listening.
    pub start_timeout: Duration,
    /// Start a sogo-agent with this environment (`SOGO_DB_URL`,
    /// `MEMCACHED_ADDR`, …) and point the coordinator at it.
    pub sogo_agent_env: Option<Vec<(String, String)>>,
    /// The same for a nextcloud-agent (`NEXTCLOUD_CONTAINER`, …).
    pub nextcloud_agent_env: Option<Vec<(String, String)>>,
    /// The same for a matrix-agent (`MATRIX_HOMESERVER_URL`,
    /// `MATRIX_ACCESS_TOKEN`, …).
    pub matrix_agent_env: Option<Vec<(String, String)>>,
    /// The same for a stalwart-agent (`STALWART_URL`, `STALWART_API_KEY`):
    /// the coordinator gets `STALWART_AGENT_URL`.
    pub stalwart_agent_env: Option<Vec<(String, String)>>,
    /// Mutual TLS between the coordinator and every agent, with these
    /// certificates (one per agent binary's name); `None`: plaintext
    /// (`AGENT_INSECURE=true`).
    pub tls: Option<CertDir>,
    /// Where the coordinator keeps its state DB; by default what
    /// `RECONCILER_TEST_STATE_DB` says (`sqlite`, the default, or
    /// `postgres`), so a suite runs unchanged on either.
    pub state_db: StateDbKind,
}

/// The coordinator's state DB backend in a test stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateDbKind {
    /// A file in the stack's directory.
    Sqlite,
    /// A private PostgreSQL 15 started for the stack ([`Postgres`]).
    Postgres,
}

impl StateDbKind {
    /// `RECONCILER_TEST_STATE_DB`: `postgres` or (unset) `sqlite`.
    pub fn from_env() -> Self {
        match std::env::var("RECONCILER_TEST_STATE_DB").as_deref() {
            Ok("postgres") => Self::Postgres,
            Ok("sqlite") | Ok("") | Err(_) => Self::Sqlite,
            Ok(other) => panic!("RECONCILER_TEST_STATE_DB={other}: expected sqlite or postgres"),
        }
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            max_attempts: 3,
            // Small pages so every test crosses page boundaries.
            authentik_max_page_size: 3,
            coordinator_env: Vec::new(),
            agent_env: Vec::new(),
            job_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(30),
            sogo_agent_env: None,
            nextcloud_agent_env: None,
            matrix_agent_env: None,
            stalwart_agent_env: None,
            state_db: StateDbKind::from_env(),
            tls: None,
        }
    }
}

pub struct Stack {
    pub authentik: AuthentikSim,
    pub mailcow: MailcowSim,
    pub agent: Service,
    pub coordinator: Service,
    /// The coordinator's HTTP and gRPC addresses; a restart
    /// ([`Stack::start_coordinator`]) gets new ones.
    pub http_url: String,
    pub grpc_addr: String,
    pub agent_addr: String,
    pub sogo_agent: Option<Service>,
    pub sogo_agent_addr: Option<String>,
    pub nextcloud_agent: Option<Service>,
    pub nextcloud_agent_addr: Option<String>,
    pub matrix_agent: Option<Service>,
    pub matrix_agent_addr: Option<String>,
    pub stalwart_agent: Option<Service>,
    pub stalwart_agent_addr: Option<String>,
    pub dir: tempfile::TempDir,
    /// The stack's PostgreSQL, when the state DB lives there.
    pub postgres: Option<Postgres>,
    options: StackOptions,
    http: reqwest::Client,
}

/// Starts an agent binary with `env` on a loopback port of its choosing;
/// returns it and the address it listens on. It is given `AGENT_TOKEN`
/// (the stack's), `AGENT_LISTEN` and `AGENT_INSECURE=true`; `env` may
/// override each (e.g. with [`CertDir::agent_env`]).
pub async fn start_agent(
    binary: &str,
    env: &[(String, String)],
    dir: &std::path::Path,
    timeout: Duration,
) -> (Service, String) {
    let mut all = vec![
        ("AGENT_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("AGENT_TOKEN".to_owned(), AGENT_TOKEN.to_owned()),
        ("AGENT_INSECURE".to_owned(), "true".to_owned()),
    ];
    all.extend(env.iter().cloned());
    let mut service = Service::spawn(binary, &all, dir);
    let addr = service.listener("grpc", timeout).await;
    (service, addr)
}

/// The same for an agent the options may leave out, with its certificate
/// when the stack runs mutual TLS.
async fn optional_agent(
    binary: &str,
    env: Option<&[(String, String)]>,
    tls: Option<&CertDir>,
    dir: &std::path::Path,
    timeout: Duration,
) -> (Option<Service>, Option<String>) {
    match env {
        Some(env) => {
            let mut env = env.to_vec();
            if let Some(tls) = tls {
                env.extend(tls.agent_env(binary));
            }
            let (service, addr) = start_agent(binary, &env, dir, timeout).await;
            (Some(service), Some(addr))
        }
        None => (None, None),
    }
}

/// Port 0 on loopback: the kernel picks a free port.
fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Stack {
    pub async fn start(options: StackOptions) -> Self {
        let authentik = AuthentikSim::start(
            AuthentikSimConfig {
                max_page_size: options.authentik_max_page_size,
                ..AuthentikSimConfig::default()
            },
            loopback_any(),
        )
        .await
        .expect("start Authentik simulator");
        let mailcow = MailcowSim::start(
            MailcowSimConfig {
                rw_key: MAILCOW_KEY.into(),
                ro_key: None,
                allow_from: vec!["127.0.0.1".into()],
                skip_ip_check: false,
                omit_sender_acl: false,
            },
            loopback_any(),
        )
        .await
        .expect("start Mailcow simulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut agent_env: Vec<(String, String)> = vec![
            ("MAILCOW_URL".into(), mailcow.base_url()),
            ("MAILCOW_API_KEY".into(), MAILCOW_KEY.into()),
        ];
        if let Some(tls) = &options.tls {
            agent_env.extend(tls.agent_env("mailcow-agent"));
        }
        agent_env.extend(options.agent_env.iter().cloned());
        let timeout = options.start_timeout;
        let tls = options.tls.as_ref();
        let (agent, agent_addr) =
            start_agent("mailcow-agent", &agent_env, dir.path(), timeout).await;
        let (sogo_agent, sogo_agent_addr) = optional_agent(
            "sogo-agent",
            options.sogo_agent_env.as_deref(),
            tls,
            dir.path(),
            timeout,
        )
        .await;
        let (nextcloud_agent, nextcloud_agent_addr) = optional_agent(
            "nextcloud-agent",
            options.nextcloud_agent_env.as_deref(),
            tls,
            dir.path(),
            timeout,
        )
        .await;
        let (matrix_agent, matrix_agent_addr) = optional_agent(
            "matrix-agent",
            options.matrix_agent_env.as_deref(),
            tls,
            dir.path(),
            timeout,
        )
        .await;
        let (stalwart_agent, stalwart_agent_addr) = optional_agent(
            "stalwart-agent",
            options.stalwart_agent_env.as_deref(),
            tls,
            dir.path(),
            timeout,
        )
        .await;
        let postgres = match options.state_db {
            StateDbKind::Sqlite => None,
            StateDbKind::Postgres => Some(Postgres::start().await),
        };
        let placeholder = Service::placeholder();
        let mut stack = Self {
            authentik,
            mailcow,
            agent,
            coordinator: placeholder,
            http_url: String::new(),
            grpc_addr: String::new(),
            agent_addr,
            sogo_agent,
            sogo_agent_addr,
            nextcloud_agent,
            nextcloud_agent_addr,
            matrix_agent,
            matrix_agent_addr,
            stalwart_agent,
            stalwart_agent_addr,
            dir,
            postgres,
            options,
            http: reqwest::Client::new(),
        };
        stack.start_coordinator(stack.options.workers).await;
        stack
    }

    /// A channel to the agent at `addr`, presenting the agent token.
    async fn agent_channel(addr: &str) -> Authed {
        tonic::service::interceptor::InterceptedService::new(
            authed_channel(addr).await,
            reconciler_runtime::auth::SendToken::new(reconciler_runtime::secrets::Secret::new(
                AGENT_TOKEN,
            )),
        )
    }

    /// A client for the mailcow-agent at `addr`, presenting the agent token.
    pub async fn mailcow_agent_client(
        addr: &str,
    ) -> reconciler_proto::agent::mailcow_agent_client::MailcowAgentClient<Authed> {
        reconciler_proto::agent::mailcow_agent_client::MailcowAgentClient::new(
            Self::agent_channel(addr).await,
        )
    }

    /// A client for the sogo-agent at `addr`, presenting the agent token.
    pub async fn sogo_agent_client(
        addr: &str,
    ) -> reconciler_proto::agent::sogo_agent_client::SogoAgentClient<Authed> {
        reconciler_proto::agent::sogo_agent_client::SogoAgentClient::new(
            Self::agent_channel(addr).await,
        )
    }

    /// A client for the nextcloud-agent at `addr`, presenting the agent token.
    pub async fn nextcloud_agent_client(
        addr: &str,
    ) -> reconciler_proto::agent::nextcloud_agent_client::NextcloudAgentClient<Authed> {
        reconciler_proto::agent::nextcloud_agent_client::NextcloudAgentClient::new(
            Self::agent_channel(addr).await,
        )
    }

    /// A client for the matrix-agent at `addr`, presenting the agent token.
    pub async fn matrix_agent_client(
        addr: &str,
    ) -> reconciler_proto::agent::matrix_agent_client::MatrixAgentClient<Authed> {
        reconciler_proto::agent::matrix_agent_client::MatrixAgentClient::new(
            Self::agent_channel(addr).await,
        )
    }

    /// A client for the stalwart-agent at `addr`, presenting the agent token.
    pub async fn stalwart_agent_client(
        addr: &str,
    ) -> reconciler_proto::agent::stalwart_agent_client::StalwartAgentClient<Authed> {
        reconciler_proto::agent::stalwart_agent_client::StalwartAgentClient::new(
            Self::agent_channel(addr).await,
        )
    }

    /// A client for the coordinator's operator service (admin token).
    pub async fn coordinator_client(
        &self,
    ) -> reconciler_proto::coordinator::coordinator_client::CoordinatorClient<Authed> {
        reconciler_proto::coordinator::coordinator_client::CoordinatorClient::with_interceptor(
            authed_channel(&self.grpc_addr).await,
            reconciler_runtime::auth::SendToken::new(reconciler_runtime::secrets::Secret::new(
                ADMIN_TOKEN,
            )),
        )
    }

    /// The SQLite state DB's file (unused when it lives in PostgreSQL).
    pub fn state_db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// The coordinator's `STATE_DB_URL`.
    pub fn state_db_url(&self) -> String {
        match &self.postgres {
            Some(pg) => pg.url(),
            None => format!("sqlite://{}", self.state_db().display()),
        }
    }

    /// How the coordinator reaches the agent at `addr`.
    fn agent_url(&self, addr: &str) -> String {
        match self.options.tls {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        }
    }

    fn coordinator_env(&self, workers: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("HTTP_LISTEN".into(), loopback_any().to_string()),
            ("GRPC_LISTEN".into(), loopback_any().to_string()),
            ("STATE_DB_URL".into(), self.state_db_url()),
            ("AUTHENTIK_URL".into(), self.authentik.base_url()),
            ("AUTHENTIK_TOKEN".into(), "authentik-test-token".into()),
            ("WEBHOOK_TOKEN".into(), WEBHOOK_TOKEN.into()),
            ("ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("AGENT_TOKEN".into(), AGENT_TOKEN.into()),
            ("MAILCOW_AGENT_URL".into(), self.agent_url(&self.agent_addr)),
            // Tests trigger sweeps themselves.
            ("SWEEP_INTERVAL_SECONDS".into(), "0".into()),
            ("WORKER_CONCURRENCY".into(), workers.to_string()),
            (
                "JOB_MAX_ATTEMPTS".into(),
                self.options.max_attempts.to_string(),
            ),
            ("RETRY_BASE_MILLIS".into(), "100".into()),
        ];
        let agents = [
            ("SOGO_AGENT_URL", &self.sogo_agent_addr),
            ("NEXTCLOUD_AGENT_URL", &self.nextcloud_agent_addr),
            ("MATRIX_AGENT_URL", &self.matrix_agent_addr),
            ("STALWART_AGENT_URL", &self.stalwart_agent_addr),
        ];
        for (var, addr) in agents {
            if let Some(addr) = addr {
                env.push((var.into(), self.agent_url(addr)));
            }
        }
        match &self.options.tls {
            Some(tls) => env.extend(tls.coordinator_env()),
            None => env.push(("AGENT_INSECURE".into(), "true".into())),
        }
        env.extend(self.options.coordinator_env.iter().cloned());
        env
    }

    /// (Re)starts the coordinator with `workers` workers (0 = accept only)
    /// and returns once it listens; [`Self::http_url`] and
    /// [`Self::grpc_addr`] then name its new ports.
    pub async fn start_coordinator(&mut self, workers: usize) {
        let (coordinator, http_url, grpc_addr) =
            self.spawn_coordinator(workers, &[], self.dir.path()).await;
        self.coordinator = coordinator;
        self.http_url = http_url;
        self.grpc_addr = grpc_addr;
    }

    /// Starts one more coordinator like the stack's own (same state DB,
    /// agents and tokens; `extra_env` on top), logging to `log_dir`, and
    /// returns it with its HTTP URL and gRPC address once it listens.
    /// Several of them share a PostgreSQL state DB (one leads).
    pub async fn spawn_coordinator(
        &self,
        workers: usize,
        extra_env: &[(String, String)],
        log_dir: &std::path::Path,
    ) -> (Service, String, String) {
        let mut env = self.coordinator_env(workers);
        env.extend(extra_env.iter().cloned());
        let mut coordinator = Service::spawn("coordinator", &env, log_dir);
        let addrs = coordinator
            .listeners(&["http", "grpc"], self.options.start_timeout)
            .await;
        (
            coordinator,
            format!("http://{}", addrs[0]),
            addrs[1].to_string(),
        )
    }

    /// POSTs to `/reconcile` with the webhook token.
    pub async fn webhook(&self, body: &Value) -> (u16, Value) {
        self.post(
            "/reconcile",
            &[("X-Authentik-Webhook-Token", WEBHOOK_TOKEN)],
            body.to_string(),
        )
        .await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: String) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.http_url))
            .header("Content-Type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("POST to coordinator");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// The shipped Authentik body mapping, for a group membership change.
    pub fn group_event(group_uuid: &str, event_pk: &str) -> Value {
        json!({
            "event_pk": event_pk,
            "action": "model_updated",
            "model": {"app": "authentik_core", "model_name": "group",
                      "pk": group_uuid.replace('-', ""), "name": "group"},
        })
    }

    pub fn user_event(user_pk: i64, event_pk: &str) -> Value {
        json!({
            "event_pk": event_pk,
            "action": "model_updated",
            "model": {"app": "authentik_core", "model_name": "user", "pk": user_pk, "name": "User"},
        })
    }

    /// Queues a full sweep and returns its job id.
    pub async fn request_sweep(&self) -> i64 {
        let (status, body) = self
            .post(
                "/reconcile-all",
                &[("X-Reconciler-Admin-Token", ADMIN_TOKEN)],
                String::new(),
            )
            .await;
        assert_eq!(status, 202, "reconcile-all: {body}");
        body["job_id"].as_i64().expect("job_id")
    }

    /// Runs a sweep to completion and returns the job.
    pub async fn sweep(&self) -> Value {
        let id = self.request_sweep().await;
        self.wait_job(id).await
    }

    /// Sends a webhook and waits for its job.
    pub async fn webhook_and_wait(&self, body: &Value) -> Value {
        let (status, reply) = self.webhook(body).await;
        assert_eq!(status, 202, "webhook: {reply}");
        self.wait_job(reply["job_id"].as_i64().expect("job_id"))
            .await
    }

    /// `GET /jobs/<id>` with the admin token.
    pub async fn job(&self, id: i64) -> Value {
        self.http
            .get(format!("{}/jobs/{id}", self.http_url))
            .header("X-Reconciler-Admin-Token", ADMIN_TOKEN)
            .send()
            .await
            .expect("GET job")
            .json()
            .await
            .expect("job JSON")
    }

    /// Polls the job until it is done or failed (never a fixed sleep).
    pub async fn wait_job(&self, id: i64) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            match job["state"].as_str() {
                Some("done") | Some("failed") => return job,
                _ => {}
            }
            assert!(
                start.elapsed() < self.options.job_timeout,
                "job {id} did not finish: {job}\ncoordinator log:\n{}",
                self.coordinator.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until an attempt of job `id` has failed and the job is queued
    /// for a retry; returns the job. `why` says why it cannot succeed yet.
    pub async fn wait_for_failed_attempt(&self, id: i64, why: &str) -> Value {
        let start = Instant::now();
        loop {
            let job = self.job(id).await;
            if job["attempts"].as_i64().unwrap_or(0) >= 1 && job["state"] == "queued" {
                return job;
            }
            assert_ne!(job["state"], "done", "cannot succeed while {why}: {job}");
            assert!(
                start.elapsed() < self.options.job_timeout,
                "job {id} never failed an attempt: {job}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until the job is done and panics with logs otherwise.
    pub async fn expect_done(&self, job: &Value) {
        assert_eq!(
            job["state"],
            "done",
            "job failed: {job}\ncoordinator log:\n{}\nagent log:\n{}",
            self.coordinator.logs(),
            self.agent.logs()
        );
    }
}

impl Service {
    /// Stands in until the first coordinator starts.
    fn placeholder() -> Self {
        Self::spawn_none()
    }
}

#[cfg(test)]
mod env_pair_tests {
    use super::env_pair;

    #[test]
    fn name_value_pairs_parse_and_anything_else_is_refused() {
        assert_eq!(
            env_pair("MALLOC_ARENA_MAX=1"),
            Ok(("MALLOC_ARENA_MAX".into(), "1".into()))
        );
        assert_eq!(env_pair("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(env_pair("EMPTY="), Ok(("EMPTY".into(), String::new())));
        for bad in ["MALLOC_ARENA_MAX", "=1", "A B=1", "1A=1", "A-B=1", ""] {
            assert!(env_pair(bad).is_err(), "{bad:?} accepted");
        }
    }
}
