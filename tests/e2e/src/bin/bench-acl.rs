//! Benchmark: Dovecot folder ACLs against a real Dovecot container, the real
//! coordinator and mailcow-agent.
//!
//! 1. One shared mailbox with `--folders` folders and a group of
//!    `--grantees` members with `access: readwrite`: a cold grant and an
//!    in-sync sweep.
//! 2. A mailbox with `--large-folders` folders shared with one member: the
//!    in-sync sweep reading it (and the first mailbox).
//!
//! Baselines, measured in the same run on the same container: what the
//! agent did before it wrote `dovecot-acl` files, one `doveadm acl set` per
//! folder and grantee (on a twin of mailbox 1), and one `doveadm acl get`
//! per folder to read (on both mailboxes), each run as one shell loop in
//! one `docker exec`.
//!
//! bash scripts/images.sh && cargo build --release --workspace --bins
//! target/release/bench-acl [--folders 20 --grantees 25 --large-folders 500]

use std::time::{Duration, Instant};

use clap::Parser;
use reconciler_testkit::harness::{DovecotContainer, Stack, StackOptions};
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    folders: usize,
    #[arg(long, default_value_t = 25)]
    grantees: usize,
    #[arg(long, default_value_t = 500)]
    large_folders: usize,
}

const OWNER: &str = "info@example.com";
/// A twin of OWNER for the baseline's `acl set`s.
const TWIN: &str = "twin@example.com";
const LARGE: &str = "large@example.com";

/// `acl set` per folder and grantee, as the agent did before.
const BASELINE_SET: &str = r#"owner=$1 rights=$2
shift 2
doveadm mailbox list -u "$owner" | while IFS= read -r box; do
  for grantee in "$@"; do
    doveadm acl set -u "$owner" -- "$box" "user=$grantee" $rights || exit 1
  done
done
"#;

/// `acl get` per folder, as the agent read before.
const BASELINE_GET: &str = r#"doveadm mailbox list -u "$1" | while IFS= read -r box; do
  doveadm -f tab acl get -u "$1" -- "$box" > /dev/null || exit 1
done
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

/// Creates `count` folders named `Folder <i>` in one exec.
async fn create_folders(dovecot: &DovecotContainer, owner: &str, count: usize) {
    let out = dovecot
        .sh(
            r#"i=0; while [ "$i" -lt "$2" ]; do doveadm mailbox create -u "$1" "Folder $i" || exit 1; i=$((i + 1)); done"#,
            &[owner, &count.to_string()],
        )
        .await;
    assert_eq!(out.code, 0, "create folders: {out:?}");
}

async fn timed_sh(dovecot: &DovecotContainer, script: &str, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = dovecot.sh(script, args).await;
    assert_eq!(out.code, 0, "baseline: {out:?}");
    start.elapsed()
}

struct Row {
    label: String,
    elapsed: Duration,
    job: Value,
    baseline_label: String,
    baseline: Duration,
}

async fn run(args: Args) -> anyhow::Result<()> {
    let grantees: Vec<String> = (0..args.grantees)
        .map(|i| format!("user{i}@example.com"))
        .collect();
    let mut users: Vec<(&str, &str)> = vec![(OWNER, "pw"), (TWIN, "pw"), (LARGE, "pw")];
    users.extend(grantees.iter().map(|g| (g.as_str(), "pw")));
    let dovecot = DovecotContainer::start(&users).await;
    // INBOX, Sent, Drafts, Trash exist already (Sent, Drafts and Trash
    // once opened: `acl get` or a client's SELECT makes them).
    for owner in [OWNER, TWIN] {
        create_folders(&dovecot, owner, args.folders.saturating_sub(4)).await;
    }
    create_folders(&dovecot, LARGE, args.large_folders.saturating_sub(4)).await;
    for owner in [OWNER, TWIN, LARGE] {
        for special in ["Sent", "Drafts", "Trash"] {
            let out = dovecot
                .doveadm(&["mailbox", "status", "-u", owner, "messages", special])
                .await;
            assert_eq!(out.code, 0, "{out:?}");
        }
    }
    let stack = Stack::start(StackOptions {
        agent_env: vec![("DOVECOT_CONTAINER".into(), dovecot.name.clone())],
        job_timeout: Duration::from_secs(3600),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    let group = stack.authentik.add_group(
        "shared",
        json!({"reconciler": {"shared_mailbox": OWNER, "access": "readwrite"}}),
    );
    let mut first = None;
    for (i, g) in grantees.iter().enumerate() {
        stack.mailcow.add_mailbox(g);
        let pk = stack.authentik.add_user(&format!("user{i}"), g);
        stack.authentik.add_member(&group, pk);
        first.get_or_insert(pk);
    }

    let entries = args.folders * args.grantees;
    let mut rows = Vec::new();

    let start = Instant::now();
    let cold = stack.sweep().await;
    let cold_elapsed = start.elapsed();
    // The rights the sweep granted, for the baseline to grant the same.
    let granted = dovecot.acl(OWNER, "INBOX").await;
    let rights = granted
        .iter()
        .find(|(id, _)| *id == format!("user={}", grantees[0]))
        .map(|(_, rights)| rights.clone())
        .expect("the cold sweep granted");
    let mut set_args = vec![TWIN, rights.as_str()];
    set_args.extend(grantees.iter().map(String::as_str));
    let baseline = timed_sh(&dovecot, BASELINE_SET, &set_args).await;
    rows.push(Row {
        label: format!("cold, {entries} entries"),
        elapsed: cold_elapsed,
        job: cold,
        baseline_label: format!("{entries} × `acl set`"),
        baseline,
    });

    let start = Instant::now();
    let in_sync = stack.sweep().await;
    let in_sync_elapsed = start.elapsed();
    let baseline = timed_sh(&dovecot, BASELINE_GET, &[OWNER]).await;
    rows.push(Row {
        label: format!("in-sync, {entries} entries"),
        elapsed: in_sync_elapsed,
        job: in_sync,
        baseline_label: format!("{} × `acl get`", args.folders),
        baseline,
    });

    // Mailbox 2: shared with one member, granted (not measured), then read.
    let large_group = stack.authentik.add_group(
        "large",
        json!({"reconciler": {"shared_mailbox": LARGE, "access": "read"}}),
    );
    stack
        .authentik
        .add_member(&large_group, first.expect("a grantee"));
    let grant = stack.sweep().await;
    assert_eq!(grant["state"], "done", "{grant}");
    let start = Instant::now();
    let read = stack.sweep().await;
    let read_elapsed = start.elapsed();
    let baseline = timed_sh(&dovecot, BASELINE_GET, &[LARGE]).await
        + timed_sh(&dovecot, BASELINE_GET, &[OWNER]).await;
    rows.push(Row {
        label: format!(
            "in-sync read, a {}-folder mailbox (+ the {}-folder one)",
            args.large_folders, args.folders
        ),
        elapsed: read_elapsed,
        job: read,
        baseline_label: format!("{} × `acl get`", args.large_folders + args.folders),
        baseline,
    });

    println!("## Folder ACL benchmark\n");
    println!(
        "Mailbox 1: {} folders, {} grantees (`access: readwrite`): {entries} folder entries. \
         Mailbox 2: {} folders, 1 grantee.\n",
        args.folders, args.grantees, args.large_folders
    );
    println!(
        "| sweep | wall time | doveadm execs | entries written | job | baseline (per folder, as before) | baseline time | speed-up |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        let summary = &row.job["summary"];
        println!(
            "| {} | {:.2} s | {} | {} | {} | {} | {:.2} s | {:.1}× |",
            row.label,
            row.elapsed.as_secs_f64(),
            summary["doveadm_execs"],
            summary["doveadm_acl_writes"],
            row.job["state"].as_str().unwrap_or("?"),
            row.baseline_label,
            row.baseline.as_secs_f64(),
            row.baseline.as_secs_f64() / row.elapsed.as_secs_f64(),
        );
    }
    Ok(())
}
