//! A private MariaDB from Debian's `mariadb-server`, started per test on
//! loopback (TCP) and on a unix socket in its own directory. The SOGo peers
//! keep `sogo_user_profile` in one; the Nextcloud container keeps Nextcloud
//! Mail's `oc_mail_accounts` in one.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// Output of a command.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub(crate) async fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("run {program} (apt-get install sogo mariadb-server memcached): {e}")
        });
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub struct MariaDb {
    dir: tempfile::TempDir,
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

impl MariaDb {
    /// A fresh data directory and a server that answers.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("mysql");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        let tmp_env = tmp.display().to_string();
        // Parallel bootstraps have collided on temporary tables in /tmp:
        // each instance gets its own tmpdir, and bootstraps run one at a time.
        static BOOTSTRAP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let bootstrap = BOOTSTRAP.lock().await;
        let install = run(
            "mariadb-install-db",
            &[
                "--no-defaults",
                &format!("--datadir={}", data.display()),
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            &[("TMPDIR", tmp_env.as_str())],
        )
        .await;
        drop(bootstrap);
        assert_eq!(install.code, 0, "mariadb-install-db: {install:?}");
        let (child, port) = start_mariadb(dir.path(), &data, &tmp_env).await;
        Self { dir, child, port }
    }

    /// The server's unix socket (connections from a container mount it).
    pub fn socket(&self) -> PathBuf {
        mariadb_socket(self.dir.path())
    }

    /// Runs SQL as root and returns tab-separated rows.
    pub async fn root_sql(&self, sql: &str) -> String {
        let socket = self.socket().display().to_string();
        let out = run(
            "mariadb",
            &[
                "--no-defaults",
                "-S",
                &socket,
                "-u",
                "root",
                "-N",
                "-B",
                "-e",
                sql,
            ],
            &[],
        )
        .await;
        assert_eq!(out.code, 0, "SQL {sql}: {}", out.stderr);
        out.stdout
    }

    /// A server-wide status counter (`SHOW GLOBAL STATUS`), e.g.
    /// `Com_stmt_execute`.
    pub async fn global_status(&self, name: &str) -> u64 {
        let out = self
            .root_sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await;
        out.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no status {name}: {out}"))
    }

    /// Stops the server (for outage tests).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn mariadb_socket(dir: &Path) -> PathBuf {
    dir.join("mysql.sock")
}

/// Starts MariaDB on loopback and returns it with its TCP port once it
/// answers. MariaDB cannot bind port 0 (it reads it as 3306), so it is
/// offered ports below the kernel's ephemeral range (where every port-0
/// listener and outgoing connection gets its port) until it binds one: it
/// exits when the port is taken, so the server that answers owns its port.
/// Nothing relies on a port staying free.
async fn start_mariadb(dir: &Path, data: &Path, tmp: &str) -> (Child, u16) {
    let socket = mariadb_socket(dir).display().to_string();
    let log_path = dir.join("mariadb.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    for _ in 0..20 {
        let port = below_ephemeral_range();
        let mut mariadb = Command::new("mariadbd")
            .args([
                "--no-defaults",
                &format!("--datadir={}", data.display()),
                "--user=root",
                &format!("--port={port}"),
                "--bind-address=127.0.0.1",
                &format!("--socket={socket}"),
                "--skip-log-bin",
                &format!("--tmpdir={tmp}"),
                "--innodb-buffer-pool-size=16M",
                // Short lock waits so lock-conflict tests stay short.
                "--innodb-lock-wait-timeout=5",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log"))
            .kill_on_drop(true)
            .spawn()
            .expect("start mariadbd");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = mariadb.try_wait() {
                let log = log();
                assert!(
                    log.contains("Bind on TCP/IP port"),
                    "mariadbd exited ({status}): {log}"
                );
                break; // The port was taken: offer another.
            }
            // The TCP port is bound before the socket answers.
            let ping = run(
                "mariadb-admin",
                &["--no-defaults", "-S", &socket, "-u", "root", "ping"],
                &[],
            )
            .await;
            if ping.code == 0 {
                return (mariadb, port);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "MariaDB did not start: {}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("MariaDB found no free port in 20 tries: {}", log());
}

/// A port below the kernel's ephemeral range (`ip_local_port_range`).
pub(crate) fn below_ephemeral_range() -> u16 {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    rand::rng().random_range(10_000..low.max(10_001))
}
