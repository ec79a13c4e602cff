//! Benchmark: Dovecot folder ACLs against a real Dovecot container. One
//! shared mailbox with `--folders` folders, a group of `--grantees`
//! members with `access: readwrite`; a cold grant and an in-sync sweep.
//! Reports wall time, doveadm execs and `acl set` commands, to show the
//! per-owner batching (execs stay flat while folders × grantees grows).
//!
//! bash scripts/images.sh && cargo build --release --workspace --bins
//! target/release/bench-acl [--folders N --grantees N]

use std::time::Instant;

use clap::Parser;
use reconciler_testkit::harness::{DovecotContainer, Stack, StackOptions};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    folders: usize,
    #[arg(long, default_value_t = 25)]
    grantees: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let owner = "info@example.com";
    let grantees: Vec<String> = (0..args.grantees)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let mut users: Vec<(&str, &str)> = vec![(owner, "pw")];
    users.extend(grantees.iter().map(|g| (g.as_str(), "pw")));
    let dovecot = DovecotContainer::start(&users).await;
    // INBOX, Sent, Drafts, Trash exist already.
    for i in 0..args.folders.saturating_sub(4) {
        dovecot.create_folder(owner, &format!("Folder{i}")).await;
    }
    let stack = Stack::start(StackOptions {
        agent_env: vec![("DOVECOT_CONTAINER".into(), dovecot.name.clone())],
        job_timeout: std::time::Duration::from_secs(3600),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    let group = stack.authentik.add_group(
        "shared",
        json!({"reconciler": {"shared_mailbox": owner, "access": "readwrite"}}),
    );
    for (i, g) in grantees.iter().enumerate() {
        stack.mailcow.add_mailbox(g);
        let pk = stack.authentik.add_user(&format!("user{i}"), g);
        stack.authentik.add_member(&group, pk);
    }

    println!("## Folder ACL benchmark\n");
    println!(
        "One shared mailbox with {} folders, {} grantees (`access: readwrite`): {} folder entries.\n",
        args.folders,
        args.grantees,
        args.folders * args.grantees
    );
    println!("| sweep | wall time | doveadm execs | `acl set`/`acl delete` commands | job |");
    println!("|---|---|---|---|---|");
    for label in ["cold", "in-sync"] {
        let start = Instant::now();
        let job = stack.sweep().await;
        let elapsed = start.elapsed();
        let summary = &job["summary"];
        println!(
            "| {label} | {:.2} s | {} | {} | {} |",
            elapsed.as_secs_f64(),
            summary["doveadm_execs"],
            summary["doveadm_acl_writes"],
            job["state"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}
