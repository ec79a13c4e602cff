//! stalwart-agent: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "stalwart-agent",
        stalwart_agent::config::Config::from_env,
        stalwart_agent::run,
    )
    .await
}
