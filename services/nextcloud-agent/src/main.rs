//! nextcloud-agent: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "nextcloud-agent",
        nextcloud_agent::config::Config::from_env,
        nextcloud_agent::run,
    )
    .await
}
