//! Benchmark: Matrix rooms on a real Synapse. `--users` directory users in
//! one group that lists `--rooms` rooms; a cold sweep (every membership
//! made) and an in-sync sweep (nothing to do). Reports wall time and the
//! Synapse calls by kind, counted by the matrix-agent's own Synapse client
//! (the agent library is served from this process so its counters can be
//! read; the coordinator is the real binary).
//!
//! bash scripts/lib/synapse.sh && cargo build --release --workspace --bins
//! target/release/bench-matrix [--users 1000 --rooms 50 --join invite]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use matrix_agent::{MatrixApi, SynapseClient};
use reconciler_proto::agent::matrix_agent_server::MatrixAgentServer;
use reconciler_runtime::agent::{AgentEndpoint, bind_agent};
use reconciler_runtime::listen::ConnectionLimits;
use reconciler_runtime::secrets::Secret;
use reconciler_testkit::harness::stack_tokens::AGENT_TOKEN;
use reconciler_testkit::harness::{RoomSpec, Stack, StackOptions, Synapse};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 50)]
    rooms: usize,
    /// `invite` or `force`.
    #[arg(long, default_value = "invite")]
    join: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let setup = Instant::now();
    let synapse = Synapse::start().await;
    let bot = synapse.register("reconciler", true).await;
    let mut rooms = Vec::new();
    let mut room_ids = Vec::new();
    for i in 0..args.rooms {
        let spec = RoomSpec {
            alias: Some(format!("bench-{i}")),
            ..RoomSpec::default()
        };
        room_ids.push(synapse.create_room(&bot, spec).await);
        rooms.push(format!("#bench-{i}:{}", synapse.server_name()));
    }
    for i in 0..args.users {
        synapse.register(&format!("user{i}"), false).await;
    }
    let (client, agent_addr) = serve_agent(&synapse, &bot.access_token).await?;
    let stack = Stack::start(StackOptions {
        authentik_max_page_size: 100,
        job_timeout: Duration::from_secs(4 * 3600),
        coordinator_env: vec![("MATRIX_AGENT_URL".into(), format!("http://{agent_addr}"))],
        ..StackOptions::default()
    })
    .await;
    let group = stack.authentik.add_group(
        "everyone",
        json!({"reconciler": {"matrix": {"rooms": rooms, "join": args.join}}}),
    );
    for i in 0..args.users {
        let pk = stack
            .authentik
            .add_user(&format!("user{i}"), &format!("user{i}@example.com"));
        stack.authentik.add_member(&group, pk);
    }
    println!(
        "setup: {} users, {} rooms, join {} ({:.1?})",
        args.users,
        args.rooms,
        args.join,
        setup.elapsed()
    );

    for label in ["cold sweep", "in-sync sweep"] {
        let before = client.stats();
        let start = Instant::now();
        let job = stack.sweep().await;
        let wall = start.elapsed();
        let after = client.stats();
        let calls: BTreeMap<&str, u64> = after
            .calls
            .iter()
            .map(|(k, v)| (*k, v - before.calls.get(k).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = calls.values().sum();
        println!("\n{label}: {:.1?}, job {}", wall, job["state"]);
        println!("  Synapse calls: {total}");
        for (call, n) in &calls {
            println!("    {call}: {n}");
        }
        println!(
            "  429s waited out: {}",
            after.rate_limit_waits - before.rate_limit_waits
        );
        print_outcomes(&job);
    }
    let joined_or_invited = count_members(&synapse, &room_ids).await;
    println!(
        "\nmemberships in Synapse (joined + invited, reconciler bot excluded): {joined_or_invited} of {}",
        args.users * args.rooms
    );
    Ok(())
}

/// The matrix-agent library, served on a loopback port of this process, so
/// its Synapse client's call counters can be read.
async fn serve_agent(
    synapse: &Synapse,
    token: &str,
) -> anyhow::Result<(Arc<SynapseClient>, std::net::SocketAddr)> {
    let env = BTreeMap::from([
        ("MATRIX_HOMESERVER_URL", synapse.url()),
        ("MATRIX_ACCESS_TOKEN", token.to_owned()),
        ("AGENT_TOKEN", AGENT_TOKEN.to_owned()),
    ]);
    let config = matrix_agent::config::Config::from_lookup(|k| env.get(k).cloned())?;
    let client = Arc::new(SynapseClient::new(&config.client)?);
    let bot = client.whoami().await?;
    client.exempt_from_rate_limits(&bot).await?;
    let service = MatrixAgentServer::new(matrix_agent::service::MatrixAgent::new(client.clone()));
    let bound = bind_agent(
        "matrix-agent",
        service,
        AgentEndpoint {
            listen: ([127, 0, 0, 1], 0).into(),
            token: Secret::new(AGENT_TOKEN),
            limits: ConnectionLimits::grpc_from_lookup(|_: &str| None)
                .map_err(anyhow::Error::msg)?,
            // In process on loopback, read by this benchmark only.
            transport: reconciler_runtime::tls::ServerTransport::Insecure,
            health_listen: None,
        },
    )
    .await?;
    let addr = bound.local_addr();
    tokio::spawn(bound.serve(std::future::pending()));
    Ok((client, addr))
}

fn print_outcomes(job: &Value) {
    if let Some(outcomes) = job["summary"]["outcomes"].as_object() {
        for (what, n) in outcomes {
            println!("    {what}: {n}");
        }
    }
}

async fn count_members(synapse: &Synapse, rooms: &[String]) -> usize {
    let mut n = 0;
    for room in rooms {
        let state = synapse.state(room).await;
        n += state
            .iter()
            .filter(|e| e["type"] == "m.room.member")
            .filter(|e| {
                matches!(e["content"]["membership"].as_str(), Some("join" | "invite"))
                    && e["state_key"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("@user"))
            })
            .count();
    }
    n
}
