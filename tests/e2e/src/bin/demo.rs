//! The whole system on this machine, for `scripts/demo.sh`: the real
//! coordinator, mailcow-agent, sogo-agent, nextcloud-agent, matrix-agent and
//! stalwart-agent, against a real Dovecot (container), real MariaDB +
//! memcached (SOGo's tables), an occ container, a real Synapse, and the
//! Mailcow, Authentik and Stalwart API simulators. The coordinator reaches
//! every agent over mutual TLS, with certificates made by `coordinator
//! certs`, as in production. It plays a short story and prints what each
//! target holds after every step.
//!
//! target/debug/demo [--once]

use std::time::Duration;

use reconciler_testkit::harness::{
    CertDir, DovecotContainer, NextcloudContainer, RoomSpec, SogoPeers, Stack, StackOptions,
    Synapse,
};
use reconciler_testkit::stalwart_sim::{ObjectType, StalwartSim, StalwartSimConfig};
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const SALES: &str = "sales@example.com";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(std::env::args().any(|a| a == "--once")).await
}

struct Demo {
    dovecot: DovecotContainer,
    sogo: SogoPeers,
    nextcloud: NextcloudContainer,
    synapse: Synapse,
    /// The `support` room's id.
    room: String,
    stalwart: StalwartSim,
    stack: Stack,
    /// The CA and certificates of the coordinator and every agent.
    certs: CertDir,
}

async fn run(once: bool) -> anyhow::Result<()> {
    println!(
        "==> starting Dovecot, MariaDB + memcached, the occ container, the simulators and every binary"
    );
    let mailboxes = [INFO, ALICE, BOB, CAROL, SALES];
    let users: Vec<(&str, &str)> = mailboxes.iter().map(|m| (*m, "demo-password")).collect();
    let dovecot = DovecotContainer::start(&users).await;
    dovecot.create_folder(INFO, "Projects").await;
    let sogo = SogoPeers::start().await;
    for m in mailboxes {
        sogo.add_user(m, m.split('@').next().unwrap_or(m)).await;
    }
    let nextcloud = NextcloudContainer::start(&["alice", "bob", "carol"]).await;
    // Synapse with the reconciler's bot (a server admin, creator of the
    // support room) and an account for each person.
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
    for person in ["alice", "bob", "carol"] {
        synapse.register(person, false).await;
    }
    // Stalwart's management API (simulated), where the people get accounts.
    let stalwart = StalwartSim::start(
        StalwartSimConfig::default(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    println!("==> certificates for mutual TLS: coordinator certs");
    let certs = CertDir::temporary(&[
        "mailcow-agent",
        "sogo-agent",
        "nextcloud-agent",
        "matrix-agent",
        "stalwart-agent",
    ]);
    println!("    {}", certs.dir.display());
    let stack = Stack::start(StackOptions {
        tls: Some(certs.clone()),
        authentik_max_page_size: 100,
        job_timeout: Duration::from_secs(300),
        agent_env: vec![("DOVECOT_CONTAINER".into(), dovecot.name.clone())],
        sogo_agent_env: Some(vec![
            ("SOGO_DB_URL".into(), sogo.db_url()),
            ("MEMCACHED_ADDR".into(), sogo.memcached_addr()),
        ]),
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
            ("MAIL_IMAP_HOST".into(), "mail.example.com".into()),
            ("MAIL_SMTP_HOST".into(), "mail.example.com".into()),
        ]),
        matrix_agent_env: Some(vec![
            ("MATRIX_HOMESERVER_URL".into(), synapse.url()),
            ("MATRIX_ACCESS_TOKEN".into(), bot.access_token.clone()),
        ]),
        stalwart_agent_env: Some(vec![
            ("STALWART_URL".into(), stalwart.base_url()),
            ("STALWART_API_KEY".into(), stalwart.api_key().to_owned()),
        ]),
        coordinator_env: vec![("STALWART_DOMAINS".into(), "example.com".into())],
        ..StackOptions::default()
    })
    .await;
    let demo = Demo {
        dovecot,
        sogo,
        nextcloud,
        synapse,
        room,
        stalwart,
        stack,
        certs,
    };

    // Mailcow, with things people made by hand: they must survive.
    let m = &demo.stack.mailcow;
    m.add_domain("example.com");
    for mbox in mailboxes {
        m.add_mailbox(mbox);
    }
    m.add_sender_acl_row(ALICE, SALES, false);
    m.add_alias("hand-made@example.com", &[ALICE], true, "made by a person");
    m.add_app_password(INFO, "front-desk-phone", "Front-Desk-Secret-1");
    // Authentik: `support` shares info@ every way; carol is in a child group.
    let a = &demo.stack.authentik;
    let alice = a.add_user("alice", ALICE);
    let bob = a.add_user("bob", BOB);
    let carol = a.add_user("carol", CAROL);
    let support = a.add_group(
        "support",
        json!({"reconciler": {
            "shared_mailbox": INFO, "access": "readwrite", "send_as": true,
            "sogo_delegate": true, "nextcloud_mail": true, "alias": "support-team@example.com",
            "matrix": {"rooms": ["#support:matrix.test"], "join": "force"},
            "stalwart": {"mailbox": true, "quota": "5G"}
        }}),
    );
    let tier2 = a.add_group("support-tier2", json!({}));
    a.set_group_parents(&tier2, &[&support]);
    a.add_member(&support, bob);
    a.add_member(&tier2, carol);

    println!("\n==> before the first sweep");
    demo.show().await;

    println!("\n==> full sweep (POST /reconcile-all)");
    let job = demo.stack.sweep().await;
    demo.report(&job);
    demo.show().await;

    println!("\n==> alice joins `support` in Authentik; the notification reaches the coordinator");
    a.add_member(&support, alice);
    let job = demo
        .stack
        .webhook_and_wait(&Stack::group_event(&support, "demo-join"))
        .await;
    demo.report(&job);
    demo.show().await;

    println!("\n==> alice leaves `support`");
    a.remove_member(&support, alice);
    let job = demo
        .stack
        .webhook_and_wait(&Stack::group_event(&support, "demo-leave"))
        .await;
    demo.report(&job);
    demo.show().await;

    println!("\n==> another sweep over the in-sync world");
    demo.stack.mailcow.reset_counts();
    demo.stalwart.reset_counts();
    let job = demo.stack.sweep().await;
    demo.report(&job);
    println!("  Mailcow writes: {}", demo.stack.mailcow.write_count());
    let stalwart_writes: u64 = ["x:Domain/set", "x:Account/set", "x:MailingList/set"]
        .iter()
        .map(|m| demo.stalwart.count(m))
        .sum();
    println!("  Stalwart writes: {stalwart_writes}");

    if !once {
        println!(
            "\nThe system keeps running (Ctrl-C stops it):\n  curl -s {}/healthz\n  grpcurl -plaintext {} list\n  grpcurl -plaintext -H 'authorization: Bearer {}' -d '{{}}' {} reconciler.coordinator.v2.Coordinator/Plan\n  grpcurl -cacert {ca} -cert {cert} -key {key} {} list   # an agent: mutual TLS\n  logs and the state DB: {}",
            demo.stack.http_url,
            demo.stack.grpc_addr,
            reconciler_testkit::harness::stack_tokens::ADMIN_TOKEN,
            demo.stack.grpc_addr,
            demo.stack.agent_addr,
            demo.stack.dir.path().display(),
            ca = demo.certs.ca().display(),
            cert = demo.certs.cert("coordinator").display(),
            key = demo.certs.key("coordinator").display(),
        );
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

impl Demo {
    fn report(&self, job: &Value) {
        let summary = &job["summary"];
        println!(
            "  job {}: {}",
            job["id"],
            job["state"].as_str().unwrap_or("?")
        );
        if let Some(outcomes) = summary["outcomes"].as_object() {
            for (what, n) in outcomes {
                println!("    {what}: {n}");
            }
        }
        for w in summary["warnings"].as_array().into_iter().flatten() {
            println!("    warning: {}", w.as_str().unwrap_or_default());
        }
    }

    async fn show(&self) {
        let m = &self.stack.mailcow;
        println!("  Mailcow sender_acl:");
        for login in [ALICE, BOB, CAROL] {
            println!("    {login} may send as {:?}", m.sender_acl(login));
        }
        let names: Vec<String> = m.app_passwords(INFO).into_iter().map(|p| p.name).collect();
        println!("  Mailcow app passwords on {INFO}: {names:?}");
        for alias in m.aliases() {
            println!(
                "  Mailcow alias {} -> {}",
                alias.address,
                alias.goto.join(",")
            );
        }
        let acl = self.dovecot.acl(INFO, "INBOX").await;
        println!("  Dovecot ACL on {INFO}/INBOX (every folder alike): {acl:?}");
        let delegates = self.sogo.settings_json(INFO).await["Mail"]["DelegateTo"].clone();
        println!("  SOGo: may use {INFO}'s identity: {delegates}");
        let accounts: Vec<String> = self
            .nextcloud
            .state()
            .await
            .accounts
            .into_iter()
            .map(|a| format!("{} -> {} (id {})", a.user_id, a.email, a.id))
            .collect();
        println!("  Nextcloud Mail accounts: {accounts:?}");
        let mut members = self.synapse.joined_members(&self.room).await;
        members.sort();
        println!("  Synapse #support:matrix.test joined: {members:?}");
        for login in [ALICE, BOB, CAROL] {
            let state = match self.stalwart.find(ObjectType::Account, login) {
                None => "no account".to_owned(),
                Some(account) => {
                    let suspended =
                        account["permissions"]["disabledPermissions"]["authenticate"] == true;
                    format!(
                        "account {} ({}), sign-in: {:?}",
                        account["id"].as_str().unwrap_or_default(),
                        if suspended { "suspended" } else { "active" },
                        self.stalwart.sign_in(login, None)
                    )
                }
            };
            println!("  Stalwart {login}: {state}");
        }
    }
}
