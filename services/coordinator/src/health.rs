//! Per-component health, shared by `GET /healthz` and the gRPC Status call.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::Engine;

#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub healthy: bool,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub status: &'static str,
    /// This instance runs the jobs, sweeps and timers (always, with
    /// SQLite; the lock holder among coordinators sharing PostgreSQL).
    pub leader: bool,
    pub components: BTreeMap<String, Component>,
    /// `mtls`, or `insecure` under `AGENT_INSECURE=true`: plaintext is
    /// visible where operators look, not only in the start-up log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_transport: Option<&'static str>,
}

impl HealthReport {
    pub fn healthy(&self) -> bool {
        self.components.values().all(|c| c.healthy)
    }
}

fn component(result: crate::error::Result<()>) -> Component {
    match result {
        Ok(()) => Component {
            healthy: true,
            detail: "ok".into(),
        },
        Err(e) => Component {
            healthy: false,
            detail: e.to_string(),
        },
    }
}

pub async fn check(engine: &Engine) -> HealthReport {
    let agents = engine
        .adapters()
        .iter()
        .map(|adapter| async move { (adapter.name().to_owned(), adapter.health().await) });
    let (db, authentik, agents) = tokio::join!(
        engine.store().ping(),
        engine.directory().ping(),
        futures::future::join_all(agents),
    );
    let mut components = BTreeMap::from([
        ("state_db".to_owned(), component(db)),
        ("authentik".to_owned(), component(authentik)),
    ]);
    for (name, result) in agents {
        components.insert(name, component(result));
    }
    let leadership = engine.leadership();
    let leader = leadership.leads();
    if leadership.elected() {
        // A follower is healthy: it accepts webhooks and stands by.
        let detail = if leader {
            "leader: runs the jobs"
        } else {
            "follower: accepts webhooks, another instance runs the jobs"
        };
        components.insert(
            "leadership".to_owned(),
            Component {
                healthy: true,
                detail: detail.into(),
            },
        );
    }
    let status = if components.values().all(|c| c.healthy) {
        "ok"
    } else {
        "degraded"
    };
    HealthReport {
        status,
        leader,
        components,
        agent_transport: None,
    }
}
