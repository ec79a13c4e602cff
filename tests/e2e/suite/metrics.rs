//! `GET /metrics` of the real coordinator, scraped after a run and parsed
//! as Prometheus text: every family the README lists is there with its
//! HELP and TYPE, and the numbers are what the run did; the failing
//! cause is in gRPC `Status` too, and the mailcow-agent serves its own
//! metrics on `METRICS_LISTEN`.

use std::collections::BTreeMap;

use reconciler_testkit::harness::{Stack, StackOptions};
use serde_json::json;

/// `name{labels}` → value, from the exposition text; HELP and TYPE lines
/// by family.
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    types: BTreeMap<String, String>,
    helps: BTreeMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut scrape = Scrape {
            samples: Vec::new(),
            types: BTreeMap::new(),
            helps: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                scrape.types.insert(name.into(), kind.into());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                scrape.helps.insert(name.into(), help.into());
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').unwrap())),
                None => (series, BTreeMap::new()),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name}"
            );
            scrape.samples.push((name.into(), labels, value));
        }
        scrape
    }

    /// The sum over samples of `name` whose labels include `with`.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// `a="x",b="y"` with `\"`, `\\` and `\n` escapes.
fn labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().unwrap();
            match c {
                '\\' => {
                    let (_, escaped) = chars.next().unwrap();
                    value.push(if escaped == 'n' { '\n' } else { escaped });
                }
                '"' => break i,
                c => value.push(c),
            }
        };
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    out
}

#[tokio::test]
async fn metrics_count_what_a_run_did_and_parse_as_prometheus_text() {
    let mut stack = Stack::start(StackOptions {
        agent_env: vec![("METRICS_LISTEN".into(), "127.0.0.1:0".into())],
        ..StackOptions::default()
    })
    .await;
    stack.mailcow.add_domain("example.com");
    stack.mailcow.add_mailbox("alice@example.com");
    let a = &stack.authentik;
    let alice = a.add_user("alice", "alice@example.com");
    let team = a.add_group("team", json!({"reconciler": {"alias": "team@example.com"}}));
    // Mailcow has no such domain: this alias fails for good, every time.
    let broken = a.add_group(
        "broken",
        json!({"reconciler": {"alias": "team@unknown.example"}}),
    );
    a.add_member(&team, alice);
    a.add_member(&broken, alice);
    // Before any run: nothing counted yet.
    let before = reqwest::get(format!("{}/metrics", stack.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let before = Scrape::parse(&before);
    assert_eq!(before.value("reconciler_changes_total", &[]), 0.0);
    assert_eq!(before.value("reconciler_jobs", &[("state", "done")]), 0.0);
    let job = stack.sweep().await;
    assert_eq!(job["state"], "done", "{job}");

    let body = reqwest::get(format!("{}/metrics", stack.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = Scrape::parse(&body);
    for (family, kind) in [
        ("reconciler_changes_total", "counter"),
        ("reconciler_run_duration_seconds", "histogram"),
        ("reconciler_agent_request_duration_seconds", "histogram"),
        ("reconciler_authentik_request_duration_seconds", "histogram"),
        ("reconciler_jobs", "gauge"),
        ("reconciler_oldest_queued_job_age_seconds", "gauge"),
        ("reconciler_failing_objects", "gauge"),
        ("reconciler_last_sweep_finished_timestamp_seconds", "gauge"),
        ("reconciler_leader", "gauge"),
    ] {
        assert_eq!(
            scrape.types.get(family).map(String::as_str),
            Some(kind),
            "{family}\n{body}"
        );
        assert!(scrape.helps.contains_key(family), "HELP of {family}");
    }
    let changes = |outcome: &str| {
        scrape.value(
            "reconciler_changes_total",
            &[
                ("target", "mailcow-agent"),
                ("resource", "alias"),
                ("action", "create"),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(changes("applied"), 1.0, "{body}");
    assert_eq!(changes("permanent"), 1.0, "{body}");
    assert_eq!(
        scrape.value(
            "reconciler_run_duration_seconds_count",
            &[("trigger", "reconcile-all")]
        ),
        1.0
    );
    assert!(
        scrape.value(
            "reconciler_agent_request_duration_seconds_count",
            &[("agent", "mailcow-agent"), ("call", "apply")]
        ) >= 1.0
    );
    assert!(scrape.value("reconciler_authentik_request_duration_seconds_count", &[]) >= 2.0);
    assert_eq!(scrape.value("reconciler_jobs", &[("state", "done")]), 1.0);
    assert_eq!(scrape.value("reconciler_jobs", &[("state", "queued")]), 0.0);
    assert!(scrape.value("reconciler_last_sweep_finished_timestamp_seconds", &[]) > 1.0e9);
    // The only coordinator of a SQLite state DB always leads.
    assert_eq!(scrape.value("reconciler_leader", &[]), 1.0);
    let failing: Vec<_> = scrape
        .samples
        .iter()
        .filter(|(n, _, v)| n == "reconciler_failing_objects" && *v > 0.0)
        .collect();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].1["resource"], "alias");
    assert!(
        failing[0].1["cause"].contains("domain_not_found"),
        "{failing:?}"
    );

    // The same cause, counted, in gRPC Status.
    let status = stack
        .coordinator_client()
        .await
        .status(reconciler_proto::coordinator::StatusRequest { job_id: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.failing.len(), 1, "{:?}", status.failing);
    assert_eq!(
        status.failing[0].resource(),
        reconciler_proto::coordinator::Resource::Alias
    );
    assert!(status.failing[0].cause.contains("domain_not_found"));
    assert_eq!(status.failing[0].objects, 1);
    assert!(
        status.failing[0]
            .hint
            .contains("the domain is not in Mailcow"),
        "the likely fix: {:?}",
        status.failing[0]
    );

    // The mailcow-agent's own metrics, on METRICS_LISTEN.
    let agent_metrics = stack
        .agent
        .listener("metrics", std::time::Duration::from_secs(10))
        .await;
    let body = reqwest::get(format!("http://{agent_metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let agent = Scrape::parse(&body);
    assert_eq!(
        agent
            .types
            .get("reconciler_agent_changes_total")
            .map(String::as_str),
        Some("counter"),
        "{body}"
    );
    let changes = |outcome: &str| {
        agent.value(
            "reconciler_agent_changes_total",
            &[("agent", "mailcow-agent"), ("outcome", outcome)],
        )
    };
    assert_eq!(changes("applied"), 1.0, "{body}");
    assert_eq!(changes("permanent"), 1.0, "{body}");
    assert!(
        agent.value(
            "reconciler_agent_target_request_duration_seconds_count",
            &[("agent", "mailcow-agent"), ("call", "add/alias")]
        ) >= 2.0,
        "{body}"
    );
    let missing = reqwest::get(format!("http://{agent_metrics}/other"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
