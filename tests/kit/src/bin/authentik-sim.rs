//! A standalone Authentik API simulator for shell demos and manual testing.
//!
//! authentik-sim --listen 127.0.0.1:9000 --seed deploy/demo/authentik-seed.json

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use reconciler_testkit::authentik_sim::{AuthentikSim, AuthentikSimConfig, WebhookConfig};

#[derive(Parser)]
#[command(about = "Simulates Authentik's core users/groups API over HTTP")]
struct Args {
    /// Port 0 takes a free port; the address is printed and, when
    /// `LISTEN_ADDR_FILE` is set, written there as `http <address>`.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// The API token clients must send as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "AUTHENTIK_SIM_TOKEN",
        default_value = "authentik-test-token"
    )]
    token: String,
    /// A JSON seed file, as `POST /__sim/seed` takes it.
    #[arg(long)]
    seed: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 20)]
    default_page_size: usize,
    #[arg(long, default_value_t = 100)]
    max_page_size: usize,
    /// Render groups like Authentik ≤ 2025.10 (`parent` instead of `parents`).
    #[arg(long)]
    legacy_parent: bool,
    /// POST a notification here for every write through the API.
    #[arg(long)]
    webhook_url: Option<String>,
    /// An extra webhook header, `Name: value`; repeatable.
    #[arg(long = "webhook-header", value_parser = parse_header)]
    webhook_headers: Vec<(String, String)>,
}

fn parse_header(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {raw:?}"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let args = Args::parse();
    let config = AuthentikSimConfig {
        token: args.token,
        default_page_size: args.default_page_size,
        max_page_size: args.max_page_size,
        legacy_parent: args.legacy_parent,
        webhook: args.webhook_url.map(|url| WebhookConfig {
            url,
            headers: args.webhook_headers,
        }),
    };
    let sim = AuthentikSim::start(config, args.listen).await?;
    if let Some(path) = args.seed {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading --seed {}", path.display()))?;
        let seed = serde_json::from_str(&text).context("--seed is not valid JSON")?;
        let created = sim.seed(seed).context("--seed")?;
        println!("seeded: {created}");
    }
    // With `--listen …:0`: the port it got, for whoever started it.
    reconciler_runtime::announce::announce("http", sim.addr())
        .context(reconciler_runtime::announce::LISTEN_ADDR_FILE)?;
    println!("authentik-sim listening on {}", sim.base_url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
