//! A webhook patches the snapshot the last whole read left (issue 12):
//! the calls each run makes to Authentik are pinned here.

use serde_json::json;

use super::*;

const NEW_GROUP: &str = "00000000-0000-0000-0000-00000000000b";

fn user_run(who: &str) -> Subject {
    Subject::User(who.into())
}

#[tokio::test]
async fn after_a_sweep_a_user_webhook_reads_only_that_user() {
    let w = world().await;
    w.sweep().await;
    assert_eq!(w.directory.take_calls(), ["users", "groups"]);

    w.directory.set_members(GROUP, &[1]);
    w.engine.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1"]);
    assert_eq!(w.delegates(), ["alice@example.com"]);

    // Leaving is seen the same way, and removed: the user was just read.
    w.directory.set_members(GROUP, &[]);
    w.engine.run(3, &user_run("1"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1"]);
    assert!(w.delegates().is_empty());
}

#[tokio::test]
async fn a_webhook_about_what_is_already_known_writes_nothing_to_the_state_db() {
    let w = world().await;
    w.sweep().await;
    w.directory.set_members(GROUP, &[1]);
    w.engine.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.delegates(), ["alice@example.com"]);

    // The same announcement again: the same user read, the same plan, and
    // not one turn at the writer (the job's own claim and result aside,
    // which the worker records).
    w.directory.take_calls();
    let store = w.engine.store();
    let before = store.write_turns();
    w.engine.run(3, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1"]);
    assert_eq!(store.write_turns() - before, 0);

    // A change still is written: the snapshot row, the grant's bookkeeping.
    w.directory.set_members(GROUP, &[]);
    w.engine.run(4, &user_run("alice"), false).await.unwrap();
    assert!(w.delegates().is_empty());
    assert!(store.write_turns() > before);
}

#[tokio::test]
async fn snapshot_rows_an_earlier_version_stored_whole_are_rewritten_without_other_attributes() {
    let w = world().await;
    w.sweep().await;
    let store = w.engine.store();
    // As an earlier version stored them: every attribute of every user.
    let stored = store.load_directory().await.unwrap().unwrap();
    let users = stored
        .users
        .into_iter()
        .map(|mut u| {
            u.attributes = json!({"other_app": {"api_token": "s3cret"}});
            u
        })
        .collect();
    let old = crate::directory::Directory::new(users, stored.groups);
    store
        .replace_directory(&old, stored.read_at_millis)
        .await
        .unwrap();

    let restarted = Engine::new(
        store.clone(),
        w.directory.clone(),
        Adapters::default().with(Arc::new(w.sogo.adapter())),
        EngineConfig::default(),
    );
    // A webhook loads the snapshot, without the other attributes...
    restarted.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls().last().unwrap(), "user:1");
    // ...and the next whole read rewrites every row an earlier version wrote.
    restarted.run(3, &Subject::All, false).await.unwrap();
    let rows = store.load_directory().await.unwrap().unwrap();
    let leftover: Vec<&str> = rows
        .users
        .iter()
        .filter(|u| u.attributes.get("other_app").is_some())
        .map(|u| u.username.as_str())
        .collect();
    assert!(leftover.is_empty(), "still stored for {leftover:?}");
}

#[tokio::test]
async fn a_group_the_snapshot_has_not_seen_is_read_with_the_user() {
    let w = world().await;
    w.sweep().await;
    w.directory.take_calls();
    w.directory.add_group(
        NEW_GROUP,
        "desk-2",
        json!({"reconciler": {"shared_mailbox": INFO, "sogo_delegate": true}}),
    );
    w.directory.set_members(NEW_GROUP, &[2]);
    w.engine.run(2, &user_run("bob"), false).await.unwrap();
    assert_eq!(
        w.directory.take_calls(),
        ["user:2".to_owned(), format!("group:{NEW_GROUP}")]
    );
    assert_eq!(w.delegates(), ["bob@example.com"]);
}

#[tokio::test]
async fn a_group_webhook_reads_the_group_and_members_it_has_not_seen() {
    let w = world().await;
    w.sweep().await;
    w.directory.take_calls();
    w.directory.add_user(3, "carol", "carol@example.com");
    w.directory.set_members(GROUP, &[1, 3]);
    w.engine
        .run(2, &Subject::Group(GROUP.into()), false)
        .await
        .unwrap();
    assert_eq!(
        w.directory.take_calls(),
        [format!("group:{GROUP}"), format!("group_members:{GROUP}")]
    );
    assert_eq!(w.delegates(), ["alice@example.com", "carol@example.com"]);

    // Known members only: the group alone.
    w.directory.set_members(GROUP, &[1]);
    w.engine
        .run(3, &Subject::Group(GROUP.into()), false)
        .await
        .unwrap();
    assert_eq!(w.directory.take_calls(), [format!("group:{GROUP}")]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
}

#[tokio::test]
async fn the_snapshot_outlives_a_restart() {
    let w = world().await;
    w.sweep().await;
    w.directory.take_calls();
    let restarted = Engine::new(
        w.engine.store().clone(),
        w.directory.clone(),
        Adapters::default()
            .with(Arc::new(EmptyMailcowAgent::adapter()))
            .with(Arc::new(w.sogo.adapter())),
        EngineConfig::default(),
    );
    w.directory.set_members(GROUP, &[1]);
    restarted.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1"]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
}

#[tokio::test]
async fn a_snapshot_older_than_its_max_age_is_read_again_whole() {
    let w = world().await;
    w.sweep().await;
    w.directory.take_calls();
    // As if the last whole read were an hour old, seen by a fresh process.
    let hour_ago = crate::store::now_millis() - 3_600_000;
    w.engine
        .store()
        .set_meta("directory_read_at", &hour_ago.to_string())
        .await
        .unwrap();
    let restarted = Engine::new(
        w.engine.store().clone(),
        w.directory.clone(),
        Adapters::default().with(Arc::new(w.sogo.adapter())),
        EngineConfig::default(),
    );
    restarted.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["users", "groups"]);
    // That read is the new snapshot: the next webhook patches it.
    restarted.run(3, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1"]);
}

#[tokio::test]
async fn a_known_user_gone_from_authentik_means_a_whole_read() {
    let w = world().await;
    // Enough people that one leaving is not a drop the guards hold.
    for pk in 3..=6 {
        w.directory
            .add_user(pk, &format!("u{pk}"), &format!("u{pk}@example.com"));
    }
    w.directory.set_members(GROUP, &[1, 2]);
    w.sweep().await;
    w.directory.take_calls();
    w.directory.users.lock().unwrap().retain(|u| u.pk != 1);
    w.directory.set_members(GROUP, &[2]);
    w.engine.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(w.directory.take_calls(), ["user:1", "users", "groups"]);
    assert_eq!(w.delegates(), ["bob@example.com"]);
}

#[tokio::test]
async fn when_authentik_hides_every_user_a_webhook_removes_nothing() {
    // Enough people that the guards apply (removal_guard_min = 10).
    let w = world().await;
    let everyone: Vec<i64> = (1..=12).collect();
    for pk in 3..=12 {
        w.directory
            .add_user(pk, &format!("u{pk}"), &format!("u{pk}@example.com"));
    }
    w.directory.set_members(GROUP, &everyone);
    w.sweep().await;
    assert_eq!(w.delegates().len(), 12);
    // A token that lost view_user: the list is empty and every user 404s.
    w.directory.users.lock().unwrap().clear();
    w.engine.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(
        w.delegates().len(),
        12,
        "the whole read looked wrong: nothing removed"
    );
}

#[tokio::test]
async fn without_a_max_age_every_run_reads_the_whole_directory() {
    let directory = desk();
    let sogo = Arc::new(FakeSogoAgent::default());
    let (store, _dir) = Store::open_temp().await;
    let engine = Engine::new(
        store,
        directory.clone(),
        Adapters::default().with(Arc::new(sogo.adapter())),
        EngineConfig {
            directory_max_age: None,
            ..EngineConfig::default()
        },
    );
    engine.run(1, &Subject::All, false).await.unwrap();
    engine.run(2, &user_run("alice"), false).await.unwrap();
    assert_eq!(
        directory.take_calls(),
        ["users", "groups", "users", "groups"]
    );
}

/// The groups alice (pk 1) is in, as the state DB's snapshot holds them.
async fn stored_groups_of_alice(w: &World) -> Vec<String> {
    let stored = w.engine.store().load_directory().await.unwrap().unwrap();
    let alice = stored.users.into_iter().find(|u| u.pk == 1).unwrap();
    alice.groups
}

/// A whole read lists for a while. A webhook patched in meanwhile is newer
/// than what the listing saw of the same user, and the listing, once kept
/// as the snapshot, must not undo it.
#[tokio::test]
async fn a_patch_made_while_a_whole_read_lists_outlives_that_read() {
    let w = world().await;
    // Enough people that one leaving is not a drop the guards hold.
    for pk in 3..=6 {
        w.directory
            .add_user(pk, &format!("u{pk}"), &format!("u{pk}@example.com"));
    }
    w.sweep().await;
    // bob is deleted: his webhook means a whole read, whose listing of
    // users is taken now (alice in no group) and answered later.
    let listing = w.directory.hold("users");
    w.directory.users.lock().unwrap().retain(|u| u.pk != 2);
    let bob = user_run("bob");
    let whole = w.engine.run(2, &bob, false);
    let meanwhile = async {
        listing.entered.notified().await;
        w.directory.set_members(GROUP, &[1]);
        w.engine.run(3, &user_run("alice"), false).await.unwrap();
        assert_eq!(w.delegates(), ["alice@example.com"]);
        listing.release.notify_one();
    };
    let (whole, ()) = tokio::join!(whole, meanwhile);
    whole.unwrap();
    assert_eq!(stored_groups_of_alice(&w).await, [GROUP]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
}

/// Two webhooks about one membership, run side by side: desk's run read
/// desk before alice joined, alice's run read her after and patched first.
/// desk's older read must not then undo alice's patch: its run reads desk
/// again, and the snapshot ends with what was read last.
#[tokio::test]
async fn an_older_read_never_lands_over_a_newer_patch() {
    let w = world().await;
    w.sweep().await;
    w.directory.take_calls();
    let desk_read = w.directory.hold(&format!("group:{GROUP}"));
    let desk = Subject::Group(GROUP.into());
    let desk_run = w.engine.run(2, &desk, false);
    let meanwhile = async {
        desk_read.entered.notified().await; // desk read without alice
        w.directory.set_members(GROUP, &[1]);
        w.engine.run(3, &user_run("alice"), false).await.unwrap();
        assert_eq!(w.delegates(), ["alice@example.com"]);
        desk_read.release.notify_one();
    };
    let (desk_run, ()) = tokio::join!(desk_run, meanwhile);
    desk_run.unwrap();
    assert_eq!(
        w.directory.take_calls(),
        [
            format!("group:{GROUP}"),
            "user:1".to_owned(),
            format!("group:{GROUP}"),
        ],
        "desk read again"
    );
    assert_eq!(stored_groups_of_alice(&w).await, [GROUP]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
}

/// `coordinator plan` and `explain` read, and change neither the snapshot
/// in memory nor its rows: another instance, or a run later, would trust
/// what a preview wrote.
#[tokio::test]
async fn a_preview_leaves_the_snapshot_as_it_was() {
    let w = world().await;
    w.sweep().await;
    w.directory.set_members(GROUP, &[1]);
    let before = w.engine.store().write_turns();
    let preview = w.engine.prepare(&user_run("alice"), false).await.unwrap();
    assert!(!preview.plan.steps.is_empty(), "alice's grant is pending");
    let preview = w.engine.prepare(&Subject::All, false).await.unwrap();
    assert!(!preview.plan.steps.is_empty());
    assert_eq!(w.engine.store().write_turns(), before);
    assert!(stored_groups_of_alice(&w).await.is_empty());
    assert!(w.delegates().is_empty());

    // A run afterwards patches from what it reads itself.
    w.directory.take_calls();
    w.engine
        .run(2, &Subject::Group(GROUP.into()), false)
        .await
        .unwrap();
    assert_eq!(w.directory.take_calls(), [format!("group:{GROUP}")]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
}

/// A group webhook that lists members the snapshot has never seen also
/// reads the unknown groups they are in: without them, what those groups
/// inherit from known ones would be missing from the plan.
#[tokio::test]
async fn a_group_webhook_reads_the_unknown_groups_of_new_members() {
    const STAFF: &str = "00000000-0000-0000-0000-00000000000c";
    let w = world().await;
    w.directory.add_group(STAFF, "staff", json!({}));
    w.sweep().await;
    w.directory.take_calls();
    // carol is new, in staff and in desk-team, a new child of desk.
    w.directory.add_user(3, "carol", "carol@example.com");
    w.directory.add_group(NEW_GROUP, "desk-team", json!({}));
    w.directory.set_parents(NEW_GROUP, &[GROUP]);
    w.directory.set_members(STAFF, &[3]);
    w.directory.set_members(NEW_GROUP, &[3]);
    w.engine
        .run(2, &Subject::Group(STAFF.into()), false)
        .await
        .unwrap();
    assert_eq!(
        w.directory.take_calls(),
        [
            format!("group:{STAFF}"),
            format!("group_members:{STAFF}"),
            format!("group:{NEW_GROUP}"),
        ]
    );
    assert_eq!(w.delegates(), ["carol@example.com"], "desk ← desk-team");
}

/// Runs `first` until it has read and planned (its observation is held),
/// then makes `change` in Authentik and runs `second` to the end, then
/// lets `first` go on: a run whose plan a newer run overtook.
async fn overtaken_while_observing(
    w: &World,
    first: &Subject,
    change: impl FnOnce(),
    second: &Subject,
) {
    let observe = Arc::new(crate::testsuite::Hold::default());
    *w.sogo.hold_observe.lock().unwrap() = Some(observe.clone());
    let first_run = w.engine.run(2, first, false);
    let meanwhile = async {
        observe.entered.notified().await;
        change();
        w.engine.run(3, second, false).await.unwrap();
        observe.release.notify_one();
    };
    let (first_run, ()) = tokio::join!(first_run, meanwhile);
    first_run.unwrap();
}

/// alice leaves desk and joins again at once. desk's run (from the leave)
/// read desk without her and planned her revoke; alice's run (from the
/// join) read her back in and ran to the end meanwhile. desk's run must
/// not then apply its revoke: it plans again and finds nothing to do.
#[tokio::test]
async fn a_run_whose_users_a_newer_read_changed_plans_again() {
    let w = world().await;
    w.directory.set_members(GROUP, &[1]);
    w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    w.directory.take_calls();

    w.directory.set_members(GROUP, &[]);
    // desk's run reads and plans from desk without alice; alice's run
    // reads her back in and finishes first.
    overtaken_while_observing(
        &w,
        &Subject::Group(GROUP.into()),
        || w.directory.set_members(GROUP, &[1]),
        &user_run("alice"),
    )
    .await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(
        w.directory.take_calls(),
        [
            format!("group:{GROUP}"),
            "user:1".to_owned(),
            format!("group:{GROUP}"),
        ],
        "desk read again after alice's read"
    );
}

/// alice holds desk's grant through desk-team, a group below desk. She
/// leaves desk-team, and only desk-team's webhook comes: her ledger row
/// names desk, yet that webhook must take the grant back, not the next
/// sweep.
#[tokio::test]
async fn leaving_a_group_below_the_granting_one_revokes_at_that_groups_webhook() {
    let w = world().await;
    w.directory.add_group(NEW_GROUP, "desk-team", json!({}));
    w.directory.set_parents(NEW_GROUP, &[GROUP]);
    w.directory.set_members(NEW_GROUP, &[1]);
    w.directory.set_members(GROUP, &[2]);
    w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com", "bob@example.com"]);

    w.directory.set_members(NEW_GROUP, &[]);
    w.engine
        .run(2, &Subject::Group(NEW_GROUP.into()), false)
        .await
        .unwrap();
    assert_eq!(w.delegates(), ["bob@example.com"], "bob is still in desk");
}

/// desk-team is taken out from under desk and put back at once. The run
/// of the first webhook read desk-team without its parent and planned to
/// take back what desk grants alice; the second run read it back in place
/// and finished first. The first must plan again, not revoke: what a
/// group grants changed under it, though none of its users did.
#[tokio::test]
async fn a_run_whose_granting_group_a_newer_read_redefined_plans_again() {
    let w = world().await;
    w.directory.add_group(NEW_GROUP, "desk-team", json!({}));
    w.directory.set_parents(NEW_GROUP, &[GROUP]);
    w.directory.set_members(NEW_GROUP, &[1]);
    w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    w.directory.take_calls();

    w.directory.set_parents(NEW_GROUP, &[]);
    // The first run reads desk-team on its own and plans from that.
    let team = Subject::Group(NEW_GROUP.into());
    overtaken_while_observing(
        &w,
        &team,
        || w.directory.set_parents(NEW_GROUP, &[GROUP]),
        &team,
    )
    .await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(
        w.directory.take_calls(),
        vec![format!("group:{NEW_GROUP}"); 3],
        "the first run read desk-team again"
    );
}

/// The same with alice deactivated and active again at once: the first
/// run read her inactive (no longer among the people it plans for) and
/// planned her revoke. That she is in its scope still makes it plan again.
#[tokio::test]
async fn a_run_that_read_its_user_inactive_plans_again_when_a_newer_read_finds_her_active() {
    let w = world().await;
    w.directory.set_members(GROUP, &[1]);
    w.sweep().await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    w.directory.take_calls();
    let set_active = |active: bool| {
        for user in w.directory.users.lock().unwrap().iter_mut() {
            if user.pk == 1 {
                user.is_active = active;
            }
        }
    };

    set_active(false);
    let alice = user_run("alice");
    overtaken_while_observing(&w, &alice, || set_active(true), &alice).await;
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(w.directory.take_calls(), ["user:1"; 3], "read again");
}

/// alice (1), bob (2) and carol (3); desk delegates info@ in SOGo and keeps
/// the alias team@ of its members (the real mailcow-agent over an
/// in-memory Mailcow); carol is in it.
async fn desk_with_alias() -> (World, Arc<mailcow_agent::fake::FakeMailcow>) {
    use crate::agents::AgentLink;
    use crate::targets::mailcow::Mailcow;
    use reconciler_proto::agent::mailcow_agent_server::MailcowAgentServer;

    let directory = Arc::new(crate::testsuite::FakeDirectory::default());
    directory.add_user(1, "alice", "alice@example.com");
    directory.add_user(2, "bob", "bob@example.com");
    directory.add_user(3, "carol", "carol@example.com");
    directory.add_group(
        GROUP,
        "desk",
        json!({"reconciler": {
            "shared_mailbox": INFO, "sogo_delegate": true, "alias": TEAM
        }}),
    );
    directory.set_members(GROUP, &[3]);
    let mailcow = Arc::new(mailcow_agent::fake::FakeMailcow::default());
    for mailbox in [
        INFO,
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ] {
        mailcow.add_mailbox(mailbox);
    }
    let agent =
        mailcow_agent::service::MailcowAgent::new(mailcow.clone(), None, std::time::Duration::ZERO);
    let sogo = Arc::new(FakeSogoAgent::default());
    let adapters = Adapters::default()
        .with(Arc::new(Mailcow::new(AgentLink::in_process(
            "mailcow-agent",
            MailcowAgentServer::new(agent),
        ))))
        .with(Arc::new(sogo.adapter()));
    let (engine, dir) = engine(directory.clone(), adapters).await;
    let world = World {
        engine,
        directory,
        sogo,
        _dir: dir,
    };
    (world, mailcow)
}

const TEAM: &str = "team@example.com";

fn goto_of(mailcow: &mailcow_agent::fake::FakeMailcow, address: &str) -> Vec<String> {
    let mut goto: Vec<String> = mailcow
        .aliases_now()
        .into_iter()
        .filter(|a| a.address == address)
        .flat_map(|a| a.goto)
        .collect();
    goto.sort();
    goto
}

/// After a sweep (team@ is carol's), alice joins desk; her run is held at
/// its observation while `change` is made and `second` runs to the end.
/// Whatever way bob came in meanwhile, team@ ends with all three.
async fn alice_joins_while(
    w: &World,
    mailcow: &mailcow_agent::fake::FakeMailcow,
    change: impl FnOnce(),
    second: &Subject,
) {
    w.sweep().await;
    assert_eq!(goto_of(mailcow, TEAM), ["carol@example.com"]);
    w.directory.take_calls();
    w.directory.set_members(GROUP, &[3, 1]);
    overtaken_while_observing(w, &user_run("alice"), change, second).await;
    assert_eq!(
        goto_of(mailcow, TEAM),
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
}

/// alice joins desk, then bob. alice's run read desk's members before
/// bob's read and planned team@ without him; bob's run read them all and
/// ran to the end meanwhile. alice's run must not then set team@ to what
/// it read (taking bob out): a newer read moved someone in or out of the
/// group behind a group-wide object it would write, so it plans again.
#[tokio::test]
async fn a_run_whose_group_alias_a_newer_read_changed_plans_again() {
    let (w, mailcow) = desk_with_alias().await;
    alice_joins_while(
        &w,
        &mailcow,
        || w.directory.set_members(GROUP, &[3, 1, 2]),
        &user_run("bob"),
    )
    .await;
    assert_eq!(
        w.delegates(),
        ["alice@example.com", "bob@example.com", "carol@example.com"]
    );
    assert_eq!(
        w.directory.take_calls(),
        ["user:1", "user:2", "user:1"],
        "alice read again after bob's read"
    );
}

/// As above, but bob comes in through desk-emea, a group attached below
/// desk while alice's run waited: desk's own row did not change, yet its
/// members did.
#[tokio::test]
async fn a_run_whose_group_alias_gained_a_group_below_it_plans_again() {
    let (w, mailcow) = desk_with_alias().await;
    w.directory.add_group(NEW_GROUP, "desk-emea", json!({}));
    w.directory.set_members(NEW_GROUP, &[2]);
    alice_joins_while(
        &w,
        &mailcow,
        || w.directory.set_parents(NEW_GROUP, &[GROUP]),
        &Subject::Group(NEW_GROUP.into()),
    )
    .await;
    assert_eq!(
        w.directory.take_calls().last().map(String::as_str),
        Some("user:1"),
        "alice read again after desk-emea's read"
    );
}

/// carol is deactivated while alice's run (alice joining desk) waits:
/// carol's run takes her out of team@, and alice's run, which read carol
/// still active, must not put her back.
#[tokio::test]
async fn a_run_whose_group_alias_member_a_newer_read_deactivated_plans_again() {
    let (w, mailcow) = desk_with_alias().await;
    w.sweep().await;
    assert_eq!(goto_of(&mailcow, TEAM), ["carol@example.com"]);
    w.directory.set_members(GROUP, &[3, 2]);
    w.engine.run(2, &user_run("bob"), false).await.unwrap();
    assert_eq!(
        goto_of(&mailcow, TEAM),
        ["bob@example.com", "carol@example.com"]
    );
    w.directory.take_calls();

    w.directory.set_members(GROUP, &[3, 2, 1]);
    overtaken_while_observing(
        &w,
        &user_run("alice"),
        || w.directory.set_active(3, false),
        &user_run("carol"),
    )
    .await;
    assert_eq!(
        goto_of(&mailcow, TEAM),
        ["alice@example.com", "bob@example.com"]
    );
    assert_eq!(
        w.directory.take_calls(),
        ["user:1", "user:3", "user:1"],
        "alice read again after carol's read"
    );
}

/// carol is deleted from Authentik while alice's run (alice joining desk)
/// waits. carol's run reads the whole directory (only a whole read may
/// decide what goes with a deleted user) and takes her out of team@;
/// alice's run read desk before that listing and must not put her back.
#[tokio::test]
async fn a_run_whose_group_alias_a_deletions_whole_read_changed_plans_again() {
    let (w, mailcow) = desk_with_alias().await;
    w.sweep().await;
    assert_eq!(goto_of(&mailcow, TEAM), ["carol@example.com"]);
    w.directory.take_calls();

    w.directory.set_members(GROUP, &[3, 1]);
    overtaken_while_observing(
        &w,
        &user_run("alice"),
        || w.directory.remove_user(3),
        &user_run("carol"),
    )
    .await;
    assert_eq!(goto_of(&mailcow, TEAM), ["alice@example.com"]);
    assert_eq!(w.delegates(), ["alice@example.com"]);
    assert_eq!(
        w.directory.take_calls(),
        ["user:1", "user:3", "users", "groups", "user:1"],
        "alice read again after carol's whole read"
    );
}
