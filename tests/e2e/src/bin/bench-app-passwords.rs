//! Benchmark: app password creates on one mailbox (issue 12 item 3). The
//! real mailcow-agent, called over gRPC the way the coordinator calls it
//! (Apply calls of 200 changes, one after another), creates `--creates`
//! app passwords on one empty mailbox and twice as many on another, against
//! the Mailcow simulator. Linear creates cost about twice as much for twice
//! as many; listing the mailbox's app passwords around every create (as
//! the agent once did) makes each create cost more the fuller the mailbox
//! is, and the ratio grows with the count.
//!
//! cargo build --release --workspace --bins
//! target/release/bench-app-passwords [--creates 1000 --request-cost-ms 10]

use std::time::{Duration, Instant};

use clap::Parser;
use reconciler_proto::agent::{
    AppPasswordCreate, AppPasswordProtocol, MailcowApplyRequest, MailcowChange, Outcome,
    mailcow_change::Kind,
};
use reconciler_testkit::harness::{Stack, StackOptions};

/// The coordinator's Apply call size (`targets::APPLY_BATCH`).
const CALL: usize = 200;

#[derive(Parser)]
struct Args {
    /// Creates on the first mailbox; the second gets twice as many.
    #[arg(long, default_value_t = 1000)]
    creates: usize,
    /// What each Mailcow request costs beside the simulator's own work.
    #[arg(long, default_value_t = 10)]
    request_cost_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

struct Round {
    creates: usize,
    seconds: f64,
    listings: u64,
    writes: u64,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await;
    stack.mailcow.add_domain("example.com");
    stack
        .mailcow
        .set_request_cost(Duration::from_millis(args.request_cost_ms));
    let mut rounds = Vec::new();
    for (mailbox, creates) in [
        ("shared-1@example.com", args.creates),
        ("shared-2@example.com", args.creates * 2),
    ] {
        stack.mailcow.add_mailbox(mailbox);
        rounds.push(create_many(&stack, mailbox, creates).await?);
    }

    println!("## App password creates on one mailbox\n");
    println!(
        "The real mailcow-agent over gRPC, Apply calls of {CALL} creates one after another, \
         each Mailcow request costing {} ms beside the simulator's work.\n",
        args.request_cost_ms
    );
    println!("| creates on an empty mailbox | wall time | app password listings | add requests |");
    println!("|---|---|---|---|");
    for r in &rounds {
        println!(
            "| {} | {:.2} s | {} | {} |",
            r.creates, r.seconds, r.listings, r.writes
        );
    }
    println!(
        "\nTwice the creates cost {:.2}× the time.",
        rounds[1].seconds / rounds[0].seconds
    );
    Ok(())
}

/// `count` creates on `mailbox`, timed, checked on the simulator.
async fn create_many(stack: &Stack, mailbox: &str, count: usize) -> anyhow::Result<Round> {
    let mut client = Stack::mailcow_agent_client(&stack.agent_addr).await;
    let changes: Vec<MailcowChange> = (0..count)
        .map(|i| MailcowChange {
            id: i.to_string(),
            kind: Some(Kind::AppPasswordCreate(AppPasswordCreate {
                mailbox: mailbox.to_owned(),
                name: format!("authentik-sync:user{i}:{mailbox}"),
                protocols: vec![
                    AppPasswordProtocol::Imap as i32,
                    AppPasswordProtocol::Smtp as i32,
                ],
            })),
        })
        .collect();
    stack.mailcow.reset_counts();
    let start = Instant::now();
    for call in changes.chunks(CALL) {
        let results = client
            .apply(MailcowApplyRequest {
                changes: call.to_vec(),
                dry_run: false,
            })
            .await?
            .into_inner()
            .results;
        anyhow::ensure!(
            results.iter().all(|r| r.outcome == Outcome::Applied as i32),
            "a create did not apply: {:?}",
            results
                .iter()
                .find(|r| r.outcome != Outcome::Applied as i32)
        );
    }
    let seconds = start.elapsed().as_secs_f64();
    let made = stack.mailcow.app_passwords(mailbox).len();
    anyhow::ensure!(
        made == count,
        "{made} app passwords on {mailbox}, expected {count}"
    );
    let counts = stack.mailcow.counts();
    Ok(Round {
        creates: count,
        seconds,
        listings: counts.get("read get/app-passwd").copied().unwrap_or(0),
        writes: counts.get("write add/app-passwd").copied().unwrap_or(0),
    })
}
