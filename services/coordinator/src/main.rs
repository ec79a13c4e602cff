//! coordinator: see the crate docs and README.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    reconciler_runtime::main(
        "coordinator",
        coordinator::config::Config::from_env,
        coordinator::app::run,
    )
    .await
}
