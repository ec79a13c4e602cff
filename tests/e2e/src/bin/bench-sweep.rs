//! Benchmark: a cold sweep and an in-sync sweep over a generated directory
//! (default 10,000 users, 1,000 groups nested up to 3 levels, 300 shared
//! mailboxes), with the real coordinator and mailcow-agent binaries against
//! the simulators. Prints a Markdown report: wall time, API calls by kind,
//! peak RSS of both binaries.
//!
//! cargo build --release --workspace --bins
//! target/release/bench-sweep [--users N --groups N --mailboxes N]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser;
use reconciler_testkit::authentik_sim::{GeneratedDirectory, generate_directory};
use reconciler_testkit::harness::{Stack, StackOptions, env_pair};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    #[arg(long, default_value_t = 300)]
    mailboxes: usize,
    #[arg(long, default_value_t = 3)]
    depth: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Single-user webhooks sent one after another after the in-sync
    /// sweep, each after moving its user into one more group.
    #[arg(long, default_value_t = 100)]
    webhooks: usize,
    /// The coordinator's DIRECTORY_MAX_AGE_SECONDS; 0 makes every webhook
    /// read the whole directory (the baseline before issue 12).
    #[arg(long, default_value_t = 900)]
    directory_max_age: u64,
    /// More coordinator environment, `NAME=VALUE` (repeatable), e.g.
    /// `MALLOC_ARENA_MAX=1` (what the shipped image and unit set).
    #[arg(long = "coordinator-env", value_parser = env_pair)]
    coordinator_env: Vec<(String, String)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        workers: 2,
        authentik_max_page_size: 100,
        job_timeout: std::time::Duration::from_secs(3600),
        coordinator_env: std::iter::once((
            "DIRECTORY_MAX_AGE_SECONDS".to_owned(),
            args.directory_max_age.to_string(),
        ))
        .chain(args.coordinator_env)
        .collect(),
        ..StackOptions::default()
    })
    .await;
    let generated = generate_directory(
        &stack.authentik,
        args.users,
        args.groups,
        args.mailboxes,
        args.depth,
        args.seed,
    );
    for domain in &generated.domains {
        stack.mailcow.add_domain(domain);
    }
    for mailbox in generated
        .user_emails
        .iter()
        .chain(&generated.shared_mailboxes)
    {
        stack.mailcow.add_mailbox(mailbox);
    }

    println!("## Sweep benchmark\n");
    println!(
        "Directory: {} users, {} groups (nested up to {} levels), {} shared mailboxes, seed {}.\n",
        args.users, args.groups, args.depth, args.mailboxes, args.seed
    );
    println!("| sweep | wall time | result | Authentik calls | Mailcow calls by kind |");
    println!("|---|---|---|---|---|");
    for label in ["cold", "in-sync"] {
        stack.authentik.reset_counts();
        stack.mailcow.reset_counts();
        let start = Instant::now();
        let job = stack.sweep().await;
        let elapsed = start.elapsed();
        let summary = &job["summary"];
        let outcomes = summary["outcomes"].as_object().cloned().unwrap_or_default();
        let applied: u64 = outcomes.values().filter_map(|v| v.as_u64()).sum();
        let calls: BTreeMap<String, u64> = stack.mailcow.counts();
        let calls = calls
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("<br>");
        println!(
            "| {label} | {:.2} s | {} ({applied} steps, {} writes) | {} | {calls} |",
            elapsed.as_secs_f64(),
            job["state"].as_str().unwrap_or("?"),
            stack.mailcow.write_count(),
            stack.authentik.request_count(),
        );
    }
    webhooks(&stack, &generated, args.webhooks).await;
    println!();
    println!("| process | peak RSS (VmHWM) |");
    println!("|---|---|");
    for service in [&mut stack.coordinator, &mut stack.agent] {
        println!(
            "| {} | {} |",
            service.name,
            service.peak_rss().unwrap_or_else(|| "?".into())
        );
    }
    Ok(())
}

/// Webhook to applied: each user joins one more group, then one webhook
/// names them; the time runs from the POST to the job being done. Jobs are
/// polled every 2 ms, so the figures carry up to 2 ms of polling.
async fn webhooks(stack: &Stack, generated: &GeneratedDirectory, count: usize) {
    if count == 0 {
        return;
    }
    stack.authentik.reset_counts();
    stack.mailcow.reset_counts();
    let mut latencies = Vec::with_capacity(count);
    let users = &generated.user_pks;
    let groups = &generated.group_uuids;
    for i in 0..count {
        let pk = users[(i * 7919) % users.len()];
        let group = &groups[(i * 104_729) % groups.len()];
        stack.authentik.add_member(group, pk);
        let start = Instant::now();
        let (status, reply) = stack
            .webhook(&Stack::user_event(pk, &format!("bench-{i}")))
            .await;
        assert_eq!(status, 202, "{reply}");
        let id = reply["job_id"].as_i64().expect("job_id");
        loop {
            let job = stack.job(id).await;
            match job["state"].as_str() {
                Some("done") => break,
                Some("failed") => panic!("webhook job failed: {job}"),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let requests = stack.authentik.request_count();
    println!();
    println!(
        "| webhooks | Authentik requests (per webhook) | Mailcow writes | webhook to applied p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {count} | {requests} ({:.2}) | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        requests as f64 / count as f64,
        stack.mailcow.write_count(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        latencies.last().expect("one").as_secs_f64() * 1000.0,
    );
}
