//! The HTTP face: `GET /jmap/session`, `POST /jmap` and `/jmap/` (the
//! router accepts both, http/src/request.rs:86,212-231), authentication
//! (http/src/api/mod.rs:311-341), and the `/__sim/*` side channel.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::jmap::{self, CORE, Caller, MANAGEMENT};
use super::store::ObjectType;
use super::webhook::{self, WebhookSender};
use super::{Fault, Shared, dump, lock};

type S = State<Arc<Shared>>;

pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/jmap/session", get(session))
        .route("/jmap", post(api))
        .route("/jmap/", post(api))
        .route("/__sim/state", get(state))
        .route("/__sim/counts", get(counts))
        .route("/__sim/counts/reset", post(reset_counts))
        .route("/__sim/create", post(create))
        .route("/__sim/sign-in", post(sign_in))
        .route("/__sim/fault", post(fault))
        .route("/__sim/webhook", post(send_webhook))
        .with_state(shared)
}

enum Auth {
    Anonymous,
    Admin,
    Refused,
}

fn authenticate(shared: &Shared, headers: &HeaderMap) -> Auth {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Auth::Anonymous;
    };
    let config = &shared.config;
    let ok = if let Some(token) = value.strip_prefix("Bearer ") {
        config.api_keys.iter().any(|k| k == token.trim())
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(u, p)| (u.to_owned(), p.to_owned()))
            })
            .is_some_and(|(u, p)| {
                u.eq_ignore_ascii_case(&config.admin_user) && p == config.admin_password
            })
    } else {
        false
    };
    if ok { Auth::Admin } else { Auth::Refused }
}

/// 401 with both challenges and the problem body (http/src/api/mod.rs:311-341).
fn unauthorized(shared: &Shared) -> Response {
    shared.count("unauthorized");
    let mut response = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"type": "about:blank", "status": 401, "title": "Unauthorized",
               "detail": "You have to authenticate first."})
        .to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"Stalwart Server\", resource_metadata=\"/.well-known/oauth-protected-resource\"",
        ),
    );
    headers.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Stalwart Server\""),
    );
    response
}

fn problem(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// The injected fault for this request, if any.
fn take_fault(shared: &Shared) -> Option<Response> {
    let fault = lock(&shared.faults).pop_front()?;
    shared.count("fault");
    Some(match fault {
        Fault::Down => (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response(),
        Fault::Http500 => problem(
            500,
            json!({"type": "about:blank", "status": 500, "title": "Internal Server Error",
                   "detail": "simulated failure"}),
        ),
        Fault::Unauthorized => unauthorized(shared),
    })
}

fn session_document(shared: &Shared, auth: &Auth) -> Value {
    let base = &shared.base_url;
    let capabilities = json!({
        CORE: {
            "maxSizeUpload": 50_000_000, "maxConcurrentUpload": 4,
            "maxSizeRequest": jmap::MAX_SIZE_REQUEST, "maxConcurrentRequests": 4,
            "maxCallsInRequest": jmap::MAX_CALLS_IN_REQUEST,
            "maxObjectsInGet": jmap::MAX_OBJECTS_IN_GET,
            "maxObjectsInSet": jmap::MAX_OBJECTS_IN_SET,
            "collationAlgorithms": ["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"]
        },
        "urn:ietf:params:jmap:mail": {},
        "urn:ietf:params:jmap:submission": {}
    });
    // The management capability is never listed at top level
    // (common/src/config/mailstore/capabilities.rs:29-330), only per account.
    let (accounts, primary, username) = match auth {
        Auth::Admin => {
            let id = shared.admin_account_id();
            let mut account_caps = json!({CORE: {}, "urn:ietf:params:jmap:mail": {}});
            let mut primary = json!({"urn:ietf:params:jmap:mail": id});
            // jmap/src/api/session.rs:48-57,122-125
            if shared.config.management {
                account_caps[MANAGEMENT] = json!({});
                primary[MANAGEMENT] = json!(id);
            }
            let accounts = json!({ id.clone(): {
                "name": shared.config.admin_user, "isPersonal": true, "isReadOnly": false,
                "accountCapabilities": account_caps
            }});
            (accounts, primary, shared.config.admin_user.clone())
        }
        // A GET without credentials is an anonymous session.
        _ => (json!({}), json!({}), String::new()),
    };
    json!({
        "capabilities": capabilities,
        "accounts": accounts,
        "primaryAccounts": primary,
        "username": username,
        "apiUrl": format!("{base}/jmap/"),
        "downloadUrl": format!("{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}"),
        "uploadUrl": format!("{base}/jmap/upload/{{accountId}}/"),
        "eventSourceUrl": format!("{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
        "state": "0"
    })
}

async fn session(State(shared): S, headers: HeaderMap) -> Response {
    if let Some(fault) = take_fault(&shared) {
        return fault;
    }
    shared.count("GET /jmap/session");
    let auth = authenticate(&shared, &headers);
    if matches!(auth, Auth::Refused) {
        return unauthorized(&shared);
    }
    axum::Json(session_document(&shared, &auth)).into_response()
}

async fn api(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(fault) = take_fault(&shared) {
        return fault;
    }
    shared.count("POST /jmap");
    if !matches!(authenticate(&shared, &headers), Auth::Admin) {
        return unauthorized(&shared);
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return problem(
            400,
            json!({"type": "urn:ietf:params:jmap:error:notJSON", "status": 400,
                   "detail": "Content-Type must be application/json"}),
        );
    }
    let caller = Caller {
        account_id: shared.admin_account_id(),
    };
    let mut methods = Vec::new();
    let result = {
        let mut store = lock(&shared.store);
        jmap::process(
            &mut store,
            &caller,
            shared.config.management,
            &body,
            |name| methods.push(name.to_owned()),
        )
    };
    for m in methods {
        shared.count(&m);
    }
    match result {
        Ok(response) => axum::Json(response).into_response(),
        Err(e) => problem(e.status, e.body),
    }
}

async fn state(State(shared): S) -> axum::Json<Value> {
    axum::Json(dump(&lock(&shared.store)))
}

async fn counts(State(shared): S) -> axum::Json<Value> {
    axum::Json(json!(lock(&shared.counts).clone()))
}

async fn reset_counts(State(shared): S) -> StatusCode {
    lock(&shared.counts).clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// `Domain`, `Account` or `MailingList`.
    object: String,
    /// The create map, as `/set` takes it; `"domain": "example.com"` may
    /// stand for `domainId`.
    properties: serde_json::Map<String, Value>,
}

/// `POST /__sim/create`: an object made by a person. 200 `{"id"}`, or 422
/// with the SetError.
async fn create(State(shared): S, axum::Json(body): axum::Json<CreateBody>) -> Response {
    let Some(object) = ObjectType::parse(&body.object) else {
        return (
            StatusCode::BAD_REQUEST,
            "object: Domain, Account or MailingList",
        )
            .into_response();
    };
    let mut props = body.properties;
    let mut store = lock(&shared.store);
    if let Some(Value::String(domain)) = props.remove("domain") {
        match store.domain_by_name(&domain) {
            Some(id) => {
                props.insert("domainId".into(), json!(super::store::encode_id(id)));
            }
            None => return (StatusCode::BAD_REQUEST, "unknown domain").into_response(),
        }
    }
    match store.create(object, &props) {
        Ok(id) => axum::Json(json!({"id": super::store::encode_id(id)})).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(e.to_json())).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignInBody {
    login: String,
    /// A password; absent for a sign-in an external directory vouched for.
    #[serde(default)]
    secret: Option<String>,
}

/// `POST /__sim/sign-in` → `{"result": "allowed"|"badCredentials"|"forbidden"}`.
async fn sign_in(State(shared): S, axum::Json(body): axum::Json<SignInBody>) -> axum::Json<Value> {
    let result = lock(&shared.store).sign_in(&body.login, body.secret.as_deref());
    axum::Json(json!({ "result": result }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    /// `down` (502 from a proxy), `500` or `401`.
    mode: String,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

async fn fault(State(shared): S, axum::Json(body): axum::Json<FaultBody>) -> Response {
    let Some(fault) = Fault::parse(&body.mode) else {
        return (StatusCode::BAD_REQUEST, "mode: down, 500 or 401").into_response();
    };
    lock(&shared.faults).extend(std::iter::repeat_n(fault, body.count));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WebhookBody {
    url: String,
    #[serde(default)]
    key: Option<String>,
    /// `[{"type", "data"}]`; ids and timestamps are added.
    events: Vec<WebhookEvent>,
    #[serde(default)]
    max_attempts: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

/// `POST /__sim/webhook`: sends one batch as Stalwart would; answers what
/// happened (`{"attempts", "statuses", "delivered"}`).
async fn send_webhook(axum::Json(body): axum::Json<WebhookBody>) -> axum::Json<Value> {
    let events: Vec<Value> = body
        .events
        .into_iter()
        .map(|e| webhook::event(&e.kind, e.data))
        .collect();
    let mut sender = WebhookSender::new(body.url, body.key.as_deref());
    if let Some(n) = body.max_attempts {
        sender.max_attempts = n;
    }
    let delivery = sender.send(&events).await;
    axum::Json(json!({
        "attempts": delivery.attempts,
        "statuses": delivery.statuses,
        "delivered": delivery.delivered,
    }))
}
