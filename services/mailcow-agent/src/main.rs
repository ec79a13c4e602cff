//! mailcow-agent: see the crate docs and README. `mailcow-agent healthcheck` probes a running
//! one (the container image's `HEALTHCHECK`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::agent_main(
        "mailcow-agent",
        mailcow_agent::config::Config::from_env,
        mailcow_agent::run,
    )
    .await
}
