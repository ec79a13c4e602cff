//! Prometheus metrics, through the `metrics` facade and its Prometheus
//! exporter: code records where things happen; `GET /metrics` renders.
//!
//! Counters and histograms are recorded as runs and calls happen. Gauges
//! that describe the state DB (the queue, pending removals, objects whose
//! changes keep failing) are read from it at scrape time, so they are never
//! stale after a restart.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::engine::RunReport;
use crate::error::Result;
use crate::plan::Resource;
use crate::store::now_millis;
use crate::targets::Adapters;

pub const CHANGES: &str = "reconciler_changes_total";
pub const RUN_DURATION: &str = "reconciler_run_duration_seconds";
pub const REMOVALS_HELD: &str = "reconciler_removals_held_total";
pub const AUTHENTIK_REQUEST: &str = "reconciler_authentik_request_duration_seconds";
pub const AGENT_REQUEST: &str = "reconciler_agent_request_duration_seconds";
pub const JOBS: &str = "reconciler_jobs";
pub const OLDEST_QUEUED_JOB_AGE: &str = "reconciler_oldest_queued_job_age_seconds";
pub const PENDING_REMOVALS: &str = "reconciler_pending_removals";
pub const FAILING_OBJECTS: &str = "reconciler_failing_objects";
pub const LAST_SWEEP_FINISHED: &str = "reconciler_last_sweep_finished_timestamp_seconds";
pub const LEADER: &str = "reconciler_leader";

/// The process's exporter (the runtime's, shared with the agents' setup).
fn handle() -> Option<&'static PrometheusHandle> {
    let handle = reconciler_runtime::metrics::handle();
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    if handle.is_some() {
        DESCRIBED.call_once(describe);
    }
    handle
}

/// Installs the exporter; call once at start so every series is described
/// before the first scrape.
pub fn install() {
    if handle().is_none() {
        tracing::warn!("a metrics recorder was installed elsewhere; /metrics stays empty");
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        LEADER,
        "1 while this instance runs the jobs, sweeps and timers (the leader), 0 while it stands by."
    );
    describe_counter!(
        CHANGES,
        "Changes by target, resource, action and outcome (ledger-only steps included)."
    );
    describe_histogram!(RUN_DURATION, Unit::Seconds, "Reconcile runs by trigger.");
    describe_counter!(
        REMOVALS_HELD,
        "Removals a safety guard held back (Authentik looked wrong, a group's attributes are invalid, the removal share guard)."
    );
    describe_histogram!(
        AUTHENTIK_REQUEST,
        Unit::Seconds,
        "Authentik API requests by endpoint."
    );
    describe_histogram!(
        AGENT_REQUEST,
        Unit::Seconds,
        "Calls to agents by agent and call (observe, apply)."
    );
    describe_gauge!(JOBS, "Jobs in the queue by state.");
    describe_gauge!(
        OLDEST_QUEUED_JOB_AGE,
        Unit::Seconds,
        "Age of the oldest queued job (0 when none)."
    );
    describe_gauge!(
        PENDING_REMOVALS,
        "Removals waiting out a grace period (Matrix grace_period, STALWART_DELETE_AFTER), by resource."
    );
    describe_gauge!(
        FAILING_OBJECTS,
        "Objects whose last change failed permanently (backing off), by resource and cause."
    );
    describe_gauge!(
        LAST_SWEEP_FINISHED,
        Unit::Seconds,
        "Unix time of the last finished sweep (0: never)."
    );
}

/// Records one finished run: its duration under `trigger`, every outcome
/// it counted (the target named by the adapter owning the resource), and
/// the removals its guards held.
pub fn record_run(trigger: &str, took: Duration, report: &RunReport, adapters: &Adapters) {
    histogram!(RUN_DURATION, "trigger" => trigger.to_owned()).record(took.as_secs_f64());
    for (what, n) in &report.outcomes {
        let mut parts = what.splitn(3, '.');
        let (Some(resource), Some(action), Some(outcome)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let target = Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == resource)
            .and_then(|r| adapters.owner(r))
            .map_or_else(|| "none".to_owned(), |a| a.name().to_owned());
        counter!(
            CHANGES,
            "target" => target,
            "resource" => resource.to_owned(),
            "action" => action.to_owned(),
            "outcome" => outcome.to_owned()
        )
        .increment(*n);
    }
    if report.removals_held > 0 {
        counter!(REMOVALS_HELD).increment(report.removals_held as u64);
    }
}

pub fn agent_request(agent: &str, call: &'static str, took: Duration) {
    histogram!(AGENT_REQUEST, "agent" => agent.to_owned(), "call" => call)
        .record(took.as_secs_f64());
}

pub fn authentik_request(endpoint: &str, took: Duration) {
    histogram!(AUTHENTIK_REQUEST, "endpoint" => endpoint.to_owned()).record(took.as_secs_f64());
}

/// Label sets of the scrape-time gauges set last time, so one that
/// disappeared (a cause fixed) is set to 0 rather than kept.
static SCRAPED: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// The exposition text: the state DB's gauges read now, then everything.
pub async fn render(engine: &crate::engine::Engine) -> Result<String> {
    let Some(handle) = handle() else {
        return Ok(String::new());
    };
    let store = engine.store();
    let counts = store.job_counts().await?;
    for (state, n) in [
        ("queued", counts.queued),
        ("running", counts.running),
        ("done", counts.done),
        ("failed", counts.failed),
    ] {
        gauge!(JOBS, "state" => state).set(n as f64);
    }
    let oldest = store.oldest_queued_job().await?;
    let age = oldest.map_or(0, |created| (now_millis() - created).max(0));
    gauge!(OLDEST_QUEUED_JOB_AGE).set(age as f64 / 1000.0);
    let last_sweep: f64 = store
        .get_meta("last_sweep_finished")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    gauge!(LAST_SWEEP_FINISHED).set(last_sweep);

    let mut now: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for p in store.pending_removals().await? {
        *now.entry((PENDING_REMOVALS.into(), p.resource))
            .or_default() += 1.0;
    }
    for failing in engine.failing_causes().await? {
        let label = format!("{}\u{0}{}", failing.resource, failing.cause);
        *now.entry((FAILING_OBJECTS.into(), label)).or_default() += failing.objects as f64;
    }
    let mut scraped = SCRAPED.lock().unwrap_or_else(|p| p.into_inner());
    for key in scraped.iter().filter(|k| !now.contains_key(*k)) {
        set_scraped(key, 0.0);
    }
    for (key, n) in &now {
        set_scraped(key, *n);
    }
    *scraped = now.into_keys().collect();
    drop(scraped);
    Ok(handle.render())
}

fn set_scraped((name, label): &(String, String), value: f64) {
    if name == PENDING_REMOVALS {
        gauge!(PENDING_REMOVALS, "resource" => label.clone()).set(value);
    } else {
        let (resource, cause) = label.split_once('\u{0}').unwrap_or((label, ""));
        gauge!(FAILING_OBJECTS, "resource" => resource.to_owned(), "cause" => cause.to_owned())
            .set(value);
    }
}

/// Whether this instance leads now ([`LEADER`]).
pub fn set_leader(leads: bool) {
    gauge!(LEADER).set(if leads { 1.0 } else { 0.0 });
}
