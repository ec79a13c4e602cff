//! Passes against a scripted events API and a real state DB.

use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::authentik::Event;
use crate::authentik::model::{Page, Pagination};

/// Serves `events` (newest first) in pages of `size`, counting requests.
struct Script {
    events: Mutex<Vec<Event>>,
    size: usize,
    requests: Mutex<u64>,
}

#[async_trait::async_trait]
impl EventSource for Script {
    async fn model_events(&self, page: u64) -> Result<Page<Event>> {
        *self.requests.lock().unwrap() += 1;
        let events = self.events.lock().unwrap().clone();
        let count = events.len() as u64;
        let total_pages = count.div_ceil(self.size as u64).max(1);
        let start = ((page - 1) as usize * self.size).min(events.len());
        let end = (start + self.size).min(events.len());
        Ok(Page {
            pagination: Pagination {
                next: if page < total_pages { page + 1 } else { 0 },
                previous: page - 1,
                count,
                current: page,
                total_pages,
                start_index: start as u64 + 1,
                end_index: end as u64,
            },
            results: events[start..end].to_vec(),
        })
    }
}

fn group_event(pk: &str, created: &str, group: &str) -> Event {
    Event {
        pk: pk.into(),
        action: "model_updated".into(),
        context: json!({"model": {"app": "authentik_core", "model_name": "group", "pk": group, "name": group}}),
        created: created.into(),
    }
}

struct Fixture {
    script: Arc<Script>,
    catch_up: CatchUp,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(size: usize) -> Self {
        let (store, dir) = Store::open_temp().await;
        let script = Arc::new(Script {
            events: Mutex::new(Vec::new()),
            size,
            requests: Mutex::new(0),
        });
        let catch_up = CatchUp {
            source: script.clone(),
            store,
            wake: Arc::new(Notify::new()),
        };
        Self {
            script,
            catch_up,
            _dir: dir,
        }
    }

    /// Authentik records a newer event.
    fn record(&self, event: Event) {
        self.script.events.lock().unwrap().insert(0, event);
    }

    fn requests(&self) -> u64 {
        *self.script.requests.lock().unwrap()
    }

    async fn queued(&self) -> i64 {
        self.catch_up.store.job_counts().await.unwrap().queued
    }
}

#[tokio::test]
async fn the_first_start_does_not_replay_history() {
    let f = Fixture::new(2).await;
    f.record(group_event("old1", "2026-08-05T12:00:00Z", "a"));
    f.record(group_event("old2", "2026-08-05T12:00:01Z", "b"));
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!(pass.queued, 0);
    assert_eq!(f.queued().await, 0);
    let position = Position::load(&f.catch_up.store).await.unwrap().unwrap();
    assert_eq!(position.pk, "old2");
    // Idle: one request, nothing queued, the position unchanged.
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!((pass.pages, pass.queued), (1, 0));
}

#[tokio::test]
async fn events_of_the_same_second_are_not_skipped_and_nothing_twice() {
    let f = Fixture::new(2).await;
    f.record(group_event("e1", "2026-08-05T12:00:00Z", "a"));
    f.catch_up.pass().await.unwrap();
    // Same second as the position, then later ones.
    f.record(group_event("e2", "2026-08-05T12:00:00Z", "b"));
    f.record(group_event("e3", "2026-08-05T12:00:01.5Z", "c"));
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!(pass.queued, 2, "{pass:?}");
    assert_eq!(f.queued().await, 2);
    // Read again (the same second still counts), queued again never.
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!(pass.queued, 0, "{pass:?}");
    assert_eq!(f.queued().await, 2);
}

#[tokio::test]
async fn a_delivered_webhook_and_its_event_make_one_job() {
    let f = Fixture::new(2).await;
    f.catch_up.pass().await.unwrap();
    let delivered = f
        .catch_up
        .store
        .enqueue(&Subject::Group("a".into()), false, "webhook", Some("e1"))
        .await
        .unwrap();
    f.record(group_event("e1", "2026-08-05T12:00:00Z", "a"));
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!(pass.queued, 0);
    assert_eq!(f.queued().await, 1);
    assert!(!delivered.deduplicated);
}

#[tokio::test]
async fn pages_are_followed_down_to_the_position_only() {
    let f = Fixture::new(2).await;
    for n in 0..3 {
        f.record(group_event(
            &format!("old{n}"),
            &format!("2026-08-05T11:00:0{n}Z"),
            "x",
        ));
    }
    f.catch_up.pass().await.unwrap();
    let before = f.requests();
    for n in 0..5 {
        f.record(group_event(
            &format!("new{n}"),
            &format!("2026-08-05T12:00:0{n}Z"),
            &format!("g{n}"),
        ));
    }
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!(pass.queued, 5);
    // 5 new events and the position's own fill three pages of 2; the
    // fourth is read because events of the position's instant could still
    // follow, and it ends the pass with an older one. The fifth never is.
    assert_eq!(f.requests() - before, 4);
    assert_eq!(pass.pages, 4);
}

#[tokio::test]
async fn other_models_move_the_position_but_queue_nothing() {
    let f = Fixture::new(2).await;
    f.catch_up.pass().await.unwrap();
    let mut app = group_event("e1", "2026-08-05T12:00:00Z", "a");
    app.context =
        json!({"model": {"app": "authentik_core", "model_name": "application", "pk": "x"}});
    f.record(app);
    let pass = f.catch_up.pass().await.unwrap();
    assert_eq!((pass.read, pass.queued), (1, 0));
    assert_eq!(
        Position::load(&f.catch_up.store).await.unwrap().unwrap().pk,
        "e1"
    );
}
