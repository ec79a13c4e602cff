//! A Nextcloud-shaped container (`reconciler-nextcloud-occ:test`, built by
//! `scripts/images.sh`) with the occ simulator bind-mounted as `php`, so
//! the nextcloud-agent's real `docker exec -u 33 … php occ …` path runs.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::process::Command;

use super::process::bin_dir;
use crate::occ_sim::State;

pub const OCC_IMAGE: &str = "reconciler-nextcloud-occ:test";

pub struct NextcloudContainer {
    pub name: String,
}

#[derive(Debug)]
pub struct Occ {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

async fn docker(args: &[&str]) -> Occ {
    let out = Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("run the docker CLI");
    Occ {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl NextcloudContainer {
    /// Starts the container with these Nextcloud users.
    pub async fn start(users: &[&str]) -> Self {
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
        let run = docker(&["run", "-d", "--name", &name, "-v", &mount, OCC_IMAGE]).await;
        assert_eq!(run.code, 0, "docker run: {run:?}");
        let container = Self { name };
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

    /// `php occ <args>` as www-data.
    pub async fn occ(&self, args: &[&str]) -> Occ {
        let mut all = vec!["exec", "-u", "33", self.name.as_str(), "php", "occ"];
        all.extend_from_slice(args);
        docker(&all).await
    }

    /// The simulator's whole state, passwords included (test-only).
    pub async fn state(&self) -> State {
        let out = docker(&["exec", &self.name, "cat", "/var/www/html/data/occ-sim.json"]).await;
        assert_eq!(out.code, 0, "read occ state: {out:?}");
        serde_json::from_str(&out.stdout).expect("occ state JSON")
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
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}
