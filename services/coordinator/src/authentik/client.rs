//! Reads users and groups from Authentik, every page of them.

use std::time::Duration;

use reconciler_runtime::secrets::Secret;
use serde::de::DeserializeOwned;

use super::model::{Group, Page, User};
use crate::error::{Error, Result};

/// Authentik's server-side maximum since 2025.12; a smaller server maximum
/// is fine because the loop follows `next`, never the size we asked for.
const PAGE_SIZE: u32 = 100;

/// Where the directory comes from. A trait so the engine can be tested
/// without HTTP.
#[async_trait::async_trait]
pub trait DirectorySource: Send + Sync {
    async fn users(&self) -> Result<Vec<User>>;
    async fn groups(&self) -> Result<Vec<Group>>;
    /// A cheap authenticated call for `/healthz`.
    async fn ping(&self) -> Result<()>;
}

pub struct AuthentikClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl AuthentikClient {
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("authentik-reconciler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: u64,
        extra: &[(&str, &str)],
    ) -> Result<Page<T>> {
        let url = format!("{}{}", self.base, path);
        let page_str = page.to_string();
        let page_size = PAGE_SIZE.to_string();
        let mut query: Vec<(&str, &str)> = vec![
            ("page", &page_str),
            ("page_size", &page_size),
            // A stable order keeps offset pagination from skipping rows
            // while the directory changes underneath us.
            ("ordering", "pk"),
        ];
        query.extend_from_slice(extra);
        let response = self
            .http
            .get(&url)
            .bearer_auth(self.token.expose())
            .query(&query)
            .send()
            .await
            .map_err(|e| Error::Authentik(format!("GET {path}: {}", without_url(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Config(format!(
                "Authentik refused the API token ({status}) on {path}; it needs view_user and view_group"
            )));
        }
        if !status.is_success() {
            return Err(Error::Authentik(format!(
                "GET {path} page {page}: HTTP {status}"
            )));
        }
        response
            .json::<Page<T>>()
            .await
            .map_err(|e| Error::Authentik(format!("GET {path} page {page}: bad body: {e}")))
    }

    async fn all_pages<T: DeserializeOwned>(
        &self,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut page = 1;
        loop {
            let batch: Page<T> = self.get_page(path, page, extra).await?;
            let expected = batch.pagination.count;
            items.extend(batch.results);
            match batch.pagination.next {
                0 => break,
                next if next <= page => {
                    return Err(Error::Authentik(format!(
                        "GET {path}: pagination went backwards ({page} -> {next})"
                    )));
                }
                next => page = next,
            }
            // Guards against a server that never says 0.
            if items.len() as u64 > expected.saturating_mul(2) + 1000 {
                return Err(Error::Authentik(format!(
                    "GET {path}: more items than the announced count {expected}"
                )));
            }
        }
        Ok(items)
    }
}

/// reqwest errors print the URL; ours carry no secrets, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!(
        "{kind}: {}",
        std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    )
}

#[async_trait::async_trait]
impl DirectorySource for AuthentikClient {
    async fn users(&self) -> Result<Vec<User>> {
        // groups_obj is not needed: the `groups` UUID list is always present.
        self.all_pages("/api/v3/core/users/", &[("include_groups", "false")])
            .await
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        // users_obj is not needed: the `users` pk list is always present.
        self.all_pages("/api/v3/core/groups/", &[("include_users", "false")])
            .await
    }

    async fn ping(&self) -> Result<()> {
        let _: Page<serde_json::Value> = self
            .get_page("/api/v3/core/groups/", 1, &[("include_users", "false")])
            .await?;
        Ok(())
    }
}
