//! coordinator: serves (README), or with `plan` / `explain` asks a running
//! coordinator, or with `certs` makes mutual-TLS certificates
//! (`coordinator --help`).

use clap::Parser;
use coordinator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        None | Some(Command::Serve) => {
            reconciler_runtime::main(
                "coordinator",
                coordinator::config::Config::from_env,
                coordinator::app::run,
            )
            .await
        }
        Some(command) => {
            reconciler_runtime::install_crypto_provider();
            coordinator::cli::run(command).await
        }
    }
}
