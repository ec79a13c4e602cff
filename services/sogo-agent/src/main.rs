//! sogo-agent: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "sogo-agent",
        sogo_agent::config::Config::from_env,
        sogo_agent::run,
    )
    .await
}
