//! A private MariaDB from Debian's `mariadb-server`, started per test on
//! loopback (TCP) and on a unix socket in its own directory. The SOGo peers
//! keep `sogo_user_profile` in one; the Nextcloud container keeps Nextcloud
//! Mail's `oc_mail_accounts` in one.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::command::Exec;
use super::ports::start_on_offered_port;

pub(crate) async fn run(program: &str, args: &[&str], envs: &[(&str, &str)]) -> Exec {
    Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("run {program} (apt-get install sogo mariadb-server memcached): {e}")
        })
        .into()
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
/// answers, on a port offered by [`start_on_offered_port`].
async fn start_mariadb(dir: &Path, data: &Path, tmp: &str) -> (Child, u16) {
    let socket = mariadb_socket(dir).display().to_string();
    let log_path = dir.join("mariadb.log");
    let spawn = |port: u16| {
        Command::new("mariadbd")
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
            .expect("start mariadbd")
    };
    // The TCP port is bound before the socket answers.
    let ready = async |_port: u16| {
        let ping = run(
            "mariadb-admin",
            &["--no-defaults", "-S", &socket, "-u", "root", "ping"],
            &[],
        )
        .await;
        ping.code == 0
    };
    start_on_offered_port(
        "MariaDB",
        spawn,
        ready,
        |log| log.contains("Bind on TCP/IP port"),
        || std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
    .await
}
