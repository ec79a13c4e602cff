//! End to end, lost webhooks caught up from Authentik's events API: the
//! real coordinator and mailcow-agent against the Authentik and Mailcow
//! simulators, with the sweep timer off (the stack's default), so only the
//! catch-up can apply a change whose webhook never arrived.

use std::time::{Duration, Instant};

use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

const INFO: &str = "info@example.com";
const ALICE: &str = "alice@example.com";
const EVENTS: &str = "GET /api/v3/events/events/";
const DEADLINE: Duration = Duration::from_secs(30);

/// A stack whose catch-up runs every `seconds` (`None`: the default, 60).
async fn stack(seconds: Option<u64>) -> Stack {
    let mut options = StackOptions::default();
    if let Some(seconds) = seconds {
        options
            .coordinator_env
            .push(("EVENTS_CATCHUP_SECONDS".into(), seconds.to_string()));
    }
    let stack = Stack::start(options).await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    stack.mailcow.add_mailbox(ALICE);
    stack
}

/// Alice and a send-as group she is not yet in, created silently (no
/// events), as a background task would. Returns (alice's pk, group UUID).
fn directory(stack: &Stack) -> (i64, String) {
    let alice = stack.authentik.add_user("alice", ALICE);
    let group = stack.authentik.add_group(
        "support",
        json!({"reconciler": {"shared_mailbox": INFO, "send_as": true}}),
    );
    (alice, group)
}

/// Adds the member through Authentik's API, which records a `model_updated`
/// event for the group (and would notify, were a webhook configured).
async fn add_member_via_api(stack: &Stack, group: &str, user: i64) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v3/core/groups/{group}/add_user/",
            stack.authentik.base_url()
        ))
        .bearer_auth(&stack.authentik.config().token)
        .json(&json!({"pk": user}))
        .send()
        .await
        .expect("add_user");
    assert!(response.status().is_success(), "{}", response.status());
}

/// The catch-up position the coordinator persisted (`meta`), if any.
async fn position(stack: &Stack) -> Option<serde_json::Value> {
    let url = format!("sqlite://{}?mode=ro", stack.state_db().display());
    let db = sqlx::SqlitePool::connect(&url).await.ok()?;
    let raw: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE name = 'events_catchup_position'")
            .fetch_optional(&db)
            .await
            .ok()?;
    db.close().await;
    raw.and_then(|raw| serde_json::from_str(&raw).ok())
}

async fn jobs_in_state_db(stack: &Stack) -> i64 {
    let url = format!("sqlite://{}?mode=ro", stack.state_db().display());
    let db = sqlx::SqlitePool::connect(&url).await.expect("state DB");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&db)
        .await
        .expect("count jobs");
    db.close().await;
    n
}

async fn unfinished_jobs(stack: &Stack) -> i64 {
    let url = format!("sqlite://{}?mode=ro", stack.state_db().display());
    let db = sqlx::SqlitePool::connect(&url).await.expect("state DB");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
        .fetch_one(&db)
        .await
        .expect("count jobs");
    db.close().await;
    n
}

/// Polls `condition` until it holds or the deadline passes.
async fn until<F, Fut>(stack: &Stack, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !condition().await {
        assert!(
            start.elapsed() < DEADLINE,
            "{what} did not happen\ncoordinator log:\n{}",
            stack.coordinator.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first pass has stored where catch-up starts, so later events count
/// as new rather than history.
async fn catch_up_started(stack: &Stack) {
    until(stack, "the first catch-up pass", || async {
        position(stack).await.is_some()
    })
    .await;
}

async fn send_as_granted(stack: &Stack) {
    until(stack, "alice's send-as right on info@", || async {
        stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned())
    })
    .await;
}

#[tokio::test]
async fn a_membership_change_whose_webhook_is_lost_is_applied_without_a_sweep() {
    let stack = stack(Some(1)).await;
    let (alice, group) = directory(&stack);
    catch_up_started(&stack).await;
    stack.authentik.set_webhooks_paused(true);
    add_member_via_api(&stack, &group, alice).await;
    send_as_granted(&stack).await;
}

#[tokio::test]
async fn a_change_made_while_the_coordinator_is_stopped_is_applied_at_start() {
    // The default interval (60 s): only the pass at start can find it.
    let mut stack = stack(None).await;
    let (alice, group) = directory(&stack);
    catch_up_started(&stack).await;
    stack.coordinator.kill();
    add_member_via_api(&stack, &group, alice).await;
    stack.start_coordinator(2).await;
    send_as_granted(&stack).await;
}

#[tokio::test]
async fn a_delivered_webhook_and_its_caught_up_event_make_one_job() {
    let stack = stack(Some(1)).await;
    let (alice, group) = directory(&stack);
    catch_up_started(&stack).await;
    add_member_via_api(&stack, &group, alice).await;
    let event = stack.authentik.events().pop().expect("the add_user event");
    let pk = event["pk"].as_str().expect("event pk").to_owned();
    // Delivered as the shipped mapping sends it, whichever comes first.
    let job = stack
        .webhook_and_wait(&Stack::group_event(&group, &pk))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    until(&stack, "the catch-up reading the event", || async {
        position(&stack)
            .await
            .is_some_and(|p| p["pk"] == pk.as_str())
    })
    .await;
    assert_eq!(jobs_in_state_db(&stack).await, 1);
    assert!(stack.mailcow.sender_acl(ALICE).contains(&INFO.to_owned()));
}

#[tokio::test]
async fn an_idle_catch_up_costs_one_events_request_per_tick() {
    let stack = stack(Some(1)).await;
    let (_, group) = directory(&stack);
    catch_up_started(&stack).await;
    // More events than a page holds (the stack's Authentik serves 3 a
    // page), caught up and reconciled before the idle time is measured.
    for n in 0..5 {
        let user = stack
            .authentik
            .add_user(&format!("user{n}"), &format!("user{n}@example.com"));
        add_member_via_api(&stack, &group, user).await;
    }
    let newest = stack.authentik.events().pop().expect("events")["pk"].clone();
    until(
        &stack,
        "the events caught up and their jobs run",
        || async {
            position(&stack).await.is_some_and(|p| p["pk"] == newest)
                && unfinished_jobs(&stack).await == 0
        },
    )
    .await;
    stack.authentik.reset_counts();
    let start = Instant::now();
    until(&stack, "five idle catch-up ticks", || async {
        stack.authentik.counts().get(EVENTS).copied().unwrap_or(0) >= 5
    })
    .await;
    // Ticks are a second apart: five requests in at least four seconds is
    // one per tick, so an idle minute costs 60 (one at the default).
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        stack.authentik.counts()
    );
    let counts = stack.authentik.counts();
    assert_eq!(
        stack.authentik.request_count(),
        counts[EVENTS],
        "nothing but the events API while idle: {counts:?}"
    );
}
