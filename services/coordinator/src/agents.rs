//! How the coordinator reaches an agent. The coordinator never talks to a
//! target system itself; it asks the agent that holds the target's
//! credentials, each through its own typed client (`reconciler.agent.v2`),
//! owned by its target adapter (`crate::targets`). What every agent shares
//! lives here: the channel (mutual TLS, `reconciler_runtime::tls`) carrying
//! the bearer token, the health check, and reading a failed call's class.

use std::convert::Infallible;
use std::time::Duration;

use reconciler_proto::agent::Outcome;
use reconciler_runtime::auth::SendToken;
use reconciler_runtime::outcome;
use reconciler_runtime::secrets::Secret;
use reconciler_runtime::tls::ClientTransport;
use tonic::body::Body;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::error::{Error, Result};

/// What a typed agent client sends its calls over: a gRPC channel, or an
/// agent served in process (tests). Boxed so that adapters hold one client
/// type whichever it is.
pub type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// A call that failed below gRPC (connect, timeout). Its source chain is
/// the transport's, which tonic reads to give the call a status code.
#[derive(Debug)]
pub struct TransportError(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

impl TransportError {
    fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(e.into())
    }
}

/// Sweeps over large directories carry large observations.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// One agent: its name, the transport its client uses, and its health.
#[derive(Clone)]
pub struct AgentLink {
    name: String,
    transport: Transport,
    health: HealthClient<Transport>,
}

impl AgentLink {
    /// Connects lazily: the coordinator starts even while an agent is down,
    /// and reports it in `/healthz` instead. `transport`: mutual TLS (the
    /// agent's certificate must be valid for the URL's host), or plaintext.
    pub fn connect(
        name: &str,
        url: &str,
        timeout: Duration,
        token: &Secret,
        transport: &ClientTransport,
    ) -> Result<Self> {
        let endpoint = transport
            .endpoint(&format!("{name} URL"), url)
            .map_err(|e| Error::Config(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        let channel = endpoint.connect_lazy();
        let with_token = tower::ServiceBuilder::new()
            .layer(tonic::service::InterceptorLayer::new(SendToken::new(
                token.clone(),
            )))
            .service(channel.clone())
            .map_response(|response| response.map(Body::new))
            .map_err(TransportError::new);
        let without_token = channel.map_err(TransportError::new);
        Ok(Self {
            name: name.to_owned(),
            transport: BoxCloneSyncService::new(with_token),
            // Health needs no token: agents answer it to anyone.
            health: HealthClient::new(BoxCloneSyncService::new(without_token)),
        })
    }

    /// An agent served in this process (a test's fake, or a real agent
    /// service over an in-memory target): `service` is its generated
    /// server, answering `grpc.health.v1` as SERVING beside it.
    pub fn in_process<S>(name: &str, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let (_, health) = tonic_health::server::health_reporter();
        let routes = tonic::service::Routes::new(service).add_service(health);
        let transport: Transport = BoxCloneSyncService::new(
            ServiceExt::<http::Request<Body>>::map_err(routes, |never| match never {}),
        );
        Self {
            name: name.to_owned(),
            health: HealthClient::new(transport.clone()),
            transport,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The transport for this agent's typed client.
    pub fn transport(&self) -> Transport {
        self.transport.clone()
    }

    /// The message of a call's answer, or its failure classed by the table
    /// every agent sends by (`reconciler_runtime::outcome`).
    /// One call to the agent, timed (`reconciler_agent_request_duration_seconds`)
    /// and its failure classed.
    pub async fn call<T>(
        &self,
        call: &'static str,
        request: impl std::future::Future<
            Output = std::result::Result<tonic::Response<T>, tonic::Status>,
        >,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let answer = request.await;
        crate::metrics::agent_request(&self.name, call, started.elapsed());
        self.answer(answer)
    }

    pub fn answer<T>(
        &self,
        answer: std::result::Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T> {
        answer
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    /// An agent's error status, classed by the table every agent sends by.
    pub fn error(&self, status: tonic::Status) -> Error {
        match outcome::of_status(&status) {
            Outcome::Config => Error::Config(format!("agent {}: {}", self.name, status.message())),
            outcome => Error::Agent {
                agent: self.name.clone(),
                outcome,
                message: format!("{:?}: {}", status.code(), status.message()),
            },
        }
    }

    /// `grpc.health.v1` check of the agent's overall status.
    pub async fn health(&self) -> Result<()> {
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
        let agent = AgentLink::connect(
            "test-agent",
            "http://127.0.0.1:1",
            Duration::from_secs(1),
            &Secret::new("token"),
            &ClientTransport::Insecure,
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
