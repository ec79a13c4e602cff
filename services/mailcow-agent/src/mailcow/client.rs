//! [`MailcowApi`] over HTTP. Every request carries `X-API-Key` and a JSON
//! content type, keeps no cookies, and is judged by its body, not its status
//! (Mailcow answers 200 for most failures).

use async_trait::async_trait;
use reconciler_runtime::secrets::Secret;
use serde_json::{Value, json};

use super::envelope::{self, WriteResponse, flag};
use super::{APP_PASSWORD_PROTOCOLS, Alias, AliasAdded, AppPassword, Mailbox, MailcowApi};
use crate::address;
use crate::config::Config;
use crate::error::{Error, Result};

pub struct HttpMailcow {
    http: reqwest::Client,
    /// `<MAILCOW_URL>/api/v1`; request paths are appended segment by segment.
    base: reqwest::Url,
    api_key: Secret,
}

impl HttpMailcow {
    pub fn new(config: &Config) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!(
                "authentik-reconciler-mailcow-agent/",
                env!("CARGO_PKG_VERSION")
            ))
            .danger_accept_invalid_certs(config.tls_insecure)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        let base = format!("{}/api/v1", config.mailcow_url);
        let base =
            reqwest::Url::parse(&base).map_err(|e| Error::Config(format!("MAILCOW_URL: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(Error::Config("MAILCOW_URL must be an http(s) URL".into()));
        }
        Ok(Self {
            http,
            base,
            api_key: config.api_key.clone(),
        })
    }

    /// The API URL of `segments`, each percent-encoded as one path segment
    /// (`/`, `%`, `?`, `#` and the like cannot split or end it). Values
    /// from requests are validated before they get here (see
    /// [`address::plain`]); the encoding is the second line of defence.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        with_segments(&self.base, segments)
    }

    /// Sends a request and returns the body of a 200; maps every other
    /// status to the error class the coordinator acts on.
    async fn send(&self, call: &str, request: reqwest::RequestBuilder) -> Result<String> {
        let started = std::time::Instant::now();
        let response = request
            .header("X-API-Key", self.api_key.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .send()
            .await;
        reconciler_runtime::metrics::target_request("mailcow-agent", call, started.elapsed());
        let response = response.map_err(|e| transport_error(call, "", &e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| transport_error(call, "reading body: ", &e))?;
        match status.as_u16() {
            200 => Ok(body),
            401 | 403 => Err(Error::Unauthorized {
                status: status.as_u16(),
                message: error_message(&body),
            }),
            code if code >= 500 => Err(Error::Unavailable(format!("{call}: HTTP {code}"))),
            code => Err(Error::Protocol {
                call: call.to_owned(),
                detail: format!("HTTP {code}: {}", error_message(&body)),
            }),
        }
    }

    async fn get(&self, call: &str, segments: &[&str]) -> Result<Option<Value>> {
        let body = self.send(call, self.http.get(self.url(segments))).await?;
        if body.trim().is_empty() {
            return Err(Error::EmptyBody { call: call.into() });
        }
        envelope::read_body(&body).map_err(|detail| Error::Protocol {
            call: call.into(),
            detail,
        })
    }

    /// POSTs a write and returns its messages; fails on an empty body but
    /// leaves `danger` messages to the caller.
    async fn post(&self, call: &str, path: &str, body: &Value) -> Result<WriteResponse> {
        let segments: Vec<&str> = path.split('/').collect();
        let text = self
            .send(
                call,
                self.http.post(self.url(&segments)).body(body.to_string()),
            )
            .await?;
        match WriteResponse::parse(&text) {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(Error::EmptyBody { call: call.into() }),
            Err(detail) => Err(Error::Protocol {
                call: call.into(),
                detail,
            }),
        }
    }

    /// A write that must succeed and say so with the message `key` (e.g.
    /// `alias_removed`): anything less is not proof the change happened.
    async fn write_confirmed(&self, call: &str, path: &str, body: &Value, key: &str) -> Result<()> {
        let response = self.write(call, path, body).await?;
        if response.find(key).is_none() {
            return Err(Error::Protocol {
                call: call.into(),
                detail: format!("no {key} confirmation"),
            });
        }
        Ok(())
    }

    /// A write that must succeed without any `danger`/`error` message.
    async fn write(&self, call: &str, path: &str, body: &Value) -> Result<WriteResponse> {
        let response = self.post(call, path, body).await?;
        if !response.failures().is_empty() {
            return Err(Error::Rejected {
                call: call.into(),
                messages: response.describe_failures(),
            });
        }
        Ok(response)
    }
}

#[async_trait]
impl MailcowApi for HttpMailcow {
    async fn mailbox(&self, login: &str) -> Result<Option<Mailbox>> {
        let call = "get/mailbox";
        let login = address::plain("login", login)?;
        let Some(value) = self.get(call, &["get", "mailbox", login]).await? else {
            return Ok(None);
        };
        let username = value
            .get("username")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Protocol {
                call: call.into(),
                detail: "mailbox without username".into(),
            })?
            .to_owned();
        // Never report another mailbox's state as the one asked for.
        if !address::same(&username, login) {
            return Err(Error::Protocol {
                call: call.into(),
                detail: format!("asked for mailbox {login}, Mailcow answered with {username}"),
            });
        }
        let sender_acl = value.get("sender_acl").map(strings);
        Ok(Some(Mailbox {
            username,
            sender_acl,
        }))
    }

    async fn mailboxes(&self) -> Result<Vec<Mailbox>> {
        let call = "get/mailbox/all";
        let body = self
            .send(call, self.http.get(self.url(&["get", "mailbox", "all"])))
            .await?;
        let protocol_error = |detail: String| Error::Protocol {
            call: call.into(),
            detail,
        };
        if !body.trim_start().starts_with('[') {
            // `{}` (no mailboxes) or something that is not a listing.
            if body.trim().is_empty() {
                return Err(Error::EmptyBody { call: call.into() });
            }
            return match envelope::read_body(&body).map_err(protocol_error)? {
                None => Ok(Vec::new()),
                Some(other) => Err(protocol_error(format!(
                    "expected a list, got {}",
                    kind(&other)
                ))),
            };
        }
        // Only the two fields we use are kept: every mailbox's other
        // details (dozens of fields, at 10,000 mailboxes most of the
        // answer) are skipped while parsing instead of built into a tree.
        let items: Vec<ListedMailbox> = serde_json::from_str(&body)
            .map_err(|e| protocol_error(format!("unexpected listing: {e}")))?;
        drop(body);
        items
            .into_iter()
            .map(|item| {
                let username = match item.username {
                    Some(Value::String(username)) => username,
                    _ => return Err(protocol_error("mailbox without username".into())),
                };
                Ok(Mailbox {
                    username,
                    sender_acl: item.sender_acl.as_ref().map(strings),
                })
            })
            .collect()
    }

    async fn aliases(&self) -> Result<Vec<Alias>> {
        let call = "get/alias/all";
        match self.get(call, &["get", "alias", "all"]).await? {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| parse_alias(call, v)).collect(),
            Some(other) => Err(Error::Protocol {
                call: call.into(),
                detail: format!("expected a list, got {}", kind(&other)),
            }),
        }
    }

    async fn alias(&self, id_or_address: &str) -> Result<Option<Alias>> {
        let call = "get/alias";
        let asked = address::id_or_plain("alias", id_or_address)?;
        let Some(value) = self.get(call, &["get", "alias", asked]).await? else {
            return Ok(None);
        };
        let alias = parse_alias(call, &value)?;
        let matches = if asked.bytes().all(|b| b.is_ascii_digit()) {
            alias.id.to_string() == asked
        } else {
            address::same(&alias.address, asked)
        };
        if !matches {
            return Err(Error::Protocol {
                call: call.into(),
                detail: format!(
                    "asked for alias {asked}, Mailcow answered with {} ({})",
                    alias.address, alias.id
                ),
            });
        }
        Ok(Some(alias))
    }

    async fn app_passwords(&self, mailbox: &str) -> Result<Vec<AppPassword>> {
        let call = "get/app-passwd/all";
        let mailbox = address::plain("mailbox", mailbox)?;
        let items = match self
            .get(call, &["get", "app-passwd", "all", mailbox])
            .await?
        {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(Error::Protocol {
                    call: call.into(),
                    detail: format!("expected a list, got {}", kind(&other)),
                });
            }
        };
        items
            .iter()
            .map(|v| parse_app_password(call, mailbox, v))
            .collect()
    }

    async fn set_sender_acl(&self, login: &str, send_as: &[String]) -> Result<()> {
        let body = json!({"items": [login], "attr": {"sender_acl": send_as}});
        self.write("edit/mailbox", "edit/mailbox", &body).await?;
        Ok(())
    }

    async fn add_app_password(
        &self,
        mailbox: &str,
        name: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()> {
        let body = json!({
            "username": mailbox,
            "app_name": name,
            "app_passwd": secret,
            "app_passwd2": secret,
            "active": 1,
            "protocols": protocols,
        });
        self.write_confirmed(
            "add/app-passwd",
            "add/app-passwd",
            &body,
            "app_passwd_added",
        )
        .await
    }

    async fn edit_app_password(&self, id: i64, mailbox: &str, protocols: &[String]) -> Result<()> {
        // `username` must be the current owner, or Mailcow moves the app
        // password to the literal user "API" and fails (reference §3.1).
        let body = json!({
            "items": [id],
            "attr": {"username": mailbox, "active": 1, "protocols": protocols},
        });
        self.write_confirmed(
            "edit/app-passwd",
            "edit/app-passwd",
            &body,
            "object_modified",
        )
        .await
    }

    async fn set_app_password_secret(
        &self,
        id: i64,
        mailbox: &str,
        secret: &str,
        protocols: &[String],
    ) -> Result<()> {
        let body = json!({
            "items": [id],
            "attr": {
                "username": mailbox,
                "app_passwd": secret,
                "app_passwd2": secret,
                "active": 1,
                "protocols": protocols,
            },
        });
        self.write_confirmed(
            "edit/app-passwd",
            "edit/app-passwd",
            &body,
            "object_modified",
        )
        .await
    }

    async fn delete_app_password(&self, id: i64) -> Result<()> {
        self.write_confirmed(
            "delete/app-passwd",
            "delete/app-passwd",
            &json!([id]),
            "app_passwd_removed",
        )
        .await
    }

    async fn add_alias(&self, address: &str, goto: &[String], comment: &str) -> Result<AliasAdded> {
        let call = "add/alias";
        // Every flag is explicit: Mailcow `intval`s missing flags to 0.
        let body = json!({
            "address": address,
            "goto": goto.join(","),
            "active": 1,
            "sogo_visible": 1,
            "sender_allowed": 1,
            "private_comment": comment,
        });
        let response = self.post(call, "add/alias", &body).await?;
        if response.find("is_alias_or_mailbox").is_some() {
            return Ok(AliasAdded::AddressTaken);
        }
        if !response.failures().is_empty() {
            return Err(Error::Rejected {
                call: call.into(),
                messages: response.describe_failures(),
            });
        }
        if response.is_generic_success() {
            return Err(Error::Permanent(format!(
                "Mailcow created nothing for alias {address} (is the address also in goto?)"
            )));
        }
        let id = response
            .find("alias_added")
            .and_then(|m| m.args().get(1).and_then(|id| id.parse().ok()))
            .ok_or_else(|| Error::Protocol {
                call: call.into(),
                detail: "no alias_added message with an id".into(),
            })?;
        Ok(AliasAdded::Created { id })
    }

    async fn edit_alias(&self, id: i64, goto: &[String]) -> Result<()> {
        let body = json!({
            "items": [id],
            "attr": {"goto": goto.join(","), "active": 1, "sogo_visible": 1, "sender_allowed": 1},
        });
        self.write_confirmed("edit/alias", "edit/alias", &body, "alias_modified")
            .await
    }

    async fn delete_alias(&self, id: i64) -> Result<()> {
        self.write_confirmed(
            "delete/alias",
            "delete/alias",
            &json!([id]),
            "alias_removed",
        )
        .await
    }
}

/// One mailbox of `get/mailbox/all`, as far as this agent reads it;
/// serde skips the other fields without keeping them.
#[derive(serde::Deserialize)]
struct ListedMailbox {
    #[serde(default, deserialize_with = "present")]
    username: Option<Value>,
    /// `None` only when the key is missing (servers before 2026-07a); a
    /// `null` is present, as with `get/mailbox/{login}`.
    #[serde(default, deserialize_with = "present")]
    sender_acl: Option<Value>,
}

/// Any value that is there, `null` included, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// `base` with `segments` appended, each encoded as one path segment
/// (`.` and `..` are dropped, never sent).
fn with_segments(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// One row of `get/app-passwd/all/{asked}`. A row that does not say it
/// belongs to `asked` fails the whole read: whatever path Mailcow (or a
/// proxy in front of it) resolved, rows of another mailbox must never be
/// reported, and so planned on, as this one's.
fn parse_app_password(call: &str, asked: &str, v: &Value) -> Result<AppPassword> {
    let protocol_error = |detail: String| Error::Protocol {
        call: call.into(),
        detail,
    };
    let id = envelope::id(v.get("id"))
        .ok_or_else(|| protocol_error("app password without id".into()))?;
    let mailbox = v
        .get("mailbox")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol_error(format!("app password {id} without mailbox")))?;
    if !address::same(mailbox, asked) {
        return Err(protocol_error(format!(
            "asked for the app passwords of {asked}, Mailcow answered with {id} of {mailbox}"
        )));
    }
    let escaped = v.get("name").and_then(Value::as_str).unwrap_or_default();
    Ok(AppPassword {
        id,
        mailbox: mailbox.to_owned(),
        name: unescape_name(escaped),
        active: flag(v.get("active")),
        // `password` (a hash) is deliberately never read.
        protocols: APP_PASSWORD_PROTOCOLS
            .iter()
            .filter(|p| flag(v.get(**p)))
            .map(|p| p.to_string())
            .collect(),
    })
}

fn parse_alias(call: &str, v: &Value) -> Result<Alias> {
    let id = envelope::id(v.get("id")).ok_or_else(|| Error::Protocol {
        call: call.into(),
        detail: "alias without id".into(),
    })?;
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Alias {
        id,
        address: text("address"),
        goto: text("goto")
            .split(',')
            .map(|g| g.trim().to_owned())
            .filter(|g| !g.is_empty())
            .collect(),
        active: flag(v.get("active_int").or(v.get("active"))),
        sogo_visible: flag(v.get("sogo_visible_int").or(v.get("sogo_visible"))),
        sender_allowed: flag(v.get("sender_allowed")),
        private_comment: text("private_comment"),
    })
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Mailcow escapes app password names on write and again on read
/// (`htmlspecialchars`, reference §3.2); undo both.
fn unescape_name(name: &str) -> String {
    let once = html_escape::decode_html_entities(name);
    html_escape::decode_html_entities(&once).into_owned()
}

/// The `msg` of a top-level error object, or a short excerpt.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("msg").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(120).collect())
}

/// A request that got no (complete) answer; timeouts are told apart
/// because a write may still be under way on Mailcow's side.
fn transport_error(call: &str, what: &str, e: &reqwest::Error) -> Error {
    let message = format!("{call}: {what}{}", without_url(e));
    if e.is_timeout() {
        Error::TimedOut(message)
    } else {
        Error::Unavailable(message)
    }
}

/// reqwest errors include the URL; ours carry no secrets, but keep messages short.
fn without_url(e: &reqwest::Error) -> String {
    let mut e_str = e.to_string();
    if let Some(url) = e.url() {
        e_str = e_str.replace(url.as_str(), "<mailcow>");
    }
    e_str
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_mailbox_keeps_username_and_sender_acl_only() {
        let items: Vec<ListedMailbox> = serde_json::from_str(
            r#"[{"username":"a@x.org","quota":1,"attributes":{"tls_enforce_in":"0"},"sender_acl":["b@x.org",3]},
                {"username":"c@x.org","sender_acl":null},
                {"username":"d@x.org"}]"#,
        )
        .expect("parses");
        assert_eq!(items.len(), 3);
        assert_eq!(
            items[0].sender_acl.as_ref().map(strings),
            Some(vec!["b@x.org".to_owned()])
        );
        assert_eq!(items[1].sender_acl.as_ref().map(strings), Some(vec![]));
        assert!(items[2].sender_acl.is_none(), "missing: an older server");
    }

    #[test]
    fn names_are_unescaped_twice() {
        assert_eq!(unescape_name("a&amp;amp;b"), "a&b");
        assert_eq!(
            unescape_name("authentik-sync:alice:info@x.org"),
            "authentik-sync:alice:info@x.org"
        );
        assert_eq!(unescape_name("o&amp;#039;neil"), "o'neil");
    }

    #[test]
    fn every_segment_is_encoded_on_its_own() {
        let base = reqwest::Url::parse("https://mail.example.com/mc/api/v1").expect("url");
        assert_eq!(
            with_segments(&base, &["get", "app-passwd", "all", "a/../b?c#d%e@x"]).as_str(),
            "https://mail.example.com/mc/api/v1/get/app-passwd/all/a%2F..%2Fb%3Fc%23d%25e@x"
        );
        // Dot segments are dropped by the URL builder, never sent.
        assert_eq!(
            with_segments(&base, &["get", "mailbox", ".."]).as_str(),
            "https://mail.example.com/mc/api/v1/get/mailbox"
        );
    }

    fn row(id: i64, mailbox: &str) -> Value {
        json!({"id": id, "name": "authentik-sync:a:b@x.org", "mailbox": mailbox, "active": 1, "imap_access": 1})
    }

    #[test]
    fn app_password_rows_must_belong_to_the_mailbox_asked_for() {
        let ok = parse_app_password(
            "c",
            "Info@Bücher.example",
            &row(1, "info@xn--bcher-kva.example"),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let other = parse_app_password("c", "info@x.org", &row(2, "bob@x.org"));
        assert!(matches!(other, Err(Error::Protocol { .. })), "{other:?}");
        let missing = parse_app_password("c", "info@x.org", &json!({"id": 3, "name": "n"}));
        assert!(missing.is_err());
    }
}
