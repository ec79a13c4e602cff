//! `<agent> healthcheck`: asks the agent running beside it (same container,
//! same environment) for its `grpc.health.v1` status and exits 0 when it is
//! SERVING, 1 otherwise. Container images run it as their `HEALTHCHECK`, so
//! they need no grpcurl and no shell.
//!
//! The address is the argument after `healthcheck`, else
//! `AGENT_HEALTH_LISTEN`, else `AGENT_LISTEN` (the images set them, so the
//! server and the probe read the same value). Under mutual TLS the agent's
//! main port answers only the coordinator's certificate, so the images give
//! the probe a plaintext listener that serves `grpc.health.v1` and nothing
//! else, on loopback ([`serve_health_only`]). A wildcard listen address
//! (`0.0.0.0`, `::`) is probed on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The first argument that selects the probe instead of the server.
pub const COMMAND: &str = "healthcheck";

/// A probe that takes longer than this counts as unhealthy: Docker's own
/// `--timeout` is longer, so the probe reports why instead of being killed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a probe in the same network namespace reaches a server bound to
/// `listen`: the wildcard addresses are not connectable, loopback is.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The health-only listener's address (see the module comment).
pub const HEALTH_LISTEN_ENV: &str = "AGENT_HEALTH_LISTEN";

/// `AGENT_HEALTH_LISTEN`, if set: where [`serve_health_only`] listens.
pub fn health_listen_from_env() -> Result<Option<SocketAddr>, String> {
    match std::env::var(HEALTH_LISTEN_ENV) {
        Ok(raw) if !raw.is_empty() => raw
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|e| format!("{HEALTH_LISTEN_ENV} `{raw}` is not host:port: {e}")),
        _ => Ok(None),
    }
}

/// Serves only `health` (the agent's own `grpc.health.v1`, same status),
/// in plaintext on `addr`, for the probe; nothing else is reachable there.
/// Binds before returning, so a taken port fails the agent's start.
pub async fn serve_health_only<H>(
    addr: SocketAddr,
    limits: &crate::listen::ConnectionLimits,
    health: tonic_health::pb::health_server::HealthServer<H>,
) -> Result<SocketAddr, crate::grpc::ServeError>
where
    H: tonic_health::pb::health_server::Health,
{
    // The agent's own connection limits: a cap and a handshake deadline
    // here too, whatever address the operator gives it.
    let (listener, bound) =
        crate::grpc::bind(addr, limits, crate::listen::Establish::Http2Preface).await?;
    let server = crate::grpc::server(limits).add_service(health);
    tokio::spawn(async move {
        if let Err(e) = server.serve_with_incoming(listener.into_incoming()).await {
            tracing::error!(%bound, error = %e, "health listener stopped");
        }
    });
    Ok(bound)
}

/// The address to probe: `explicit` (the command line), else
/// `AGENT_HEALTH_LISTEN` or `AGENT_LISTEN` (`listen_env`).
fn target(
    explicit: Option<String>,
    listen_env: Option<(&'static str, String)>,
) -> Result<SocketAddr, String> {
    let (source, raw) = match (explicit, listen_env) {
        (Some(raw), _) => ("the argument", raw),
        (None, Some((variable, raw))) => (variable, raw),
        (None, None) => {
            return Err(
                "no address to probe: set AGENT_LISTEN or pass one (`healthcheck 127.0.0.1:50051`)"
                    .into(),
            );
        }
    };
    raw.parse::<SocketAddr>()
        .map(probe_addr)
        .map_err(|e| format!("{source} `{raw}` is not host:port: {e}"))
}

/// The overall `grpc.health.v1` status of the server at `addr`.
pub async fn grpc_status(addr: SocketAddr) -> Result<ServingStatus, String> {
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let reply = HealthClient::new(channel)
            // The empty service name is the server as a whole.
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("{addr}: {:?}: {}", s.code(), s.message()))?;
        Ok(ServingStatus::try_from(reply.into_inner().status).unwrap_or(ServingStatus::Unknown))
    };
    tokio::time::timeout(PROBE_TIMEOUT, check)
        .await
        .map_err(|_| format!("{addr} did not answer within {PROBE_TIMEOUT:?}"))?
}

/// Runs the probe for the agent `name` with the rest of the command line
/// (`args` after `healthcheck`); prints one line and returns the exit code.
pub async fn run_agent_probe(name: &str, mut args: impl Iterator<Item = String>) -> ExitCode {
    let env = |name: &'static str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| (name, v))
    };
    let listen_env = env(HEALTH_LISTEN_ENV).or_else(|| env("AGENT_LISTEN"));
    let addr = match target(args.next(), listen_env) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{name} healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match grpc_status(addr).await {
        Ok(ServingStatus::Serving) => {
            println!("{name} at {addr}: SERVING");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{name} at {addr}: {}", status.as_str_name());
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("{name} healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_probed_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:50051".parse().unwrap();
        assert_eq!(probe_addr(v4), "127.0.0.1:50051".parse().unwrap());
        let v6: SocketAddr = "[::]:50052".parse().unwrap();
        assert_eq!(probe_addr(v6), "[::1]:50052".parse().unwrap());
        let fixed: SocketAddr = "10.1.2.3:50053".parse().unwrap();
        assert_eq!(probe_addr(fixed), fixed);
    }

    #[test]
    fn the_argument_wins_over_agent_listen() {
        let got = target(
            Some("127.0.0.1:1".into()),
            Some(("AGENT_LISTEN", "0.0.0.0:2".into())),
        )
        .unwrap();
        assert_eq!(got, "127.0.0.1:1".parse().unwrap());
        let got = target(None, Some(("AGENT_LISTEN", "0.0.0.0:2".into()))).unwrap();
        assert_eq!(got, "127.0.0.1:2".parse().unwrap());
    }

    #[test]
    fn a_missing_or_bad_address_says_what_to_set() {
        assert!(target(None, None).unwrap_err().contains("AGENT_LISTEN"));
        let e = target(None, Some(("AGENT_LISTEN", "nowhere".into()))).unwrap_err();
        assert!(e.contains("AGENT_LISTEN `nowhere`"), "{e}");
    }

    /// A real grpc.health.v1 server, as every agent serves it, whose overall
    /// status the test sets.
    async fn health_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
        let limits = crate::listen::ConnectionLimits::grpc_from_lookup(|_| None).unwrap();
        let (listener, addr) = crate::grpc::bind(
            "127.0.0.1:0".parse().unwrap(),
            &limits,
            crate::listen::Establish::Http2Preface,
        )
        .await
        .unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        tokio::spawn(
            crate::grpc::server(&limits)
                .add_service(service)
                .serve_with_incoming(listener.into_incoming()),
        );
        (addr, reporter)
    }

    #[tokio::test]
    async fn the_probe_reports_the_servers_overall_status() {
        let (addr, reporter) = health_server().await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        assert_eq!(grpc_status(addr).await.unwrap(), ServingStatus::Serving);
        // As the stalwart-agent does while Stalwart cannot be reached.
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        assert_eq!(grpc_status(addr).await.unwrap(), ServingStatus::NotServing);
    }

    #[tokio::test]
    async fn the_health_only_listener_answers_health_and_nothing_else() {
        let (reporter, service) = tonic_health::server::health_reporter();
        let limits = crate::listen::ConnectionLimits::grpc_from_lookup(|_| None).unwrap();
        let addr = serve_health_only("127.0.0.1:0".parse().unwrap(), &limits, service)
            .await
            .unwrap();
        reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        assert_eq!(grpc_status(addr).await.unwrap(), ServingStatus::Serving);
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        assert_eq!(grpc_status(addr).await.unwrap(), ServingStatus::NotServing);
        // The agent's service is not routed there.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let status =
            reconciler_proto::agent::mailcow_agent_client::MailcowAgentClient::new(channel)
                .observe(reconciler_proto::agent::MailcowObserveRequest::default())
                .await
                .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_unhealthy() {
        // Bind and drop: the port is (for a moment) known to be closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(grpc_status(addr).await.is_err());
    }
}
