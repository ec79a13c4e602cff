//! mailcow-agent: see the crate docs and README.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    reconciler_runtime::install_crypto_provider();
    let _telemetry = match reconciler_runtime::telemetry::init("mailcow-agent") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("mailcow-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match mailcow_agent::config::Config::from_env() {
        Ok(config) => mailcow_agent::run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mailcow-agent stopped");
            eprintln!("mailcow-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
