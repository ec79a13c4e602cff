//! One HTTP exchange with Synapse: the bot's token attached (and marked
//! sensitive, so it never appears in a debug print), 429s waited out within
//! bounds, every failure classified ([`crate::error`]).

use std::sync::Arc;
use std::time::Duration;

use reconciler_runtime::secrets::Secret;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::stats::Counters;
use crate::error::{Error, MatrixErrorBody, Result, classify};

/// How 429 `M_LIMIT_EXCEEDED` is handled: wait what Synapse asks
/// (`retry_after_ms`), but never longer than `max_wait` at a time, and
/// retry at most `max_retries` times; after that the call is transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub max_wait: Duration,
    pub max_retries: u32,
}

impl Default for RateLimitPolicy {
    fn default() -> Self {
        Self {
            max_wait: Duration::from_secs(10),
            max_retries: 5,
        }
    }
}

/// Where Synapse is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    homeserver: String,
    access_token: Secret,
    pub rate_limits: RateLimitPolicy,
    /// One request, connection included.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// `homeserver` is Synapse's base URL (`http(s)://host[:port][/prefix]`).
    pub fn new(
        homeserver: &str,
        access_token: Secret,
        rate_limits: RateLimitPolicy,
    ) -> Result<Self> {
        let url = reqwest::Url::parse(homeserver)
            .map_err(|e| Error::Config(format!("MATRIX_HOMESERVER_URL `{homeserver}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::Config(format!(
                "MATRIX_HOMESERVER_URL `{homeserver}`: an http:// or https:// URL"
            )));
        }
        Ok(Self {
            homeserver: homeserver.trim_end_matches('/').to_owned(),
            access_token,
            rate_limits,
            request_timeout: Duration::from_secs(30),
        })
    }

    /// The base URL, without a trailing slash.
    pub fn homeserver(&self) -> &str {
        &self.homeserver
    }
}

pub(crate) struct Http {
    client: reqwest::Client,
    base: String,
    authorization: HeaderValue,
    policy: RateLimitPolicy,
    pub(crate) counters: Arc<Counters>,
}

impl Http {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self> {
        reconciler_runtime::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.access_token.expose())).map_err(
                |_| Error::Config("MATRIX_ACCESS_TOKEN holds characters a header cannot".into()),
            )?;
        authorization.set_sensitive(true);
        Ok(Self {
            client,
            base: config.homeserver.clone(),
            authorization,
            policy: config.rate_limits,
            counters: Arc::default(),
        })
    }

    /// Sends `method path` (a path with its segments encoded, see
    /// [`super::paths`]) with an optional JSON body, and returns the JSON
    /// answer of a 2xx (`Null` when empty) with its status.
    pub(crate) async fn call(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut retries = 0;
        loop {
            let mut request = self
                .client
                .request(method.clone(), &url)
                .header(AUTHORIZATION, self.authorization.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            self.counters.call(call);
            let started = std::time::Instant::now();
            let response = request.send().await;
            reconciler_runtime::metrics::target_request("matrix-agent", call, started.elapsed());
            let response =
                response.map_err(|e| Error::Transient(format!("{call}: {}", without_url(&e))))?;
            let status = response.status();
            let retry_after_header = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = response.text().await.map_err(|e| {
                Error::Transient(format!("{call}: reading the answer: {}", without_url(&e)))
            })?;
            if status.is_success() {
                let value = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|e| {
                        Error::Transient(format!(
                            "{call}: {status} with a body that is not JSON: {e}"
                        ))
                    })?
                };
                return Ok((status, value));
            }
            let error = MatrixErrorBody::parse(&text);
            if status == StatusCode::TOO_MANY_REQUESTS && retries < self.policy.max_retries {
                let asked = error
                    .retry_after_ms
                    .map(Duration::from_millis)
                    .or(retry_after_header)
                    .unwrap_or(Duration::from_secs(1));
                let wait = asked.min(self.policy.max_wait);
                tracing::info!(
                    call,
                    wait_ms = wait.as_millis() as u64,
                    "Synapse rate limit: waiting"
                );
                self.counters.waited(wait);
                tokio::time::sleep(wait).await;
                retries += 1;
                continue;
            }
            return Err(classify(call, status.as_u16(), &error));
        }
    }
}

/// A transport error's text without its URL: the URL holds user and room
/// IDs, which belong in structured fields, and the message stays short.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "cannot connect"
    } else if error.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
