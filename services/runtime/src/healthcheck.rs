//! `<agent> healthcheck`: asks the agent running beside it (same container,
//! same environment) for its `grpc.health.v1` status and exits 0 when it is
//! SERVING, 1 otherwise. Container images run it as their `HEALTHCHECK`, so
//! they need no grpcurl and no shell.
//!
//! The address is the argument after `healthcheck`, else `AGENT_LISTEN` (the
//! images set it, so the server and the probe read the same value). A
//! wildcard listen address (`0.0.0.0`, `::`) is probed on loopback.

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

/// The address to probe: `explicit` (the command line), else `AGENT_LISTEN`.
fn target(explicit: Option<String>, listen_env: Option<String>) -> Result<SocketAddr, String> {
    let (source, raw) = match (explicit, listen_env) {
        (Some(raw), _) => ("the argument", raw),
        (None, Some(raw)) => ("AGENT_LISTEN", raw),
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
    let listen_env = std::env::var("AGENT_LISTEN").ok().filter(|v| !v.is_empty());
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
        let got = target(Some("127.0.0.1:1".into()), Some("0.0.0.0:2".into())).unwrap();
        assert_eq!(got, "127.0.0.1:1".parse().unwrap());
        let got = target(None, Some("0.0.0.0:2".into())).unwrap();
        assert_eq!(got, "127.0.0.1:2".parse().unwrap());
    }

    #[test]
    fn a_missing_or_bad_address_says_what_to_set() {
        assert!(target(None, None).unwrap_err().contains("AGENT_LISTEN"));
        let e = target(None, Some("nowhere".into())).unwrap_err();
        assert!(e.contains("AGENT_LISTEN `nowhere`"), "{e}");
    }

    /// A real grpc.health.v1 server, as every agent serves it, whose overall
    /// status the test sets.
    async fn health_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
        let limits = crate::listen::ConnectionLimits::grpc_from_lookup(|_| None).unwrap();
        let (listener, addr) = crate::grpc::bind("127.0.0.1:0".parse().unwrap(), &limits)
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
    async fn nothing_listening_is_unhealthy() {
        // Bind and drop: the port is (for a moment) known to be closed.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(grpc_status(addr).await.is_err());
    }
}
