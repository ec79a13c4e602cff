//! A Docker Compose project run with the machine's real `docker-compose`
//! (1.29), for the test of the shipped compose files
//! (`deploy/compose/`): a unique project name, its own project directory
//! (secrets, certificates, bind-mounted files), and everything it created
//! — containers, volumes, the network the test made for it — removed on
//! drop, so a failing test leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::command::Exec;
pub use super::command::docker_blocking as docker;

/// The repository's root: the shipped compose files and scripts are there.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/kit is two levels below the root")
        .to_path_buf()
}

fn run(command: &mut Command) -> Exec {
    command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
        .into()
}

/// Builds the service images (and the simulators' image) from the binaries
/// this test runs, tagged `tag`: `scripts/images.sh --services`. Quick when
/// nothing changed (the script compares digests).
pub fn build_service_images(bin_dir: &Path, tag: &str) {
    let out = run(Command::new("bash")
        .arg(repo_root().join("scripts/images.sh"))
        .args(["--services", "--tag", tag, "--bin-dir"])
        .arg(bin_dir));
    assert_eq!(out.code, 0, "scripts/images.sh --services: {out:?}");
}

pub struct ComposeProject {
    /// `-p`: containers, networks and volumes carry it.
    pub name: String,
    /// `--project-directory`: relative paths in the files resolve here.
    pub dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
    /// Networks the test created for the project (external to it).
    networks: Vec<String>,
}

impl ComposeProject {
    /// A project named uniquely for this process, over `files` (merged in
    /// order), with `env` as the only variables docker-compose interpolates
    /// besides PATH, HOME and DOCKER_HOST: nothing of the caller's
    /// environment leaks in.
    pub fn new(prefix: &str, files: Vec<PathBuf>) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            name,
            dir: tempfile::tempdir().expect("project dir"),
            files,
            env: Vec::new(),
            networks: Vec::new(),
        }
    }

    pub fn env(&mut self, key: &str, value: impl Into<String>) {
        self.env.push((key.to_owned(), value.into()));
    }

    /// Writes `contents` to `relative` in the project directory, readable
    /// by the containers' users (their uids are not the test's).
    pub fn write_file(&self, relative: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
                .expect("chmod dir");
        }
        std::fs::write(&path, contents).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        path
    }

    /// Creates a bridge network the project's files name as external
    /// (Mailcow's network on a real host); removed on drop.
    pub fn create_network(&mut self, suffix: &str) -> String {
        let network = format!("{}_{suffix}", self.name);
        let out = docker(&["network", "create", &network]);
        assert_eq!(out.code, 0, "docker network create: {out:?}");
        self.networks.push(network.clone());
        network
    }

    /// `docker-compose <args>` for this project.
    pub fn compose(&self, args: &[&str]) -> Exec {
        let mut command = Command::new("docker-compose");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for key in ["HOME", "DOCKER_HOST"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        command
            .arg("--project-name")
            .arg(&self.name)
            .arg("--project-directory")
            .arg(self.dir.path());
        for file in &self.files {
            command.arg("--file").arg(file);
        }
        run(command.args(args))
    }

    /// `up -d` for `services`; panics with docker-compose's output on failure.
    pub fn up(&self, services: &[&str]) {
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend_from_slice(services);
        let out = self.compose(&args);
        assert_eq!(out.code, 0, "docker-compose up: {out:?}");
    }

    /// The container id of `service`.
    pub fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "-q", service]);
        let id = out.stdout.trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}: {out:?}");
        id
    }

    /// `host:port` where `service`'s `port` is published.
    pub fn published(&self, service: &str, port: u16) -> String {
        let out = self.compose(&["port", service, &port.to_string()]);
        let addr = out.stdout.trim().to_owned();
        assert!(
            out.code == 0 && addr.contains(':'),
            "{service}:{port} is not published: {out:?}"
        );
        addr
    }

    /// `docker inspect` of `service`'s container.
    pub fn inspect(&self, service: &str) -> Value {
        let out = docker(&["inspect", &self.container(service)]);
        assert_eq!(out.code, 0, "docker inspect {service}: {out:?}");
        let all: Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
        all[0].clone()
    }

    /// Waits until every one of `services` reports `State.Health.Status`
    /// healthy (its image's HEALTHCHECK), or fails with their last health
    /// log and the project's logs.
    pub async fn wait_healthy(&self, services: &[&str], deadline: Duration) {
        let start = Instant::now();
        let mut pending: Vec<&str> = services.to_vec();
        loop {
            let mut still = Vec::new();
            for service in pending {
                let state = &self.inspect(service)["State"];
                if state["Health"]["Status"] != "healthy" {
                    still.push(service);
                    assert!(
                        state["Running"] == true,
                        "{service} stopped: {state}\n{}",
                        self.logs()
                    );
                }
            }
            pending = still;
            if pending.is_empty() {
                return;
            }
            if start.elapsed() > deadline {
                let health: Vec<String> = pending
                    .iter()
                    .map(|s| format!("{s}: {}", self.inspect(s)["State"]["Health"]))
                    .collect();
                panic!(
                    "not healthy within {deadline:?}: {}\n{}",
                    health.join("\n"),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every container's log, for failure messages.
    pub fn logs(&self) -> String {
        let out = self.compose(&["logs", "--no-color", "--tail", "200"]);
        format!("{}{}", out.stdout, out.stderr)
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        // Containers, the project's own networks and its volumes (the
        // coordinator's state volume among them).
        let out = self.compose(&["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
        if out.code != 0 {
            eprintln!("docker-compose down for {}: {out:?}", self.name);
        }
        for network in &self.networks {
            let _ = docker(&["network", "rm", network]);
        }
    }
}
