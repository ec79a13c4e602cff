//! The simulator over real HTTP, one file per area of the reference.

mod aliases;
mod app_passwords;
mod auth;
mod control;
mod sender_acl;

use std::net::SocketAddr;

use reqwest::Method;
use serde_json::Value;

use super::{MailcowSim, MailcowSimConfig};

pub(super) const KEY: &str = "ABCDEF-012345-ABCDEF-012345-ABCDEF";
pub(super) const RO_KEY: &str = "FEDCBA-543210-FEDCBA-543210-FEDCBA";

/// A simulator on a free loopback port plus a cookie-less client.
pub(super) struct Sim {
    pub sim: MailcowSim,
    http: reqwest::Client,
}

/// Status, Content-Type and raw body of one answer.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `msg` of every message in an add/edit/delete answer.
    pub fn msgs(&self) -> Vec<Value> {
        match self.json() {
            Value::Array(items) => items.into_iter().map(|m| m["msg"].clone()).collect(),
            other => vec![other["msg"].clone()],
        }
    }

    /// The `type` of every message.
    pub fn types(&self) -> Vec<String> {
        match self.json() {
            Value::Array(items) => items
                .iter()
                .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
                .collect(),
            other => vec![other["type"].as_str().unwrap_or_default().to_owned()],
        }
    }
}

pub(super) fn config() -> MailcowSimConfig {
    MailcowSimConfig {
        rw_key: KEY.into(),
        ro_key: Some(RO_KEY.into()),
        allow_from: vec!["127.0.0.1".into()],
        skip_ip_check: false,
        omit_sender_acl: false,
    }
}

impl Sim {
    pub async fn start() -> Sim {
        Sim::with(config()).await
    }

    pub async fn with(config: MailcowSimConfig) -> Sim {
        // reqwest is built with `rustls-no-provider`; plain HTTP still wants
        // a process-wide provider before a client is built.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let sim = MailcowSim::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start simulator");
        let http = reqwest::Client::builder().build().expect("client");
        Sim { sim, http }
    }

    /// A domain with alice, bob and the shared info@ mailbox.
    pub async fn seeded() -> Sim {
        let sim = Sim::start().await;
        sim.sim.add_domain("example.com");
        for mailbox in ["alice@example.com", "bob@example.com", "info@example.com"] {
            sim.sim.add_mailbox(mailbox);
        }
        sim
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("body");
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// GET with the read/write key.
    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, &[("X-API-Key", KEY)], None)
            .await
    }

    /// POST a JSON body with the read/write key.
    pub async fn post(&self, path: &str, body: &str) -> Answer {
        let headers = [("X-API-Key", KEY), ("Content-Type", "application/json")];
        self.request(Method::POST, path, &headers, Some(body)).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Answer {
        self.post(path, &body.to_string()).await
    }
}
