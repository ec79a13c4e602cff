//! Commands run to their end and what they gave back: the machine's
//! `docker` CLI, which every container harness (Dovecot, Nextcloud, the
//! compose project) execs through, and the local servers' own tools.

use std::process::Output;

/// What one command run gave back.
#[derive(Debug)]
pub struct Exec {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Exec {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `docker <args>`, awaited.
pub async fn docker(args: &[&str]) -> Exec {
    tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("run the docker CLI")
        .into()
}

/// Removes container `name` if it is there, for a `Drop`: never panics,
/// since a panic while a failed test unwinds would abort every test.
pub fn remove_container(name: &str) {
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", name])
        .output();
}

/// `docker <args>`, blocking (for synchronous setup).
pub fn docker_blocking(args: &[&str]) -> Exec {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI")
        .into()
}
