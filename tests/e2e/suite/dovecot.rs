//! End to end against a real Dovecot 2.3 in a container: the real
//! coordinator and mailcow-agent (doveadm through the Docker API), with the
//! Mailcow and Authentik simulators. Assertions read Dovecot itself:
//! `doveadm acl get/rights` and a real IMAP login as the grantee.

use reconciler_proto::coordinator::{LedgerState, ListOwnedRequest, Resource};
use reconciler_testkit::harness::{DovecotContainer, Imap, RefusedPort, Stack, StackOptions};
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const SHARED_INBOX: &str = "Shared/info@example.com/INBOX";
/// Every folder of info@: the auto-created specials plus a nested pair.
const FOLDERS: [&str; 6] = [
    "INBOX",
    "Sent",
    "Drafts",
    "Trash",
    "Projects",
    "Projects/2026",
];

struct World {
    dovecot: DovecotContainer,
    stack: Stack,
    alice: i64,
    group: String,
}

async fn world(options: StackOptions) -> World {
    world_with(options, "").await
}

/// [`world`] on a Dovecot with `extra_config` added to its dovecot.conf.
async fn world_with(options: StackOptions, extra_config: &str) -> World {
    let dovecot = DovecotContainer::start_with(
        &[
            (INFO, "info-pass"),
            (ALICE, "alice-pass"),
            (BOB, "bob-pass"),
        ],
        extra_config,
    )
    .await;
    dovecot.create_folder(INFO, "Projects").await;
    dovecot.create_folder(INFO, "Projects/2026").await;
    // A person shared INBOX with bob by hand (as SOGo's "Sharing…" would).
    let set = dovecot
        .doveadm(&[
            "acl",
            "set",
            "-u",
            INFO,
            "INBOX",
            "user=bob@example.com",
            "lookup",
            "read",
        ])
        .await;
    assert_eq!(set.code, 0, "{set:?}");

    let mut agent_env = vec![("DOVECOT_CONTAINER".to_owned(), dovecot.name.clone())];
    agent_env.extend(options.agent_env.iter().cloned());
    let stack = Stack::start(StackOptions {
        agent_env,
        ..options
    })
    .await;
    stack.mailcow.add_domain("example.com");
    for mbox in [INFO, ALICE, BOB] {
        stack.mailcow.add_mailbox(mbox);
    }
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "access": "read"}}),
    );
    World {
        dovecot,
        stack,
        alice,
        group,
    }
}

impl World {
    async fn join(&self, event: &str) -> Value {
        self.stack.authentik.add_member(&self.group, self.alice);
        let job = self
            .stack
            .webhook_and_wait(&Stack::group_event(&self.group, event))
            .await;
        self.stack.expect_done(&job).await;
        job
    }

    async fn alice_entry(&self, folder: &str) -> Option<String> {
        self.dovecot
            .acl(INFO, folder)
            .await
            .into_iter()
            .find(|(id, _)| id == "user=alice@example.com")
            .map(|(_, rights)| rights)
    }

    async fn bob_keeps_his_entry(&self) {
        let inbox = self.dovecot.acl(INFO, "INBOX").await;
        assert!(
            inbox.contains(&("user=bob@example.com".into(), "lookup read".into())),
            "a person's entry survives: {inbox:?}"
        );
    }
}

fn summary(job: &Value) -> Value {
    job["summary"].clone()
}

#[tokio::test]
async fn grant_reaches_every_folder_and_imap_then_leaving_revokes_it() {
    let w = world(StackOptions::default()).await;
    let job = w.join("evt-join").await;

    for folder in FOLDERS {
        assert_eq!(
            w.alice_entry(folder).await.as_deref(),
            Some("lookup read"),
            "alice's entry on {folder}"
        );
    }
    let rights = w.dovecot.rights(ALICE, SHARED_INBOX).await;
    assert_eq!(rights.code, 0, "{rights:?}");
    assert!(rights.stdout.contains("lookup read"), "{rights:?}");
    let mut imap = w.dovecot.imap(ALICE, "alice-pass").await;
    let listed = imap.list().await;
    for folder in FOLDERS {
        let shared = format!("Shared/info@example.com/{folder}");
        assert!(listed.contains(&shared), "{shared} in {listed:?}");
    }
    assert!(
        imap.select(SHARED_INBOX).await,
        "alice can SELECT the shared INBOX"
    );
    w.bob_keeps_his_entry().await;

    // Batched: far fewer execs than folders × grantees (6 folders here).
    let report = summary(&job);
    let execs = report["doveadm_execs"].as_u64().unwrap();
    assert!(
        execs <= 3,
        "one observe and one apply exec per owner: {report}"
    );
    assert_eq!(report["doveadm_acl_writes"], 6, "{report}");

    w.stack.authentik.remove_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-leave"))
        .await;
    w.stack.expect_done(&job).await;
    for folder in FOLDERS {
        assert_eq!(w.alice_entry(folder).await, None, "revoked on {folder}");
    }
    let mut imap = w.dovecot.imap(ALICE, "alice-pass").await;
    let listed = imap.list().await;
    assert!(
        !listed
            .iter()
            .any(|m| m.starts_with("Shared/info@example.com")),
        "nothing shared is listed any more: {listed:?}"
    );
    assert!(
        !imap.select(SHARED_INBOX).await,
        "SELECT is refused after revoke"
    );
    w.bob_keeps_his_entry().await;
}

#[tokio::test]
async fn a_second_sweep_writes_nothing_and_new_folders_are_covered_by_the_next() {
    let w = world(StackOptions::default()).await;
    w.join("evt-join").await;

    let second = w.stack.sweep().await;
    assert_eq!(second["state"], "done", "{second}");
    let report = summary(&second);
    assert_eq!(report["doveadm_acl_writes"], 0, "in sync: {report}");
    w.bob_keeps_his_entry().await;

    // A folder made after the grant has no entry until the next sweep.
    w.dovecot.create_folder(INFO, "Later").await;
    let third = w.stack.sweep().await;
    assert_eq!(third["state"], "done", "{third}");
    assert_eq!(summary(&third)["doveadm_acl_writes"], 1, "{third}");
    assert_eq!(w.alice_entry("Later").await.as_deref(), Some("lookup read"));
    w.bob_keeps_his_entry().await;
}

#[tokio::test]
async fn a_stopped_container_is_transient_nothing_is_recorded_and_the_run_converges() {
    let w = world(StackOptions {
        // Retries keep coming until Dovecot is back.
        max_attempts: 100,
        ..StackOptions::default()
    })
    .await;
    w.dovecot.stop().await;

    w.stack.authentik.add_member(&w.group, w.alice);
    let (status, reply) = w
        .stack
        .webhook(&Stack::group_event(&w.group, "evt-join-while-down"))
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["job_id"].as_i64().unwrap();

    let failed_attempt = w.stack.wait_for_failed_attempt(id, "Dovecot is down").await;
    let report = summary(&failed_attempt);
    assert!(
        report["outcomes"]["mailbox_acl.observe.transient"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "reported transient: {failed_attempt}"
    );
    let mut coordinator = w.stack.coordinator_client().await;
    let owned = coordinator
        .list_owned(ListOwnedRequest {
            resource: Resource::MailboxAcl as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .objects;
    assert!(
        owned.iter().all(|o| o.state() != LedgerState::Created),
        "nothing is recorded as done while Dovecot is down: {owned:?}"
    );

    w.dovecot.start_again().await;
    let job = w.stack.wait_job(id).await;
    assert_eq!(job["state"], "done", "{job}");
    for folder in FOLDERS {
        assert_eq!(
            w.alice_entry(folder).await.as_deref(),
            Some("lookup read"),
            "{folder}"
        );
    }
    w.bob_keeps_his_entry().await;
}

/// Local mode (Dovecot without containers): the agent runs its scripts with
/// its own shell. Here `DOVEADM_COMMAND` reaches the same real Dovecot
/// through the docker CLI, so the local runner and the command prefix are
/// what is exercised, against real doveadm output and exit codes.
#[tokio::test]
async fn local_mode_grants_and_revokes_through_the_configured_command() {
    let dovecot = DovecotContainer::start(&[(INFO, "info-pass"), (ALICE, "alice-pass")]).await;
    let stack = Stack::start(StackOptions {
        agent_env: vec![
            ("DOVEADM_MODE".into(), "local".into()),
            (
                "DOVEADM_COMMAND".into(),
                format!("docker exec {} doveadm", dovecot.name),
            ),
        ],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ALICE);
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "access": ["lookup", "read", "write-seen"]}}),
    );
    stack.authentik.add_member(&group, alice);
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-local-join"))
        .await;
    stack.expect_done(&job).await;
    let rights = dovecot.rights(ALICE, SHARED_INBOX).await;
    assert!(
        rights.stdout.contains("lookup read write-seen"),
        "{rights:?}"
    );

    stack.authentik.remove_member(&group, alice);
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, "evt-local-leave"))
        .await;
    stack.expect_done(&job).await;
    let inbox = dovecot.acl(INFO, "INBOX").await;
    assert!(
        !inbox.iter().any(|(id, _)| id == "user=alice@example.com"),
        "{inbox:?}"
    );
}

/// An explicit rights list with a typo is a clear per-group error: nothing
/// is granted from that group, and the run itself does not fail.
#[tokio::test]
async fn an_invalid_right_is_a_per_group_error_not_a_crash() {
    let w = world(StackOptions::default()).await;
    w.stack.authentik.set_group_attributes(
        &w.group,
        json!({"reconciler": {"shared_mailbox": INFO, "access": ["lookup", "raed"]}}),
    );
    let job = w.join("evt-typo").await;
    let report = summary(&job);
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("raed"), "{report}");
    assert_eq!(w.alice_entry("INBOX").await, None);
    w.bob_keeps_his_entry().await;
}

/// SOGo's and Nextcloud's agents are down: their resources are held and
/// reported, while the same run grants and then revokes the leaver's folder
/// ACLs and send-as right. One target never holds back the others.
#[tokio::test]
async fn other_targets_down_still_revoke_folder_acls_and_send_as() {
    let (sogo, nextcloud) = (RefusedPort::new(), RefusedPort::new());
    let w = world(StackOptions {
        max_attempts: 1,
        coordinator_env: vec![
            ("SOGO_AGENT_URL".into(), sogo.url()),
            ("NEXTCLOUD_AGENT_URL".into(), nextcloud.url()),
        ],
        ..StackOptions::default()
    })
    .await;
    w.stack.authentik.set_group_attributes(
        &w.group,
        json!({"reconciler": {"shared_mailbox": INFO, "access": "read", "send_as": true,
                              "sogo_delegate": true, "nextcloud_mail": true}}),
    );
    // Bob stays, so the leave run still needs SOGo and Nextcloud.
    let bob = w.stack.authentik.add_user("bob", BOB);
    w.stack.authentik.add_member(&w.group, bob);
    w.stack.authentik.add_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-join"))
        .await;
    let report = summary(&job);
    assert_eq!(
        report["outcomes"]["sogo_delegation.observe.transient"], 1,
        "{job}"
    );
    assert_eq!(
        report["outcomes"]["nextcloud_account.observe.transient"], 1,
        "{job}"
    );
    assert_eq!(w.alice_entry("INBOX").await.as_deref(), Some("lookup read"));
    assert!(w.stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));

    w.stack.authentik.remove_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-leave"))
        .await;
    assert_eq!(job["state"], "failed", "retried later for SOGo: {job}");
    for folder in FOLDERS {
        assert_eq!(w.alice_entry(folder).await, None, "revoked on {folder}");
    }
    assert!(!w.stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
    w.bob_keeps_his_entry().await;
}

/// A folder deleted between the coordinator's observation and the agent's
/// write: doveadm exits 68 ("Can't open mailbox"), and the grant is
/// reported as not applied there, never as applied or already as asked.
#[tokio::test]
async fn a_grant_on_a_folder_deleted_before_apply_is_not_reported_applied() {
    use reconciler_proto::agent::{
        MailboxAclSet, MailboxRight, MailcowApplyRequest, MailcowChange, MailcowObserveRequest,
        Outcome, mailcow_change::Kind,
    };
    let w = world(StackOptions::default()).await;
    let mut agent = Stack::mailcow_agent_client(&w.stack.agent_addr).await;
    let observed = agent
        .observe(MailcowObserveRequest {
            mailbox_acl_owners: vec![INFO.into()],
            ..Default::default()
        })
        .await
        .expect("observe")
        .into_inner();
    let folders: Vec<&str> = observed.mailbox_acls[0]
        .folders
        .iter()
        .map(|f| f.folder.as_str())
        .collect();
    assert!(folders.contains(&"Projects/2026"), "{folders:?}");

    // Deleted by its owner in between.
    let deleted = w
        .dovecot
        .doveadm(&["mailbox", "delete", "-u", INFO, "Projects/2026"])
        .await;
    assert_eq!(deleted.code, 0, "{deleted:?}");

    let set = |folder: &str| MailcowChange {
        id: folder.into(),
        kind: Some(Kind::MailboxAclSet(MailboxAclSet {
            owner: INFO.into(),
            grantee: ALICE.into(),
            rights: vec![MailboxRight::Lookup as i32, MailboxRight::Read as i32],
            folders: vec![folder.into()],
        })),
    };
    let results = agent
        .apply(MailcowApplyRequest {
            changes: vec![set("Projects/2026"), set("Projects")],
            dry_run: false,
        })
        .await
        .expect("apply")
        .into_inner()
        .results;
    let gone = &results[0];
    assert_eq!(gone.outcome, Outcome::Permanent as i32, "{gone:?}");
    assert!(gone.message.contains("folder gone"), "{gone:?}");
    // The folder next to it, still there, got the entry.
    assert_eq!(results[1].outcome, Outcome::Applied as i32, "{results:?}");
    assert_eq!(
        w.alice_entry("Projects").await.as_deref(),
        Some("lookup read")
    );
    let listed = w.dovecot.doveadm(&["mailbox", "list", "-u", INFO]).await;
    assert!(
        !listed.stdout.lines().any(|l| l == "Projects/2026"),
        "no folder was made back: {listed:?}"
    );
}

/// Folder names that must travel as data: spaces, a leading `-`, a quote,
/// non-ASCII (modified UTF-7 on disk) and `&` (`&-` on disk).
const HOSTILE: [&str; 5] = ["Pro jects", "-x", "q\"t", "Ünï", "a&b"];

/// The agent reads `dovecot-acl` files itself: what it reads must be what
/// Dovecot reads, for every form the vfile format has (comments, quoted
/// ids, negative and named rights, every kind of identifier, duplicates
/// merged).
#[tokio::test]
async fn the_acl_file_reader_agrees_with_doveadm_acl_get() {
    use mailcow_agent::dovecot::Dovecot;
    use reconciler_runtime::exec::DockerExec;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    let dovecot = DovecotContainer::start(&[(INFO, "info-pass"), (ALICE, "alice-pass")]).await;
    for folder in HOSTILE.iter().chain(&["Plain"]) {
        dovecot.create_folder(INFO, folder).await;
    }
    let set = dovecot
        .doveadm(&[
            "acl",
            "set",
            "-u",
            INFO,
            "--",
            "Plain",
            "user=alice@example.com",
            "lookup",
            "read",
            "-write",
        ])
        .await;
    assert_eq!(set.code, 0, "{set:?}");
    let by_hand = "# written by hand\nowner lrwstipekxa\nuser=alice@example.com lr\n\
                   -user=alice@example.com w\n\"user=odd \\\"one\\\"@example.com\" l :x-custom\n\
                   group=staff  lrs :post, write-deleted\nanonymous l\nauthenticated r\n\
                   user=alice@example.com i\n\n#end";
    for folder in ["Pro jects", "Ünï", "INBOX"] {
        let dir = dovecot.folder_dir(INFO, folder).await;
        let out = dovecot
            .sh(
                "printf '%s' \"$2\" > \"$1/dovecot-acl\" && chown vmail:vmail \"$1/dovecot-acl\"",
                &[&dir, by_hand],
            )
            .await;
        assert_eq!(out.code, 0, "{out:?}");
    }

    let runner = Arc::new(DockerExec::new(dovecot.name.clone(), None, None).expect("docker"));
    let acls = Dovecot::new(runner, "doveadm")
        .observe(INFO)
        .await
        .expect("observe");
    assert!(acls.exists);
    for folder in ["Pro jects", "Ünï", "INBOX", "Plain", "-x"] {
        assert!(
            acls.files.contains_key(folder),
            "{folder} was read from its file: {acls:?}"
        );
    }
    let mut listed: Vec<&str> = acls.folders.keys().map(String::as_str).collect();
    listed.sort();
    let mut want_listed = vec![
        "INBOX",
        "Sent",
        "Drafts",
        "Trash",
        "Plain",
        "Pro jects",
        "-x",
        "q\"t",
        "Ünï",
        "a&b",
    ];
    want_listed.sort();
    assert_eq!(listed, want_listed);
    for (folder, read) in &acls.folders {
        let doveadm: BTreeMap<String, BTreeSet<String>> = dovecot
            .acl(INFO, folder)
            .await
            .into_iter()
            .map(|(id, rights)| {
                (
                    id.to_ascii_lowercase(),
                    rights.split_whitespace().map(str::to_owned).collect(),
                )
            })
            .collect();
        assert_eq!(read, &doveadm, "{folder}: the file reader against doveadm");
    }
    // The hand-written file has every kind of line; a check that it was
    // really compared.
    assert_eq!(acls.folders["Pro jects"].len(), 6, "{acls:?}");
}

/// Grants and revokes on hostile folder names go through the files; a
/// person's own lines (and the file's owner, group and mode) are kept.
#[tokio::test]
async fn hostile_folder_names_are_granted_and_revoked_keeping_others_lines() {
    let w = world(StackOptions {
        // Leaving revokes 11 entries at once, all of them.
        coordinator_env: vec![("REMOVAL_GUARD_MIN".into(), "100".into())],
        ..StackOptions::default()
    })
    .await;
    for folder in HOSTILE {
        w.dovecot.create_folder(INFO, folder).await;
    }
    let dir = w.dovecot.folder_dir(INFO, "Pro jects").await;
    // No line break at the end, a quoted id, an extra space: kept as is.
    let by_hand = "# shared by hand\n\"user=bob smith@example.com\" lr\nuser=bob@example.com  lrs";
    let file = format!("{dir}/dovecot-acl");
    let out = w
        .dovecot
        .sh(
            "printf '%s' \"$2\" > \"$1\" && chown vmail:vmail \"$1\" && chmod 640 \"$1\"",
            &[&file, by_hand],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let stat = || async {
        w.dovecot
            .sh("stat -c '%U:%G %a' \"$1\"", &[&file])
            .await
            .stdout
    };
    let content = || async { w.dovecot.sh("cat \"$1\"", &[&file]).await.stdout };
    let before = stat().await;
    assert_eq!(before.trim(), "vmail:vmail 640");

    w.join("evt-join").await;
    for folder in HOSTILE.iter().chain(&FOLDERS) {
        assert_eq!(
            w.alice_entry(folder).await.as_deref(),
            Some("lookup read"),
            "alice's entry on {folder}"
        );
    }
    assert_eq!(
        content().await,
        format!("{by_hand}\nuser=alice@example.com lr\n")
    );
    assert_eq!(stat().await, before, "owner, group and mode kept");
    let rights = w.dovecot.rights(ALICE, "Shared/info@example.com/-x").await;
    assert!(rights.stdout.contains("lookup read"), "{rights:?}");
    let mut imap = w.dovecot.imap(ALICE, "alice-pass").await;
    let listed = imap.list().await;
    assert!(
        listed.contains(&"Shared/info@example.com/Pro jects".to_owned()),
        "{listed:?}"
    );
    assert!(imap.select("Shared/info@example.com/Pro jects").await);

    w.stack.authentik.remove_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-leave"))
        .await;
    w.stack.expect_done(&job).await;
    for folder in HOSTILE.iter().chain(&FOLDERS) {
        assert_eq!(w.alice_entry(folder).await, None, "revoked on {folder}");
    }
    assert_eq!(
        content().await,
        format!("{by_hand}\n"),
        "only alice's line went"
    );
    assert_eq!(stat().await, before);
    let bobs = w.dovecot.acl(INFO, "Pro jects").await;
    assert!(
        bobs.contains(&(
            "user=bob@example.com".into(),
            "lookup read write-seen".into()
        )),
        "{bobs:?}"
    );
    w.bob_keeps_his_entry().await;
}

/// LISTs in `imap` until `holds` says yes, for at most 30 s.
async fn list_until(imap: &mut Imap, what: &str, holds: impl Fn(&[String]) -> bool) {
    let start = std::time::Instant::now();
    loop {
        let listed = imap.list().await;
        if holds(&listed) {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never happened: {what}; LIST: {listed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// An IMAP session the grantee opened before the grant sees the shared
/// folders appear, and disappear after the revoke, once Dovecot's ACL
/// cache (1 s here, 30 s by default) lets it look again.
#[tokio::test]
async fn a_session_opened_before_the_change_sees_the_grant_and_the_revoke() {
    let w = world_with(
        StackOptions::default(),
        "plugin {\n  acl = vfile:cache_secs=1\n}",
    )
    .await;
    let mut early = w.dovecot.imap(ALICE, "alice-pass").await;
    assert!(
        !early.list().await.iter().any(|m| m.starts_with("Shared/")),
        "nothing shared yet"
    );
    assert!(!early.select(SHARED_INBOX).await);

    w.join("evt-join").await;
    list_until(
        &mut early,
        "the early session lists the shared folders",
        |l| {
            FOLDERS
                .iter()
                .all(|f| l.contains(&format!("Shared/info@example.com/{f}")))
        },
    )
    .await;
    assert!(early.select(SHARED_INBOX).await, "SELECT after the grant");
    assert!(early.select("Shared/info@example.com/Projects/2026").await);

    w.stack.authentik.remove_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-leave"))
        .await;
    w.stack.expect_done(&job).await;
    // The session keeps the owner's namespace root (`Shared/info@…`,
    // \NoSelect) it already made; the folders under it go.
    list_until(&mut early, "the early session no longer lists them", |l| {
        !l.iter().any(|m| m.starts_with("Shared/info@example.com/"))
    })
    .await;
    assert!(
        !early.select(SHARED_INBOX).await,
        "SELECT refused after revoke"
    );
    w.bob_keeps_his_entry().await;
}

/// The doveadm processes an owner costs do not grow with its folders or
/// grantees: an owner with 5 folders and 1 grantee costs what one with 50
/// folders and 3 grantees costs, cold and in sync. Counted inside the
/// container by a wrapper around doveadm.
#[tokio::test]
async fn doveadm_runs_per_owner_do_not_grow_with_folders_or_grantees() {
    const BIG: &str = "big@example.com";
    const CAROL: &str = "carol@example.com";
    let dovecot = DovecotContainer::start(&[
        (INFO, "pw"),
        (BIG, "pw"),
        (ALICE, "pw"),
        (BOB, "pw"),
        (CAROL, "pw"),
    ])
    .await;
    // INBOX, Sent, Drafts, Trash, plus 1 and 46 folders.
    dovecot.create_folder(INFO, "Extra").await;
    for i in 0..46 {
        dovecot.create_folder(BIG, &format!("Folder {i}")).await;
    }
    dovecot.count_doveadm_runs().await;
    let stack = Stack::start(StackOptions {
        agent_env: vec![("DOVECOT_CONTAINER".into(), dovecot.name.clone())],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    for mbox in [INFO, BIG, ALICE, BOB, CAROL] {
        stack.mailcow.add_mailbox(mbox);
    }
    let small = stack.authentik.add_group(
        "small",
        json!({"reconciler": {"shared_mailbox": INFO, "access": "read"}}),
    );
    let big = stack.authentik.add_group(
        "big",
        json!({"reconciler": {"shared_mailbox": BIG, "access": "readwrite"}}),
    );
    let alice = stack.authentik.add_user("alice", ALICE);
    stack.authentik.add_member(&small, alice);
    for (name, address) in [("alice", ALICE), ("bob", BOB), ("carol", CAROL)] {
        let pk = if name == "alice" {
            alice
        } else {
            stack.authentik.add_user(name, address)
        };
        stack.authentik.add_member(&big, pk);
    }
    let runs_of = |runs: &[String], owner: &str| -> Vec<String> {
        let needle = format!("-u {owner}");
        runs.iter()
            .filter(|r| r.contains(&needle))
            .cloned()
            .collect()
    };

    let cold = stack.sweep().await;
    assert_eq!(cold["state"], "done", "{cold}");
    let runs = dovecot.doveadm_runs().await;
    let (small_runs, big_runs) = (runs_of(&runs, INFO), runs_of(&runs, BIG));
    assert_eq!(
        small_runs.len(),
        big_runs.len(),
        "5 folders × 1 grantee against 50 × 3:\n{small_runs:#?}\n{big_runs:#?}"
    );
    for owner_runs in [&small_runs, &big_runs] {
        let count = |what: &str| owner_runs.iter().filter(|r| r.starts_with(what)).count();
        assert_eq!(count("acl set"), 0, "{owner_runs:#?}");
        assert_eq!(count("acl recalc"), 1, "{owner_runs:#?}");
    }
    assert_eq!(summary(&cold)["doveadm_acl_writes"], 5 + 50 * 3, "{cold}");
    let entries = dovecot.acl(BIG, "Folder 45").await;
    for grantee in [ALICE, BOB, CAROL] {
        assert!(
            entries
                .iter()
                .any(|(id, _)| *id == format!("user={grantee}")),
            "{entries:?}"
        );
    }

    dovecot.reset_doveadm_runs().await;
    let in_sync = stack.sweep().await;
    assert_eq!(summary(&in_sync)["doveadm_acl_writes"], 0, "{in_sync}");
    let runs = dovecot.doveadm_runs().await;
    for owner in [INFO, BIG] {
        // mailbox list, the root's path and one folder's path to check
        // the layout: nothing per folder.
        assert_eq!(runs_of(&runs, owner).len(), 3, "{runs:#?}");
    }
}

/// The agent takes Dovecot's own lock on a `dovecot-acl` file: while
/// someone holds `dovecot-acl.lock` the file is not written (after
/// Dovecot's 30 s wait the change is reported transient), a lock left
/// behind for longer than Dovecot's stale timeout (120 s) is cleared.
#[tokio::test]
async fn a_held_acl_lock_is_waited_for_and_a_stale_one_cleared() {
    let w = world(StackOptions {
        max_attempts: 1,
        ..StackOptions::default()
    })
    .await;
    let held = format!(
        "{}/dovecot-acl.lock",
        w.dovecot.folder_dir(INFO, "Projects").await
    );
    let stale = format!(
        "{}/dovecot-acl.lock",
        w.dovecot.folder_dir(INFO, "Projects/2026").await
    );
    let out = w
        .dovecot
        .sh(
            ": > \"$1\" && : > \"$2\" && touch -d '-10 minutes' \"$2\"",
            &[&held, &stale],
        )
        .await;
    assert_eq!(out.code, 0, "{out:?}");

    w.stack.authentik.add_member(&w.group, w.alice);
    let job = w
        .stack
        .webhook_and_wait(&Stack::group_event(&w.group, "evt-join-locked"))
        .await;
    assert_eq!(job["state"], "failed", "Projects stays to do: {job}");
    assert_eq!(
        w.alice_entry("Projects").await,
        None,
        "not written under a held lock"
    );
    assert_eq!(
        w.alice_entry("Projects/2026").await.as_deref(),
        Some("lookup read"),
        "the stale lock was cleared"
    );
    let still = w.dovecot.sh("test -e \"$1\"", &[&held]).await;
    assert_eq!(still.code, 0, "someone else's lock is never removed");

    let out = w.dovecot.sh("rm \"$1\"", &[&held]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let sweep = w.stack.sweep().await;
    assert_eq!(sweep["state"], "done", "{sweep}");
    for folder in FOLDERS {
        assert_eq!(
            w.alice_entry(folder).await.as_deref(),
            Some("lookup read"),
            "{folder}"
        );
    }
    w.bob_keeps_his_entry().await;
}
