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
