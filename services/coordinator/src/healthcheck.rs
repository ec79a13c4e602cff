//! `coordinator healthcheck`: `GET /healthz` on the coordinator running
//! beside it (same container, same environment), for the container image's
//! `HEALTHCHECK`; the image carries no curl and no shell.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use reconciler_runtime::healthcheck::probe_addr;

use crate::config::DEFAULT_HTTP_LISTEN;

/// Longer than a healthy `/healthz` takes (it pings the state DB, Authentik
/// and each agent), shorter than Docker's own timeout, so the probe says why.
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// `/healthz` on the address the coordinator serves HTTP on.
fn default_url(http_listen: Option<String>) -> Result<String, String> {
    let raw = http_listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let listen: SocketAddr = raw
        .parse()
        .map_err(|e| format!("HTTP_LISTEN `{raw}` is not host:port: {e}"))?;
    Ok(format!("http://{}/healthz", probe_addr(listen)))
}

/// Prints one line (the status and, when unhealthy, the report naming the
/// failing component) and returns 0 for HTTP 200, 1 otherwise.
pub async fn run(url: Option<String>) -> ExitCode {
    let url = match url.map_or_else(
        || default_url(std::env::var("HTTP_LISTEN").ok().filter(|v| !v.is_empty())),
        Ok,
    ) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("coordinator healthcheck: {e}");
            return ExitCode::FAILURE;
        }
    };
    match probe(&url).await {
        Ok(()) => {
            println!("coordinator at {url}: healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("coordinator at {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn probe(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // The report names components and their errors, never a secret.
    let body = response.text().await.unwrap_or_default();
    Err(format!("HTTP {}: {}", status.as_u16(), body.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_healthz_on_loopback_for_a_wildcard_listen() {
        assert_eq!(default_url(None).unwrap(), "http://127.0.0.1:5000/healthz");
        assert_eq!(
            default_url(Some("10.0.0.5:8080".into())).unwrap(),
            "http://10.0.0.5:8080/healthz"
        );
        assert!(
            default_url(Some("nowhere".into()))
                .unwrap_err()
                .contains("HTTP_LISTEN `nowhere`")
        );
    }
}
