//! Benchmark: how big the state DB grows when every change keeps failing.
//! `--users` users, each granted send-as on one of `--mailboxes` shared
//! mailboxes, in a domain whose quota is over-allocated, so Mailcow refuses
//! every mailbox edit (`mailbox_quota_left_exceeded`) forever.
//!
//! Two runs of the real coordinator and mailcow-agent: one with
//! `FAILURE_BACKOFF_SECONDS=0`, so every sweep re-sends every change (what
//! one failing attempt adds to the DB), and one with the default backoff
//! (what a sweep adds while every change waits out its backoff). A week of
//! 15-minute sweeps is then the first sweep, plus each object's attempts in
//! a week under the backoff (doubling from 15 min, capped at a day), plus
//! 672 sweeps' own rows.
//!
//! cargo build --release --workspace --bins
//! target/release/bench-state-size [--users 10000 --mailboxes 100]

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    #[arg(long, default_value_t = 100)]
    mailboxes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

/// The state DB's bytes on disk: the file and its write-ahead log.
fn size(db: &Path) -> u64 {
    let file = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    file(db) + file(&db.with_extension("db-wal"))
}

/// A world where every change fails; returns (after the first sweep,
/// added by each of the next `sweeps`).
async fn failing_world(args: &Args, backoff_seconds: &str, sweeps: usize) -> (u64, Vec<u64>, u64) {
    let stack = Stack::start(StackOptions {
        authentik_max_page_size: 100,
        job_timeout: Duration::from_secs(3600),
        coordinator_env: vec![("FAILURE_BACKOFF_SECONDS".into(), backoff_seconds.into())],
        ..StackOptions::default()
    })
    .await;
    let m = &stack.mailcow;
    m.add_domain("example.com");
    let a = &stack.authentik;
    let mut groups = Vec::new();
    for i in 0..args.mailboxes {
        let shared = format!("shared{i}@example.com");
        m.add_mailbox(&shared);
        groups.push(a.add_group(
            &format!("team{i}"),
            json!({"reconciler": {"shared_mailbox": shared, "send_as": true}}),
        ));
    }
    for i in 0..args.users {
        let email = format!("user{i}@example.com");
        m.add_mailbox(&email);
        let pk = a.add_user(&format!("user{i}"), &email);
        a.add_member(&groups[i % groups.len()], pk);
    }
    // Over-allocated: every mailbox edit is refused from now on.
    m.set_domain_limits("example.com", 100_000, 1);
    let db = stack.state_db();
    let before = size(&db);
    let first = stack.sweep().await;
    let failed = first["summary"]["permanent_failures"].as_u64().unwrap_or(0);
    let after_first = size(&db) - before;
    let mut added = Vec::new();
    for _ in 0..sweeps {
        let at = size(&db);
        stack.sweep().await;
        added.push(size(&db).saturating_sub(at));
    }
    (after_first, added, failed)
}

/// Attempts one object makes in `seconds` of sweeps every `sweep`: the
/// first at once, then after each wait, doubling from `base` up to `cap`.
fn attempts(seconds: u64, sweep: u64, base: u64, cap: u64) -> u64 {
    let (mut t, mut wait, mut n) = (0, base, 0);
    while t < seconds {
        n += 1;
        // The next sweep at or after the wait ends.
        t += wait.div_ceil(sweep) * sweep;
        wait = (wait * 2).min(cap);
    }
    n
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (first, retried, failed) = failing_world(&args, "0", 2).await;
    let (_, waiting, _) = failing_world(&args, "900", 3).await;
    let per_attempt = retried.iter().sum::<u64>() / retried.len() as u64;
    let per_sweep = waiting.iter().sum::<u64>() / waiting.len() as u64;
    let week = 7 * 86_400;
    let n = attempts(week, 900, 900, 86_400);
    let sweeps = week / 900;
    let total = first + (n - 1) * per_attempt + sweeps * per_sweep;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!("## State DB under permanent failure\n");
    println!(
        "{} users, {} shared mailboxes, every mailbox edit refused ({failed} failing changes a sweep).\n",
        args.users, args.mailboxes
    );
    println!("| what | bytes | MiB |");
    println!("|---|---|---|");
    println!(
        "| first sweep (every change fails once) | {first} | {:.1} |",
        mib(first)
    );
    println!(
        "| one more attempt of every change (backoff 0), mean of {} | {per_attempt} | {:.1} |",
        retried.len(),
        mib(per_attempt)
    );
    println!(
        "| one sweep while every change backs off, mean of {} | {per_sweep} | {:.2} |",
        waiting.len(),
        mib(per_sweep)
    );
    println!(
        "| a week of 15-minute sweeps: first + {} more attempts + {sweeps} sweeps | {total} | {:.1} |",
        n - 1,
        mib(total)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_double_to_a_day() {
        // 0, 15m, 45m, 1h45, 3h45, 7h45, 15h45, 31h45, then daily.
        assert_eq!(attempts(86_400, 900, 900, 86_400), 7);
        assert_eq!(attempts(7 * 86_400, 900, 900, 86_400), 13);
    }
}
