//! A real Dovecot 2.3 in a container on this machine's Docker engine, built
//! by `scripts/images.sh` (the image `reconciler-dovecot:test`), plus a
//! minimal IMAP client to check what a grantee actually sees.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub use super::command::Exec;
use super::command::{docker, remove_container};

pub const DOVECOT_IMAGE: &str = "reconciler-dovecot:test";

pub struct DovecotContainer {
    pub name: String,
    users_dir: tempfile::TempDir,
    imap_port: u16,
}

impl DovecotContainer {
    /// Starts a fresh container named uniquely for this test process, with
    /// these `(address, password)` mailbox users. They are all written
    /// before start: Dovecot's passwd-file reload goes by mtime, which has
    /// one-second resolution, so later edits could go unnoticed.
    pub async fn start(users: &[(&str, &str)]) -> Self {
        Self::start_with(users, "").await
    }

    /// [`Self::start`] with `extra_config` appended to dovecot.conf before
    /// Dovecot starts (later settings override earlier ones).
    pub async fn start_with(users: &[(&str, &str)], extra_config: &str) -> Self {
        let check = docker(&["image", "inspect", DOVECOT_IMAGE]).await;
        assert_eq!(
            check.code, 0,
            "image {DOVECOT_IMAGE} is missing: run `bash scripts/images.sh` (scripts/test.sh does)"
        );
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "reconciler-test-dovecot-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let users_dir = tempfile::tempdir().expect("users dir");
        let passwd: String = users
            .iter()
            .map(|(address, password)| format!("{address}:{{PLAIN}}{password}::::::\n"))
            .collect();
        std::fs::write(users_dir.path().join("passwd"), passwd).expect("passwd file");
        let mount = format!("{}:/etc/dovecot/users.d", users_dir.path().display());
        let mut run_args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "-v",
            &mount,
            "-p",
            "127.0.0.1::143",
            DOVECOT_IMAGE,
        ];
        if !extra_config.is_empty() {
            run_args.extend([
                "sh",
                "-c",
                "printf '%s\\n' \"$1\" >> /etc/dovecot/dovecot.conf && exec /usr/sbin/dovecot -F",
                "sh",
                extra_config,
            ]);
        }
        let run = docker(&run_args).await;
        assert_eq!(run.code, 0, "docker run: {}", run.stderr);
        let port = docker(&["port", &name, "143/tcp"]).await;
        let imap_port = port
            .stdout
            .lines()
            .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no IMAP port for {name}: {port:?}"));
        let container = Self {
            name,
            users_dir,
            imap_port,
        };
        container.wait_ready().await;
        for (address, _) in users {
            // Touching the INBOX creates the maildir and the auto folders.
            let out = container
                .doveadm(&["mailbox", "status", "-u", address, "messages", "INBOX"])
                .await;
            assert_eq!(out.code, 0, "create {address}: {out:?}");
        }
        container
    }

    /// Waits for the IMAP greeting: Dovecot is up and configured.
    pub async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.imap_port)).await {
                let mut reader = BufReader::new(stream);
                let mut greeting = String::new();
                if reader.read_line(&mut greeting).await.is_ok() && greeting.starts_with("* OK") {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Dovecot in {} did not come up: {}",
                self.name,
                docker(&["logs", &self.name]).await.stderr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn users_file(&self) -> PathBuf {
        self.users_dir.path().join("passwd")
    }

    pub async fn create_folder(&self, owner: &str, folder: &str) {
        let out = self
            .doveadm(&["mailbox", "create", "-u", owner, "--", folder])
            .await;
        assert_eq!(out.code, 0, "create {folder}: {out:?}");
    }

    pub async fn doveadm(&self, args: &[&str]) -> Exec {
        let mut all = vec!["exec", self.name.as_str(), "doveadm"];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// `doveadm -f tab acl get`: identifier → rights on one folder.
    pub async fn acl(&self, owner: &str, folder: &str) -> Vec<(String, String)> {
        let out = self
            .doveadm(&["-f", "tab", "acl", "get", "-u", owner, "--", folder])
            .await;
        assert_eq!(out.code, 0, "acl get {folder}: {out:?}");
        out.stdout
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some((f.next()?.to_owned(), f.nth(1)?.to_owned()))
            })
            .collect()
    }

    /// Replaces `doveadm` in the container with a wrapper that logs each
    /// run's arguments, so a test counts the doveadm processes started.
    pub async fn count_doveadm_runs(&self) {
        let wrapper =
            "#!/bin/sh\necho \"$*\" >> /tmp/doveadm-runs\nexec /usr/bin/doveadm.real \"$@\"\n";
        let out = self
            .sh(
                "mv /usr/bin/doveadm /usr/bin/doveadm.real && printf '%s' \"$1\" > /usr/bin/doveadm \
                 && chmod 755 /usr/bin/doveadm",
                &[wrapper],
            )
            .await;
        assert_eq!(out.code, 0, "doveadm wrapper: {out:?}");
        self.reset_doveadm_runs().await;
    }

    /// The argument lines of every doveadm run since the last reset.
    pub async fn doveadm_runs(&self) -> Vec<String> {
        let out = self.sh("cat /tmp/doveadm-runs", &[]).await;
        out.stdout.lines().map(str::to_owned).collect()
    }

    pub async fn reset_doveadm_runs(&self) {
        let out = self.sh(": > /tmp/doveadm-runs", &[]).await;
        assert_eq!(out.code, 0, "{out:?}");
    }

    /// `sh -c script sh args…` in the container.
    pub async fn sh(&self, script: &str, args: &[&str]) -> Exec {
        let mut all = vec!["exec", self.name.as_str(), "sh", "-c", script, "sh"];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// The directory Dovecot keeps `folder` of `owner` in.
    pub async fn folder_dir(&self, owner: &str, folder: &str) -> String {
        let out = self
            .doveadm(&[
                "mailbox", "path", "-u", owner, "-t", "mailbox", "--", folder,
            ])
            .await;
        assert_eq!(out.code, 0, "mailbox path {folder}: {out:?}");
        out.stdout.trim_end().to_owned()
    }

    /// `doveadm acl rights -u <grantee> <mailbox>`: the effective rights.
    pub async fn rights(&self, grantee: &str, mailbox: &str) -> Exec {
        self.doveadm(&["acl", "rights", "-u", grantee, "--", mailbox])
            .await
    }

    pub async fn stop(&self) {
        let out = docker(&["stop", "-t", "5", &self.name]).await;
        assert_eq!(out.code, 0, "docker stop: {out:?}");
    }

    pub async fn start_again(&self) {
        let out = docker(&["start", &self.name]).await;
        assert_eq!(out.code, 0, "docker start: {out:?}");
        // The published port can change across a restart.
        self.wait_ready_after_restart().await;
    }

    async fn wait_ready_after_restart(&self) {
        let start = Instant::now();
        loop {
            let out = self
                .doveadm(&["mailbox", "list", "-u", "nobody@invalid"])
                .await;
            // 67 = unknown user: doveadm and the config are up.
            if out.code == 67 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "Dovecot did not restart: {out:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in over IMAP as `user` and returns a session.
    pub async fn imap(&self, user: &str, password: &str) -> Imap {
        let port = docker(&["port", &self.name, "143/tcp"]).await;
        let port: u16 = port
            .stdout
            .lines()
            .find_map(|l| l.rsplit(':').next()?.trim().parse().ok())
            .unwrap_or(self.imap_port);
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("IMAP connect");
        let mut imap = Imap {
            stream: BufReader::new(stream),
            tag: 0,
        };
        let mut greeting = String::new();
        imap.stream
            .read_line(&mut greeting)
            .await
            .expect("greeting");
        let (ok, lines) = imap
            .command(&format!("LOGIN \"{user}\" \"{password}\""))
            .await;
        assert!(ok, "IMAP LOGIN {user}: {lines:?}");
        imap
    }
}

impl Drop for DovecotContainer {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}

/// Just enough IMAP to LIST and SELECT as a grantee.
pub struct Imap {
    stream: BufReader<TcpStream>,
    tag: u32,
}

impl Imap {
    /// Sends a command; returns whether it ended in OK, and every line.
    pub async fn command(&mut self, command: &str) -> (bool, Vec<String>) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        self.stream
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await
            .expect("IMAP write");
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = self.stream.read_line(&mut line).await.expect("IMAP read");
            assert!(n > 0, "IMAP connection closed during {command}");
            let line = line.trim_end().to_owned();
            if let Some(rest) = line.strip_prefix(&format!("{tag} ")) {
                let ok = rest.starts_with("OK");
                lines.push(line);
                return (ok, lines);
            }
            lines.push(line);
        }
    }

    /// Mailbox names from `LIST "" "*"`.
    pub async fn list(&mut self) -> Vec<String> {
        let (ok, lines) = self.command("LIST \"\" \"*\"").await;
        assert!(ok, "LIST: {lines:?}");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("* LIST "))
            .filter_map(|l| l.rsplit(" \"/\" ").next())
            .map(|name| name.trim_matches('"').to_owned())
            .collect()
    }

    pub async fn select(&mut self, mailbox: &str) -> bool {
        self.command(&format!("SELECT \"{mailbox}\"")).await.0
    }
}
