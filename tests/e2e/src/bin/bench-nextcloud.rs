//! Benchmark (issue 12, item 6): an in-sync sweep over Nextcloud Mail
//! accounts, observed from Nextcloud's `oc_mail_accounts` table
//! (`NEXTCLOUD_DB_URL`) against the occ-only baseline (one
//! `occ mail:account:export` per user), with occ paying a PHP boot per call
//! (`--boot-ms`, 300 by default; 0.3–1.5 s on a real server).
//!
//! Each world is real: MariaDB with Nextcloud Mail's table, the occ
//! simulator in a container reached by `docker exec`, the coordinator and
//! agents. The accounts are written into the table up front, as Nextcloud's
//! UI would store them (one for each member, on their group's shared
//! mailbox): creating 4,000 through the reconciler's cold run costs two
//! `docker exec`s per account, about 50 minutes on this machine, for setup.
//! The coordinator takes them for the members' own accounts and plans
//! nothing, so every sweep is in sync and observes the same users and rows
//! it would for accounts of its own (the e2e suite `nextcloud_db` pins that
//! case: zero occ processes, one query). A first sweep runs with no boot
//! cost; the second, timed, with it. The occ-only baseline
//! runs on `--occ-accounts` users (at 300 ms a call, 4,000 users would take
//! over 20 minutes) and is extrapolated linearly to `--accounts`: its cost is
//! one occ process per user, in sequence.
//!
//! bash scripts/images.sh && cargo build --release --workspace --bins
//! target/release/bench-nextcloud [--accounts 4000 --occ-accounts 200 --boot-ms 300]

use std::time::{Duration, Instant};

use clap::Parser;
use reconciler_testkit::harness::{MariaDb, NextcloudContainer, Stack, StackOptions};
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Nextcloud Mail accounts in the table-read world.
    #[arg(long, default_value_t = 4000)]
    accounts: usize,
    /// Accounts in the occ-only world (measured, then extrapolated).
    #[arg(long, default_value_t = 200)]
    occ_accounts: usize,
    /// PHP boot time per occ call during the timed sweeps.
    #[arg(long, default_value_t = 300)]
    boot_ms: u64,
    /// Members per shared mailbox (keeps app passwords per mailbox small).
    #[arg(long, default_value_t = 100)]
    per_mailbox: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

struct Measured {
    accounts: usize,
    wall: Duration,
    occ_calls: usize,
    exports: usize,
    statements: u64,
    cold: Duration,
}

impl Measured {
    /// Its row of the table.
    fn line(&self, label: &str) -> String {
        format!(
            "| {label} | {} | {:.2} s | {} | {} | {} | {:.1} s |",
            self.accounts,
            self.wall.as_secs_f64(),
            self.occ_calls,
            self.exports,
            self.statements,
            self.cold.as_secs_f64()
        )
    }
}

/// One world of `n` accounts, a first sweep, then one timed in-sync sweep.
async fn measure(n: usize, table_read: bool, args: &Args) -> anyhow::Result<Measured> {
    let mariadb = MariaDb::start().await;
    let nextcloud = NextcloudContainer::start_with_database(&[], &mariadb).await;
    let users: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
    nextcloud.seed_users(&users).await;
    let mut env = vec![
        ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
        ("MAIL_IMAP_HOST".into(), "mail.example.com".into()),
        ("MAIL_SMTP_HOST".into(), "mail.example.com".into()),
    ];
    if table_read {
        let url = nextcloud.db_url().expect("accounts in MariaDB").to_owned();
        env.push(("NEXTCLOUD_DB_URL".into(), url));
    }
    let stack = Stack::start(StackOptions {
        nextcloud_agent_env: Some(env),
        // The occ-only observe runs one export per user in one call.
        coordinator_env: vec![("AGENT_TIMEOUT_SECONDS".into(), "14400".into())],
        job_timeout: Duration::from_secs(4 * 3600),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    let mut group = String::new();
    for (i, user) in users.iter().enumerate() {
        if i % args.per_mailbox == 0 {
            let shared = format!("shared{}@example.com", i / args.per_mailbox);
            stack.mailcow.add_mailbox(&shared);
            group = stack.authentik.add_group(
                &format!("desk{}", i / args.per_mailbox),
                json!({"reconciler": {"shared_mailbox": shared, "nextcloud_mail": true}}),
            );
        }
        let mail = format!("{user}@example.com");
        stack.mailcow.add_mailbox(&mail);
        let pk = stack.authentik.add_user(user, &mail);
        stack.authentik.add_member(&group, pk);
    }

    seed_accounts(&mariadb, &users, args.per_mailbox).await;

    nextcloud.set_boot_ms(0).await;
    let start = Instant::now();
    let job = stack.sweep().await;
    let cold = start.elapsed();
    anyhow::ensure!(job["state"] == "done", "first sweep: {job}");
    anyhow::ensure!(
        stack.mailcow.write_count() == 0,
        "the first sweep wrote to Mailcow: {:?}",
        stack.mailcow.counts()
    );
    let accounts = nextcloud.state().await.accounts.len();
    anyhow::ensure!(
        accounts == n,
        "{accounts} accounts after the first sweep, not {n}"
    );

    nextcloud.set_boot_ms(args.boot_ms).await;
    nextcloud.reset_calls().await;
    let statements = mariadb.global_status("Com_stmt_execute").await;
    let start = Instant::now();
    let job = stack.sweep().await;
    let wall = start.elapsed();
    anyhow::ensure!(job["state"] == "done", "in-sync sweep: {job}");
    let statements = mariadb.global_status("Com_stmt_execute").await - statements;
    let calls = nextcloud.calls().await;
    let after = nextcloud.state().await.accounts.len();
    anyhow::ensure!(after == n, "the in-sync sweep changed the accounts");
    Ok(Measured {
        accounts: n,
        wall,
        occ_calls: calls.values().sum(),
        exports: calls.get("mail:account:export").copied().unwrap_or(0),
        statements,
        cold,
    })
}

/// One account per user on their group's shared mailbox, as Nextcloud's UI
/// would store it (500 rows per statement: the SQL travels as an argument).
async fn seed_accounts(mariadb: &MariaDb, users: &[String], per_mailbox: usize) {
    let rows: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, user)| {
            let shared = format!("shared{}@example.com", i / per_mailbox);
            format!(
                "('{user}', '{shared}', '{shared}', 'mail.example.com', '993', 'ssl', \
                 '{shared}', 'mail.example.com', '587', 'tls', '{shared}')"
            )
        })
        .collect();
    for chunk in rows.chunks(500) {
        mariadb
            .root_sql(&format!(
                "INSERT INTO nextcloud.oc_mail_accounts (user_id, name, email, inbound_host, \
                 inbound_port, inbound_ssl_mode, inbound_user, outbound_host, outbound_port, \
                 outbound_ssl_mode, outbound_user) VALUES {}",
                chunk.join(", ")
            ))
            .await;
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // The short world first: its numbers are on stderr even if the long
    // one is interrupted.
    eprintln!("occ only: {} accounts …", args.occ_accounts);
    let occ = measure(args.occ_accounts, false, &args).await?;
    eprintln!("{}", occ.line("occ only"));
    eprintln!("table read: {} accounts …", args.accounts);
    let table = measure(args.accounts, true, &args).await?;
    eprintln!("{}", table.line("table read"));
    let per_account = occ.wall.as_secs_f64() / occ.accounts as f64;
    let extrapolated = per_account * args.accounts as f64;

    println!("## Nextcloud observe benchmark\n");
    println!(
        "In-sync sweep, occ boot cost {} ms per call; {} members per shared mailbox.\n",
        args.boot_ms, args.per_mailbox
    );
    println!(
        "| observe | accounts | in-sync wall time | occ processes | `mail:account:export` | MariaDB statements executed | first sweep (boot 0 ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!("{}", table.line("table read (`NEXTCLOUD_DB_URL`)"));
    println!("{}", occ.line("occ only (measured)"));
    println!(
        "| occ only (extrapolated: {:.3} s per account × {}) | {} | {:.0} s | {} | {} | — | — |",
        per_account, args.accounts, args.accounts, extrapolated, args.accounts, args.accounts
    );
    println!(
        "\nRatio at {} accounts: occ only (extrapolated) / table read = {:.0}×",
        args.accounts,
        extrapolated / table.wall.as_secs_f64()
    );
    println!(
        "MariaDB statements in the occ-only world are the simulator's (one per export, as \
         Nextcloud's own query); in the table-read world occ runs no process, so every \
         statement is the agent's."
    );
    Ok(())
}
