//! An agent's gRPC server, the same for every agent: over mutual TLS
//! ([`crate::tls`]), its service behind the `AGENT_TOKEN` check, health and
//! reflection beside it, under the connection limits of [`crate::listen`],
//! until SIGINT or SIGTERM.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::auth::RequireToken;
use crate::grpc::{self, ServeError};
use crate::listen::{ConnectionLimits, LimitedListener};
use crate::secrets::Secret;
use crate::tls::ServerTransport;

/// Where and for whom an agent serves.
#[derive(Clone, Debug)]
pub struct AgentEndpoint {
    /// The address to listen on (port 0: any free port, see
    /// [`BoundAgent::local_addr`]).
    pub listen: SocketAddr,
    /// Only callers presenting it (the coordinator) reach the service;
    /// health and reflection stay open for probes and grpcurl.
    pub token: Secret,
    pub limits: ConnectionLimits,
    /// Mutual TLS, or plaintext with `AGENT_INSECURE=true`.
    pub transport: ServerTransport,
    /// `AGENT_HEALTH_LISTEN`: a plaintext listener answering only
    /// `grpc.health.v1`, for the container's health probe
    /// ([`crate::healthcheck`]).
    pub health_listen: Option<SocketAddr>,
}

/// An agent whose listener is bound and whose routes are ready.
pub struct BoundAgent {
    name: &'static str,
    addr: SocketAddr,
    listener: LimitedListener,
    router: Router,
    health: HealthReporter,
    transport: ServerTransport,
}

/// Serves `service` as the agent `name` until SIGINT or SIGTERM, with the
/// connection limits of the `GRPC_*` environment variables and the
/// transport of the `AGENT_TLS_*` ones (or `AGENT_INSECURE=true`).
pub async fn serve_agent<S>(
    name: &'static str,
    service: S,
    listen: SocketAddr,
    token: Secret,
) -> Result<(), ServeError>
where
    S: AgentService,
    S::Future: Send + 'static,
{
    let limits = ConnectionLimits::grpc_from_env().map_err(ServeError::Limits)?;
    let transport = ServerTransport::from_env()?;
    let health_listen = crate::healthcheck::health_listen_from_env().map_err(ServeError::Limits)?;
    let endpoint = AgentEndpoint {
        listen,
        token,
        limits,
        transport,
        health_listen,
    };
    bind_agent(name, service, endpoint)
        .await?
        .serve(grpc::shutdown_signal())
        .await
}

/// Binds first, so a port conflict is reported before anything is served.
pub async fn bind_agent<S>(
    name: &'static str,
    service: S,
    endpoint: AgentEndpoint,
) -> Result<BoundAgent, ServeError>
where
    S: AgentService,
    S::Future: Send + 'static,
{
    let AgentEndpoint {
        listen,
        token,
        limits,
        transport,
        health_listen,
    } = endpoint;
    let (listener, addr) = grpc::bind(listen, &limits, transport.establish()).await?;
    let service = InterceptedService::new(service, RequireToken::new(token));
    let router = grpc::server(&limits).add_service(service);
    let (router, health, health_service) =
        grpc::with_standard_services_and_health::<InterceptedService<S, RequireToken>>(router)
            .await?;
    if let Some(health_addr) = health_listen {
        let bound =
            crate::healthcheck::serve_health_only(health_addr, &limits, health_service).await?;
        tracing::info!(addr = %bound, "{name}: health listener (grpc.health.v1 only, plaintext)");
    }
    Ok(BoundAgent {
        name,
        addr,
        listener,
        router,
        health,
        transport,
    })
}

impl BoundAgent {
    /// The address bound, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The agent's `grpc.health.v1` status, SERVING from the start, for an
    /// agent whose health follows its target (the stalwart-agent reports
    /// NOT_SERVING while Stalwart's session cannot be discovered).
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Serves until `shutdown` resolves, then finishes the calls in flight.
    /// With `METRICS_LISTEN` set, the agent's metrics are served there too
    /// (`GET /metrics`, see [`crate::metrics`]).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let addr = self.addr;
        if let Some(metrics) = crate::metrics::listen_from_env().map_err(ServeError::Limits)? {
            let name = self.name;
            tokio::spawn(async move {
                if let Err(e) = crate::metrics::serve(metrics, std::future::pending()).await {
                    tracing::error!(%metrics, error = %e, "{name}: metrics not served");
                }
            });
        }
        crate::announce::announce("grpc", addr).map_err(ServeError::Announce)?;
        let transport = self.transport.mode();
        tracing::info!(%addr, transport, "{} listening", self.name);
        // For people starting the binary by hand, who read stdout.
        println!("{} listening on {addr} ({transport})", self.name);
        if let ServerTransport::Insecure = self.transport {
            tracing::warn!(
                "{}: AGENT_INSECURE=true: gRPC is plaintext HTTP/2 and no client certificate is \
                 asked for; anyone who can reach {addr} with the agent token is served",
                self.name
            );
        }
        let incoming = self.transport.incoming(self.listener);
        self.router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

/// What a generated gRPC server (`…Server::new(agent)`) is, as tonic's
/// router needs it.
pub trait AgentService:
    tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
    + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> AgentService for S where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Logs each change an Apply call made (never a secret: only its id,
/// outcome and message) and counts the outcomes
/// (`reconciler_agent_changes_total`): the same for every agent.
pub fn report_results(agent: &'static str, results: &[reconciler_proto::agent::ChangeResult]) {
    use reconciler_proto::agent::Outcome;
    for r in results {
        let outcome = Outcome::try_from(r.outcome).unwrap_or(Outcome::Unspecified);
        match outcome {
            Outcome::Applied | Outcome::DryRun | Outcome::Unchanged => {
                tracing::info!(agent, change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change")
            }
            _ => {
                tracing::warn!(agent, change = %r.id, outcome = outcome.as_str_name(), message = %r.message, "change failed")
            }
        }
    }
    crate::metrics::changes(agent, results.iter().map(|r| r.outcome));
}
