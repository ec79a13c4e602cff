//! matrix-agent: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "matrix-agent",
        matrix_agent::config::Config::from_env,
        matrix_agent::run,
    )
    .await
}
