//! Running a command beside a target: inside its container through the
//! Docker API (bollard), or on this host for installs without containers.
//! Agents use this for `doveadm` and `occ`; only agents enable the `exec`
//! feature, so the coordinator never links a Docker client.

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures::StreamExt;

/// Why a command could not be run (not: why it failed; see the exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Docker unreachable, container missing or stopped, spawn failure.
    /// Worth retrying.
    #[error("{0}")]
    Unavailable(String),
    /// The runner itself is misconfigured.
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = ExecError> = std::result::Result<T, E>;

/// What a command printed and how it exited.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i64,
}

#[async_trait]
pub trait CommandRunner: Send + Sync {
    /// Runs `argv` (program first) beside Dovecot.
    async fn run(&self, argv: &[String]) -> Result<ExecOutput>;
}

/// `docker exec` into a container through the Docker API.
pub struct DockerExec {
    docker: Docker,
    container: String,
    /// `user`, `user:group`, `uid` or `uid:gid`; `None`: the image's user.
    user: Option<String>,
    working_dir: Option<String>,
}

impl DockerExec {
    /// Connects using `DOCKER_HOST` (unix://, tcp:// or http://), or the
    /// local socket when it is unset. Nothing is contacted until first use.
    pub fn new(
        container: String,
        user: Option<String>,
        working_dir: Option<String>,
    ) -> Result<Self> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| ExecError::Config(format!("DOCKER_HOST: {e}")))?;
        Ok(Self {
            docker,
            container,
            user,
            working_dir,
        })
    }
}

#[async_trait]
impl CommandRunner for DockerExec {
    async fn run(&self, argv: &[String]) -> Result<ExecOutput> {
        let started = std::time::Instant::now();
        let ran = self.run_in_container(argv).await;
        crate::metrics::process(argv, started.elapsed());
        ran
    }
}

impl DockerExec {
    async fn run_in_container(&self, argv: &[String]) -> Result<ExecOutput> {
        let unavailable = |e: bollard::errors::Error| {
            ExecError::Unavailable(format!("docker exec in {}: {e}", self.container))
        };
        let exec = self
            .docker
            .create_exec(
                &self.container,
                ExecConfig {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: self.user.clone(),
                    working_dir: self.working_dir.clone(),
                    ..Default::default()
                },
            )
            .await
            .map_err(unavailable)?;
        let mut out = ExecOutput::default();
        match self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(unavailable)?
        {
            StartExecResults::Attached { mut output, .. } => {
                // The stream is demultiplexed for us: stdout and stderr frames.
                while let Some(frame) = output.next().await {
                    match frame.map_err(unavailable)? {
                        LogOutput::StdOut { message } => {
                            out.stdout.push_str(&String::from_utf8_lossy(&message))
                        }
                        LogOutput::StdErr { message } => {
                            out.stderr.push_str(&String::from_utf8_lossy(&message))
                        }
                        _ => {}
                    }
                }
            }
            StartExecResults::Detached => {
                return Err(ExecError::Unavailable(
                    "docker exec detached unexpectedly".into(),
                ));
            }
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(unavailable)?;
        out.exit_code = inspect.exit_code.ok_or_else(|| {
            ExecError::Unavailable(format!(
                "docker exec in {} reported no exit code",
                self.container
            ))
        })?;
        Ok(out)
    }
}

/// Runs on this host: for Dovecot installed without containers.
pub struct LocalExec;

#[async_trait]
impl CommandRunner for LocalExec {
    async fn run(&self, argv: &[String]) -> Result<ExecOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| ExecError::Config("empty command".into()))?;
        let started = std::time::Instant::now();
        let output = tokio::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        crate::metrics::process(argv, started.elapsed());
        let output =
            output.map_err(|e| ExecError::Unavailable(format!("running {program}: {e}")))?;
        Ok(ExecOutput {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            // Killed by a signal: no code; report it as a temporary failure.
            exit_code: output.status.code().map_or(75, i64::from),
        })
    }
}
