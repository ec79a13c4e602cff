//! nextcloud-agent: see the crate docs and README. `nextcloud-agent healthcheck` probes a running
//! one (the container image's `HEALTHCHECK`).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::agent_main(
        "nextcloud-agent",
        nextcloud_agent::config::Config::from_env,
        nextcloud_agent::run,
    )
    .await
}
