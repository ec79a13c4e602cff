//! Stalwart's webhook sender (crates/common/src/telemetry/webhooks/mod.rs
//! v0.16.18): a batch `{"events": [...]}` POSTed as JSON, `X-Signature` the
//! standard base64 (padded) of HMAC-SHA256 over the raw body bytes keyed with
//! the key's UTF-8 bytes, no header when no key is set, and the batch sent
//! again after any non-2xx answer or transport error.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use serde_json::{Value, json};

use super::store::now_utc;

/// `X-Signature` for `body`.
pub fn signature(key: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// One event as the JSON serializer writes it (trc/src/serializers/json.rs:79-152):
/// `id` is timestamp, counter and type id concatenated; `createdAt` RFC 3339
/// at second resolution.
pub fn event(kind: &str, data: Value) -> Value {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    // A stable stand-in for the event's numeric type id.
    let type_id = kind
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 1000;
    json!({
        "id": format!("{secs}{counter:06}{type_id:03}"),
        "createdAt": now_utc(),
        "type": kind,
        "data": data,
    })
}

/// Where and how to deliver.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    pub url: String,
    /// `signatureKey`; `None` (or empty) sends no signature header.
    pub key: Option<String>,
    /// Stalwart retries each throttle tick until `discardAfter`; the
    /// simulator bounds that by a number of attempts, sent back to back.
    pub max_attempts: u32,
    pub headers: Vec<(String, String)>,
}

/// What happened to one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub attempts: u32,
    /// The status of each attempt; `None` for a transport error.
    pub statuses: Vec<Option<u16>>,
    pub delivered: bool,
}

impl WebhookSender {
    pub fn new(url: impl Into<String>, key: Option<&str>) -> Self {
        Self {
            url: url.into(),
            key: key.map(str::to_owned),
            max_attempts: 5,
            headers: Vec::new(),
        }
    }

    /// The exact body bytes a batch is sent as.
    pub fn body(events: &[Value]) -> Vec<u8> {
        serde_json::to_vec(&json!({ "events": events })).unwrap_or_default()
    }

    /// POSTs `events` as one batch, again after each failure, at most
    /// `max_attempts` times.
    pub async fn send(&self, events: &[Value]) -> Delivery {
        self.send_body(Self::body(events)).await
    }

    /// POSTs a prepared body (e.g. a malformed one a test wants delivered).
    pub async fn send_body(&self, body: Vec<u8>) -> Delivery {
        reconciler_runtime::install_crypto_provider();
        let client = reqwest::Client::new();
        let mut delivery = Delivery {
            attempts: 0,
            statuses: Vec::new(),
            delivered: false,
        };
        while delivery.attempts < self.max_attempts.max(1) {
            delivery.attempts += 1;
            let mut request = client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(key) = self.key.as_deref().filter(|k| !k.is_empty()) {
                request = request.header("X-Signature", signature(key, &body));
            }
            for (name, value) in &self.headers {
                request = request.header(name.as_str(), value.as_str());
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    delivery.statuses.push(Some(status.as_u16()));
                    if status.is_success() {
                        delivery.delivered = true;
                        break;
                    }
                }
                Err(_) => delivery.statuses.push(None),
            }
        }
        delivery
    }
}
