//! The shipped compose files (deploy/compose/coordinator and
//! deploy/compose/mailcow) with our images, brought up from a clean state
//! by the machine's real `docker-compose`: the real Dovecot image plays
//! dovecot-mailcow, the test kit's simulators play nginx-mailcow and
//! Authentik (tests/e2e/compose/stack.yml). The images' own health checks
//! must turn healthy, a webhook must reach Mailcow and Dovecot, and
//! `docker inspect` must show what the files promise: non-root, read-only
//! root filesystem, no capabilities, no-new-privileges, and each service
//! holding only its own secrets. Every other shipped file (sogo-agent,
//! Nextcloud, Synapse, Stalwart) is checked the same way on containers
//! created from it, and every image on its own.

use std::time::{Duration, Instant};

use reconciler_testkit::harness::compose::{
    ComposeProject, build_service_images, docker, repo_root,
};
use reconciler_testkit::harness::tls::CertDir;
use reconciler_testkit::harness::{Stack, bin_dir};
use serde_json::{Value, json};

const SHARED: &str = "shared@example.com";
const ALICE: &str = "alice@example.com";
const AUTHENTIK_TOKEN: &str = "compose-authentik-token-0123456789";
const WEBHOOK_TOKEN: &str = "compose-webhook-token-0123456789";
const ADMIN_TOKEN: &str = "compose-admin-token-0123456789";
const AGENT_TOKEN: &str = "compose-agent-token-0123456789";
const MAILCOW_KEY: &str = "ABCDEF-012345-ABCDEF-012345-ABCDEF";
/// The images this test builds from its own binaries.
const TAG: &str = "test";
/// Our services in the stack (the peers are not ours).
const OURS: [&str; 2] = ["coordinator", "mailcow-agent"];

/// Every service image (and the simulators'), from the binaries under
/// test; once per test process, as two tests need them.
fn images() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| build_service_images(&bin_dir(), TAG));
}

/// The stack: files merged in this order, the project directory holding
/// secrets/, certs/ and Dovecot's users, variables as an operator's .env
/// would set them.
fn project() -> ComposeProject {
    let root = repo_root();
    let mut project = ComposeProject::new(
        "reconcilercompose",
        vec![
            root.join("deploy/compose/coordinator/docker-compose.yml"),
            root.join("deploy/compose/mailcow/docker-compose.override.yml"),
            root.join("tests/e2e/compose/stack.yml"),
        ],
    );
    for (name, value) in [
        ("authentik_token", AUTHENTIK_TOKEN),
        ("webhook_token", WEBHOOK_TOKEN),
        ("admin_token", ADMIN_TOKEN),
        ("agent_token", AGENT_TOKEN),
        ("mailcow_api_key", MAILCOW_KEY),
        // The sogo-agent is not started; its secret must still exist.
        ("sogo_db_url", "mysql://unused@mysql-mailcow/mailcow"),
    ] {
        project.write_file(&format!("secrets/{name}"), &format!("{value}\n"));
    }
    // Mutual TLS as an operator sets it up: `coordinator certs`, the files
    // owned by the services' user (uid 10001), keys readable by it alone.
    let certs = project.dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    CertDir::make(&certs, &["mailcow-agent"]);
    for entry in std::fs::read_dir(&certs).expect("certs") {
        let path = entry.expect("entry").path();
        std::os::unix::fs::chown(&path, Some(10001), Some(10001)).expect("chown");
    }
    std::fs::set_permissions(&certs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod certs");
    project.write_file(
        "dovecot-users/passwd",
        &format!("{SHARED}:{{PLAIN}}shared-pass::::::\n{ALICE}:{{PLAIN}}alice-pass::::::\n"),
    );
    let network = project.create_network("mailcow");
    let dovecot = format!("{}-dovecot-mailcow", project.name);
    for (key, value) in [
        ("RECONCILER_TAG", TAG.to_owned()),
        // Published on loopback, each on a port the kernel picks.
        ("COORDINATOR_HTTP_BIND", "127.0.0.1".into()),
        ("COORDINATOR_HTTP_PORT", String::new()),
        ("COORDINATOR_GRPC_PORT", String::new()),
        ("AGENT_BIND_ADDRESS", "127.0.0.1".into()),
        ("MAILCOW_AGENT_PORT", String::new()),
        ("SOGO_AGENT_PORT", String::new()),
        ("AUTHENTIK_URL", "http://authentik:9000".into()),
        ("AUTHENTIK_SIM_TOKEN", AUTHENTIK_TOKEN.into()),
        ("MAILCOW_SIM_API_KEY", MAILCOW_KEY.into()),
        ("MAILCOW_AGENT_URL", "https://mailcow-agent:50051".into()),
        // The agent serves only the coordinator's certificate.
        ("AGENT_TLS_CLIENT_NAME", "coordinator".into()),
        ("MAILCOW_URL", "http://nginx-mailcow:8080".into()),
        ("MAILCOW_NETWORK", network),
        ("DOCKER_SOCKET_GID", docker_socket_gid()),
        ("DOVECOT_CONTAINER", dovecot),
        // Tests trigger runs themselves.
        ("SWEEP_INTERVAL_SECONDS", "0".into()),
        ("EVENTS_CATCHUP_SECONDS", "0".into()),
    ] {
        project.env(key, value);
    }
    project
}

/// Polls `doveadm` in the Dovecot container until it answers, then makes
/// the mailboxes (touching INBOX creates them).
async fn dovecot_ready(project: &ComposeProject) {
    let container = project.container("dovecot");
    let start = Instant::now();
    loop {
        let out = docker(&[
            "exec",
            &container,
            "doveadm",
            "mailbox",
            "list",
            "-u",
            "nobody@invalid",
        ]);
        // 67: unknown user, so doveadm and the config are up.
        if out.code == 67 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Dovecot did not come up: {out:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for user in [SHARED, ALICE] {
        let out = docker(&[
            "exec", &container, "doveadm", "mailbox", "status", "-u", user, "messages", "INBOX",
        ]);
        assert_eq!(out.code, 0, "create {user}: {out:?}");
    }
}

async fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_json(url: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// Polls the job until it is done or failed (bounded).
async fn wait_job(project: &ComposeProject, coordinator: &str, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let job = get_json(
            &format!("http://{coordinator}/jobs/{id}"),
            &[("X-Reconciler-Admin-Token", ADMIN_TOKEN)],
        )
        .await;
        if job["state"] == "done" || job["state"] == "failed" {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "job {id} did not finish: {job}\n{}",
            project.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn env_names(container: &Value) -> Vec<String> {
    container["Config"]["Env"]
        .as_array()
        .expect("Config.Env")
        .iter()
        .filter_map(|e| e.as_str()?.split('=').next().map(str::to_owned))
        .collect()
}

fn mount_destinations(container: &Value) -> Vec<String> {
    container["Mounts"]
        .as_array()
        .expect("Mounts")
        .iter()
        .filter_map(|m| m["Destination"].as_str().map(str::to_owned))
        .collect()
}

/// What every one of our containers must be, whatever it runs.
fn assert_hardened(service: &str, container: &Value) {
    let user = container["Config"]["User"].as_str().unwrap_or("");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        !uid.is_empty() && uid != "0" && uid != "root",
        "{service} runs as `{user}`, not a fixed non-root user"
    );
    let host = &container["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true, "{service}: root filesystem");
    let dropped: Vec<&str> = host["CapDrop"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        dropped.iter().any(|c| *c == "ALL" || *c == "CAP_ALL"),
        "{service}: CapDrop {dropped:?}"
    );
    assert_eq!(host["CapAdd"], Value::Null, "{service}: CapAdd");
    assert_eq!(host["Privileged"], false, "{service}: privileged");
    let options: Vec<&str> = host["SecurityOpt"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        options.contains(&"no-new-privileges:true"),
        "{service}: SecurityOpt {options:?}"
    );
    assert_eq!(
        host["RestartPolicy"]["Name"], "unless-stopped",
        "{service}: restart policy"
    );
    let probe = container["Config"]["Healthcheck"]["Test"].to_string();
    assert!(
        probe.contains("healthcheck"),
        "{service}: HEALTHCHECK {probe}"
    );
}

#[tokio::test]
async fn compose_stack_reconciles_through_the_webhook_with_hardened_images() {
    let out = std::process::Command::new("docker-compose")
        .arg("version")
        .output()
        .expect("docker-compose is installed (scripts/lib/prereqs.sh)");
    assert!(out.status.success(), "docker-compose version: {out:?}");
    // The test's own HTTP client (reqwest) uses the process-wide provider.
    reconciler_runtime::install_crypto_provider();
    images();

    // Dropped at the end or on any panic: `down --volumes` and the network.
    let project = project();
    project.up(&[
        "dovecot",
        "nginx-mailcow",
        "authentik",
        "mailcow-agent",
        "coordinator",
    ]);
    project.wait_healthy(&OURS, Duration::from_secs(90)).await;
    dovecot_ready(&project).await;

    // The health checks ran the services' own probes.
    let agent_probe = project.inspect("mailcow-agent")["State"]["Health"]["Log"].to_string();
    assert!(agent_probe.contains("SERVING"), "{agent_probe}");
    let coordinator_probe = project.inspect("coordinator")["State"]["Health"]["Log"].to_string();
    assert!(coordinator_probe.contains("healthy"), "{coordinator_probe}");

    // Authentik and Mailcow as the simulators hold them, through their
    // published ports.
    let mailcow = project.published("nginx-mailcow", 8080);
    let authentik = project.published("authentik", 9000);
    let (status, seeded) = post_json(
        &format!("http://{mailcow}/__sim/seed"),
        &json!({"domains": ["example.com"], "mailboxes": [SHARED, ALICE]}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "seed Mailcow: {seeded}");
    let (status, seeded) = post_json(
        &format!("http://{authentik}/__sim/seed"),
        &json!({
            "users": [{"username": "alice", "email": ALICE}],
            "groups": [{"name": "shared-team",
                        "attributes": {"reconciler": {"shared_mailbox": SHARED,
                                                      "access": "read", "send_as": true}},
                        "members": ["alice"]}],
        }),
        &[],
    )
    .await;
    assert_eq!(status, 200, "seed Authentik: {seeded}");
    let group = seeded["groups"]["shared-team"]
        .as_str()
        .expect("group uuid")
        .to_owned();

    // Authentik's notification, as its webhook mapping sends it.
    let coordinator = project.published("coordinator", 5000);
    let (status, accepted) = post_json(
        &format!("http://{coordinator}/reconcile"),
        &Stack::group_event(&group, "compose-event-1"),
        &[("X-Authentik-Webhook-Token", WEBHOOK_TOKEN)],
    )
    .await;
    assert_eq!(status, 202, "webhook: {accepted}\n{}", project.logs());
    let id = accepted["job_id"].as_i64().expect("job_id");
    let job = wait_job(&project, &coordinator, id).await;
    assert_eq!(job["state"], "done", "job: {job}\n{}", project.logs());

    // Mailcow: alice may send as the shared mailbox.
    let state = get_json(&format!("http://{mailcow}/__sim/state"), &[]).await;
    let granted = state["sender_acl"]
        .as_array()
        .expect("sender_acl")
        .iter()
        .any(|row| row["logged_in_as"] == ALICE && row["send_as"] == SHARED);
    assert!(granted, "sender_acl: {}", state["sender_acl"]);

    // Dovecot: alice holds read rights on the shared INBOX, set by the
    // mailcow-agent's doveadm through the mounted Docker socket.
    let acl = docker(&[
        "exec",
        &project.container("dovecot"),
        "doveadm",
        "-f",
        "tab",
        "acl",
        "get",
        "-u",
        SHARED,
        "INBOX",
    ]);
    assert_eq!(acl.code, 0, "{acl:?}");
    assert!(
        acl.stdout
            .lines()
            .any(|l| l.starts_with(&format!("user={ALICE}\t")) && l.contains("read")),
        "doveadm acl get: {}",
        acl.stdout
    );

    // An operator's command in the container (it has ADMIN_TOKEN_FILE):
    // after the run, a sweep would change nothing.
    let plan = project.compose(&["exec", "-T", "coordinator", "coordinator", "plan"]);
    assert_eq!(plan.code, 0, "coordinator plan: {plan:?}");

    // What the files promise, as Docker runs it.
    for service in OURS {
        assert_hardened(service, &project.inspect(service));
    }
    let coordinator = project.inspect("coordinator");
    let env = env_names(&coordinator);
    let mounts = mount_destinations(&coordinator);
    assert!(
        !mounts.iter().any(|m| m.contains("docker.sock")),
        "the coordinator has no Docker socket: {mounts:?}"
    );
    for target_secret in [
        "MAILCOW_API_KEY",
        "SOGO_DB_URL",
        "NEXTCLOUD_DB_URL",
        "MATRIX_ACCESS_TOKEN",
        "STALWART_API_KEY",
    ] {
        assert!(
            !env.iter().any(|e| e.starts_with(target_secret)),
            "the coordinator holds {target_secret}: {env:?}"
        );
    }
    // The image's one malloc arena (its peak memory, docs/BENCHMARKS.md).
    assert!(
        coordinator["Config"]["Env"]
            .as_array()
            .expect("Config.Env")
            .iter()
            .any(|e| e == "MALLOC_ARENA_MAX=1"),
        "the coordinator runs with one malloc arena: {env:?}"
    );
    for file in ["mailcow_api_key", "sogo_db_url"] {
        assert!(
            !mounts.iter().any(|m| m.ends_with(file)),
            "the coordinator has {file}: {mounts:?}"
        );
    }
    assert!(
        coordinator["Mounts"]
            .as_array()
            .expect("Mounts")
            .iter()
            .any(|m| m["Type"] == "volume" && m["Destination"] == "/var/lib/authentik-reconciler"),
        "the state is in a volume: {mounts:?}"
    );

    let agent = project.inspect("mailcow-agent");
    let env = env_names(&agent);
    assert!(
        !env.iter().any(|e| e.starts_with("AUTHENTIK")),
        "the agent holds Authentik's token: {env:?}"
    );
    // Of the host, the agent gets the Docker socket and nothing else: every
    // other bind mount is its own secret or certificate directory.
    let project_dir = project.dir.path().to_string_lossy().into_owned();
    for mount in agent["Mounts"].as_array().expect("Mounts") {
        let source = mount["Source"].as_str().unwrap_or("");
        let destination = mount["Destination"].as_str().unwrap_or("");
        assert!(
            destination != "/run/secrets/authentik_token",
            "the agent has Authentik's token"
        );
        assert!(
            source == "/var/run/docker.sock" || source.starts_with(&project_dir),
            "the agent mounts {source} of the host at {destination}"
        );
    }
    let groups = agent["HostConfig"]["GroupAdd"].to_string();
    assert!(
        groups.contains(&docker_socket_gid()),
        "the agent's user is in the socket's group: {groups}"
    );
}

/// The group of the Docker socket, as the compose file's group_add needs it.
fn docker_socket_gid() -> String {
    std::os::unix::fs::MetadataExt::gid(
        &std::fs::metadata("/var/run/docker.sock").expect("the Docker socket"),
    )
    .to_string()
}

const SERVICES: [&str; 6] = [
    "coordinator",
    "mailcow-agent",
    "sogo-agent",
    "nextcloud-agent",
    "matrix-agent",
    "stalwart-agent",
];

/// Each image as built: a fixed non-root user, a HEALTHCHECK that runs the
/// service's own probe, and a binary that runs in it as that user with a
/// read-only root filesystem and no capabilities (the host's glibc
/// matches the base image's). The probe of a port where nothing listens
/// must say so and fail, which is what Docker counts as unhealthy.
#[tokio::test]
async fn every_service_image_is_non_root_and_probes_its_own_health() {
    images();
    for service in SERVICES {
        let image = format!("authentik-reconciler/{service}:{TAG}");
        let out = docker(&["image", "inspect", &image]);
        assert_eq!(out.code, 0, "{image}: {out:?}");
        let inspected: Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
        let config = &inspected[0]["Config"];
        assert_eq!(config["User"], "10001:10001", "{image}: user");
        let probe: Vec<&str> = config["Healthcheck"]["Test"]
            .as_array()
            .expect("a HEALTHCHECK")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let binary = format!("/usr/local/bin/{service}");
        assert_eq!(
            probe,
            ["CMD", binary.as_str(), "healthcheck"],
            "{image}: HEALTHCHECK"
        );
        let env = config["Env"].to_string();
        if service == "coordinator" {
            assert!(
                config["Volumes"]
                    .get("/var/lib/authentik-reconciler")
                    .is_some(),
                "{image}: the state volume: {}",
                config["Volumes"]
            );
        } else {
            assert!(env.contains("AGENT_LISTEN=0.0.0.0:"), "{image}: {env}");
        }

        // Port 9 (discard) on the container's own loopback: nothing there.
        let mut run = vec![
            "run",
            "--rm",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--network",
            "none",
            &image,
            "healthcheck",
        ];
        if service == "coordinator" {
            run.extend(["--url", "http://127.0.0.1:9/healthz"]);
        } else {
            run.push("127.0.0.1:9");
        }
        let out = docker(&run);
        assert_eq!(out.code, 1, "{image} healthcheck of nothing: {out:?}");
        assert!(
            out.stdout.contains("127.0.0.1:9"),
            "{image}: the probe names what it tried: {out:?}"
        );
    }
}

/// The secrets a service reads; a container may carry `<NAME>_FILE`, never
/// `<NAME>` itself (its value would show in `docker inspect`).
const SECRET_VARIABLES: [&str; 11] = [
    "AUTHENTIK_TOKEN",
    "WEBHOOK_TOKEN",
    "ADMIN_TOKEN",
    "STATUS_TOKEN",
    "AGENT_TOKEN",
    "MAILCOW_API_KEY",
    "SOGO_DB_URL",
    "NEXTCLOUD_DB_URL",
    "MATRIX_ACCESS_TOKEN",
    "STALWART_API_KEY",
    "STALWART_WEBHOOK_SECRET",
];

/// `KEY=value` lines of a shipped `.env.example`.
fn env_example(dir: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join(".env.example")).expect(".env.example");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Every shipped compose file, with the values of its own `.env.example`,
/// creates (without starting: no target is needed) containers that are
/// hardened the same way, publish only on the configured address, carry
/// secrets as files only, and of which only the mailcow-agent and the
/// nextcloud-agent get the Docker socket (with its group).
#[tokio::test]
async fn every_shipped_compose_file_creates_hardened_containers() {
    images();
    let root = repo_root();
    for (dir, file, services) in [
        ("coordinator", "docker-compose.yml", &["coordinator"][..]),
        (
            "mailcow",
            "docker-compose.override.yml",
            &["mailcow-agent", "sogo-agent"][..],
        ),
        ("nextcloud", "docker-compose.yml", &["nextcloud-agent"][..]),
        ("synapse", "docker-compose.yml", &["matrix-agent"][..]),
        ("stalwart", "docker-compose.yml", &["stalwart-agent"][..]),
    ] {
        let dir = root.join("deploy/compose").join(dir);
        let mut project = ComposeProject::new("reconcilerfiles", vec![dir.join(file)]);
        for name in [
            "authentik_token",
            "webhook_token",
            "admin_token",
            "agent_token",
            "mailcow_api_key",
            "sogo_db_url",
            "matrix_access_token",
            "stalwart_api_key",
        ] {
            project.write_file(&format!("secrets/{name}"), "a-test-value\n");
        }
        let example = env_example(&dir);
        // The host's own values where the example's cannot work here; later
        // values win. The target's network (Mailcow's, Synapse's, …) is one
        // the test makes.
        for (key, value) in &example {
            project.env(key, value.clone());
            if key.ends_with("_NETWORK") {
                let name = project.create_network(&key.to_ascii_lowercase());
                project.env(key, name);
            }
        }
        for (key, value) in [
            ("RECONCILER_TAG", TAG.to_owned()),
            ("AGENT_BIND_ADDRESS", "127.0.0.1".into()),
            ("COORDINATOR_HTTP_BIND", "127.0.0.1".into()),
            ("DOCKER_SOCKET_GID", docker_socket_gid()),
        ] {
            project.env(key, value);
        }
        for port in [
            "COORDINATOR_HTTP_PORT",
            "COORDINATOR_GRPC_PORT",
            "MAILCOW_AGENT_PORT",
            "SOGO_AGENT_PORT",
            "NEXTCLOUD_AGENT_PORT",
            "MATRIX_AGENT_PORT",
            "STALWART_AGENT_PORT",
        ] {
            project.env(port, "");
        }
        let out = project.compose(&["up", "--no-start", "--no-build"]);
        assert_eq!(out.code, 0, "{file} in {}: {out:?}", dir.display());

        let project_dir = project.dir.path().to_string_lossy().into_owned();
        for service in services {
            let container = project.inspect(service);
            assert_hardened(service, &container);
            assert!(
                container["HostConfig"]["Tmpfs"].get("/tmp").is_some(),
                "{service}: a tmpfs at /tmp"
            );
            let bindings = container["HostConfig"]["PortBindings"]
                .as_object()
                .expect("published ports");
            assert!(!bindings.is_empty(), "{service} publishes its port");
            for (port, hosts) in bindings {
                for host in hosts.as_array().expect("bindings") {
                    assert_eq!(
                        host["HostIp"], "127.0.0.1",
                        "{service} publishes {port} on the configured address only"
                    );
                }
            }
            let env = env_names(&container);
            for secret in SECRET_VARIABLES {
                assert!(
                    !env.iter().any(|e| e == secret),
                    "{service} carries {secret} in its environment: {env:?}"
                );
            }
            assert!(
                env.iter().any(|e| e == "AGENT_TOKEN_FILE"),
                "{service}: AGENT_TOKEN_FILE"
            );
            let uses_docker = matches!(*service, "mailcow-agent" | "nextcloud-agent");
            let mut has_socket = false;
            // Named volumes (the coordinator's state) are Docker's, not the host's.
            let mounts = container["Mounts"].as_array().expect("Mounts");
            for bind in mounts.iter().filter(|m| m["Type"] == "bind") {
                let source = bind["Source"].as_str().unwrap_or("");
                has_socket |= source == "/var/run/docker.sock";
                assert!(
                    source == "/var/run/docker.sock" || source.starts_with(&project_dir),
                    "{service} mounts {source} of the host"
                );
            }
            assert_eq!(has_socket, uses_docker, "{service}: the Docker socket");
            if uses_docker {
                let groups = container["HostConfig"]["GroupAdd"].to_string();
                assert!(
                    groups.contains(&docker_socket_gid()),
                    "{service}: the socket's group: {groups}"
                );
            }
        }
    }
}
