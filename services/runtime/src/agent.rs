//! An agent's gRPC server, the same for every agent: its service behind the
//! `AGENT_TOKEN` check, health and reflection beside it, under the
//! connection limits of [`crate::listen`], until SIGINT or SIGTERM.

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
}

/// An agent whose listener is bound and whose routes are ready.
pub struct BoundAgent {
    name: &'static str,
    addr: SocketAddr,
    listener: LimitedListener,
    router: Router,
    health: HealthReporter,
}

/// Serves `service` as the agent `name` until SIGINT or SIGTERM, with the
/// connection limits of the `GRPC_*` environment variables.
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
    let endpoint = AgentEndpoint {
        listen,
        token,
        limits,
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
    } = endpoint;
    let (listener, addr) = grpc::bind(listen, &limits).await?;
    let service = InterceptedService::new(service, RequireToken::new(token));
    let router = grpc::server(&limits).add_service(service);
    let (router, health) =
        grpc::with_standard_services::<InterceptedService<S, RequireToken>>(router).await?;
    Ok(BoundAgent {
        name,
        addr,
        listener,
        router,
        health,
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
        tracing::info!(%addr, "{} listening", self.name);
        // For people starting the binary by hand, who read stdout.
        println!("{} listening on {addr}", self.name);
        self.router
            .serve_with_incoming_shutdown(self.listener.into_incoming(), shutdown)
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
