//! End to end: an Authentik listing that arrives short, repeated, with a
//! wrong count, or consistently cut in half never removes anything. The
//! real coordinator, mailcow-agent and nextcloud-agent run against the
//! Authentik and Mailcow simulators and the occ container; every assertion
//! reads the targets' state (Mailcow's tables, Nextcloud's accounts).

use reconciler_testkit::authentik_sim::{ListFault, Listing};
use reconciler_testkit::harness::{NextcloudContainer, Stack, StackOptions};
use serde_json::json;

const INFO: &str = "info@example.com";
const TEAM: &str = "team@example.com";
const IMAP_HOST: &str = "mail.example.com";
/// With the harness' Authentik page size of 3: pages of 3, 3 and 2 users.
const MEMBERS: usize = 8;

fn username(i: usize) -> String {
    format!("u{i}")
}

fn address(i: usize) -> String {
    format!("u{i}@example.com")
}

/// What the group grants, as the targets hold it.
#[derive(Debug, PartialEq)]
struct Grants {
    /// Logins with a send-as entry for `info@`, with every entry they hold.
    send_as: Vec<(String, Vec<String>)>,
    /// Our app passwords on `info@`: (id, name); an id changes if one is
    /// deleted and made again.
    app_passwords: Vec<(i64, String)>,
    /// The group alias' members, sorted.
    alias_goto: Vec<String>,
    /// Nextcloud Mail accounts for `info@`: (Nextcloud user, account id).
    accounts: Vec<(String, i64)>,
}

/// Our app passwords' names on `info@` for these members.
fn app_password_names(members: &[usize]) -> Vec<String> {
    members
        .iter()
        .map(|i| format!("authentik-sync:{}:{INFO}", username(*i)))
        .collect()
}

struct World {
    nextcloud: NextcloudContainer,
    stack: Stack,
}

impl World {
    /// Eight members granted send-as, an app password with a Nextcloud
    /// account, and alias membership; then u1 leaves the group, so a run
    /// that removes anything at all shows it.
    async fn granted() -> Self {
        let names: Vec<String> = (1..=MEMBERS).map(username).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let nextcloud = NextcloudContainer::start(&name_refs).await;
        let stack = Stack::start(StackOptions {
            max_attempts: 2,
            // Only the guards under test: the removal-share guard would
            // otherwise also stop some of the deletions the faults provoke.
            coordinator_env: vec![("REMOVAL_GUARD_MIN".into(), "1000".into())],
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
        let group = stack.authentik.add_group(
            "support",
            json!({"reconciler": {"shared_mailbox": INFO, "send_as": true,
                                  "nextcloud_mail": true, "alias": TEAM}}),
        );
        let mut pks = Vec::new();
        for i in 1..=MEMBERS {
            stack.mailcow.add_mailbox(&address(i));
            let pk = stack.authentik.add_user(&username(i), &address(i));
            stack.authentik.add_member(&group, pk);
            pks.push(pk);
        }
        let world = Self { nextcloud, stack };
        world.stack.expect_done(&world.stack.sweep().await).await;
        world
            .assert_granted_to(&(1..=MEMBERS).collect::<Vec<_>>())
            .await;

        world.stack.authentik.remove_member(&group, pks[0]);
        world.stack.mailcow.reset_counts();
        world
    }

    async fn grants(&self) -> Grants {
        let mailcow = &self.stack.mailcow;
        let send_as = (1..=MEMBERS)
            .map(|i| (address(i), mailcow.sender_acl(&address(i))))
            .filter(|(_, acl)| acl.contains(&INFO.to_owned()))
            .collect();
        let app_passwords = mailcow
            .app_passwords(INFO)
            .into_iter()
            .filter(|p| p.name.starts_with("authentik-sync:"))
            .map(|p| (p.id, p.name))
            .collect();
        let mut alias_goto = mailcow
            .aliases()
            .into_iter()
            .find(|a| a.address == TEAM)
            .map(|a| a.goto)
            .unwrap_or_default();
        alias_goto.sort();
        let mut accounts: Vec<(String, i64)> = self
            .nextcloud
            .state()
            .await
            .accounts
            .into_iter()
            .filter(|a| a.email == INFO)
            .map(|a| (a.user_id, a.id))
            .collect();
        accounts.sort();
        Grants {
            send_as,
            app_passwords,
            alias_goto,
            accounts,
        }
    }

    /// Exactly `members` (1-based) hold every grant.
    async fn assert_granted_to(&self, members: &[usize]) {
        let grants = self.grants().await;
        let logins: Vec<String> = grants.send_as.iter().map(|(l, _)| l.clone()).collect();
        let mut addresses: Vec<String> = members.iter().map(|i| address(*i)).collect();
        assert_eq!(logins, addresses, "send-as: {grants:?}");
        let names: Vec<String> = grants
            .app_passwords
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        assert_eq!(
            names,
            app_password_names(members),
            "app passwords: {grants:?}"
        );
        addresses.sort();
        assert_eq!(grants.alias_goto, addresses, "alias members: {grants:?}");
        let mut users: Vec<String> = members.iter().map(|i| username(*i)).collect();
        users.sort();
        let account_users: Vec<String> = grants.accounts.iter().map(|(u, _)| u.clone()).collect();
        assert_eq!(account_users, users, "Nextcloud accounts: {grants:?}");
    }

    /// With the fault gone, a normal sweep applies the one removal that
    /// was due all along (u1 left) and keeps everyone else.
    async fn recovers(&self) {
        self.stack.authentik.set_list_fault(Listing::Users, None);
        let job = self.stack.sweep().await;
        self.stack.expect_done(&job).await;
        self.assert_granted_to(&(2..=MEMBERS).collect::<Vec<_>>())
            .await;
    }
}

/// A sweep under `fault` fails as an Authentik error naming `numbers`,
/// and neither Mailcow nor Nextcloud changes at all.
async fn fault_removes_nothing(fault: ListFault, numbers: &str) {
    let world = World::granted().await;
    let before = world.grants().await;
    world
        .stack
        .authentik
        .set_list_fault(Listing::Users, Some(fault));

    let job = world.stack.sweep().await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["last_error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Authentik: GET /api/v3/core/users/") && error.contains(numbers),
        "expected an Authentik error with {numbers:?}: {job}"
    );
    assert_eq!(
        world.stack.mailcow.write_count(),
        0,
        "Mailcow writes: {:?}",
        world.stack.mailcow.counts()
    );
    assert_eq!(world.grants().await, before);

    world.recovers().await;
}

#[tokio::test]
async fn a_listing_ending_early_removes_nothing() {
    // Page 2 of 3 says it is the last: u7 and u8 would look gone.
    fault_removes_nothing(
        ListFault::EndAfter { page: 2 },
        "got 6 distinct users, Authentik announced 8 (page 2 of 3 said next = 0)",
    )
    .await;
}

#[tokio::test]
async fn an_empty_page_mid_way_removes_nothing() {
    // Page 2 of 3 comes back empty while `next` says 3: u4–u6 would look gone.
    fault_removes_nothing(
        ListFault::EmptyPage { page: 2 },
        "got 3 distinct users, Authentik announced 8 (page 2 of 3 was empty, announced as items 4–6)",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_count_removes_nothing() {
    fault_removes_nothing(
        ListFault::WrongCount { delta: 4 },
        "got 8 distinct users, Authentik announced 12 (the last page, 3 of 3, ended at item 8)",
    )
    .await;
}

#[tokio::test]
async fn users_repeated_across_pages_remove_nothing() {
    // Page 2 starts one row early (u3 again) and so leaves u6 out.
    fault_removes_nothing(
        ListFault::Repeat { page: 2, by: 1 },
        "got 5 distinct users, Authentik announced 8 (page 2 of 3 repeated 1 item(s) already read)",
    )
    .await;
}

/// A consistent listing of exactly half the directory (a sync account that
/// lost sight of part of it): no paging check can tell, the user-drop guard
/// must. Runs are done (nothing failed) but hold every removal, and a held
/// run never becomes the "last good" count the next run compares with.
#[tokio::test]
async fn a_directory_cut_exactly_in_half_removes_nothing() {
    let world = World::granted().await;
    let before = world.grants().await;
    world.stack.authentik.set_list_fault(
        Listing::Users,
        Some(ListFault::OnlyFirst { keep: MEMBERS / 2 }),
    );
    let assert_held = |job: &serde_json::Value| {
        let summary = job["summary"].to_string();
        assert!(
            summary.contains("held")
                && summary.contains("user count fell from 8 (last good run) to 4"),
            "{job}"
        );
    };

    let job = world.stack.sweep().await;
    world.stack.expect_done(&job).await;
    assert_held(&job);
    // A run for one of the hidden users patches the last directory that
    // looked right (a held read never becomes the snapshot) with that
    // user, read on its own: still there, still granted.
    let hidden = world.stack.authentik.user_pk(&username(MEMBERS)).unwrap();
    world.stack.authentik.reset_counts();
    let job = world
        .stack
        .webhook_and_wait(&Stack::user_event(hidden, "evt-hidden-user"))
        .await;
    world.stack.expect_done(&job).await;
    assert_eq!(
        world
            .stack
            .authentik
            .counts()
            .get("GET /api/v3/core/users/"),
        None,
        "no listing: the snapshot is from the last good read"
    );
    // Still compared with 8, not with the 4 the held runs saw.
    let job = world.stack.sweep().await;
    world.stack.expect_done(&job).await;
    assert_held(&job);

    assert_eq!(
        world.stack.mailcow.write_count(),
        0,
        "Mailcow writes: {:?}",
        world.stack.mailcow.counts()
    );
    assert_eq!(world.grants().await, before);

    world.recovers().await;
}
