//! A standalone Stalwart 0.16 management API simulator for shell demos and
//! manual testing.
//!
//! stalwart-sim --listen 127.0.0.1:8082 --api-key DEMO-KEY --domain example.com

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use reconciler_testkit::stalwart_sim::{StalwartSim, StalwartSimConfig};

#[derive(Parser)]
#[command(
    about = "Simulates Stalwart 0.16's JMAP management API (x:Domain, x:Account, x:MailingList) over HTTP"
)]
struct Args {
    /// Port 0 takes a free port; the address is printed and, when
    /// `LISTEN_ADDR_FILE` is set, written there as `http <address>`.
    #[arg(long, default_value = "127.0.0.1:8082")]
    listen: SocketAddr,
    /// A secret clients send as `Authorization: Bearer` (repeatable).
    #[arg(long, env = "STALWART_SIM_API_KEY", value_delimiter = ',')]
    api_key: Vec<String>,
    /// The admin's HTTP Basic login.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    #[arg(
        long,
        env = "STALWART_SIM_ADMIN_PASSWORD",
        default_value = "Sim-Admin-Passw0rd!"
    )]
    admin_password: String,
    /// Behave like Stalwart before 0.16: no JMAP management.
    #[arg(long)]
    pre_0_16: bool,
    /// The base URL the session's `apiUrl` names (default: the listen address).
    #[arg(long)]
    public_url: Option<String>,
    /// Domains to create at start (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    domain: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    reconciler_runtime::install_crypto_provider();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let config = StalwartSimConfig {
        admin_user: args.admin_user,
        admin_password: args.admin_password,
        api_keys: args.api_key,
        management: !args.pre_0_16,
        public_url: args.public_url,
    };
    let sim = StalwartSim::start(config, args.listen).await?;
    for domain in &args.domain {
        sim.create(
            reconciler_testkit::stalwart_sim::ObjectType::Domain,
            serde_json::json!({ "name": domain }),
        )
        .map_err(|e| anyhow::anyhow!("--domain {domain}: {e}"))?;
    }
    // With `--listen …:0`: the port it got, for whoever started it.
    reconciler_runtime::announce::announce("http", sim.addr())
        .context(reconciler_runtime::announce::LISTEN_ADDR_FILE)?;
    println!("stalwart-sim listening on {}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
