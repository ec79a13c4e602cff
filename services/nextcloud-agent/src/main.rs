//! nextcloud-agent: see the crate docs and README.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    reconciler_runtime::install_crypto_provider();
    let _telemetry = match reconciler_runtime::telemetry::init("nextcloud-agent") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("nextcloud-agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match nextcloud_agent::config::Config::from_env() {
        Ok(config) => nextcloud_agent::run(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "nextcloud-agent stopped");
            eprintln!("nextcloud-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
