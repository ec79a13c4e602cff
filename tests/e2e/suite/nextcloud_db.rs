//! Issue 12, item 6: the nextcloud-agent observes Mail accounts from
//! Nextcloud's `oc_mail_accounts` table (`NEXTCLOUD_DB_URL`) in one query
//! instead of one `occ mail:account:export` per user. The occ simulator keeps
//! its accounts in a real MariaDB table with Nextcloud Mail's schema, so what
//! occ creates is what the agent reads; occ calls are counted by command in
//! the container, queries by MariaDB's own statement counter.

use reconciler_proto::agent::{NextcloudObserveRequest, NextcloudObserveResponse};
use reconciler_testkit::harness::{MariaDb, NextcloudContainer, Stack, StackOptions, start_agent};
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const IMAP_HOST: &str = "mail.example.com";

struct World {
    /// Declared before MariaDB so the container goes first.
    nextcloud: NextcloudContainer,
    mariadb: MariaDb,
    stack: Stack,
    users: Vec<String>,
}

fn agent_env(nextcloud: &NextcloudContainer, db_url: Option<String>) -> Vec<(String, String)> {
    let mut env = vec![
        ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
        ("MAIL_IMAP_HOST".into(), IMAP_HOST.into()),
        ("MAIL_SMTP_HOST".into(), IMAP_HOST.into()),
    ];
    if let Some(url) = db_url {
        env.push(("NEXTCLOUD_DB_URL".into(), url));
    }
    env
}

/// `n` members of a `nextcloud_mail` group, each a Nextcloud user; the
/// agent is given `agent_db_url` (the real one, a wrong one, or none).
async fn world(
    n: usize,
    agent_db_url: impl FnOnce(&NextcloudContainer) -> Option<String>,
) -> World {
    let users: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
    let mariadb = MariaDb::start().await;
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    let nextcloud = NextcloudContainer::start_with_database(&names, &mariadb).await;
    let stack = Stack::start(StackOptions {
        max_attempts: 100,
        nextcloud_agent_env: Some(agent_env(&nextcloud, agent_db_url(&nextcloud))),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    let group = stack.authentik.add_group(
        "info-desk",
        json!({"reconciler": {"shared_mailbox": INFO, "nextcloud_mail": true}}),
    );
    for user in &users {
        let mail = format!("{user}@example.com");
        stack.mailcow.add_mailbox(&mail);
        let pk = stack.authentik.add_user(user, &mail);
        stack.authentik.add_member(&group, pk);
    }
    World {
        nextcloud,
        mariadb,
        stack,
        users,
    }
}

impl World {
    /// Runs the cold sweep and checks every member got their account.
    async fn converge(&self) {
        let job = self.stack.sweep().await;
        self.stack.expect_done(&job).await;
        assert_eq!(self.ours().await, self.users.len(), "one account each");
    }

    /// Accounts on the shared mailbox, read from the table.
    async fn ours(&self) -> usize {
        let state = self.nextcloud.state().await;
        state.accounts.iter().filter(|a| a.email == INFO).count()
    }

    fn agent_logs(&self) -> String {
        self.stack.nextcloud_agent.as_ref().unwrap().logs()
    }
}

fn total(calls: &std::collections::BTreeMap<String, usize>) -> usize {
    calls.values().sum()
}

#[tokio::test]
async fn the_in_sync_sweep_reads_the_table_once_and_runs_no_occ() {
    let w = world(6, |nc| nc.db_url().map(str::to_owned)).await;
    w.converge().await;
    let before = w.nextcloud.state().await;

    w.nextcloud.reset_calls().await;
    w.stack.mailcow.reset_counts();
    let statements = w.mariadb.global_status("Com_stmt_execute").await;
    let job = w.stack.sweep().await;
    w.stack.expect_done(&job).await;
    let statements = w.mariadb.global_status("Com_stmt_execute").await - statements;
    let calls = w.nextcloud.calls().await;

    assert_eq!(
        calls.get("mail:account:export"),
        None,
        "no export at all: {calls:?}"
    );
    assert_eq!(total(&calls), 0, "no occ process at all: {calls:?}");
    assert_eq!(
        statements,
        1,
        "one query of oc_mail_accounts for all {} users",
        w.users.len()
    );
    assert_eq!(w.nextcloud.state().await, before, "nothing written");
    assert_eq!(w.stack.mailcow.write_count(), 0);
}

/// The same users observed by an agent reading the table and by one running
/// occ export: the responses are equal field by field, including an
/// account the user made themselves, a provisioned one, one without a
/// name, a user without accounts and a user Nextcloud does not know.
#[tokio::test]
async fn the_table_read_matches_the_occ_export_field_by_field() {
    let w = world(3, |nc| nc.db_url().map(str::to_owned)).await;
    w.converge().await;
    // user0's own account, as Nextcloud's UI would make it.
    let own = w
        .nextcloud
        .occ(&[
            "mail:account:create",
            "user0",
            "User Zero",
            "user0@example.com",
            "imap.elsewhere.example",
            "993",
            "ssl",
            "user0@example.com",
            "own-password",
            "smtp.elsewhere.example",
            "587",
            "tls",
            "user0@example.com",
            "own-password",
        ])
        .await;
    assert_eq!(own.code, 0, "{own:?}");
    // A provisioned account and an unnamed one (columns occ cannot set).
    w.mariadb
        .root_sql(
            "UPDATE nextcloud.oc_mail_accounts SET provisioning_id = 7 WHERE user_id = 'user1';
             UPDATE nextcloud.oc_mail_accounts SET name = NULL WHERE user_id = 'user2';",
        )
        .await;
    w.nextcloud.add_user("no-accounts").await;

    let db_agent = w.stack.nextcloud_agent_addr.clone().unwrap();
    let (occ_service, occ_agent) = start_agent(
        "nextcloud-agent",
        &agent_env(&w.nextcloud, None),
        w.stack.dir.path(),
        std::time::Duration::from_secs(30),
    )
    .await;
    let users: Vec<String> = w
        .users
        .iter()
        .cloned()
        .chain(["no-accounts".into(), "nobody".into()])
        .collect();
    let observe = |addr: String| {
        let users = users.clone();
        async move {
            Stack::nextcloud_agent_client(&addr)
                .await
                .observe(NextcloudObserveRequest { users })
                .await
                .expect("observe")
                .into_inner()
        }
    };

    w.nextcloud.reset_calls().await;
    let from_table: NextcloudObserveResponse = observe(db_agent).await;
    let table_calls = w.nextcloud.calls().await;
    w.nextcloud.reset_calls().await;
    let from_export: NextcloudObserveResponse = observe(occ_agent).await;
    let export_calls = w.nextcloud.calls().await;
    drop(occ_service);

    assert!(from_table.unavailable.is_none(), "{from_table:?}");
    assert_eq!(from_table.accounts.len(), users.len());
    for (table, export) in from_table.accounts.iter().zip(&from_export.accounts) {
        assert_eq!(table.user, export.user);
        assert_eq!(table.user_exists, export.user_exists, "{}", table.user);
        assert_eq!(
            table.accounts.len(),
            export.accounts.len(),
            "{}",
            table.user
        );
        for (a, b) in table.accounts.iter().zip(&export.accounts) {
            assert_eq!(
                (a.id, &a.email, &a.name, &a.imap_user, &a.imap_host),
                (b.id, &b.email, &b.name, &b.imap_user, &b.imap_host),
                "{}",
                table.user
            );
            assert_eq!(a.provisioned, b.provisioned, "{}", table.user);
            assert_eq!(a.configured_server, b.configured_server, "{}", table.user);
        }
    }
    assert_eq!(from_table, from_export, "the whole response");
    // The cases are really there.
    let user = |name: &str| from_table.accounts.iter().find(|u| u.user == name).unwrap();
    assert_eq!(user("user0").accounts.len(), 2, "ours and the own one");
    assert!(user("user1").accounts[0].provisioned);
    assert_eq!(user("user2").accounts[0].name, "");
    assert!(user("no-accounts").user_exists && user("no-accounts").accounts.is_empty());
    assert!(!user("nobody").user_exists);

    // The table agent asked occ only whether the two users without
    // accounts exist; the export agent ran one export per user.
    assert_eq!(
        table_calls.get("mail:account:export"),
        None,
        "{table_calls:?}"
    );
    assert_eq!(table_calls.get("user:info"), Some(&2), "{table_calls:?}");
    assert_eq!(
        export_calls.get("mail:account:export"),
        Some(&users.len()),
        "{export_calls:?}"
    );
}

/// A database the agent cannot read (here: a wrong password) costs speed,
/// not correctness: observe falls back to one export per user, says so
/// without the URL's password, and the sweep stays in sync.
#[tokio::test]
async fn a_failing_table_read_falls_back_to_occ_export() {
    const WRONG: &str = "not-the-password";
    let w = world(4, |nc| {
        nc.db_url()
            .map(|url| url.replace(reconciler_testkit::harness::nextcloud::DB_PASSWORD, WRONG))
    })
    .await;
    w.converge().await;
    let before = w.nextcloud.state().await;

    w.nextcloud.reset_calls().await;
    let job = w.stack.sweep().await;
    w.stack.expect_done(&job).await;
    let calls = w.nextcloud.calls().await;
    assert_eq!(
        calls.get("mail:account:export"),
        Some(&w.users.len()),
        "one export per user: {calls:?}"
    );
    assert_eq!(
        w.nextcloud.state().await,
        before,
        "nothing created or removed"
    );
    let logs = w.agent_logs();
    assert!(
        logs.contains(
            "Nextcloud's database cannot be read; observing with one occ export per user"
        ),
        "the fallback is reported:\n{logs}"
    );
    assert!(!logs.contains(WRONG), "the URL's password is never logged");
}

/// Nextcloud's database down: the table read fails, and so does occ (which
/// boots on that database). Observe reports Nextcloud unavailable; nothing
/// is removed in Nextcloud or Mailcow, and the job waits for a retry.
#[tokio::test]
async fn a_database_that_is_down_removes_nothing() {
    let mut w = world(3, |nc| nc.db_url().map(str::to_owned)).await;
    w.converge().await;
    let app_passwords = w.stack.mailcow.app_passwords(INFO).len();
    assert_eq!(app_passwords, w.users.len());

    w.mariadb.stop().await;
    w.nextcloud.reset_calls().await;
    w.stack.mailcow.reset_counts();
    let id = w.stack.request_sweep().await;
    let failed = w
        .stack
        .wait_for_failed_attempt(id, "Nextcloud's database is down")
        .await;
    let summary: Value = failed["summary"].clone();
    assert_eq!(
        summary["outcomes"]["nextcloud_account.observe.transient"], 1,
        "{summary}"
    );
    assert!(
        summary["warnings"]
            .to_string()
            .contains("Nextcloud cannot reach its database"),
        "the reason is in the status: {summary}"
    );
    let calls = w.nextcloud.calls().await;
    for write in [
        "mail:account:create",
        "mail:account:delete",
        "mail:account:update",
    ] {
        assert_eq!(calls.get(write), None, "no {write}: {calls:?}");
    }
    assert_eq!(w.stack.mailcow.write_count(), 0, "no app password touched");
    assert_eq!(w.stack.mailcow.app_passwords(INFO).len(), app_passwords);
}
