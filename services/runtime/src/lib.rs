//! What every reconciler process shares.
//!
//! - [`announce`]: each bound listener's address, written to `LISTEN_ADDR_FILE` (for listen addresses with port 0).
//! - [`telemetry`]: `tracing` setup, with OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`propagation`]: W3C trace context carried in gRPC metadata, both directions.
//! - [`grpc`]: the server scaffold every service uses (health, reflection v1 and v1alpha).
//! - [`agent`]: an agent's whole server start-up, [`agent::serve_agent`].
//! - [`locks`]: mutual exclusion per key, for the coordinator and every agent.
//! - [`outcome`]: outcome classes ↔ gRPC status codes, one table for every agent and the coordinator.
//! - `exec` (feature `exec`, agents only): commands in a container or locally.
//! - [`healthcheck`]: `<agent> healthcheck`, the agents' container health probe (`grpc.health.v1` on their own port).
//! - [`listen`]: listeners with a connection cap, handshake deadline and eviction, so idle connections cannot exhaust file descriptors.
//! - [`secrets`]: configuration secrets from `NAME` or `NAME_FILE`, and constant-time comparison.
//! - [`tls`]: mutual TLS between the coordinator and its agents (or explicit plaintext, `AGENT_INSECURE=true`).

pub mod agent;
pub mod announce;
pub mod auth;
#[cfg(feature = "exec")]
pub mod exec;
pub mod grpc;
pub mod healthcheck;
pub mod listen;
pub mod locks;
pub mod metrics;
pub mod outcome;
pub mod propagation;
pub mod secrets;
pub mod telemetry;
pub mod tls;

/// Installs the process-wide rustls crypto provider (ring). Every binary calls
/// this first, so no dependency can pick a different provider at random.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The body of every binary's `main`: the crypto provider, telemetry, the
/// configuration, then `run` until it returns. Errors are logged and
/// printed (for people starting the binary by hand), and exit non-zero.
pub async fn main<C, E, F>(
    name: &'static str,
    config: impl FnOnce() -> Result<C, E>,
    run: impl FnOnce(C) -> F,
) -> std::process::ExitCode
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    install_crypto_provider();
    let _telemetry = match telemetry::init(name) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{name}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match config() {
        Ok(config) => run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} stopped");
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// An agent binary's `main`: [`main`], except that `<agent> healthcheck
/// [ADDR]` probes the agent already running (the container `HEALTHCHECK`)
/// instead of starting one; see [`healthcheck`].
pub async fn agent_main<C, E, F>(
    name: &'static str,
    config: impl FnOnce() -> Result<C, E>,
    run: impl FnOnce(C) -> F,
) -> std::process::ExitCode
where
    E: std::fmt::Display,
    F: std::future::Future<Output = Result<(), E>>,
{
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(healthcheck::COMMAND) {
        // No telemetry and no configuration: the probe runs every few
        // seconds and must not need the agent's secrets.
        return healthcheck::run_agent_probe(name, args).await;
    }
    main(name, config, run).await
}
