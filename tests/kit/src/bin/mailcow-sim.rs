//! A standalone Mailcow API simulator for shell demos and manual testing.
//!
//! mailcow-sim --listen 127.0.0.1:8081 --api-key DEMO-KEY --seed deploy/demo/mailcow-seed.json

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use reconciler_testkit::mailcow_sim::{MailcowSim, MailcowSimConfig};

#[derive(Parser)]
#[command(about = "Simulates Mailcow's /api/v1 (aliases, sender_acl, app passwords) over HTTP")]
struct Args {
    /// Port 0 takes a free port; the address is printed and, when
    /// `LISTEN_ADDR_FILE` is set, written there as `http <address>`.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The read/write API key clients send as `X-API-Key`.
    #[arg(long, env = "MAILCOW_SIM_API_KEY")]
    api_key: String,
    /// An optional read-only API key.
    #[arg(long, env = "MAILCOW_SIM_API_KEY_READ_ONLY")]
    api_key_read_only: Option<String>,
    /// IPs or CIDRs allowed to use the keys, like `API_ALLOW_FROM`
    /// (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,::1")]
    allow_from: Vec<String>,
    /// Accept the keys from any address.
    #[arg(long)]
    skip_ip_check: bool,
    /// Behave like Mailcow before 2026-07a (no `sender_acl` in mailbox details).
    #[arg(long)]
    omit_sender_acl: bool,
    /// A JSON seed file, as `POST /__sim/seed` takes it.
    #[arg(long)]
    seed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let config = MailcowSimConfig {
        rw_key: args.api_key,
        ro_key: args.api_key_read_only,
        allow_from: args.allow_from,
        skip_ip_check: args.skip_ip_check,
        omit_sender_acl: args.omit_sender_acl,
    };
    let sim = MailcowSim::start(config, args.listen).await?;
    if let Some(path) = args.seed {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading --seed {}", path.display()))?;
        let seed = serde_json::from_str(&text).context("--seed is not valid JSON")?;
        let created = sim.seed(seed).context("--seed")?;
        eprintln!("seeded: {created}");
    }
    // With `--listen …:0`: the port it got, for whoever started it.
    reconciler_runtime::announce::announce("http", sim.addr())
        .context(reconciler_runtime::announce::LISTEN_ADDR_FILE)?;
    println!("mailcow-sim listening on {}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
