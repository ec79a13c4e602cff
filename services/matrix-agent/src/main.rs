//! matrix-agent: see the crate docs and README. `matrix-agent healthcheck` probes a running
//! one (the container image's `HEALTHCHECK`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::agent_main(
        "matrix-agent",
        matrix_agent::config::Config::from_env,
        matrix_agent::run,
    )
    .await
}
