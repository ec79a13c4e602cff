//! A private PostgreSQL 15 from Debian's `postgresql-15`, started per test
//! in its own temporary directory on a loopback port, for the coordinator's
//! state DB (`STATE_DB_URL=postgres://…`). PostgreSQL refuses to run as
//! root: under root the cluster belongs to the `postgres` system user and
//! its programs run as that user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::command::Exec;
use super::ports::start_on_offered_port;

/// Where Debian installs PostgreSQL 15's server programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The superuser `initdb` creates; trusted on loopback (a private cluster).
pub const USER: &str = "reconciler";

pub struct Postgres {
    dir: tempfile::TempDir,
    child: Child,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

/// The uid and gid to run PostgreSQL's programs as: the `postgres` user's
/// when we are root, else our own (`None`).
fn run_as() -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    });
    Some(ids.expect("running as root needs the `postgres` user (apt-get install postgresql-15)"))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn program(name: &str) -> Command {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "{} is missing (apt-get install postgresql-15)",
        path.display()
    );
    let mut std = std::process::Command::new(path);
    if let Some((uid, gid)) = run_as() {
        std.uid(uid).gid(gid);
    }
    let mut command = Command::from(std);
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

async fn run(name: &str, args: &[&str]) -> Exec {
    program(name)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
        .into()
}

impl Postgres {
    /// A fresh cluster with an empty database `reconciler`, and a server
    /// that answers.
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// The same, also serving TLS with a certificate for 127.0.0.1 from a
    /// private CA ([`Self::ca_file`]).
    pub async fn start_with_tls() -> Self {
        Self::start_with(true).await
    }

    /// The private CA's certificate (PEM) when the server serves TLS.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    async fn start_with(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // The server's user must reach its directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod temp dir");
        let data = dir.path().join("data");
        let data_arg = data.display().to_string();
        let init = run(
            "initdb",
            &[
                "-D",
                &data_arg,
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        .await;
        assert_eq!(init.code, 0, "initdb: {init:?}");
        let mut settings: Vec<String> = Vec::new();
        if tls {
            let (cert, key) = make_certificates(dir.path()).await;
            settings.extend([
                "ssl=on".into(),
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ]);
        }
        let (child, port) = start_server(dir.path(), &data, &settings).await;
        let pg = Self { dir, child, port };
        pg.sql("postgres", "CREATE DATABASE reconciler").await;
        pg
    }

    /// The URL of database `reconciler`, as `STATE_DB_URL` takes it.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/reconciler", self.port)
    }

    /// Runs SQL with `psql` in `database` and returns the rows, one a line,
    /// fields separated by `|`.
    pub async fn sql(&self, database: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )
        .await;
        assert_eq!(out.code, 0, "SQL {sql}: {}", out.stderr);
        out.stdout
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }

    /// Stops the server at once (for outage tests).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Backends exit when they see the postmaster gone.
        let _ = self.child.start_kill();
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("postgres.log")
}

/// A private CA (`ca.pem`) and a server certificate for 127.0.0.1 signed
/// by it, made with `openssl`; the key readable by the server's user only.
async fn make_certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let at = |name: &str| dir.join(name).display().to_string();
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("san.ext");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=reconciler test CA",
            "-keyout",
            &at("ca.key"),
            "-out",
            &at("ca.pem"),
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &at("server.key"),
            "-out",
            &at("server.csr"),
        ],
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &at("server.csr"),
            "-CA",
            &at("ca.pem"),
            "-CAkey",
            &at("ca.key"),
            "-CAcreateserial",
            "-extfile",
            &at("san.ext"),
            "-out",
            &at("server.pem"),
        ],
    ];
    for args in steps {
        let out = super::mariadb::run("openssl", args, &[]).await;
        assert_eq!(out.code, 0, "openssl {args:?}: {}", out.stderr);
    }
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
    if let Some((uid, gid)) = run_as() {
        std::os::unix::fs::chown(&key, Some(uid), Some(gid)).expect("chown key");
    }
    (dir.join("server.pem"), key)
}

/// Starts the server on loopback and returns it with its TCP port once it
/// accepts connections. Like MariaDB it is offered ports below the
/// ephemeral range until it binds one (it exits when the port is taken), so
/// the server that answers owns its port ([`start_on_offered_port`]).
async fn start_server(dir: &Path, data: &Path, settings: &[String]) -> (Child, u16) {
    let socket_dir = dir.display().to_string();
    let spawn = |port: u16| {
        let log_file = std::fs::File::create(log_path(dir)).expect("log");
        program("postgres")
            .args([
                "-D",
                &data.display().to_string(),
                "-p",
                &port.to_string(),
                "-k",
                &socket_dir,
                "-c",
                "listen_addresses=127.0.0.1",
                // Test data: speed over durability across an OS crash.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                // Small and without /dev/shm, so many run side by side.
                "-c",
                "shared_buffers=16MB",
                "-c",
                "dynamic_shared_memory_type=mmap",
                "-c",
                "max_connections=200",
            ])
            .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start postgres")
    };
    // Asked on the socket in this server's own directory, which exists
    // only once this server has bound the port: another cluster holding
    // the TCP port cannot answer for it.
    let ready = async |port: u16| {
        let ready = run(
            "pg_isready",
            &["-h", &socket_dir, "-p", &port.to_string(), "-U", USER],
        )
        .await;
        ready.code == 0
    };
    start_on_offered_port(
        "PostgreSQL",
        spawn,
        ready,
        |log| log.contains("could not bind") || log.contains("could not create listen"),
        || std::fs::read_to_string(log_path(dir)).unwrap_or_default(),
    )
    .await
}
