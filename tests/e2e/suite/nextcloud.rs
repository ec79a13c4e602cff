//! End to end for Nextcloud Mail accounts: the real coordinator,
//! mailcow-agent and nextcloud-agent, with occ run by `docker exec` in a
//! container (the occ simulator, faithful to reference B6/B7) and the
//! Mailcow and Authentik simulators. The app password secret travels from
//! the mailcow-agent through the coordinator to occ, and nowhere else.

use reconciler_testkit::harness::{MAILCOW_KEY, NextcloudContainer, Stack, StackOptions};
use reconciler_testkit::occ_sim::Account;
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";
const APP_NAME: &str = "authentik-sync:alice:info@example.com";
const IMAP_HOST: &str = "mail.example.com";

struct World {
    nextcloud: NextcloudContainer,
    stack: Stack,
    group: String,
    alice: i64,
}

async fn world(max_attempts: u32) -> World {
    let nextcloud = NextcloudContainer::start(&["alice"]).await;
    // Alice's own account, made in Nextcloud's UI: never ours.
    let own = nextcloud
        .occ(&[
            "mail:account:create",
            "alice",
            "Alice",
            ALICE,
            IMAP_HOST,
            "993",
            "ssl",
            ALICE,
            "alices-own-password",
            IMAP_HOST,
            "587",
            "tls",
            ALICE,
            "alices-own-password",
        ])
        .await;
    assert_eq!(own.code, 0, "{own:?}");
    let stack = Stack::start(StackOptions {
        max_attempts,
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
            ("MAIL_IMAP_HOST".into(), IMAP_HOST.into()),
            ("MAIL_SMTP_HOST".into(), IMAP_HOST.into()),
        ]),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ALICE);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "info-desk",
        json!({"reconciler": {"shared_mailbox": INFO, "nextcloud_mail": true}}),
    );
    World {
        nextcloud,
        stack,
        group,
        alice,
    }
}

impl World {
    async fn accounts(&self) -> Vec<Account> {
        self.nextcloud.state().await.accounts
    }

    async fn ours(&self) -> Vec<Account> {
        self.accounts()
            .await
            .into_iter()
            .filter(|a| a.email == INFO)
            .collect()
    }

    async fn own_account_survives(&self) {
        let accounts = self.accounts().await;
        assert!(
            accounts
                .iter()
                .any(|a| a.email == ALICE && a.imap.password == "alices-own-password"),
            "alice's own account is untouched: {accounts:?}"
        );
    }

    fn app_passwords(&self) -> usize {
        self.stack
            .mailcow
            .app_passwords(INFO)
            .iter()
            .filter(|p| p.name == APP_NAME)
            .count()
    }

    /// The account's password is the Mailcow app password, for IMAP and SMTP.
    async fn account_works(&self) -> String {
        let ours = self.ours().await;
        assert_eq!(ours.len(), 1, "exactly one account of ours: {ours:?}");
        let account = &ours[0];
        assert_eq!(account.user_id, "alice");
        assert_eq!(account.imap.user, INFO);
        assert_eq!(account.imap.host, IMAP_HOST);
        assert_eq!(account.imap.password, account.smtp.password);
        assert!(
            self.stack
                .mailcow
                .verify_app_password(INFO, APP_NAME, &account.imap.password),
            "the account's password is the app password"
        );
        assert_eq!(self.app_passwords(), 1, "one app password, none leaked");
        account.imap.password.clone()
    }

    async fn membership(&self, join: bool, event: &str) -> Value {
        if join {
            self.stack.authentik.add_member(&self.group, self.alice);
        } else {
            self.stack.authentik.remove_member(&self.group, self.alice);
        }
        self.stack
            .webhook_and_wait(&Stack::group_event(&self.group, event))
            .await
    }

    /// Every log, the audit log and the state DB, scanned for each secret.
    fn assert_no_leak(&self, secrets: &[String]) {
        let mut haystacks = vec![
            (
                "coordinator log",
                self.stack.coordinator.logs().into_bytes(),
            ),
            ("mailcow-agent log", self.stack.agent.logs().into_bytes()),
            (
                "nextcloud-agent log",
                self.stack
                    .nextcloud_agent
                    .as_ref()
                    .unwrap()
                    .logs()
                    .into_bytes(),
            ),
        ];
        for suffix in ["", "-wal", "-shm"] {
            let path = format!("{}{suffix}", self.stack.state_db().display());
            if let Ok(bytes) = std::fs::read(&path) {
                haystacks.push(("state DB", bytes));
            }
        }
        for secret in secrets {
            assert!(!secret.is_empty());
            for (what, bytes) in &haystacks {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "an app password secret appears in the {what}");
            }
        }
    }
}

#[tokio::test]
async fn join_creates_a_working_account_and_leave_removes_both() {
    let w = world(3).await;
    let job = w.membership(true, "evt-join").await;
    w.stack.expect_done(&job).await;
    let secret = w.account_works().await;
    w.own_account_survives().await;

    let job = w.membership(false, "evt-leave").await;
    w.stack.expect_done(&job).await;
    assert!(w.ours().await.is_empty(), "our account is gone");
    assert_eq!(w.app_passwords(), 0, "its app password is gone");
    w.own_account_survives().await;
    w.assert_no_leak(&[secret, "alices-own-password".into()]);
}

#[tokio::test]
async fn a_second_sweep_changes_nothing() {
    let w = world(3).await;
    let job = w.membership(true, "evt-join").await;
    w.stack.expect_done(&job).await;
    let before = w.nextcloud.state().await;
    w.stack.mailcow.reset_counts();
    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    let after = w.nextcloud.state().await;
    assert_eq!(after, before, "no occ create, delete or update");
    assert_eq!(w.stack.mailcow.write_count(), 0, "no new app password");
    w.own_account_survives().await;
}

#[tokio::test]
async fn a_lost_app_password_is_rotated_and_the_account_works_again() {
    let w = world(3).await;
    let job = w.membership(true, "evt-join").await;
    w.stack.expect_done(&job).await;
    let first = w.account_works().await;
    let id = w
        .stack
        .mailcow
        .app_passwords(INFO)
        .into_iter()
        .find(|p| p.name == APP_NAME)
        .unwrap()
        .id;
    // Someone deletes it in Mailcow's UI: the account stops working.
    w.stack.mailcow.delete_app_password(id);
    assert!(!w.stack.mailcow.verify_app_password(INFO, APP_NAME, &first));
    let account_id = w.ours().await[0].id;

    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    let second = w.account_works().await;
    assert_ne!(second, first, "a new secret");
    assert_eq!(
        w.ours().await[0].id,
        account_id,
        "the same account, re-keyed"
    );
    w.own_account_survives().await;
    w.assert_no_leak(&[first, second]);
}

#[tokio::test]
async fn maintenance_mode_is_transient_and_the_run_converges_without_leaking_app_passwords() {
    let w = world(100).await;
    w.nextcloud.maintenance(true).await;
    w.stack.authentik.add_member(&w.group, w.alice);
    let (status, reply) = w
        .stack
        .webhook(&Stack::group_event(&w.group, "evt-join-maintenance"))
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["job_id"].as_i64().unwrap();
    let failed = w
        .stack
        .wait_for_failed_attempt(id, "Nextcloud is in maintenance mode")
        .await;
    let summary: Value = failed["summary"].clone();
    // Retries come fast here: more than one attempt may have failed by
    // the time the job is read, and each must have failed the same way.
    assert_eq!(
        summary["last_attempt"]["outcomes"]["nextcloud_account.observe.transient"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["outcomes"]["nextcloud_account.observe.transient"], summary["attempts_reported"],
        "{summary}"
    );
    assert!(
        summary["warnings"].to_string().contains("maintenance mode"),
        "the reason is in the status: {summary}"
    );
    assert!(w.ours().await.is_empty());

    // The app password was made while Nextcloud was down; once it is back
    // the same app password gets a new secret and the account is created.
    w.nextcloud.maintenance(false).await;
    let job = w.stack.wait_job(id).await;
    assert_eq!(job["state"], "done", "{job}");
    let secret = w.account_works().await;
    w.own_account_survives().await;
    w.assert_no_leak(&[secret]);
}

/// A member Nextcloud does not know yet (never logged in): nothing is
/// created for them, the reason is reported, and later sweeps stay quiet
/// instead of failing (and rotating an app password) every time.
#[tokio::test]
async fn a_member_without_a_nextcloud_user_waits_quietly() {
    let w = world(3).await;
    let carol_mail = "carol@example.com";
    w.stack.mailcow.add_mailbox(carol_mail);
    let carol = w.stack.authentik.add_user("carol", carol_mail);
    w.stack.authentik.add_member(&w.group, carol);
    let first = w.stack.sweep().await;
    assert_eq!(first["state"], "done", "{first}");
    let summary: Value = first["summary"].clone();
    assert!(
        summary["warnings"].to_string().contains("no user carol"),
        "{summary}"
    );
    assert!(w.ours().await.is_empty());

    let before = w.nextcloud.state().await;
    w.stack.mailcow.reset_counts();
    let second = w.stack.sweep().await;
    assert_eq!(second["state"], "done", "{second}");
    assert_eq!(w.stack.mailcow.write_count(), 0, "no app password churn");
    assert_eq!(w.nextcloud.state().await, before, "no occ writes");
}

/// Mailcow HTML-escapes app password names on store and again on read, and
/// an edit that does not resend the name (a person toggling a protocol in
/// the UI) re-saves the escaped-on-read form (reference mailcow.md
/// §3.2–3.4). For `o'neil` that changed the name on every such edit: the
/// next sweep no longer knew it, deleted it and made a new one.
#[tokio::test]
async fn an_app_password_survives_a_human_edit_of_its_escaping() {
    const ONEIL_MAIL: &str = "oneil@example.com";
    let nextcloud = NextcloudContainer::start(&["o'neil"]).await;
    let stack = Stack::start(StackOptions {
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
            ("MAIL_IMAP_HOST".into(), IMAP_HOST.into()),
            ("MAIL_SMTP_HOST".into(), IMAP_HOST.into()),
        ]),
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ONEIL_MAIL);
    let oneil = stack.authentik.add_user("o'neil", ONEIL_MAIL);
    let group = stack.authentik.add_group(
        "info-desk",
        json!({"reconciler": {"shared_mailbox": INFO, "nextcloud_mail": true}}),
    );
    stack.authentik.add_member(&group, oneil);
    let first = stack.sweep().await;
    assert_eq!(first["state"], "done", "{first}");
    let ours = |stack: &Stack| -> Vec<(i64, String)> {
        stack
            .mailcow
            .app_passwords(INFO)
            .into_iter()
            .filter(|p| p.name.starts_with("authentik-sync:"))
            .map(|p| (p.id, p.name))
            .collect()
    };
    let created = ours(&stack);
    assert_eq!(created.len(), 1, "{created:?}");
    let (id, _) = created[0].clone();

    // A person edits it in Mailcow without touching the name.
    let edit = reqwest::Client::new()
        .post(format!("{}/api/v1/edit/app-passwd", stack.mailcow.base_url()))
        .header("X-API-Key", MAILCOW_KEY)
        .header("Content-Type", "application/json")
        .body(json!({"items": [id], "attr": {"username": INFO, "protocols": ["imap_access", "smtp_access", "sieve_access"]}}).to_string())
        .send()
        .await
        .expect("edit")
        .text()
        .await
        .expect("edit body");
    assert!(edit.contains("object_modified"), "{edit}");

    for sweep in 1..=3 {
        stack.mailcow.reset_counts();
        let job = stack.sweep().await;
        assert_eq!(job["state"], "done", "sweep {sweep}: {job}");
    }
    assert_eq!(
        stack.mailcow.write_count(),
        0,
        "the last sweep wrote nothing: {:?}",
        stack.mailcow.counts()
    );
    let after = ours(&stack);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].0, id, "the same app password, never replaced");
    let accounts: Vec<Account> = nextcloud
        .state()
        .await
        .accounts
        .into_iter()
        .filter(|a| a.email == INFO)
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert!(
        stack
            .mailcow
            .verify_app_password(INFO, &after[0].1, &accounts[0].imap.password),
        "o'neil's account still holds the app password's secret"
    );
}

/// Issue 8, defect 12: a user id starting with `-` is a positional value
/// after `--`; without it, Symfony's console reads `-bob` as the options
/// `-b -o -b` and refuses the command.
#[tokio::test]
async fn a_user_whose_id_starts_with_a_dash_gets_and_loses_an_account() {
    let w = world(3).await;
    let user = "-bob";
    w.nextcloud.add_user(user).await;
    w.stack.mailcow.add_mailbox("bob@example.com");
    let bob = w.stack.authentik.add_user(user, "bob@example.com");
    w.stack.authentik.add_member(&w.group, bob);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-dash-join"))
        .await;
    w.stack.expect_done(&job).await;
    let accounts: Vec<Account> = w
        .accounts()
        .await
        .into_iter()
        .filter(|a| a.user_id == user)
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0].email, INFO);

    w.stack.authentik.remove_member(&w.group, bob);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-dash-leave"))
        .await;
    w.stack.expect_done(&job).await;
    assert!(
        !w.accounts().await.iter().any(|a| a.user_id == user),
        "the account of {user} is gone"
    );
    w.own_account_survives().await;
}
