//! `GET /status`: one server-rendered HTML page for operators (no
//! JavaScript): each component's health, the last sweep and its summary,
//! the queue, objects whose changes keep failing (by cause), removals held
//! and removals waiting out a grace period.
//!
//! Readable with the admin token or the read-only `STATUS_TOKEN`, given as
//! `X-Reconciler-Admin-Token`, `Authorization: Bearer`, or as the password
//! of HTTP Basic authentication (any user name), so a browser can open it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::error::Result;
use crate::http::HttpState;
use crate::store::{PendingRemoval, now_millis};

/// The token a request presents, from any of the accepted headers.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-reconciler-admin-token") {
        return v.to_str().ok().map(str::to_owned);
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned());
    }
    let encoded = auth.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

fn authorized(state: &HttpState, headers: &HeaderMap) -> bool {
    presented(headers).is_some_and(|t| {
        // Both compared, each in constant time.
        let admin = state.admin_token.matches(&t);
        let status = state.status_token.as_ref().is_some_and(|s| s.matches(&t));
        admin | status
    })
}

pub async fn status(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"authentik-reconciler status\"",
            )],
            "missing or wrong token",
        )
            .into_response();
    }
    match page(&state).await {
        Ok(markup) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            markup.into_string(),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// What the page shows, read from the engine and the state DB.
struct Facts {
    components: BTreeMap<String, crate::health::Component>,
    counts: crate::store::JobCounts,
    oldest_queued_ms: Option<i64>,
    last_sweep: Option<crate::store::JobRow>,
    /// By (resource, cause): how many objects, and the likely fix.
    failing: Vec<crate::engine::FailingCause>,
    pending: Vec<PendingRemoval>,
    /// `mtls` or `insecure`: plaintext is said at the top of the page.
    agent_transport: &'static str,
}

async fn page(state: &HttpState) -> Result<Markup> {
    let store = state.engine.store();
    let facts = Facts {
        components: crate::health::check(&state.engine).await.components,
        counts: store.job_counts().await?,
        oldest_queued_ms: store.oldest_queued_job().await?,
        last_sweep: store.last_finished_sweep().await?,
        failing: state.engine.failing_causes().await?,
        pending: store.pending_removals().await?,
        agent_transport: state.agent_transport,
    };
    Ok(render(&facts))
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
.up{color:#0a7a2f}.down{color:#c00;font-weight:bold}.held{color:#b35c00;font-weight:bold}";

fn render(f: &Facts) -> Markup {
    let summary: Value = f
        .last_sweep
        .as_ref()
        .and_then(|j| serde_json::from_str(&j.summary).ok())
        .unwrap_or(Value::Null);
    let warnings: Vec<&str> = summary["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let held: Vec<&str> = warnings
        .iter()
        .copied()
        .filter(|w| w.contains("removal(s) held"))
        .collect();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "authentik-reconciler status" }
                style { (STYLE) }
            }
            body {
                h1 { "authentik-reconciler" }
                @if f.agent_transport == "insecure" {
                    p class="down" id="agent-transport" {
                        "Agents are reached over plaintext HTTP/2 (AGENT_INSECURE=true): \
                         no certificates, and the agent token crosses the network readable."
                    }
                }
                h2 { "Components" }
                table id="components" {
                    tr { th { "component" } th { "state" } th { "detail" } }
                    @for (name, c) in &f.components {
                        tr class=(if c.healthy { "up" } else { "down" }) data-component=(name) {
                            td { (name) }
                            td { (if c.healthy { "up" } else { "DOWN" }) }
                            td { (c.detail) }
                        }
                    }
                }
                h2 { "Last sweep" }
                @match &f.last_sweep {
                    None => p id="last-sweep" { "no sweep has finished yet" },
                    Some(job) => {
                        p id="last-sweep" {
                            "job " (job.id) ": " (job.state)
                            @if !job.last_error.is_empty() { " — " (job.last_error) }
                        }
                        table id="outcomes" {
                            tr { th { "change" } th { "count" } }
                            @for (what, n) in summary["outcomes"].as_object().into_iter().flatten() {
                                tr { td { (what) } td { (n) } }
                            }
                        }
                        @if !warnings.is_empty() {
                            ul id="warnings" { @for w in &warnings { li { (w) } } }
                        }
                    }
                }
                h2 { "Held removals" }
                @if held.is_empty() {
                    p id="held" { "none" }
                } @else {
                    ul id="held" { @for w in &held { li class="held" { (w) } } }
                }
                h2 { "Queue" }
                table id="queue" {
                    tr { th { "queued" } th { "running" } th { "done" } th { "failed" } th { "oldest queued" } }
                    tr {
                        td { (f.counts.queued) } td { (f.counts.running) }
                        td { (f.counts.done) } td { (f.counts.failed) }
                        td { (f.oldest_queued_ms.map_or("-".to_owned(), |t| format!("{} s", (now_millis() - t) / 1000))) }
                    }
                }
                h2 { "Failing objects" }
                @if f.failing.is_empty() {
                    p id="failing" { "none" }
                } @else {
                    table id="failing" {
                        tr { th { "resource" } th { "cause" } th { "objects" } th { "likely fix" } }
                        @for failing in &f.failing {
                            tr class="down" {
                                td { (failing.resource) } td { (failing.cause) } td { (failing.objects) }
                                td { (failing.hint.unwrap_or("")) }
                            }
                        }
                    }
                }
                h2 { "Removals waiting out a grace period" }
                @if f.pending.is_empty() {
                    p id="pending" { "none" }
                } @else {
                    table id="pending" {
                        tr { th { "resource" } th { "object" } th { "user" } th { "due" } th { "why" } }
                        @for p in &f.pending {
                            tr {
                                td { (p.resource) } td { (p.key.replace('|', " → ")) }
                                td { (p.username) } td { (crate::audit_api::format_time(p.due_at)) } td { (p.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_any_accepted_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic b3BzOnMzY3JldA==".parse().unwrap(),
        );
        assert_eq!(presented(&h).as_deref(), Some("s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer tok".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("tok"));
        h.insert("x-reconciler-admin-token", "adm".parse().unwrap());
        assert_eq!(presented(&h).as_deref(), Some("adm"));
    }

    #[test]
    fn what_people_wrote_is_escaped() {
        let facts = Facts {
            components: BTreeMap::from([(
                "<script>".to_owned(),
                crate::health::Component {
                    healthy: false,
                    detail: "a & b".into(),
                },
            )]),
            counts: Default::default(),
            oldest_queued_ms: None,
            last_sweep: None,
            failing: Vec::new(),
            pending: Vec::new(),
            agent_transport: "mtls",
        };
        let html = render(&facts).into_string();
        assert!(html.contains("&lt;script&gt;") && html.contains("a &amp; b"));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("AGENT_INSECURE"));
        let insecure = Facts {
            agent_transport: "insecure",
            ..facts
        };
        assert!(
            render(&insecure)
                .into_string()
                .contains("AGENT_INSECURE=true")
        );
    }
}
