//! Benchmark: webhook intake. `--rate` Authentik notifications a second
//! for `--seconds`, each about one of `--users` users, sent on a fixed
//! schedule (an open loop: a slow answer does not slow the sender down),
//! to the real coordinator's `POST /reconcile`. Reports accept latency
//! (p50, p99, max) and checks that nothing was lost: every 202 names a job
//! that exists in the state DB, new or deduplicated into a queued one.
//!
//! cargo build --release --workspace --bins
//! target/release/bench-webhook [--rate 500 --seconds 30 --users 1000 --authentik-cost-ms 0]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use clap::Parser;
use reconciler_testkit::harness::stack_tokens::WEBHOOK_TOKEN;
use reconciler_testkit::harness::{Stack, StackOptions, env_pair};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Coordinator workers running the jobs meanwhile (0: accept only).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Groups the users are spread over, each declaring an alias, so
    /// every job plans against a directory with grants in it.
    #[arg(long, default_value_t = 20)]
    groups: usize,
    /// What each Authentik request costs (see
    /// `AuthentikSim::set_request_cost`); 0 answers at once, so the jobs
    /// run as fast as this machine allows, beside the load generator.
    #[arg(long, default_value_t = 0)]
    authentik_cost_ms: u64,
    /// More coordinator environment, `NAME=VALUE` (repeatable), e.g.
    /// `MALLOC_ARENA_MAX=1` (what the shipped image and unit set).
    #[arg(long = "coordinator-env", value_parser = env_pair)]
    coordinator_env: Vec<(String, String)>,
    /// Send from the runtime the simulators serve on, as the load generator
    /// did before it had a thread of its own (to compare the harness).
    #[arg(long)]
    shared_runtime: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

/// One request's answer: latency, HTTP status, and the job id it named.
type Answer = (Duration, u16, Option<i64>);

/// The open-loop load: one POST every `interval`, each timed from send to
/// its answer's headers.
struct Schedule {
    url: String,
    interval: Duration,
    bodies: Vec<String>,
}

impl Schedule {
    async fn send(self) -> anyhow::Result<Vec<Answer>> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(self.bodies.len());
        for (n, body) in self.bodies.into_iter().enumerate() {
            // The schedule, not the answers, sets the pace.
            let due = start + self.interval.mul_f64(n as f64);
            tokio::time::sleep_until(due.into()).await;
            let (client, url) = (client.clone(), self.url.clone());
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("X-Authentik-Webhook-Token", WEBHOOK_TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let took = sent.elapsed();
                let (status, job) = match response {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let value: serde_json::Value = r.json().await.unwrap_or_default();
                        (status, value["job_id"].as_i64())
                    }
                    Err(_) => (0, None),
                };
                (took, status, job)
            }));
        }
        let mut answers = Vec::with_capacity(tasks.len());
        for task in tasks {
            answers.push(task.await?);
        }
        Ok(answers)
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        authentik_max_page_size: 100,
        workers: args.workers,
        coordinator_env: args.coordinator_env,
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    let pks: Vec<i64> = (0..args.users)
        .map(|i| {
            stack
                .authentik
                .add_user(&format!("user{i}"), &format!("user{i}@example.com"))
        })
        .collect();
    let groups: Vec<String> = (0..args.groups)
        .map(|g| {
            stack.authentik.add_group(
                &format!("team{g}"),
                serde_json::json!({"reconciler": {"alias": format!("team{g}@example.com")}}),
            )
        })
        .collect();
    for (i, pk) in pks.iter().enumerate() {
        stack.authentik.add_member(&groups[i % groups.len()], *pk);
    }
    if args.workers > 0 {
        // The sweep a running coordinator has made before webhooks arrive:
        // it leaves the directory snapshot webhooks patch.
        let sweep = stack.sweep().await;
        assert_eq!(sweep["state"], "done", "{sweep}");
    }
    stack.authentik.reset_counts();
    stack
        .authentik
        .set_request_cost(Duration::from_millis(args.authentik_cost_ms));
    let url = format!("{}/reconcile", stack.http_url);
    let bodies: Vec<String> = (0..args.rate * args.seconds)
        .map(|n| Stack::user_event(pks[n as usize % pks.len()], &format!("bench-{n}")).to_string())
        .collect();
    let total = bodies.len();
    let schedule = Schedule {
        url,
        interval: Duration::from_secs_f64(1.0 / args.rate as f64),
        bodies,
    };
    let start = Instant::now();
    let answers = if args.shared_runtime {
        schedule.send().await?
    } else {
        // The simulators serve on this process's runtime; a sender sharing
        // it would time their work too (an answer waits for a runtime
        // thread busy building a simulator's response before it is read).
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(schedule.send())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the load generator panicked"))??
    };
    let sending = start.elapsed();
    let mut latencies: Vec<Duration> = answers.iter().map(|a| a.0).collect();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let accepted = answers.iter().filter(|a| a.1 == 202).count();
    let jobs: BTreeSet<i64> = answers.iter().filter_map(|a| a.2).collect();
    // Nothing lost: every job a 202 named is in the state DB.
    let mut missing = 0;
    for id in &jobs {
        if stack.job(*id).await["id"].as_i64() != Some(*id) {
            missing += 1;
        }
    }
    // Every job run to its end, to count what the runs asked Authentik.
    if args.workers > 0 {
        for id in &jobs {
            let job = stack.wait_job(*id).await;
            assert_eq!(job["state"], "done", "{job}");
        }
    }
    let authentik = stack.authentik.request_count();
    println!("## Webhook intake\n");
    println!(
        "{} notifications at {}/s for {} s about {} users, {} workers running jobs, {} ms per Authentik request (sent in {:.1} s)\n",
        total,
        args.rate,
        args.seconds,
        args.users,
        args.workers,
        args.authentik_cost_ms,
        sending.as_secs_f64()
    );
    println!(
        "| accepted (202) | other answers | distinct jobs | jobs missing | Authentik requests (per job) | p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {accepted} | {} | {} | {missing} | {authentik} ({:.2}) | {:.2} ms | {:.2} ms | {:.2} ms |",
        answers.len() - accepted,
        jobs.len(),
        authentik as f64 / jobs.len().max(1) as f64,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    Ok(())
}
