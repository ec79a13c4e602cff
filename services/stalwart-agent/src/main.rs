//! stalwart-agent: see the crate docs and README. `stalwart-agent healthcheck` probes a running
//! one (the container image's `HEALTHCHECK`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::agent_main(
        "stalwart-agent",
        stalwart_agent::config::Config::from_env,
        stalwart_agent::run,
    )
    .await
}
