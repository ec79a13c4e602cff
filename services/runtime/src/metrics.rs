//! Prometheus metrics for every process, through the `metrics` facade and
//! its Prometheus exporter: code records where things happen, the exporter
//! renders. The coordinator serves the text on its own `GET /metrics`; an
//! agent serves it on `METRICS_LISTEN` ([`serve`]) when that is set.
//!
//! What every agent records, by agent:
//! - `reconciler_agent_changes_total{agent, outcome}`: each change's outcome
//!   (its error class when it failed);
//! - `reconciler_agent_target_request_duration_seconds{agent, call}`: each
//!   request to the target (Mailcow's API, Synapse, Stalwart's JMAP, SOGo's
//!   database);
//! - `reconciler_agent_processes_total{program}` and
//!   `reconciler_agent_process_duration_seconds{program}`: each process an
//!   agent runs (`doveadm`, `occ`).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use reconciler_proto::agent::Outcome;

/// Request latencies: a local API in milliseconds, a big batch in seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Runs: a one-user webhook in a fraction of a second, a sweep of 10,000
/// users in minutes.
const RUN_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

pub const AGENT_CHANGES: &str = "reconciler_agent_changes_total";
pub const TARGET_REQUEST: &str = "reconciler_agent_target_request_duration_seconds";
pub const PROCESSES: &str = "reconciler_agent_processes_total";
pub const PROCESS_DURATION: &str = "reconciler_agent_process_duration_seconds";

/// The process's exporter, installed on first use; `None` if another
/// recorder was installed first (nothing is then exported).
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("request_duration_seconds".into()),
                    REQUEST_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("process_duration_seconds".into()),
                        REQUEST_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("run_duration_seconds".into()),
                        RUN_BUCKETS,
                    )
                })
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        AGENT_CHANGES,
        "Changes an agent applied, by outcome (APPLIED, UNCHANGED, or the class of its failure)."
    );
    describe_histogram!(
        TARGET_REQUEST,
        Unit::Seconds,
        "Requests an agent made to its target, by call."
    );
    describe_counter!(
        PROCESSES,
        "Processes an agent ran (doveadm, occ), by program."
    );
    describe_histogram!(
        PROCESS_DURATION,
        Unit::Seconds,
        "How long the processes an agent ran took, by program."
    );
}

/// The exposition text of everything recorded so far.
pub fn render() -> String {
    handle().map(PrometheusHandle::render).unwrap_or_default()
}

/// Counts the outcomes of one Apply call's changes.
pub fn changes(agent: &'static str, outcomes: impl IntoIterator<Item = i32>) {
    for outcome in outcomes {
        let name = Outcome::try_from(outcome).unwrap_or(Outcome::Unspecified);
        let label = name
            .as_str_name()
            .trim_start_matches("OUTCOME_")
            .to_ascii_lowercase();
        counter!(AGENT_CHANGES, "agent" => agent, "outcome" => label).increment(1);
    }
}

/// One request to the target took `took`.
pub fn target_request(agent: &'static str, call: &str, took: Duration) {
    histogram!(TARGET_REQUEST, "agent" => agent, "call" => call.to_owned())
        .record(took.as_secs_f64());
}

/// One process (`argv`) ran for `took`: labelled by its program, `occ` for
/// `php occ …`.
pub fn process(argv: &[String], took: Duration) {
    let program = match argv {
        [php, occ, ..] if php.ends_with("php") && occ == "occ" => "occ".to_owned(),
        [first, ..] => first.rsplit('/').next().unwrap_or(first).to_owned(),
        [] => return,
    };
    counter!(PROCESSES, "program" => program.clone()).increment(1);
    histogram!(PROCESS_DURATION, "program" => program).record(took.as_secs_f64());
}

/// Serves `GET /metrics` on `listen` until `shutdown`; announced as
/// `metrics` (`LISTEN_ADDR_FILE`). Anything else is a 404.
pub async fn serve(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    handle();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    crate::announce::announce("metrics", addr)?;
    tracing::info!(%addr, "metrics listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let service = service_fn(
            |request: hyper::Request<hyper::body::Incoming>| async move {
                let found =
                    request.method() == hyper::Method::GET && request.uri().path() == "/metrics";
                if found {
                    hyper::Response::builder()
                        .header("content-type", "text/plain; version=0.0.4")
                        .body(Full::new(Bytes::from(render())))
                } else {
                    hyper::Response::builder()
                        .status(404)
                        .body(Full::new(Bytes::from_static(b"not found\n")))
                }
            },
        );
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `METRICS_LISTEN` from the environment: `None` (unset or empty) serves
/// no metrics.
pub fn listen_from_env() -> Result<Option<SocketAddr>, String> {
    match std::env::var("METRICS_LISTEN") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("METRICS_LISTEN: {e}")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_are_counted_by_program_and_occ_by_name() {
        assert!(handle().is_some());
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        process(
            &argv(&["php", "occ", "mail:account:export", "alice"]),
            Duration::from_millis(300),
        );
        process(
            &argv(&["/usr/bin/doveadm", "acl", "get"]),
            Duration::from_millis(20),
        );
        process(&argv(&["doveadm", "acl", "set"]), Duration::from_millis(20));
        changes(
            "test-agent",
            [Outcome::Applied as i32, Outcome::Transient as i32],
        );
        let text = render();
        assert!(
            text.contains("reconciler_agent_processes_total{program=\"occ\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("reconciler_agent_processes_total{program=\"doveadm\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "reconciler_agent_changes_total{agent=\"test-agent\",outcome=\"transient\"} 1"
            ),
            "{text}"
        );
    }
}
