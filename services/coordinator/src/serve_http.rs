//! Serves the HTTP router over HTTP/1.1 under connection limits (see
//! `reconciler_runtime::listen`): a cap on connections, a header-read
//! timeout (which is also how long a kept-alive connection may sit idle),
//! and eviction of the oldest connection that has not sent a complete
//! request head when the cap is reached.
//!
//! HTTP/1.1 only: Authentik, curl and Prometheus speak it, and it keeps the
//! idle rules to one protocol.

use std::future::Future;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use reconciler_runtime::listen::LimitedListener;
use tower::ServiceExt;
use tracing::debug;

const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `router` until `shutdown` resolves, then lets requests in flight
/// finish.
pub async fn serve(
    mut listener: LimitedListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(listener.limits().handshake_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            stream = listener.accept() => stream,
            () = &mut shutdown => break,
        };
        let handle = stream.handle();
        // Handlers that need the peer (which client delivered an ingested
        // event) read it from the request's extensions.
        let peer = stream.peer_addr().ok().map(ConnectInfo);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            // A complete request head arrived: this connection is in use,
            // not a candidate for eviction.
            handle.establish();
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            router.clone().oneshot(request)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "HTTP connection ended");
            }
        });
    }
    // Requests in flight finish; a peer that never completes one does not
    // hold the shutdown up for long.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("HTTP connections still open at shutdown were dropped");
    }
}
