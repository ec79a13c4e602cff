//! Real SOGo peers for the sogo-agent tests, from Debian's packages
//! (`mariadb-server`, `memcached`, `sogo` 5.8), started per test on
//! loopback (reference sogo-nextcloud.md A5): a private MariaDB with a
//! Mailcow-identical `sogo_user_profile`, a private memcached, `sogo-tool`
//! and, when a test needs it, `sogod` itself.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

use super::command::Exec;
use super::mariadb::{MariaDb, run};
use super::ports;

pub const DB_USER: &str = "sogo";
pub const DB_PASSWORD: &str = "sogo-test-pw";

pub struct SogoPeers {
    dir: tempfile::TempDir,
    mariadb: MariaDb,
    memcached: Child,
    sogod: Option<std::process::Child>,
    pub mysql_port: u16,
    pub memcached_port: u16,
    /// Known once [`SogoPeers::start_sogod`] has run.
    sogod_port: Option<u16>,
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

impl SogoPeers {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        // sogod runs as the `sogo` user and must read its config.
        chmod(dir.path(), 0o755);
        let (mariadb, (memcached, memcached_port)) =
            tokio::join!(MariaDb::start(), start_memcached(dir.path()));
        let mysql_port = mariadb.port;
        let peers = Self {
            dir,
            mariadb,
            memcached,
            sogod: None,
            mysql_port,
            memcached_port,
            sogod_port: None,
        };
        peers
            .root_sql(&format!(
                "CREATE DATABASE sogo CHARACTER SET utf8mb4;
                 CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
                 GRANT ALL ON sogo.* TO '{DB_USER}'@'127.0.0.1';
                 CREATE TABLE sogo.sogo_user_profile (c_uid VARCHAR(255) NOT NULL PRIMARY KEY,
                   c_defaults LONGTEXT, c_settings LONGTEXT)
                   ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 ROW_FORMAT=DYNAMIC;
                 CREATE TABLE sogo.sogo_users (c_uid VARCHAR(255) NOT NULL PRIMARY KEY,
                   c_name VARCHAR(255) NOT NULL, c_password VARCHAR(255) NOT NULL DEFAULT '',
                   c_cn VARCHAR(255), mail VARCHAR(255) NOT NULL);"
            ))
            .await;
        peers.write_sogo_config();
        peers
    }

    /// What the sogo-agent is given (`SOGO_DB_URL`).
    pub fn db_url(&self) -> String {
        format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/sogo",
            self.mysql_port
        )
    }

    pub fn memcached_addr(&self) -> String {
        format!("127.0.0.1:{}", self.memcached_port)
    }

    /// Runs SQL as root and returns tab-separated rows.
    pub async fn root_sql(&self, sql: &str) -> String {
        self.mariadb.root_sql(sql).await
    }

    /// A SOGo user (SQL user source), password `pw`.
    pub async fn add_user(&self, uid: &str, cn: &str) {
        self.root_sql(&format!(
            "INSERT INTO sogo.sogo_users VALUES ('{uid}', '{uid}', '{{PLAIN}}pw', '{cn}', '{uid}')"
        ))
        .await;
    }

    /// The raw `c_settings` of a row; `None` without a row or for NULL.
    pub async fn settings(&self, uid: &str) -> Option<String> {
        let out = self
            .root_sql(&format!(
                "SELECT IFNULL(c_settings, '<NULL>') FROM sogo.sogo_user_profile WHERE c_uid = '{uid}'"
            ))
            .await;
        let text = out.strip_suffix('\n').unwrap_or(&out).to_owned();
        (!text.is_empty() && text != "<NULL>").then_some(text)
    }

    /// The exact bytes of a row's `c_settings` (read as hex, so nothing in
    /// the client's output escaping can hide a changed byte).
    pub async fn settings_exact(&self, uid: &str) -> Option<String> {
        let out = self
            .root_sql(&format!(
                "SELECT HEX(c_settings) FROM sogo.sogo_user_profile WHERE c_uid = '{uid}' AND c_settings IS NOT NULL"
            ))
            .await;
        let hex = out.trim();
        (!hex.is_empty()).then(|| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            String::from_utf8(bytes).expect("c_settings is UTF-8")
        })
    }

    pub async fn settings_json(&self, uid: &str) -> Value {
        self.settings(uid)
            .await
            .map(|s| serde_json::from_str(&s).expect("c_settings is JSON"))
            .unwrap_or(Value::Null)
    }

    /// Writes a row as SOGo (or a person) would.
    pub async fn put_settings(&self, uid: &str, settings: &str) {
        let escaped = settings.replace('\\', "\\\\").replace('\'', "\\'");
        self.root_sql(&format!(
            "INSERT INTO sogo.sogo_user_profile (c_uid, c_defaults, c_settings) VALUES ('{uid}', NULL, '{escaped}')
             ON DUPLICATE KEY UPDATE c_settings = VALUES(c_settings)"
        ))
        .await;
    }

    /// MariaDB's count of UPDATE and INSERT statements so far.
    pub async fn write_statements(&self) -> u64 {
        let out = self
            .root_sql(
                "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS
                 WHERE VARIABLE_NAME IN ('COM_UPDATE', 'COM_INSERT')",
            )
            .await;
        out.trim().parse().unwrap_or(0)
    }

    fn config_file(&self) -> PathBuf {
        self.dir.path().join("GNUstep.conf")
    }

    /// SOGo's configuration, as the sogo user's GNUstep defaults in a
    /// private directory (`GNUSTEP_CONFIG_FILE` points there), so tests
    /// never touch /etc/sogo and can run side by side.
    fn write_sogo_config(&self) {
        let defaults = self.dir.path().join("GNUstep/Defaults");
        std::fs::create_dir_all(&defaults).expect("defaults dir");
        let db = format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/sogo",
            self.mysql_port
        );
        let plist = format!(
            r#"{{
  SOGoProfileURL = "{db}/sogo_user_profile";
  OCSFolderInfoURL = "{db}/sogo_folder_info";
  OCSSessionsFolderURL = "{db}/sogo_sessions_folder";
  SOGoMemcachedHost = "127.0.0.1:{memcached}";
  SOGoCacheCleanupInterval = 900;
  SOGoTimeZone = UTC;
  SOGoMailDomain = "example.org";
  SOGoIMAPServer = "imap://127.0.0.1:1";
  SOGoUserSources = ({{
    type = sql; id = users;
    viewURL = "{db}/sogo_users";
    canAuthenticate = YES; isAddressBook = NO;
    userPasswordAlgorithm = plain; prependPasswordScheme = YES;
  }});
}}
"#,
            memcached = self.memcached_port
        );
        std::fs::write(defaults.join("sogod.plist"), plist).expect("sogod.plist");
        std::fs::write(
            self.config_file(),
            format!("GNUSTEP_USER_DEFAULTS_DIR={}\n", defaults.display()),
        )
        .expect("GNUstep.conf");
        for p in [self.dir.path().join("GNUstep"), defaults.clone()] {
            chmod(&p, 0o777);
        }
        chmod(&defaults.join("sogod.plist"), 0o644);
        chmod(&self.config_file(), 0o644);
    }

    /// `sogo-tool user-preferences get settings <uid> <key>`, as SOGo's
    /// own tool sees the profile (memcached first, then the database).
    pub async fn sogo_tool_get(&self, uid: &str, key: &str) -> Exec {
        let config = self.config_file().display().to_string();
        run(
            "runuser",
            &[
                "-u",
                "sogo",
                "--",
                "env",
                &format!("GNUSTEP_CONFIG_FILE={config}"),
                "sogo-tool",
                "user-preferences",
                "get",
                "settings",
                uid,
                key,
            ],
            &[],
        )
        .await
    }

    /// The `Mail` settings as `sogo-tool` prints them (`Mail: {…}`).
    pub async fn sogo_tool_mail(&self, uid: &str) -> Value {
        let out = self.sogo_tool_get(uid, "Mail").await;
        assert_eq!(out.code, 0, "sogo-tool get {uid}: {out:?}");
        let json = out
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("Mail: "))
            .unwrap_or_else(|| panic!("no `Mail:` line: {out:?}"));
        serde_json::from_str(json).expect("sogo-tool printed JSON")
    }

    /// Starts `sogod` (as the sogo user, in its own process group) on a
    /// port of the kernel's choosing, and returns once it answers HTTP.
    pub async fn start_sogod(&mut self) {
        let logs = self.dir.path().join("sogod");
        std::fs::create_dir_all(&logs).expect("log dir");
        chmod(&logs, 0o777);
        let config = self.config_file().display().to_string();
        let log = logs.join("sogod.log");
        let pid_file = logs.join("sogod.pid");
        let _ = std::fs::remove_file(&pid_file);
        let child = std::process::Command::new("runuser")
            .args([
                "-u",
                "sogo",
                "--",
                "env",
                &format!("GNUSTEP_CONFIG_FILE={config}"),
                "/usr/sbin/sogod",
                "-WOWorkersCount",
                "1",
                "-WOPort",
                "127.0.0.1:0",
                "-WONoDetach",
                "YES",
                "-WOLogFile",
                &log.display().to_string(),
                "-WOPidFile",
                &pid_file.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start sogod");
        self.sogod = Some(child);
        let sogod_log = || std::fs::read_to_string(&log).unwrap_or_default();
        let start = Instant::now();
        let deadline = Duration::from_secs(60);
        // sogod does not say which port it got; the kernel does: the
        // listening socket of the watchdog process (its pid file names it).
        let port = loop {
            let pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            if let Some(port) = pid.and_then(|pid| ports::listening_ports(pid).first().copied()) {
                break port;
            }
            assert!(
                start.elapsed() < deadline,
                "sogod did not listen: {}",
                sogod_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.sogod_port = Some(port);
        // Listening is not serving: a worker must be up.
        let client = reqwest::Client::new();
        loop {
            let ok = client
                .get(format!("http://127.0.0.1:{port}/SOGo/"))
                .send()
                .await
                .is_ok();
            if ok {
                return;
            }
            assert!(
                start.elapsed() < deadline,
                "sogod did not start: {}",
                sogod_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// sogod's base URL; it must have been started.
    fn sogod_base(&self) -> String {
        let port = self.sogod_port.expect("start_sogod first");
        format!("http://127.0.0.1:{port}/SOGo")
    }

    /// Logs in to sogod as `uid` and returns `Mail/mailAccounts`: the
    /// accounts and identities SOGo offers that user.
    pub async fn mail_accounts(&self, uid: &str) -> Value {
        // A connection per request: sogod may close a kept-alive one just
        // as the next request goes out on it, which fails that request
        // with an incomplete message (seen once in CI, on the request
        // after the login).
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let base = self.sogod_base();
        let login = client
            .post(format!("{base}/connect"))
            .json(&serde_json::json!({"userName": uid, "password": "pw", "rememberLogin": 0}))
            .send()
            .await
            .expect("SOGo login");
        assert!(
            login.status().is_success(),
            "login {uid}: {}",
            login.status()
        );
        let token = login
            .cookies()
            .find(|c| c.name() == "XSRF-TOKEN")
            .map(|c| c.value().to_owned())
            .expect("XSRF-TOKEN cookie");
        let response = client
            .get(format!("{base}/so/{uid}/Mail/mailAccounts"))
            .header("X-XSRF-TOKEN", token)
            .send()
            .await
            .expect("mailAccounts");
        assert!(
            response.status().is_success(),
            "mailAccounts: {}",
            response.status()
        );
        response.json().await.expect("mailAccounts JSON")
    }

    /// Identity emails SOGo offers `uid` in its first account.
    pub async fn identities(&self, uid: &str) -> Vec<String> {
        let accounts = self.mail_accounts(uid).await;
        accounts[0]["identities"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|i| i["email"].as_str().map(str::to_owned))
            .collect()
    }

    /// The value memcached holds under `key` (`<uid>+settings` is SOGo's
    /// cached copy of a row's `c_settings`), as SOGo would read it.
    pub async fn memcached_get(&self, key: &str) -> Option<String> {
        use async_memcached::AsciiProtocol;
        let mut client = async_memcached::Client::new(format!("tcp://{}", self.memcached_addr()))
            .await
            .expect("connect to memcached");
        let value = tokio::time::timeout(Duration::from_secs(10), client.get(key))
            .await
            .expect("memcached answers")
            .expect("memcached get");
        value
            .and_then(|v| v.data)
            .map(|d| String::from_utf8_lossy(&d).into_owned())
    }

    /// Stops MariaDB (for outage tests).
    pub async fn stop_mariadb(&mut self) {
        self.mariadb.stop().await;
    }
}

impl Drop for SogoPeers {
    fn drop(&mut self) {
        if let Some(mut sogod) = self.sogod.take() {
            // sogod's worker ignores SIGTERM; the whole group goes.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", sogod.id())])
                .output();
            let _ = sogod.wait();
        }
        let _ = self.memcached.start_kill();
    }
}

/// Starts memcached on a port of the kernel's choosing (`-p -1`) and returns
/// it with the port it announced in `MEMCACHED_PORT_FILENAME`.
async fn start_memcached(dir: &Path) -> (Child, u16) {
    let port_file = dir.join("memcached.ports");
    let mut memcached = Command::new("memcached")
        .args(["-u", "root", "-l", "127.0.0.1", "-p", "-1", "-U", "0"])
        .env("MEMCACHED_PORT_FILENAME", &port_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start memcached");
    let start = Instant::now();
    loop {
        // Written (by rename) once memcached listens.
        if let Some(port) = ports::memcached_port(&port_file) {
            return (memcached, port);
        }
        if let Ok(Some(status)) = memcached.try_wait() {
            panic!("memcached exited: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "memcached did not announce its port"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP gate in front of memcached, for the sogo-agent only (SOGo and the
/// test read the real one). Open, it forwards every connection. Stalled, it
/// accepts and reads but never answers and forwards nothing: a hung
/// memcached, whose cache keeps its (stale) entries. Freezing memcached
/// itself would not do: the commands queued meanwhile run once it thaws.
pub struct MemcachedGate {
    pub addr: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl MemcachedGate {
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gate");
        let addr = listener.local_addr().expect("gate addr").to_string();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let stalled = flag.load(Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if stalled {
                        // Swallow the commands until the client gives up.
                        let mut sink = [0u8; 4096];
                        while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
                    } else if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            addr,
            stalled,
            accept,
        }
    }

    /// New connections stall (`true`) or pass (`false`).
    pub fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for MemcachedGate {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
