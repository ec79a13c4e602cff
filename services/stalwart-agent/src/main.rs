//! stalwart-agent: for now it loads its configuration, discovers Stalwart's
//! JMAP session (which proves the URL, the API key and a 0.16+ server) and
//! exits; a configuration error exits non-zero. The gRPC service comes with
//! its contract (issue 11).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "stalwart-agent",
        stalwart_agent::config::Config::from_env,
        stalwart_agent::run,
    )
    .await
}
