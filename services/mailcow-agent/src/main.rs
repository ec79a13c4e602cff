//! mailcow-agent: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "mailcow-agent",
        mailcow_agent::config::Config::from_env,
        mailcow_agent::run,
    )
    .await
}
