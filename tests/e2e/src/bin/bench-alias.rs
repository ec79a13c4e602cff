//! Benchmark: the alias job (issue 12 item 4). One alias per group
//! (`{"reconciler": {"alias": ...}}` only; default 1,000 groups over
//! 10,000 users), made and then updated by the real coordinator and
//! mailcow-agent against the Mailcow simulator, each measured against a
//! small baseline script doing the same Mailcow writes by hand on a second,
//! identical simulator in the same run:
//!
//! - cold: our sweep against one `add/alias` per alias, in sequence;
//! - update (members added to `--changed` groups): our sweep against one
//!   `edit/alias` per changed alias, each followed by a re-listing of every
//!   alias (`get/alias/all`).
//!
//! Every Mailcow request costs `--request-cost-ms` outside the simulator's
//! lock (see `MailcowSim::set_request_cost`), for both sides.
//!
//! cargo build --release -p coordinator -p mailcow-agent -p reconciler-e2e --bins
//! target/release/bench-alias [--users N --groups N --changed N --request-cost-ms MS --concurrency N]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reconciler_testkit::authentik_sim::generate_alias_directory;
use reconciler_testkit::harness::{Stack, StackOptions};
use reconciler_testkit::mailcow_sim::{MailcowSim, MailcowSimConfig};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 1_000)]
    groups: usize,
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Groups that get a new member for the update run.
    #[arg(long, default_value_t = 200)]
    changed: usize,
    /// What each Mailcow request costs beside the simulator's own work.
    #[arg(long, default_value_t = 10)]
    request_cost_ms: u64,
    /// The agent's `MAILCOW_CONCURRENCY` (its default when not given).
    #[arg(long)]
    concurrency: Option<usize>,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// The baseline script.
    #[arg(long, default_value = "scripts/bench/mailcow-alias-baseline.py")]
    script: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

/// One measured run: wall time, Mailcow requests by kind, writes.
struct Run {
    seconds: f64,
    requests: u64,
    detail: String,
}

async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.script.exists(),
        "baseline script {} not found (run from the repository root)",
        args.script.display()
    );
    let cost = Duration::from_millis(args.request_cost_ms);
    // The agent starts with a clean environment: only what is passed here.
    let agent_env = args
        .concurrency
        .map(|n| ("MAILCOW_CONCURRENCY".to_owned(), n.to_string()))
        .into_iter()
        .collect();
    let stack = Stack::start(StackOptions {
        workers: 2,
        authentik_max_page_size: 100,
        job_timeout: Duration::from_secs(3600),
        agent_env,
        ..StackOptions::default()
    })
    .await;
    let generated = generate_alias_directory(
        &stack.authentik,
        args.users,
        args.groups,
        args.depth,
        args.seed,
    );
    // The baseline's Mailcow: the same domains and mailboxes, the same cost.
    let baseline = MailcowSim::start(MailcowSimConfig::default(), "127.0.0.1:0".parse()?).await?;
    for sim in [&stack.mailcow, &baseline] {
        for domain in &generated.domains {
            sim.add_domain(domain);
        }
        for mailbox in &generated.user_emails {
            sim.add_mailbox(mailbox);
        }
        sim.set_request_cost(cost);
    }
    let concurrency = args.concurrency.map_or_else(
        || format!("unset ({})", mailcow_agent::config::DEFAULT_CONCURRENCY),
        |n| n.to_string(),
    );

    // Cold.
    let ours_cold = sweep(&stack).await?;
    let made = goto_by_address(&stack.mailcow);
    anyhow::ensure!(
        made.len() == args.groups,
        "expected {} aliases after the cold sweep, found {}",
        args.groups,
        made.len()
    );
    let script_cold = script(&args, &baseline, "create", &made)?;
    anyhow::ensure!(
        goto_by_address(&baseline) == made,
        "the baseline made other aliases"
    );

    // Update: a member added to `changed` groups (and so to the aliases of
    // their ancestors too).
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut groups = generated.group_uuids.clone();
    groups.shuffle(&mut rng);
    for group in groups.iter().take(args.changed) {
        let user = generated.user_pks[rng.random_range(0..generated.user_pks.len())];
        stack.authentik.add_member(group, user);
    }
    let ours_update = sweep(&stack).await?;
    let updated = goto_by_address(&stack.mailcow);
    let changed: BTreeMap<String, Vec<String>> = updated
        .iter()
        .filter(|(address, goto)| made.get(*address) != Some(*goto))
        .map(|(a, g)| (a.clone(), g.clone()))
        .collect();
    let script_update = script(&args, &baseline, "update", &changed)?;
    anyhow::ensure!(
        goto_by_address(&baseline) == updated,
        "the baseline's aliases differ from ours after the update"
    );

    println!("## Alias job benchmark\n");
    println!(
        "Directory: {} users, {} groups (nested up to {} levels), one alias each, seed {}; \
         update: a member added to {} groups, {} aliases changed. Every Mailcow request \
         costs {} ms beside the simulator's work; MAILCOW_CONCURRENCY={concurrency}.\n",
        args.users,
        args.groups,
        args.depth,
        args.seed,
        args.changed,
        changed.len(),
        args.request_cost_ms,
    );
    println!("| run | reconciler | baseline script | ratio |");
    println!("|---|---|---|---|");
    for (label, ours, theirs, what) in [
        (
            "cold",
            &ours_cold,
            &script_cold,
            "one add/alias per alias, in sequence",
        ),
        (
            "update",
            &ours_update,
            &script_update,
            "edit/alias, then get/alias/all, per changed alias",
        ),
    ] {
        println!(
            "| {label} | {:.2} s, {} Mailcow requests ({}) | {:.2} s, {} requests ({what}) | {:.1}× |",
            ours.seconds,
            ours.requests,
            ours.detail,
            theirs.seconds,
            theirs.requests,
            theirs.seconds / ours.seconds,
        );
    }
    Ok(())
}

/// A sweep to completion, timed, with the Mailcow requests it made.
async fn sweep(stack: &Stack) -> anyhow::Result<Run> {
    stack.authentik.reset_counts();
    stack.mailcow.reset_counts();
    let start = Instant::now();
    let job = stack.sweep().await;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(job["state"] == "done", "sweep failed: {job}");
    let counts = stack.mailcow.counts();
    let detail = counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Run {
        seconds,
        requests: counts.values().sum(),
        detail: format!(
            "{detail}; {} Authentik requests; at most {} writes in flight",
            stack.authentik.request_count(),
            stack.mailcow.max_writes_in_flight()
        ),
    })
}

/// Each alias's goto list, by address.
fn goto_by_address(sim: &MailcowSim) -> BTreeMap<String, Vec<String>> {
    sim.aliases()
        .into_iter()
        .map(|a| {
            let mut goto = a.goto;
            goto.sort();
            (a.address, goto)
        })
        .collect()
}

/// Runs the baseline script in `mode` over `aliases` against `sim`.
fn script(
    args: &Args,
    sim: &MailcowSim,
    mode: &str,
    aliases: &BTreeMap<String, Vec<String>>,
) -> anyhow::Result<Run> {
    let file = std::env::temp_dir().join(format!("bench-alias-{mode}-{}.json", std::process::id()));
    let list: Vec<Value> = aliases
        .iter()
        .map(|(address, goto)| json!({"address": address, "goto": goto}))
        .collect();
    std::fs::write(&file, serde_json::to_vec(&list)?)?;
    let output = std::process::Command::new("python3")
        .arg(&args.script)
        .arg(mode)
        .arg(sim.base_url())
        .arg(&sim.config().rw_key)
        .arg(&file)
        .output()
        .context("running python3")?;
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(
        output.status.success(),
        "baseline {mode} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout)?;
    Ok(Run {
        seconds: report["seconds"].as_f64().context("seconds")?,
        requests: report["requests"].as_u64().context("requests")?,
        detail: String::new(),
    })
}
