//! gRPC clients for the agents. The coordinator never talks to a target
//! system itself; it asks the agent that holds the target's credentials.

use std::time::Duration;

use reconciler_proto::agent::{
    ApplyRequest, ApplyResponse, ObserveRequest, ObserveResponse, Outcome,
    agent_client::AgentClient,
};
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::outcome;
use reconciler_runtime::secrets::Secret;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::error::{Error, Result};

/// One agent, as the engine sees it. A trait so the engine can run against
/// an in-memory agent in unit tests.
#[async_trait::async_trait]
pub trait AgentBackend: Send + Sync {
    fn name(&self) -> &str;
    async fn observe(&self, request: ObserveRequest) -> Result<ObserveResponse>;
    async fn apply(&self, request: ApplyRequest) -> Result<ApplyResponse>;
    /// `grpc.health.v1` check of the agent's overall status.
    async fn health(&self) -> Result<()>;
}

pub struct GrpcAgent {
    name: String,
    client: AgentClient<InterceptedService<Channel, SendToken>>,
    health: HealthClient<Channel>,
}

impl GrpcAgent {
    /// Connects lazily: the coordinator starts even while an agent is down,
    /// and reports it in `/healthz` instead.
    pub fn connect(name: &str, url: &str, timeout: Duration, token: &Secret) -> Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Config(format!("{name} URL `{url}`: {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let channel = endpoint.connect_lazy();
        Ok(Self {
            name: name.to_owned(),
            client: AgentClient::with_interceptor(channel.clone(), SendToken::new(token.clone()))
                // Sweeps over large directories carry large observations.
                .max_decoding_message_size(256 * 1024 * 1024)
                .max_encoding_message_size(256 * 1024 * 1024),
            health: HealthClient::new(channel),
        })
    }

    /// An agent's error status, classed by the table every agent sends by
    /// (`reconciler_runtime::outcome`).
    fn error(&self, status: tonic::Status) -> Error {
        match outcome::of_status(&status) {
            Outcome::Config => Error::Config(format!("agent {}: {}", self.name, status.message())),
            outcome => Error::Agent {
                agent: self.name.clone(),
                outcome,
                message: format!("{:?}: {}", status.code(), status.message()),
            },
        }
    }
}

#[async_trait::async_trait]
impl AgentBackend for GrpcAgent {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, request: ObserveRequest) -> Result<ObserveResponse> {
        let mut client = self.client.clone();
        client
            .observe(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    async fn apply(&self, request: ApplyRequest) -> Result<ApplyResponse> {
        let mut client = self.client.clone();
        client
            .apply(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    async fn health(&self) -> Result<()> {
        let mut health = self.health.clone();
        let response = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| self.error(s))?;
        match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Error::Agent {
                agent: self.name.clone(),
                outcome: Outcome::Transient,
                message: format!("health: {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_agent_status_becomes_an_error_of_its_class() {
        let agent = GrpcAgent::connect(
            "test-agent",
            "http://127.0.0.1:1",
            Duration::from_secs(1),
            &Secret::new("token"),
        )
        .unwrap();
        // (class, retried by the worker)
        let cases = [
            (Outcome::Transient, true),
            (Outcome::Permanent, false),
            (Outcome::Refused, false),
            (Outcome::Config, false),
        ];
        for (class, retried) in cases {
            let error = agent.error(outcome::status(class, "why"));
            assert_eq!(error.outcome(), class, "{error}");
            assert_eq!(error.is_transient(), retried, "{error}");
        }
        let config = agent.error(outcome::status(Outcome::Config, "no key"));
        assert!(matches!(config, Error::Config(_)), "{config}");
        // Only an agent can say "not ours"; a bare PERMISSION_DENIED (a
        // proxy, say) is something for an operator.
        let denied = agent.error(tonic::Status::permission_denied("RBAC"));
        assert!(matches!(denied, Error::Config(_)), "{denied}");
    }
}
