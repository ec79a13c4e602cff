//! sogo-agent: see the crate docs and README.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    reconciler_runtime::install_crypto_provider();
    let _telemetry = match reconciler_runtime::telemetry::init("sogo-agent") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("sogo-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match sogo_agent::config::Config::from_env() {
        Ok(config) => sogo_agent::run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sogo-agent stopped");
            eprintln!("sogo-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
