//! Reads users and groups from Authentik, every page of them.

use std::time::Duration;

use reconciler_runtime::secrets::Secret;
use serde::de::DeserializeOwned;

use super::listing::{Keyed, Listing};
use super::model::{Attributed, Group, Page, User};
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
    /// One user by pk; `None` when Authentik says there is none (404).
    async fn user(&self, pk: i64) -> Result<Option<User>>;
    /// The users whose username or email is exactly `value`.
    async fn users_by(&self, field: UserField, value: &str) -> Result<Vec<User>>;
    /// One group by dashed UUID; `None` when Authentik says there is none.
    async fn group(&self, uuid: &str) -> Result<Option<Group>>;
    /// The direct members of a group, as user objects.
    async fn group_members(&self, uuid: &str) -> Result<Vec<User>>;
    /// A cheap authenticated call for `/healthz`.
    async fn ping(&self) -> Result<()>;
}

/// The exact-match user filters a webhook's subject can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserField {
    Username,
    Email,
}

impl UserField {
    pub fn query_key(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::Email => "email",
        }
    }
}

pub struct AuthentikClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    /// Only this subtree of each object's attributes is kept.
    attribute_key: String,
}

impl AuthentikClient {
    /// `attribute_key`: the attributes subtree the reconciler reads
    /// (`RECONCILER_ATTRIBUTE_KEY`); the rest is dropped on arrival.
    pub fn new(base: &str, token: Secret, timeout: Duration, attribute_key: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("authentik-reconciler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            attribute_key: attribute_key.to_owned(),
        })
    }

    /// Page `page` of the listing at `path`. `extra` may set `ordering`;
    /// otherwise it is `pk`.
    pub(super) async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        page: u64,
        extra: &[(&str, &str)],
    ) -> Result<Page<T>> {
        let page_str = page.to_string();
        let page_size = PAGE_SIZE.to_string();
        let mut query: Vec<(&str, &str)> = vec![("page", &page_str), ("page_size", &page_size)];
        if !extra.iter().any(|(k, _)| *k == "ordering") {
            // A stable order keeps offset pagination from skipping rows
            // while the directory changes underneath us.
            query.push(("ordering", "pk"));
        }
        query.extend_from_slice(extra);
        let what = format!("GET {path} page {page}");
        self.get_json(path, &query, &what)
            .await?
            .ok_or_else(|| Error::Authentik(format!("{what}: HTTP 404 Not Found")))
    }

    /// One object at `path` with only our attributes; `None` on 404.
    async fn get_object<T: DeserializeOwned + Attributed>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>> {
        let mut object: Option<T> = self.get_json(path, query, &format!("GET {path}")).await?;
        if let Some(object) = &mut object {
            let _ = object.keep_attributes(&self.attribute_key);
        }
        Ok(object)
    }

    /// GET with the token; `None` on 404, the error taxonomy otherwise.
    async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<Option<T>> {
        let url = format!("{}{}", self.base, path);
        let started = std::time::Instant::now();
        let response = self
            .http
            .get(&url)
            .bearer_auth(self.token.expose())
            .query(query)
            .send()
            .await;
        crate::metrics::authentik_request(path, started.elapsed());
        let response =
            response.map_err(|e| Error::Authentik(format!("GET {path}: {}", without_url(&e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Config(format!(
                "Authentik refused the API token ({status}) on {path}; it needs view_user, view_group and view_event"
            )));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(Error::Authentik(format!("{what}: HTTP {status}")));
        }
        response
            .json::<T>()
            .await
            .map(Some)
            .map_err(|e| Error::Authentik(format!("{what}: bad body: {e}")))
    }

    /// Every page of a listing, checked to add up to exactly what
    /// Authentik announced (see [`Listing`]); a short, repeated or shifting
    /// listing is an error, never a smaller directory.
    async fn all_pages<T: DeserializeOwned + Keyed + Attributed>(
        &self,
        path: &str,
        noun: &str,
        extra: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut listing = Listing::new(path, noun);
        let mut page = 1;
        loop {
            let mut read: Page<T> = self.get_page(path, page, extra).await?;
            for object in &mut read.results {
                let _ = object.keep_attributes(&self.attribute_key);
            }
            let Some(next) = listing.accept(page, read)? else {
                break;
            };
            page = next;
        }
        Ok(listing.into_items())
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
        self.all_pages(
            "/api/v3/core/users/",
            "users",
            &[("include_groups", "false")],
        )
        .await
    }

    async fn groups(&self) -> Result<Vec<Group>> {
        // users_obj is not needed: the `users` pk list is always present.
        self.all_pages(
            "/api/v3/core/groups/",
            "groups",
            &[("include_users", "false")],
        )
        .await
    }

    async fn user(&self, pk: i64) -> Result<Option<User>> {
        self.get_object(
            &format!("/api/v3/core/users/{pk}/"),
            &[("include_groups", "false")],
        )
        .await
    }

    async fn users_by(&self, field: UserField, value: &str) -> Result<Vec<User>> {
        self.all_pages(
            "/api/v3/core/users/",
            "users",
            &[(field.query_key(), value), ("include_groups", "false")],
        )
        .await
    }

    async fn group(&self, uuid: &str) -> Result<Option<Group>> {
        // A name or anything else that is not a UUID would be a 404 (or a
        // 400 on some versions): only ask for what can exist.
        if !super::model::is_uuid(uuid) {
            return Ok(None);
        }
        self.get_object(
            &format!("/api/v3/core/groups/{uuid}/"),
            &[("include_users", "false")],
        )
        .await
    }

    async fn group_members(&self, uuid: &str) -> Result<Vec<User>> {
        self.all_pages(
            "/api/v3/core/users/",
            "users",
            &[("groups_by_pk", uuid), ("include_groups", "false")],
        )
        .await
    }

    async fn ping(&self) -> Result<()> {
        let _: Page<serde_json::Value> = self
            .get_page("/api/v3/core/groups/", 1, &[("include_users", "false")])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The client against a fake Authentik over real HTTP, serving scripted
    //! pages: what arrives on the wire decides, not a mock of the client.

    use std::collections::HashMap;
    use std::sync::Arc;

    use axum::Json;
    use axum::extract::Query;
    use axum::routing::get;
    use serde_json::{Value, json};

    use super::*;

    /// Page `number` of `count` users in pages of `size`, exactly as
    /// Authentik renders it (`authentik/api/pagination.py`).
    fn faithful_page(count: u64, size: u64, number: u64) -> Value {
        let total_pages = if count == 0 { 1 } else { count.div_ceil(size) };
        let start = (number - 1) * size;
        let end = (start + size).min(count);
        let results: Vec<Value> = (start + 1..=end)
            .map(|pk| json!({"pk": pk, "username": format!("user{pk}"), "email": format!("user{pk}@example.com"), "is_active": true, "type": "internal", "groups": []}))
            .collect();
        json!({
            "pagination": {
                "next": if number < total_pages { number + 1 } else { 0 },
                "previous": number - 1,
                "count": count,
                "current": number,
                "total_pages": total_pages,
                "start_index": if count == 0 { 0 } else { start + 1 },
                "end_index": end,
            },
            "results": results,
            "autocomplete": {},
        })
    }

    type Script = Arc<dyn Fn(u64) -> Value + Send + Sync>;

    /// Serves `GET /api/v3/core/users/?page=N` from `script(N)`.
    async fn fake_authentik(script: Script) -> AuthentikClient {
        let app = axum::Router::new().route(
            "/api/v3/core/users/",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let script = script.clone();
                async move {
                    let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    Json(script(page))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        reconciler_runtime::install_crypto_provider();
        AuthentikClient::new(
            &format!("http://{addr}"),
            Secret::new("token"),
            Duration::from_secs(10),
            "reconciler",
        )
        .unwrap()
    }

    async fn users_with(
        script: impl Fn(u64) -> Value + Send + Sync + 'static,
    ) -> Result<Vec<User>> {
        fake_authentik(Arc::new(script)).await.users().await
    }

    fn authentik_error(result: Result<Vec<User>>) -> String {
        match result {
            Err(Error::Authentik(message)) => message,
            Err(other) => panic!("expected an Authentik error, got {other}"),
            Ok(users) => panic!("expected an Authentik error, got {} users", users.len()),
        }
    }

    #[tokio::test]
    async fn a_faithful_listing_is_read_whole() {
        let users = users_with(|n| faithful_page(250, 100, n)).await.unwrap();
        let pks: Vec<i64> = users.iter().map(|u| u.pk).collect();
        assert_eq!(pks, (1..=250).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn only_the_reconciler_subtree_of_attributes_is_kept() {
        let users = users_with(|n| {
            let mut page = faithful_page(2, 100, n);
            page["results"][0]["attributes"] = json!({
                "reconciler": {"mail_aliases": ["a@example.com"]},
                "other_app": {"api_token": "s3cret"},
                "avatar": "data:…",
            });
            page["results"][1]["attributes"] = json!({"other_app": {"api_token": "s3cret"}});
            page
        })
        .await
        .unwrap();
        assert_eq!(
            users[0].attributes,
            json!({"reconciler": {"mail_aliases": ["a@example.com"]}})
        );
        assert_eq!(users[1].attributes, json!({}));
        assert!(!format!("{users:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_empty_page_while_next_says_more_fails_the_read() {
        let err = authentik_error(
            users_with(|n| {
                let mut page = faithful_page(300, 100, n);
                if n == 2 {
                    page["results"] = json!([]);
                }
                page
            })
            .await,
        );
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 100 distinct users, Authentik announced 300 \
             (page 2 of 3 was empty, announced as items 101–200)"
        );
    }

    #[tokio::test]
    async fn next_zero_before_count_items_fails_the_read() {
        let err = authentik_error(
            users_with(|n| {
                let mut page = faithful_page(300, 100, n);
                if n == 2 {
                    page["pagination"]["next"] = json!(0);
                }
                page
            })
            .await,
        );
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 200 distinct users, Authentik announced 300 \
             (page 2 of 3 said next = 0)"
        );
    }

    #[tokio::test]
    async fn a_wrong_count_fails_the_read() {
        let err = authentik_error(
            users_with(|n| {
                let mut page = faithful_page(250, 100, n);
                page["pagination"]["count"] = json!(300);
                page
            })
            .await,
        );
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 250 distinct users, Authentik announced 300 \
             (the last page, 3 of 3, ended at item 250)"
        );
    }

    #[tokio::test]
    async fn items_repeated_across_pages_fail_the_read() {
        // Page 2 is page 1 again (a cache in front of Authentik ignoring `page`).
        let err = authentik_error(
            users_with(|n| {
                let mut page = faithful_page(200, 100, n);
                page["results"] = faithful_page(200, 100, 1)["results"].clone();
                page
            })
            .await,
        );
        assert_eq!(
            err,
            "GET /api/v3/core/users/: got 100 distinct users, Authentik announced 200 \
             (page 2 of 2 repeated 100 item(s) already read)"
        );
    }

    #[tokio::test]
    async fn a_count_changing_between_pages_fails_the_read() {
        // Someone was deleted between page 1 and page 2.
        let err = authentik_error(
            users_with(|n| faithful_page(if n == 1 { 201 } else { 200 }, 100, n)).await,
        );
        assert!(
            err.starts_with(
                "GET /api/v3/core/users/: got 100 distinct users, Authentik announced 201 \
                 (the directory changed while it was read"
            ),
            "{err}"
        );
    }
}
