//! sogo-agent: see the crate docs and README. `sogo-agent healthcheck` probes a running
//! one (the container image's `HEALTHCHECK`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::agent_main(
        "sogo-agent",
        sogo_agent::config::Config::from_env,
        sogo_agent::run,
    )
    .await
}
