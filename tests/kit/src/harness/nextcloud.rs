//! A Nextcloud-shaped container (`reconciler-nextcloud-occ:test`, built by
//! `scripts/images.sh`) with the occ simulator bind-mounted as `php`, so
//! the nextcloud-agent's real `docker exec -u 33 … php occ …` path runs.
//!
//! With [`NextcloudContainer::start_with_database`] the Mail accounts live in
//! a real MariaDB `oc_mail_accounts` table, which the nextcloud-agent can read
//! with `NEXTCLOUD_DB_URL`. The container reaches MariaDB through its unix
//! socket, bind-mounted at `/run/mysqld/mysqld.sock` (where Debian's
//! MariaDB puts it, and how Mailcow's containers share theirs): the container
//! keeps its own network namespace, so it sees no other loopback service of
//! the host, and nothing has to listen beyond 127.0.0.1. The agent, on the
//! host like a real deployment's, connects over TCP on loopback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::process::Command;

use super::command::{Exec, docker, remove_container};
use super::mariadb::MariaDb;
use super::process::bin_dir;
use crate::occ_sim::{MariaDbAccounts, State, create_table_sql};

pub const OCC_IMAGE: &str = "reconciler-nextcloud-occ:test";

/// Nextcloud's database user and password in the tests.
pub const DB_USER: &str = "nextcloud";
pub const DB_PASSWORD: &str = "nextcloud-test-pw";
const DB_NAME: &str = "nextcloud";
const SOCKET_IN_CONTAINER: &str = "/run/mysqld/mysqld.sock";

pub struct NextcloudContainer {
    pub name: String,
    /// What the nextcloud-agent is given as `NEXTCLOUD_DB_URL`, when the
    /// accounts live in MariaDB.
    db_url: Option<String>,
}

/// What one `occ` run (a `docker exec`) gave back.
pub type Occ = Exec;

impl NextcloudContainer {
    /// Starts the container with these Nextcloud users.
    pub async fn start(users: &[&str]) -> Self {
        Self::start_container(users, &[], None).await
    }

    /// Starts the container with its Mail accounts in `mariadb`: a database
    /// `nextcloud` with Nextcloud Mail's `oc_mail_accounts` table, and a
    /// user for occ (over the socket) and for the agent (over TCP).
    pub async fn start_with_database(users: &[&str], mariadb: &MariaDb) -> Self {
        mariadb
            .root_sql(&format!(
                "CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
                 CREATE USER '{DB_USER}'@'localhost' IDENTIFIED BY '{DB_PASSWORD}';
                 CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';
                 GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'localhost';
                 GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';
                 USE {DB_NAME};
                 {};",
                create_table_sql("oc_")
            ))
            .await;
        let socket = format!("{}:{SOCKET_IN_CONTAINER}", mariadb.socket().display());
        let occ_url = format!(
            "OCC_SIM_DB_URL=mysql://{DB_USER}:{DB_PASSWORD}@localhost/{DB_NAME}?socket={SOCKET_IN_CONTAINER}"
        );
        let agent_url = format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/{DB_NAME}",
            mariadb.port
        );
        Self::start_container(users, &["-v", &socket, "-e", &occ_url], Some(agent_url)).await
    }

    async fn start_container(users: &[&str], extra: &[&str], db_url: Option<String>) -> Self {
        let check = docker(&["image", "inspect", OCC_IMAGE]).await;
        assert_eq!(
            check.code, 0,
            "image {OCC_IMAGE} is missing: run `bash scripts/images.sh` (scripts/test.sh does)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "reconciler-test-nextcloud-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let occ = bin_dir().join("occ-sim");
        assert!(
            occ.exists(),
            "{} is missing: cargo build --workspace --bins",
            occ.display()
        );
        let mount = format!("{}:/usr/local/bin/php:ro", occ.display());
        let mut args = vec!["run", "-d", "--name", &name, "-v", &mount];
        args.extend_from_slice(extra);
        args.push(OCC_IMAGE);
        let run = docker(&args).await;
        assert_eq!(run.code, 0, "docker run: {run:?}");
        let container = Self { name, db_url };
        for user in users {
            container.add_user(user).await;
        }
        container
    }

    /// A Nextcloud user, as `occ user:add` makes one.
    pub async fn add_user(&self, user: &str) {
        let out = docker(&[
            "exec",
            "-u",
            "33",
            "-e",
            "OC_PASS=test-password",
            &self.name,
            "php",
            "occ",
            "user:add",
            "--password-from-env",
            "--",
            user,
        ])
        .await;
        assert_eq!(out.code, 0, "user:add {user}: {out:?}");
    }

    /// Many Nextcloud users at once, written into the simulator's state
    /// file (one `user:add` each would cost a `docker exec` per user); for
    /// benchmarks that need thousands.
    pub async fn seed_users(&self, users: &[String]) {
        let mut state = self.state().await;
        state.users.extend(users.iter().cloned());
        if self.db_url.is_some() {
            state.accounts.clear(); // They live in the table.
        }
        let text = serde_json::to_vec_pretty(&state).expect("state serializes");
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                "-u",
                "33",
                &self.name,
                "sh",
                "-c",
                "cat > /var/www/html/data/occ-sim.json",
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run the docker CLI");
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&text).await.expect("write the state");
        }
        let status = child.wait().await.expect("docker exec");
        assert!(status.success(), "seed users: {status}");
    }

    /// `php occ <args>` as www-data.
    pub async fn occ(&self, args: &[&str]) -> Occ {
        let mut all = vec!["exec", "-u", "33", self.name.as_str(), "php", "occ"];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// `NEXTCLOUD_DB_URL` for the agent (with [`Self::start_with_database`]).
    pub fn db_url(&self) -> Option<&str> {
        self.db_url.as_deref()
    }

    /// The simulator's whole state, passwords included (test-only); the
    /// accounts from the table when they live in MariaDB.
    pub async fn state(&self) -> State {
        let out = docker(&[
            "exec",
            &self.name,
            "sh",
            "-c",
            "cat /var/www/html/data/occ-sim.json 2>/dev/null || true",
        ])
        .await;
        assert_eq!(out.code, 0, "read occ state: {out:?}");
        // No file until the first command: the simulator's empty state.
        let mut state: State = if out.stdout.trim().is_empty() {
            State::default()
        } else {
            serde_json::from_str(&out.stdout).expect("occ state JSON")
        };
        if let Some(url) = self.db_url.clone() {
            // The store blocks (it is occ's); off the async runtime.
            state.accounts = tokio::task::spawn_blocking(move || {
                MariaDbAccounts::connect(&url, "oc_")
                    .and_then(|mut accounts| accounts.all())
                    .map_err(|e| e.0)
            })
            .await
            .expect("read the accounts table")
            .expect("the accounts table answers");
        }
        state
    }

    /// From now on every occ call spends `ms` milliseconds booting first
    /// (a real Nextcloud spends 0.3–1.5 s per call).
    pub async fn set_boot_ms(&self, ms: u64) {
        let script = format!("echo {ms} > /var/www/html/data/occ-sim-boot-ms");
        let out = docker(&["exec", "-u", "33", &self.name, "sh", "-c", &script]).await;
        assert_eq!(out.code, 0, "set the boot time: {out:?}");
    }

    /// occ calls so far, by command (`mail:account:export` → n).
    pub async fn calls(&self) -> BTreeMap<String, usize> {
        let out = docker(&[
            "exec",
            &self.name,
            "sh",
            "-c",
            "cat /var/www/html/data/occ-sim-calls.log 2>/dev/null || true",
        ])
        .await;
        assert_eq!(out.code, 0, "read the occ call log: {out:?}");
        let mut calls = BTreeMap::new();
        for command in out.stdout.lines() {
            *calls.entry(command.to_owned()).or_default() += 1;
        }
        calls
    }

    /// Forgets the calls so far.
    pub async fn reset_calls(&self) {
        let out = docker(&[
            "exec",
            "-u",
            "33",
            &self.name,
            "sh",
            "-c",
            ": > /var/www/html/data/occ-sim-calls.log",
        ])
        .await;
        assert_eq!(out.code, 0, "reset the occ call log: {out:?}");
    }

    pub async fn maintenance(&self, on: bool) {
        let out = self
            .occ(&["maintenance:mode", if on { "--on" } else { "--off" }])
            .await;
        assert_eq!(out.code, 0, "{out:?}");
    }
}

impl Drop for NextcloudContainer {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}
