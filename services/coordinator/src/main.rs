//! coordinator: see the crate docs and README.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    reconciler_runtime::install_crypto_provider();
    let _telemetry = match reconciler_runtime::telemetry::init("coordinator") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("coordinator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match coordinator::config::Config::from_env() {
        Ok(config) => coordinator::app::run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "coordinator stopped");
            ExitCode::FAILURE
        }
    }
}
