//! The gRPC server scaffold: every service answers `grpc.health.v1` and server
//! reflection in both `v1` and `v1alpha` (grpcurl 1.8 only speaks v1alpha).

use std::net::SocketAddr;

use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic_health::server::HealthReporter;

use crate::listen::{ConnectionLimits, Establish, LimitedListener};
use crate::tls::ServerTransport;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot bind gRPC listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC connection limits: {0}")]
    Limits(String),
    #[error("cannot announce the gRPC listener's address: {0}")]
    Announce(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Adds health (marking `S` and the overall server SERVING) and reflection
/// to a router that already carries the service `S`.
pub async fn with_standard_services<S: NamedService>(
    router: Router,
) -> Result<(Router, HealthReporter), ServeError> {
    let (router, reporter, _) = with_standard_services_and_health::<S>(router).await?;
    Ok((router, reporter))
}

/// [`with_standard_services`], and the health service once more, for a
/// listener of its own ([`crate::healthcheck::serve_health_only`]): both
/// answer the same status.
pub async fn with_standard_services_and_health<S: NamedService>(
    router: Router,
) -> Result<
    (
        Router,
        HealthReporter,
        tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ),
    ServeError,
> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter.set_serving::<S>().await;
    // Advertise only what this server serves: the shared descriptor set also
    // describes the other side of the contract.
    let served = [
        S::NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let builder = || {
        served.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(reconciler_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
                ),
            |b, name| b.with_service_name(*name),
        )
    };
    let reflection_v1 = builder().build_v1()?;
    let reflection_v1alpha = builder().build_v1alpha()?;
    let router = router
        .add_service(health_service.clone())
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok((router, reporter, health_service))
}

/// A tonic server builder with trace-context extraction on every request
/// and HTTP/2 keep-alive from `limits` (a PING on quiet connections; no
/// answer within the timeout closes the connection).
pub fn server(limits: &ConnectionLimits) -> tonic::transport::Server<tower::layer::util::Identity> {
    tonic::transport::Server::builder()
        .trace_fn(crate::propagation::server_span)
        .http2_keepalive_interval(limits.keepalive_interval)
        .http2_keepalive_timeout(limits.keepalive_timeout)
}

/// Binds `addr` first (so a port conflict is reported before anything else
/// starts), announces the bound address as `grpc` (port 0 names a free one:
/// see [`crate::announce`]) and serves `router` over `transport` until
/// `shutdown` resolves, under `limits` (connection cap, handshake deadline:
/// see [`crate::listen`]).
pub async fn serve(
    router: Router,
    addr: SocketAddr,
    limits: &ConnectionLimits,
    transport: ServerTransport,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (listener, bound) = bind(addr, limits, transport.establish()).await?;
    crate::announce::announce("grpc", bound).map_err(ServeError::Announce)?;
    tracing::info!(addr = %bound, transport = transport.mode(), "gRPC listening");
    router
        .serve_with_incoming_shutdown(transport.incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// A gRPC listener on `addr` under `limits`, and the address it got (the
/// kernel's choice for port 0). `establish`: what ends a connection's
/// handshake deadline (the HTTP/2 preface; under TLS, the TLS handshake).
pub(crate) async fn bind(
    addr: SocketAddr,
    limits: &ConnectionLimits,
    establish: Establish,
) -> Result<(LimitedListener, SocketAddr), ServeError> {
    let listener = LimitedListener::bind(addr, limits.clone(), establish)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, bound))
}

/// Resolves on SIGINT or SIGTERM, for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
