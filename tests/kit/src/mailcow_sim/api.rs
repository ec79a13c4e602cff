//! The request path of `/api/v1/*`: nginx's rewrite to
//! `json_api.php?query=...`, the API-key session (`sessions.inc.php`), and
//! json_api.php's checks in their real order (§0, §1), then dispatch to
//! the simulated functions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::envelope::{Access, Ctx, HTML, JSON, Reply};
use super::json::{json_decode, json_encode};
use super::php::{Arr, Uncaught, Val, split_list};
use super::sql::sql_eq;
use super::state::Db;
use super::validate::{ip_acl, real_ip};
use super::{
    FailMode, MailcowSimConfig, Shared, SlowAnswer, SlowMode, alias, app_passwd, domain, mailbox,
    overlap,
};

/// What `GET /api/v1/get/status/version` reports.
pub const VERSION: &str = "2026-07a";

/// Request bodies beyond this are refused before PHP would see them.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The parts of an HTTP request PHP gets to see.
pub(crate) struct ApiRequest {
    pub method: String,
    /// `$_GET`, after nginx put the path into `query`.
    pub get: HashMap<String, String>,
    pub api_key: Option<Vec<u8>>,
    pub sec_fetch_dest: Option<Vec<u8>>,
    pub content_type: String,
    pub body: Vec<u8>,
    /// `REMOTE_ADDR`.
    pub remote: String,
}

/// The answer plus the counter it is filed under.
pub(crate) struct Outcome {
    pub reply: Reply,
    pub count: String,
}

pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(path) = nginx_uri(parts.uri.path()) else {
        return respond(Reply::new(400, HTML, nginx_page("400 Bad Request")));
    };
    let Some(captured) = path.strip_prefix("/api/v1/") else {
        return respond(Reply::new(404, HTML, nginx_page("404 Not Found")));
    };
    // try_files appends the client's own query string after `query=`.
    let query_string = format!("query={captured}&{}", parts.uri.query().unwrap_or(""));
    let get = parse_query_string(query_string.as_bytes());
    let route = route_of(&get);
    let fault = shared.take_failure(&route, parts.method == axum::http::Method::POST);
    let error_after_write = matches!(fault, Some(FailMode::ErrorAfterWrite));
    if let Some(mode) = fault.filter(|_| !error_after_write) {
        shared.count(&format!("fault {route}"), false);
        return respond(match mode {
            FailMode::Http502 => Reply::new(502, HTML, nginx_page("502 Bad Gateway")),
            FailMode::EmptyBody | FailMode::ErrorAfterWrite => Reply::empty(),
        });
    }
    let Ok(body) = to_bytes(body, BODY_LIMIT).await else {
        return respond(Reply::new(
            413,
            HTML,
            nginx_page("413 Request Entity Too Large"),
        ));
    };
    let forwarded = header_text(&parts.headers, "x-forwarded-for");
    let request = ApiRequest {
        method: parts.method.as_str().to_owned(),
        get,
        api_key: header_bytes(&parts.headers, "x-api-key"),
        sec_fetch_dest: header_bytes(&parts.headers, "sec-fetch-dest"),
        content_type: header_text(&parts.headers, "content-type").unwrap_or_default(),
        body: body.to_vec(),
        remote: real_ip(peer.ip(), forwarded.as_deref()).to_string(),
    };
    let is_write = parts.method == axum::http::Method::POST
        && matches!(route.split('/').next(), Some("add" | "edit" | "delete"));
    let objects = if is_write {
        overlap::written_objects(&route, &request.body, &shared.db())
    } else {
        Vec::new()
    };
    let slow = shared.take_slow_answer(&route);
    // Like PHP behind nginx, the request runs to its end even when the
    // client stops waiting: the work is its own task, the handler only
    // waits for it.
    let work = tokio::spawn(async move {
        let _in_flight = is_write.then(|| shared.overlap.begin(objects));
        let cost = shared.request_cost();
        if !cost.is_zero() {
            tokio::time::sleep(cost).await;
        }
        if let Some(SlowAnswer {
            delay,
            mode: SlowMode::BeforeApplying,
            ..
        }) = slow
        {
            tokio::time::sleep(delay).await;
        }
        let outcome = {
            let mut db = shared.db();
            process(&shared.config, &mut db, &request)
        };
        let write = outcome.count.starts_with("write ");
        shared.count(&outcome.count, write);
        if let Some(SlowAnswer {
            delay,
            mode: SlowMode::AfterApplying,
            ..
        }) = slow
        {
            tokio::time::sleep(delay).await;
        }
        if slow.is_some() {
            shared.slow_done();
        }
        if error_after_write {
            return Reply::new(
                200,
                JSON,
                r#"[{"type":"danger","log":["mailbox","edit"],"msg":"mysql_error"}]"#,
            );
        }
        outcome.reply
    });
    match work.await {
        Ok(reply) => respond(reply),
        Err(_) => respond(Reply::new(502, HTML, nginx_page("502 Bad Gateway"))),
    }
}

fn header_bytes(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    headers.get(name).map(|v| v.as_bytes().to_vec())
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn respond(reply: Reply) -> Response {
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    response
}

fn nginx_page(title: &str) -> String {
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
}

/// `action/category` for the counters.
fn route_of(get: &HashMap<String, String>) -> String {
    let query = get.get("query").map_or("", String::as_str);
    let mut parts = query.split('/');
    let action = parts.next().unwrap_or("");
    let category = parts.next().unwrap_or("");
    format!("{action}/{category}")
}

/// nginx's normalised `$uri`: percent-decoded, slashes merged, then `.`
/// and `..` segments resolved — including ones that only appear after
/// decoding, so `a%2F..%2Fb` becomes `b` (ngx_http_parse_complex_uri). A
/// broken escape, or `..` above the root, is a 400 from nginx.
fn nginx_uri(raw: &str) -> Result<String, ()> {
    let decoded = nginx_decode(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').peekable();
    // The leading empty segment (before the first `/`) is the root.
    parts.next();
    let mut trailing_slash = false;
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        match part {
            "." => trailing_slash = last,
            ".." => {
                segments.pop().ok_or(())?;
                trailing_slash = last;
            }
            other => {
                segments.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut uri = format!("/{}", segments.join("/"));
    if trailing_slash && !uri.ends_with('/') {
        uri.push('/');
    }
    Ok(uri)
}

/// Percent-decoding with merged slashes.
fn nginx_decode(raw: &str) -> Result<String, ()> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(())?;
            let hex = std::str::from_utf8(hex).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            if !(bytes[i] == b'/' && out.last() == Some(&b'/')) {
                out.push(bytes[i]);
            }
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// PHP's query-string parser: `&`-separated, `+` is a space, `%XX`
/// decoded, the last duplicate wins. nginx does not re-escape the path it
/// puts into `query`, so `get/alias/a+b@x` reaches PHP as `a b@x`.
pub(crate) fn parse_query_string(raw: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in raw.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        out.insert(urldecode(key), urldecode(value));
    }
    out
}

fn urldecode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let decoded = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// === json_api.php ===

struct Route<'a> {
    action: &'a str,
    category: Option<&'a str>,
    object: Option<&'a str>,
    extra: Option<&'a str>,
}

pub(crate) fn process(config: &MailcowSimConfig, db: &mut Db, req: &ApiRequest) -> Outcome {
    let query = req.get.get("query").map_or("", String::as_str);
    let parts: Vec<&str> = query.split('/').collect();
    let route = Route {
        action: parts[0],
        category: parts.get(1).copied(),
        object: parts.get(2).copied(),
        extra: parts.get(3).copied(),
    };
    let key = format!("{}/{}", route.action, route.category.unwrap_or(""));
    let rejected = |reply: Reply| Outcome {
        reply,
        count: format!("rejected {key}"),
    };

    // sessions.inc.php runs before json_api.php prints anything.
    let session = match authenticate(config, req) {
        Ok(session) => session,
        Err(reply) => return rejected(reply),
    };
    if req.sec_fetch_dest.as_deref().is_some_and(|d| d != b"empty") {
        return rejected(Reply::new(403, JSON, ""));
    }
    let (attr, items) = match post_fields(route.action, req) {
        Ok(Some(fields)) => fields,
        Ok(None) => {
            return rejected(Reply::error(
                400,
                "Request body doesn't contain valid json!",
            ));
        }
        Err(uncaught) => {
            tracing::debug!(reason = %uncaught.0, "mailcow-sim: uncaught PHP error");
            return rejected(Reply::empty());
        }
    };
    let dispatch = Dispatch {
        config,
        session,
        method: &req.method,
        route,
        get: &req.get,
    };
    let outcome = match dispatch.route.action {
        "add" => dispatch.add(db, attr),
        "get" => dispatch.get(db),
        "delete" => dispatch.delete(db, items),
        "edit" => dispatch.edit(db, attr, items),
        _ => Err(Reply::error(404, "route not found")),
    };
    match outcome {
        Ok((kind, reply)) => Outcome {
            reply,
            count: format!("{kind} {key}"),
        },
        Err(reply) => rejected(reply),
    }
}

/// The API-key login of `sessions.inc.php` (§1.1): `Ok(None)` when no key
/// was sent (`empty()` also treats `"0"` as no key).
fn authenticate(config: &MailcowSimConfig, req: &ApiRequest) -> Result<Option<Access>, Reply> {
    let Some(raw) = req.api_key.as_deref() else {
        return Ok(None);
    };
    if raw.is_empty() || raw == b"0" {
        return Ok(None);
    }
    let key: String = raw
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || **b == b'-')
        .map(|&b| char::from(b))
        .collect();
    let keys = [
        (Some(config.rw_key.as_str()), Access::Rw),
        (config.ro_key.as_deref(), Access::Ro),
    ];
    // `api_key = :key` under a case-insensitive collation.
    let access = keys.iter().find_map(|(stored, access)| {
        stored
            .filter(|s| !s.is_empty() && sql_eq(s, &key))
            .map(|_| *access)
    });
    let Some(access) = access else {
        return Err(Reply::new(401, HTML, error_body("authentication failed")));
    };
    let allow_from = split_list(&config.allow_from.join(","));
    if config.skip_ip_check || ip_acl(&req.remote, &allow_from) {
        Ok(Some(access))
    } else {
        let msg = format!("api access denied for ip {}", req.remote);
        Err(Reply::new(401, HTML, error_body(&msg)))
    }
}

fn error_body(msg: &str) -> String {
    json_encode(&Val::Arr(Arr::assoc([
        ("type", Val::str("error")),
        ("msg", Val::str(msg)),
    ])))
}

type Fields = (Option<Val>, Option<Val>);

/// `$_POST['attr']` and `$_POST['items']` as json_api.php fills them (not
/// yet `(array)`-cast). `Ok(None)`: a non-GET JSON body PHP cannot decode.
fn post_fields(action: &str, req: &ApiRequest) -> Result<Option<Fields>, Uncaught> {
    if req.content_type.contains("application/json") {
        let decoded = json_decode(&req.body);
        if action == "get" {
            return Ok(Some((None, None)));
        }
        let Some(decoded) = decoded else {
            return Ok(None);
        };
        return Ok(Some(match action {
            "add" => (Some(decoded), None),
            // `$requestDecoded['attr']` throws when the body is a string.
            "edit" => (
                Some(decoded.offset("attr")?),
                Some(decoded.offset("items")?),
            ),
            "delete" => (None, Some(decoded)),
            _ => (None, None),
        }));
    }
    if req.method == "POST"
        && req
            .content_type
            .contains("application/x-www-form-urlencoded")
    {
        let form = parse_query_string(&req.body);
        let field = |name: &str| {
            form.get(name)
                .map(|raw| json_decode(raw.as_bytes()).unwrap_or(Val::Null))
        };
        return Ok(Some((field("attr"), field("items"))));
    }
    Ok(Some((None, None)))
}

struct Dispatch<'a> {
    config: &'a MailcowSimConfig,
    session: Option<Access>,
    method: &'a str,
    route: Route<'a>,
    get: &'a HashMap<String, String>,
}

/// `Ok((counter kind, reply))`, or `Err(reply)` for a rejected request.
type Dispatched = Result<(&'static str, Reply), Reply>;

fn incomplete() -> Reply {
    Reply::error(200, "Cannot find attributes in post data")
}

fn not_found() -> Reply {
    Reply::error(404, "route not found")
}

fn rw_denied() -> Reply {
    Reply::error(403, "API read/write access denied")
}

impl Dispatch<'_> {
    fn ctx<'d>(&self, db: &'d mut Db) -> Ctx<'d> {
        Ctx::new(db, self.session, self.config.omit_sender_acl)
    }

    fn require_post(&self) -> Result<(), Reply> {
        if self.method == "POST" {
            Ok(())
        } else {
            Err(Reply::error(405, "only POST method is allowed"))
        }
    }

    fn add(&self, db: &mut Db, attr: Option<Val>) -> Dispatched {
        if self.session == Some(Access::Ro) {
            return Err(rw_denied());
        }
        let attr = attr.ok_or_else(incomplete)?.to_array();
        self.require_post()?;
        let mut ctx = self.ctx(db);
        let result = match self.route.category {
            Some("alias") => alias::add(&mut ctx, &attr),
            Some("app-passwd") => app_passwd::add(&mut ctx, &attr),
            _ => return Err(not_found()),
        };
        // Without a session the functions run but only ever deny.
        let kind = if self.session.is_some() {
            "write"
        } else {
            "rejected"
        };
        Ok((kind, Reply::write("add", result, ctx.into_messages())))
    }

    fn delete(&self, db: &mut Db, items: Option<Val>) -> Dispatched {
        if self.session != Some(Access::Rw) {
            return Err(rw_denied());
        }
        let items = items.ok_or_else(incomplete)?.to_array();
        self.require_post()?;
        let data = Arr::assoc([("id", Val::Arr(items))]);
        let mut ctx = self.ctx(db);
        let result = match self.route.category {
            Some("alias") => alias::delete(&mut ctx, &data),
            Some("app-passwd") => app_passwd::delete(&mut ctx, &data),
            _ => return Err(not_found()),
        };
        Ok(("write", Reply::write("delete", result, ctx.into_messages())))
    }

    fn edit(&self, db: &mut Db, attr: Option<Val>, items: Option<Val>) -> Dispatched {
        if self.session != Some(Access::Rw) {
            return Err(rw_denied());
        }
        let attr = attr.ok_or_else(incomplete)?.to_array();
        let items = items.map_or(Val::Null, |i| Val::Arr(i.to_array()));
        self.require_post()?;
        // array_merge(['<id key>' => $items], $attr): attr can override it.
        let with = |id_key: &str| Arr::assoc([(id_key, items.clone())]).merge(&attr);
        let mut ctx = self.ctx(db);
        let result = match (self.route.category, self.route.object) {
            (Some("alias"), _) => alias::edit(&mut ctx, &with("id")),
            (Some("app-passwd"), _) => app_passwd::edit(&mut ctx, &with("id")),
            (Some("mailbox"), Some("template" | "custom-attribute")) => return Err(not_found()),
            (Some("mailbox"), _) => mailbox::edit(&mut ctx, &with("username")),
            _ => return Err(not_found()),
        };
        Ok(("write", Reply::write("edit", result, ctx.into_messages())))
    }

    fn get(&self, db: &mut Db) -> Dispatched {
        if self.method != "GET" {
            return Err(Reply::error(405, "only GET method is allowed"));
        }
        if self.session.is_none() {
            // The whole switch sits inside `if (isset($_SESSION['mailcow_cc_role']))`.
            return Err(Reply::new(200, JSON, ""));
        }
        let mut ctx = self.ctx(db);
        let Route { object, extra, .. } = self.route;
        let object_val = object.map_or(Val::Null, Val::str);
        let tags = self.get.get("tags").is_some_and(|t| !t.is_empty());
        let reply = match self.route.category {
            Some("mailbox") => match object {
                Some(o @ ("all" | "reduced")) => Reply::get(mailbox::list(&ctx, o, extra, tags)),
                _ if tags => Reply::get_list(None),
                _ => Reply::get(mailbox::details(&ctx, &object_val, None)),
            },
            Some("alias") => match object {
                Some("all") => Reply::get(alias::list(&ctx, extra)),
                _ => Reply::get(alias::details(&ctx, &object_val)),
            },
            Some("alias-domain") => match object {
                Some("all") => Reply::get(domain::alias_domain_list(&ctx)),
                _ => Reply::get(domain::alias_domain_details(&ctx, &object_val)),
            },
            Some("domain") => {
                let data = match object {
                    Some("all") => domain::list(&ctx, tags),
                    _ => domain::details_arr(&ctx, &object_val).map(|d| d.map(Val::Arr)),
                };
                match data {
                    Ok(data) => Reply::get(data),
                    Err(_) => Reply::empty(),
                }
            }
            Some("app-passwd") => match object {
                Some("all") => Reply::get(app_passwd::list(&mut ctx, extra)),
                // `$object['id']` on a string: a TypeError (§3.3).
                Some(_) => Reply::empty(),
                None => Reply::get(None),
            },
            Some("status") => match object {
                Some("version") => Reply::new(
                    200,
                    JSON,
                    json_encode(&Val::Arr(Arr::assoc([("version", Val::str(VERSION))]))),
                ),
                _ => Reply::empty(),
            },
            Some("passwordpolicy") => {
                let policy = &ctx.db.policy;
                Reply::get(Some(Val::Arr(Arr::assoc([
                    ("length", Val::str(policy.length.to_string())),
                    ("chars", Val::str(policy.chars.to_string())),
                    ("special_chars", Val::str(policy.special_chars.to_string())),
                    ("lowerupper", Val::str(policy.lowerupper.to_string())),
                    ("numbers", Val::str(policy.numbers.to_string())),
                ]))))
            }
            _ => return Err(not_found()),
        };
        Ok(("read", reply))
    }
}
