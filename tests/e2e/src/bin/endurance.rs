//! Endurance: kill -9 at random moments during sweeps, and check the world
//! converges. Every target configured: the real coordinator and all five
//! agents against a real Dovecot (container), SOGo's MariaDB and memcached,
//! the occ container, a real Synapse, and the Mailcow, Authentik and
//! Stalwart simulators.
//!
//! Each trial changes who is in the `support` group (shared mailbox with
//! send-as, folder rights, SOGo delegation and Nextcloud Mail, a Matrix
//! room, a Stalwart account), asks for a
//! sweep, SIGKILLs the coordinator (or the mailcow-agent) after a random
//! delay, starts it again, and sweeps until nothing is left to do. Then:
//! no duplicate app passwords or Nextcloud accounts, nothing of ours left
//! for people not entitled, nothing missing for people entitled, and a
//! final sweep that writes nothing.
//!
//! bash scripts/images.sh && cargo build --release --workspace --bins
//! target/release/endurance [--coordinator-kills 50 --agent-kills 20 --seed 1]

use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use reconciler_testkit::harness::{
    DovecotContainer, NextcloudContainer, RoomSpec, SogoPeers, Stack, StackOptions, Synapse,
    start_agent,
};
use reconciler_testkit::stalwart_sim::{ObjectType, StalwartSim, StalwartSimConfig};
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const USERS: usize = 8;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 50)]
    coordinator_kills: usize,
    #[arg(long, default_value_t = 20)]
    agent_kills: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Kills land at a random moment up to this long after the sweep is asked for.
    #[arg(long, default_value_t = 2000)]
    max_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Args::parse()).await
}

struct World {
    stack: Stack,
    dovecot: DovecotContainer,
    sogo: SogoPeers,
    nextcloud: NextcloudContainer,
    synapse: Synapse,
    /// The support room's id.
    room: String,
    stalwart: StalwartSim,
    support: String,
    pks: Vec<i64>,
}

fn user(i: usize) -> (String, String) {
    (format!("user{i}"), format!("user{i}@example.com"))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut mailboxes = vec![INFO.to_owned()];
    mailboxes.extend((0..USERS).map(|i| user(i).1));
    let logins: Vec<(&str, &str)> = mailboxes.iter().map(|m| (m.as_str(), "pw")).collect();
    let dovecot = DovecotContainer::start(&logins).await;
    let sogo = SogoPeers::start().await;
    for m in &mailboxes {
        sogo.add_user(m, m.split('@').next().unwrap_or(m)).await;
    }
    let names: Vec<String> = (0..USERS).map(|i| user(i).0).collect();
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let nextcloud = NextcloudContainer::start(&name_refs).await;
    let synapse = Synapse::start().await;
    let bot = synapse.register("reconciler", true).await;
    let room = synapse
        .create_room(
            &bot,
            RoomSpec {
                alias: Some("support".into()),
                ..RoomSpec::default()
            },
        )
        .await;
    for name in &names {
        synapse.register(name, false).await;
    }
    let stalwart = StalwartSim::start(
        StalwartSimConfig::default(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let stack = Stack::start(StackOptions {
        authentik_max_page_size: 100,
        job_timeout: Duration::from_secs(600),
        agent_env: vec![("DOVECOT_CONTAINER".into(), dovecot.name.clone())],
        // Half the group flips every trial: more removals at once than the
        // removal guard lets through unforced. The campaign is about
        // crashes, so the guard stands aside.
        coordinator_env: vec![
            ("REMOVAL_GUARD_MIN".into(), "100000".into()),
            ("STALWART_DOMAINS".into(), "example.com".into()),
        ],
        matrix_agent_env: Some(vec![
            ("MATRIX_HOMESERVER_URL".into(), synapse.url()),
            ("MATRIX_ACCESS_TOKEN".into(), bot.access_token.clone()),
        ]),
        stalwart_agent_env: Some(vec![
            ("STALWART_URL".into(), stalwart.base_url()),
            ("STALWART_API_KEY".into(), stalwart.api_key().to_owned()),
        ]),
        sogo_agent_env: Some(vec![
            ("SOGO_DB_URL".into(), sogo.db_url()),
            ("MEMCACHED_ADDR".into(), sogo.memcached_addr()),
        ]),
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
            ("MAIL_IMAP_HOST".into(), "mail.example.com".into()),
            ("MAIL_SMTP_HOST".into(), "mail.example.com".into()),
        ]),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    for m in &mailboxes {
        stack.mailcow.add_mailbox(m);
    }
    let support = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "access": "readwrite", "send_as": true,
                              "sogo_delegate": true, "nextcloud_mail": true,
                              "matrix": {"rooms": ["#support:matrix.test"], "join": "force"},
                              "stalwart": {"mailbox": true}}}),
    );
    let pks = (0..USERS)
        .map(|i| {
            let (name, email) = user(i);
            stack.authentik.add_user(&name, &email)
        })
        .collect();
    let mut world = World {
        stack,
        dovecot,
        sogo,
        nextcloud,
        synapse,
        room,
        stalwart,
        support,
        pks,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut members = vec![false; USERS];
    let started = Instant::now();
    let mut trials = Vec::new();
    for trial in 0..args.coordinator_kills + args.agent_kills {
        let kill_agent = trial >= args.coordinator_kills;
        // A new membership: about half flip, so each sweep has grants and
        // removals of every kind to do.
        for (i, member) in members.iter_mut().enumerate() {
            if rng.random_bool(0.5) {
                *member = !*member;
                if *member {
                    world
                        .stack
                        .authentik
                        .add_member(&world.support, world.pks[i]);
                } else {
                    world
                        .stack
                        .authentik
                        .remove_member(&world.support, world.pks[i]);
                }
            }
        }
        let delay = Duration::from_millis(rng.random_range(0..args.max_delay_ms));
        let sweep = world.stack.request_sweep().await;
        tokio::time::sleep(delay).await;
        // Where the kill lands: mid-run, or before the sweep started or after it ended.
        let state = world.stack.job(sweep).await["state"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if kill_agent {
            let dovecot = world.dovecot.name.clone();
            restart_agent(&mut world.stack, &dovecot).await;
        } else {
            world.stack.coordinator.kill();
            world.stack.start_coordinator(2).await;
        }
        let sweeps = converge(&world.stack).await?;
        check(&world, &members).await?;
        trials.push((kill_agent, delay, sweeps, state == "running"));
        eprintln!(
            "trial {trial}: killed the {} after {:?} (sweep {state}); converged in {sweeps} sweep(s); invariants hold",
            if kill_agent {
                "mailcow-agent"
            } else {
                "coordinator"
            },
            delay
        );
    }
    let coordinator = trials.iter().filter(|t| !t.0).count();
    let agent = trials.len() - coordinator;
    let most = trials.iter().map(|t| t.2).max().unwrap_or(0);
    println!("## Endurance (kill -9)\n");
    let mid_run = trials.iter().filter(|t| t.3).count();
    println!(
        "| kills of the coordinator | kills of the mailcow-agent | of them mid-sweep | trials whose invariants held | most sweeps to converge | wall time |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {coordinator} | {agent} | {mid_run} | {} of {} | {most} | {:.0} s |",
        trials.len(),
        trials.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// SIGKILLs the mailcow-agent and starts it again on the same port, where
/// the coordinator calls it.
async fn restart_agent(stack: &mut Stack, dovecot: &str) {
    stack.agent.kill();
    let env = vec![
        ("MAILCOW_URL".to_owned(), stack.mailcow.base_url()),
        (
            "MAILCOW_API_KEY".to_owned(),
            reconciler_testkit::harness::MAILCOW_KEY.to_owned(),
        ),
        ("AGENT_LISTEN".to_owned(), stack.agent_addr.clone()),
        ("DOVECOT_CONTAINER".to_owned(), dovecot.to_owned()),
    ];
    let (agent, _) = start_agent(
        "mailcow-agent",
        &env,
        stack.dir.path(),
        Duration::from_secs(30),
    )
    .await;
    stack.agent = agent;
}

/// Sweeps until one plans nothing that writes and ends done; how many.
async fn converge(stack: &Stack) -> anyhow::Result<usize> {
    for n in 1..=6 {
        stack.mailcow.reset_counts();
        let job = stack.sweep().await;
        let held = job["summary"]["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|w| w.as_str().is_some_and(|w| w.contains("held")));
        let quiet =
            stack.mailcow.write_count() == 0 && job["state"] == "done" && !writes(&job) && !held;
        if quiet {
            return Ok(n);
        }
    }
    anyhow::bail!("no quiet sweep after 6")
}

/// Whether a job's summary counts a change that reached a target.
fn writes(job: &Value) -> bool {
    job["summary"]["outcomes"]
        .as_object()
        .into_iter()
        .flatten()
        .any(|(what, n)| {
            n.as_u64().unwrap_or(0) > 0
                && (what.ends_with(".applied") || what.ends_with(".transient"))
        })
}

/// Every grant present exactly once for members, none of ours for others.
async fn check(world: &World, members: &[bool]) -> anyhow::Result<()> {
    let stack = &world.stack;
    let passwords = stack.mailcow.app_passwords(INFO);
    let accounts = world.nextcloud.state().await.accounts;
    let acl = world.dovecot.acl(INFO, "INBOX").await;
    let delegates = world.sogo.settings_json(INFO).await["Mail"]["DelegateTo"].clone();
    let joined = world.synapse.joined_members(&world.room).await;
    for (i, member) in members.iter().enumerate() {
        let (name, email) = user(i);
        let sends_as = stack.mailcow.sender_acl(&email).contains(&INFO.to_owned());
        let ours = format!("authentik-sync:{name}:{INFO}");
        let app_passwords = passwords.iter().filter(|p| p.name == ours).count();
        let nextcloud = accounts
            .iter()
            .filter(|a| a.user_id == name && a.email == INFO)
            .count();
        let rights = acl.iter().any(|(id, _)| id == &format!("user={email}"));
        let delegated = delegates
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == email.as_str()));
        let in_room = joined.iter().any(|u| u == &format!("@{name}:matrix.test"));
        // Members have an active account; a leaver's is suspended (kept:
        // no STALWART_DELETE_AFTER); one never granted has none.
        let account = world.stalwart.find(ObjectType::Account, &email);
        let signs_in = account
            .as_ref()
            .is_some_and(|a| a["permissions"]["disabledPermissions"]["authenticate"] != true);
        let want = usize::from(*member);
        let ok = sends_as == *member
            && app_passwords == want
            && nextcloud == want
            && rights == *member
            && delegated == *member
            && in_room == *member
            && signs_in == *member;
        if !ok {
            anyhow::bail!(
                "{name} (member: {member}): send-as {sends_as}, app passwords {app_passwords}, \
                 Nextcloud accounts {nextcloud}, folder rights {rights}, SOGo delegate {delegated}, \
                 in the Matrix room {in_room}, Stalwart sign-in {signs_in}"
            );
        }
    }
    Ok(())
}
