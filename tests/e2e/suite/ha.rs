//! High availability (README, "High availability"): two real coordinator
//! processes on one private PostgreSQL 15, the real mailcow-agent and
//! nextcloud-agent (occ in a container), the Mailcow and Authentik
//! simulators. The leader is killed with SIGKILL in the middle of a sweep;
//! the other instance must take over within 15 s and finish the work, with
//! one app password per person in Mailcow, and the job attempt record in
//! PostgreSQL must show no attempt of any job running on two instances at
//! once.

use std::time::{Duration, Instant};

use reconciler_testkit::harness::stack_tokens::{ADMIN_TOKEN, WEBHOOK_TOKEN};
use reconciler_testkit::harness::{NextcloudContainer, Service, Stack, StackOptions, StateDbKind};
use serde_json::{Value, json};

const INFO: &str = "info@example.com";
const PEOPLE: usize = 16;
const HANDOVER_BUDGET: Duration = Duration::from_secs(15);

/// One coordinator of the pair, as the test reaches it.
struct Instance {
    name: &'static str,
    service: Service,
    http_url: String,
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let response = http
        .get(url)
        .header("X-Reconciler-Admin-Token", ADMIN_TOKEN)
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

/// `"leader"` from the instance's `/healthz`; `None` while it does not
/// answer.
async fn leads(http: &reqwest::Client, instance: &Instance) -> Option<bool> {
    let health = get_json(http, &format!("{}/healthz", instance.http_url)).await?;
    health["leader"].as_bool()
}

/// Polls until `instance` says it leads; how long that took.
async fn wait_until_leading(http: &reqwest::Client, instance: &mut Instance) -> Duration {
    let start = Instant::now();
    loop {
        if leads(http, instance).await == Some(true) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never led:\n{}",
            instance.name,
            instance.service.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_job(http: &reqwest::Client, instance: &Instance, id: i64) -> Value {
    let start = Instant::now();
    loop {
        if let Some(job) = get_json(http, &format!("{}/jobs/{id}", instance.http_url)).await
            && matches!(job["state"].as_str(), Some("done") | Some("failed"))
        {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "job {id} did not finish:\n{}",
            instance.service.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One row of `job_attempts`.
#[derive(Debug, sqlx::FromRow)]
struct Attempt {
    job_id: i64,
    attempt: i64,
    instance: String,
    started_at: i64,
    ended_at: Option<i64>,
    outcome: String,
}

/// Two coordinators on one PostgreSQL, A leading and B standing by, and a
/// directory whose sweep makes many slow changes.
struct World {
    nextcloud: NextcloudContainer,
    stack: Stack,
    group: String,
    people: Vec<String>,
    leader: Instance,
    follower: Instance,
    http: reqwest::Client,
}

async fn world() -> World {
    let people: Vec<String> = (0..PEOPLE).map(|i| format!("person{i:02}")).collect();
    let nextcloud = NextcloudContainer::start(&[]).await;
    nextcloud.seed_users(&people).await;
    let mut stack = Stack::start(StackOptions {
        state_db: StateDbKind::Postgres,
        coordinator_env: vec![("COORDINATOR_INSTANCE".into(), "coordinator-a".into())],
        nextcloud_agent_env: Some(vec![
            ("NEXTCLOUD_CONTAINER".into(), nextcloud.name.clone()),
            ("MAIL_IMAP_HOST".into(), "mail.example.com".into()),
            ("MAIL_SMTP_HOST".into(), "mail.example.com".into()),
        ]),
        ..StackOptions::default()
    })
    .await;
    let b_logs = stack.dir.path().join("coordinator-b");
    std::fs::create_dir_all(&b_logs).expect("log dir");
    let (b_service, b_url, _) = stack
        .spawn_coordinator(
            2,
            &[("COORDINATOR_INSTANCE".into(), "coordinator-b".into())],
            &b_logs,
        )
        .await;
    let a = Instance {
        name: "coordinator-a",
        service: std::mem::replace(&mut stack.coordinator, Service::spawn_none()),
        http_url: stack.http_url.clone(),
    };
    let b = Instance {
        name: "coordinator-b",
        service: b_service,
        http_url: b_url,
    };
    let http = reqwest::Client::new();

    // A started first and takes the lock; B stands by and says so.
    let mut pair = [a, b];
    wait_until_leading(&http, &mut pair[0]).await;
    assert_eq!(leads(&http, &pair[1]).await, Some(false), "one leader only");
    let [leader, follower] = pair;

    // Many changes: an app password (and a Nextcloud Mail account) on the
    // shared mailbox for each person.
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox(INFO);
    let group = stack.authentik.add_group(
        "info-desk",
        json!({"reconciler": {"shared_mailbox": INFO, "nextcloud_mail": true}}),
    );
    for name in &people {
        let email = format!("{name}@example.com");
        stack.mailcow.add_mailbox(&email);
        let pk = stack.authentik.add_user(name, &email);
        stack.authentik.add_member(&group, pk);
    }
    // Slow enough to be cut in the middle: every Mailcow request takes
    // 150 ms, every occ call 100 ms (app passwords on one mailbox are made
    // one at a time).
    stack.mailcow.set_request_cost(Duration::from_millis(150));
    nextcloud.set_boot_ms(100).await;
    World {
        nextcloud,
        stack,
        group,
        people,
        leader,
        follower,
        http,
    }
}

/// Our app passwords on the shared mailbox.
fn ours(stack: &Stack) -> usize {
    stack
        .mailcow
        .app_passwords(INFO)
        .into_iter()
        .filter(|p| p.name.starts_with("authentik-sync:"))
        .count()
}

/// Waits until the sweep has made some of its changes, not all.
async fn mid_sweep(stack: &Stack, leader: &Instance) -> usize {
    let start = Instant::now();
    while ours(stack) < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the leader never got going:\n{}",
            leader.service.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = ours(stack);
    assert!(
        done < PEOPLE,
        "the sweep was already over: nothing to hand over"
    );
    done
}

/// One app password and one Nextcloud Mail account per person, never two
/// writes at once on one Mailcow object, and no two attempts of one job
/// overlapping in the record; returns the record.
async fn the_work_was_done_once(
    stack: &Stack,
    nextcloud: &NextcloudContainer,
    people: &[String],
) -> Vec<Attempt> {
    let mut names: Vec<String> = stack
        .mailcow
        .app_passwords(INFO)
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.starts_with("authentik-sync:"))
        .collect();
    names.sort();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "duplicate app passwords: {names:?}");
    assert_eq!(names.len(), PEOPLE, "{names:?}");
    let accounts = nextcloud.state().await.accounts;
    for name in people {
        let theirs = accounts
            .iter()
            .filter(|a| &a.user_id == name && a.email == INFO)
            .count();
        assert_eq!(theirs, 1, "{name}'s Nextcloud Mail accounts: {accounts:?}");
    }
    assert_eq!(
        stack.mailcow.max_writes_in_flight_per_object(),
        1,
        "two writes at once on one Mailcow object"
    );
    let db = sqlx::PgPool::connect(&stack.state_db_url())
        .await
        .expect("connect to the state DB");
    let attempts: Vec<Attempt> = sqlx::query_as(
        "SELECT job_id, attempt, instance, started_at, ended_at, outcome FROM job_attempts
         ORDER BY job_id, attempt",
    )
    .fetch_all(&db)
    .await
    .expect("job_attempts");
    assert!(
        attempts.iter().all(|a| a.ended_at.is_some()),
        "{attempts:#?}"
    );
    for pair in attempts.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        if earlier.job_id == later.job_id {
            assert!(
                earlier.ended_at.expect("ended") <= later.started_at,
                "two attempts of job {} overlap: {earlier:?} {later:?}",
                earlier.job_id
            );
        }
    }
    attempts
}

#[tokio::test]
async fn killing_the_leader_mid_sweep_hands_over_and_no_job_runs_twice_at_once() {
    let World {
        nextcloud,
        stack,
        group,
        people,
        mut leader,
        mut follower,
        http,
    } = world().await;
    // The follower accepts the sweep and queues it in PostgreSQL.
    let sweep = post(&http, &follower, "/reconcile-all", ADMIN_TOKEN, "").await;
    let done_before_kill = mid_sweep(&stack, &leader).await;
    leader.service.kill();
    let killed_at = Instant::now();

    // While no one leads, webhooks are still accepted and queued.
    let webhook = post(
        &http,
        &follower,
        "/reconcile",
        WEBHOOK_TOKEN,
        &Stack::group_event(&group, "evt-during-handover").to_string(),
    )
    .await;

    wait_until_leading(&http, &mut follower).await;
    let handover = killed_at.elapsed();
    println!(
        "hand-over after SIGKILL of the leader: {} ms ({done_before_kill} of {PEOPLE} app passwords made before)",
        handover.as_millis()
    );
    assert!(
        handover < HANDOVER_BUDGET,
        "hand-over took {handover:?}:\n{}",
        follower.service.logs()
    );

    let job = wait_job(&http, &follower, sweep).await;
    assert_eq!(
        job["state"],
        "done",
        "{job}\nfollower log:\n{}",
        follower.service.logs()
    );
    let job = wait_job(&http, &follower, webhook).await;
    assert_eq!(job["state"], "done", "{job}");

    // The record in PostgreSQL: the sweep ran on A, was cut short, and ran
    // again on B.
    let attempts = the_work_was_done_once(&stack, &nextcloud, &people).await;
    let of_sweep: Vec<&Attempt> = attempts.iter().filter(|a| a.job_id == sweep).collect();
    assert!(of_sweep.len() >= 2, "{attempts:#?}");
    let numbers: Vec<i64> = of_sweep.iter().map(|a| a.attempt).collect();
    assert_eq!(
        numbers,
        (1..=of_sweep.len() as i64).collect::<Vec<_>>(),
        "{attempts:#?}"
    );
    assert_eq!(
        (of_sweep[0].instance.as_str(), of_sweep[0].outcome.as_str()),
        (leader.name, "interrupted"),
        "{attempts:#?}"
    );
    let last = of_sweep.last().expect("an attempt");
    assert_eq!(
        (last.instance.as_str(), last.outcome.as_str()),
        (follower.name, "done"),
        "{attempts:#?}"
    );
    // The survivor says it leads, in health and metrics.
    assert_eq!(leads(&http, &follower).await, Some(true));
    assert_eq!(leader_gauge(&http, &follower).await, "1");

    // The killed instance comes back as a follower: it stands by, accepts a
    // webhook, and the leader runs the job (woken by PostgreSQL's NOTIFY).
    let (service, http_url, _) = stack
        .spawn_coordinator(
            2,
            &[("COORDINATOR_INSTANCE".into(), "coordinator-a".into())],
            stack.dir.path(),
        )
        .await;
    let rejoined = Instance {
        name: "coordinator-a",
        service,
        http_url,
    };
    assert_eq!(leads(&http, &rejoined).await, Some(false));
    assert_eq!(leader_gauge(&http, &rejoined).await, "0");
    stack.mailcow.set_request_cost(Duration::ZERO);
    nextcloud.set_boot_ms(0).await;
    let accepted = Instant::now();
    let id = post(
        &http,
        &rejoined,
        "/reconcile",
        WEBHOOK_TOKEN,
        &Stack::group_event(&group, "evt-to-the-follower").to_string(),
    )
    .await;
    let job = wait_job(&http, &follower, id).await;
    assert_eq!(job["state"], "done", "{job}");
    println!(
        "a webhook accepted by the follower was done by the leader after {} ms",
        accepted.elapsed().as_millis()
    );
    let db = sqlx::PgPool::connect(&stack.state_db_url())
        .await
        .expect("connect to the state DB");
    let attempts: Vec<String> =
        sqlx::query_scalar("SELECT instance FROM job_attempts WHERE job_id = $1")
            .bind(id)
            .fetch_all(&db)
            .await
            .expect("job_attempts");
    assert_eq!(attempts, vec![follower.name.to_owned()]);
    assert_eq!(
        leads(&http, &rejoined).await,
        Some(false),
        "one leader only"
    );
}

/// A leader that is alive but loses its lock's session (here the server
/// ends it, as a failover or a network cut would) stops its jobs at once;
/// whichever instance leads next finishes the sweep, and nothing ran twice
/// at once.
#[tokio::test]
async fn a_leader_that_loses_its_lock_stops_before_anyone_else_starts() {
    let World {
        nextcloud,
        stack,
        people,
        leader,
        follower,
        http,
        ..
    } = world().await;
    let sweep = post(&http, &leader, "/reconcile-all", ADMIN_TOKEN, "").await;
    mid_sweep(&stack, &leader).await;
    let pg = stack.postgres.as_ref().expect("PostgreSQL");
    let ended = pg
        .sql(
            "reconciler",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'reconciler-coordinator leader lock coordinator-a'",
        )
        .await;
    assert_eq!(ended.trim(), "t", "the leader's lock session");

    let job = wait_job(&http, &follower, sweep).await;
    assert_eq!(
        job["state"],
        "done",
        "{job}\nA:\n{}\nB:\n{}",
        leader.service.logs(),
        follower.service.logs()
    );
    assert!(
        leader.service.logs().contains("leadership lost"),
        "{}",
        leader.service.logs()
    );
    let attempts = the_work_was_done_once(&stack, &nextcloud, &people).await;
    let of_sweep: Vec<&Attempt> = attempts.iter().filter(|a| a.job_id == sweep).collect();
    assert_eq!(
        (of_sweep[0].instance.as_str(), of_sweep[0].outcome.as_str()),
        (leader.name, "interrupted"),
        "{attempts:#?}"
    );
    assert_eq!(of_sweep.last().map(|a| a.outcome.as_str()), Some("done"));
    // Exactly one of them leads again.
    let (a, b) = (leads(&http, &leader).await, leads(&http, &follower).await);
    assert!(a != b, "one leader: A {a:?}, B {b:?}");
}

/// The `reconciler_leader` sample of the instance's `/metrics`.
async fn leader_gauge(http: &reqwest::Client, instance: &Instance) -> String {
    let body = http
        .get(format!("{}/metrics", instance.http_url))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    body.lines()
        .find_map(|line| line.strip_prefix("reconciler_leader "))
        .unwrap_or_else(|| panic!("no reconciler_leader in:\n{body}"))
        .trim()
        .to_owned()
}

/// POSTs with a token and returns the queued job's id (202).
async fn post(
    http: &reqwest::Client,
    instance: &Instance,
    path: &str,
    token: &str,
    body: &str,
) -> i64 {
    let header = if path == "/reconcile" {
        "X-Authentik-Webhook-Token"
    } else {
        "X-Reconciler-Admin-Token"
    };
    let response = http
        .post(format!("{}{path}", instance.http_url))
        .header(header, token)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "{path} on {}: {reply}", instance.name);
    reply["job_id"].as_i64().expect("job_id")
}
