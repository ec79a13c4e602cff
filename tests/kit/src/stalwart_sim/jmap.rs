//! One JMAP request against the store: the request envelope and its limits,
//! method dispatch (`x:<Object>/get|query|set`), result references
//! (`#ids`), creation-id references (`#cid`) and method-level errors.
//! Source: stalwartlabs/stalwart v0.16.18 `crates/jmap-proto` (parser,
//! method, error) and `crates/jmap/src/registry` (get, query, set).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value, json};

use super::store::{ObjectType, Props, SetError, Store, decode_id, encode_id};

/// Session limits (common/src/config/mailstore/capabilities.rs:31-47,
/// defaults registry/src/schema/structs_impl.rs:23057-23092).
pub const MAX_CALLS_IN_REQUEST: usize = 16;
pub const MAX_OBJECTS_IN_GET: usize = 500;
pub const MAX_OBJECTS_IN_SET: usize = 500;
pub const MAX_SIZE_REQUEST: usize = 10_000_000;
/// Query results are capped at 5000 (not in the session).
pub const MAX_QUERY_RESULTS: usize = 5000;

pub const CORE: &str = "urn:ietf:params:jmap:core";
pub const MANAGEMENT: &str = "urn:stalwart:jmap";
/// The URNs `using` may name; any other fails the whole request.
const KNOWN_URNS: &[&str] = &[
    CORE,
    MANAGEMENT,
    "urn:ietf:params:jmap:mail",
    "urn:ietf:params:jmap:submission",
    "urn:ietf:params:jmap:vacationresponse",
    "urn:ietf:params:jmap:contacts",
    "urn:ietf:params:jmap:calendars",
    "urn:ietf:params:jmap:sieve",
    "urn:ietf:params:jmap:blob",
    "urn:ietf:params:jmap:quota",
    "urn:ietf:params:jmap:principals",
];

/// A request-level error, answered as problem+json (jmap-proto/src/error/request.rs).
#[derive(Debug, PartialEq)]
pub struct RequestError {
    pub status: u16,
    pub body: Value,
}

impl RequestError {
    fn new(kind: &str, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            body: json!({
                "type": format!("urn:ietf:params:jmap:error:{kind}"),
                "status": 400,
                "detail": detail.into(),
            }),
        }
    }

    fn limit(limit: &str) -> Self {
        let mut e = Self::new("limit", format!("{limit} exceeded"));
        e.body["limit"] = json!(limit);
        e
    }
}

/// A method-level error (jmap-proto/src/error/method.rs:71-181).
#[derive(Debug)]
struct MethodError {
    kind: &'static str,
    description: String,
}

fn method_error(kind: &'static str, description: impl Into<String>) -> MethodError {
    MethodError {
        kind,
        description: description.into(),
    }
}

/// The create keys of each method call in request order: `serde_json`'s map
/// is sorted, and Stalwart runs creates in the order they were sent
/// (jmap-proto/src/references/resolve.rs:139-170), which `#cid`
/// references depend on.
#[derive(Deserialize)]
struct OrderRequest {
    #[serde(rename = "methodCalls")]
    method_calls: Vec<OrderCall>,
}

#[derive(Deserialize)]
struct OrderCall(IgnoredAny, OrderArgs, IgnoredAny);

#[derive(Deserialize)]
struct OrderArgs {
    #[serde(default)]
    create: Option<KeysInOrder>,
}

struct KeysInOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeysInOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeysInOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysInOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(KeysInOrder(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Who is calling: the account id `accountId` resolves to.
pub struct Caller {
    pub account_id: String,
}

/// Runs one request body. `management` is false for a server before 0.16,
/// which has no `x:` methods. Returns the response body, or a
/// request-level error. `on_method` sees each method name as it runs.
pub fn process(
    store: &mut Store,
    caller: &Caller,
    management: bool,
    body: &[u8],
    mut on_method: impl FnMut(&str),
) -> Result<Value, RequestError> {
    if body.len() > MAX_SIZE_REQUEST {
        return Err(RequestError::limit("maxSizeRequest"));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::new("notRequest", format!("Invalid JMAP request: {e}")))?;
    let using = request
        .get("using")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError::new("notRequest", "Missing 'using'"))?;
    for urn in using {
        let known = urn.as_str().is_some_and(|u| KNOWN_URNS.contains(&u))
            && (management || urn.as_str() != Some(MANAGEMENT));
        if !known {
            // capability.rs:511; parser.rs:22-40: notRequest, not unknownCapability.
            return Err(RequestError::new(
                "notRequest",
                format!("Unknown capability {urn}"),
            ));
        }
    }
    let calls = request
        .get("methodCalls")
        .and_then(Value::as_array)
        .ok_or_else(|| RequestError::new("notRequest", "Missing 'methodCalls'"))?;
    if calls.len() > MAX_CALLS_IN_REQUEST {
        return Err(RequestError::limit("maxCallsInRequest"));
    }
    let orders: Vec<Option<Vec<String>>> = serde_json::from_slice::<OrderRequest>(body)
        .map(|r| {
            r.method_calls
                .into_iter()
                .map(|c| c.1.create.map(|k| k.0))
                .collect()
        })
        .unwrap_or_default();

    let mut responses: Vec<Value> = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        let (Some(name), Some(args), Some(call_id)) = (
            call.get(0).and_then(Value::as_str),
            call.get(1).and_then(Value::as_object),
            call.get(2).and_then(Value::as_str),
        ) else {
            return Err(RequestError::new("notRequest", "Invalid method call"));
        };
        on_method(name);
        let order = orders.get(index).cloned().flatten();
        let result = resolve_result_refs(args, &responses)
            .and_then(|args| run_method(store, caller, management, name, &args, order.as_deref()));
        responses.push(match result {
            Ok(value) => json!([name, value, call_id]),
            Err(e) => json!(["error", {"type": e.kind, "description": e.description}, call_id]),
        });
    }
    Ok(json!({
        "methodResponses": responses,
        "sessionState": format!("{:x}", store.version),
    }))
}

/// Replaces `"#name": {"resultOf", "name", "path"}` arguments with the
/// value they point at (RFC 8620 §3.7).
fn resolve_result_refs(args: &Props, responses: &[Value]) -> Result<Props, MethodError> {
    let mut out = Map::new();
    for (key, value) in args {
        let Some(plain) = key.strip_prefix('#') else {
            out.insert(key.clone(), value.clone());
            continue;
        };
        let invalid = |why: &str| method_error("invalidResultReference", why.to_owned());
        let result_of = value.get("resultOf").and_then(Value::as_str);
        let name = value.get("name").and_then(Value::as_str);
        let path = value.get("path").and_then(Value::as_str);
        let (Some(result_of), Some(name), Some(path)) = (result_of, name, path) else {
            return Err(invalid("Invalid result reference"));
        };
        let response = responses
            .iter()
            .find(|r| r.get(2).and_then(Value::as_str) == Some(result_of))
            .ok_or_else(|| invalid("Result reference not found"))?;
        if response.get(0).and_then(Value::as_str) != Some(name) {
            return Err(invalid("Result reference name does not match"));
        }
        let resolved = pointer(&response[1], path).ok_or_else(|| invalid("Invalid path"))?;
        out.insert(plain.to_owned(), resolved);
    }
    Ok(out)
}

/// A JSON pointer with RFC 8620's `*` over arrays.
fn pointer(value: &Value, path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    fn walk(value: &Value, segments: &[&str]) -> Option<Value> {
        let Some((first, rest)) = segments.split_first() else {
            return Some(value.clone());
        };
        if *first == "*" {
            let items = value.as_array()?;
            let mut out = Vec::new();
            for item in items {
                match walk(item, rest)? {
                    Value::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            return Some(Value::Array(out));
        }
        let next = match value {
            Value::Object(o) => o.get(*first)?,
            Value::Array(a) => a.get(first.parse::<usize>().ok()?)?,
            _ => return None,
        };
        walk(next, rest)
    }
    walk(value, &segments)
}

fn run_method(
    store: &mut Store,
    caller: &Caller,
    management: bool,
    name: &str,
    args: &Props,
    create_order: Option<&[String]>,
) -> Result<Value, MethodError> {
    if name == "Core/echo" {
        return Ok(Value::Object(args.clone()));
    }
    // method.rs:357-370 strips `x:`; parser.rs:83-103 refuses anything else.
    let unknown = || method_error("unknownMethod", format!("Unknown method {name}"));
    let (object, op) = name
        .strip_prefix("x:")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(unknown)?;
    let t = ObjectType::parse(object).ok_or_else(unknown)?;
    if !management {
        return Err(unknown());
    }
    check_account(caller, args)?;
    match op {
        "get" => get(store, caller, t, args),
        "query" => query(store, caller, t, args),
        "set" => set(store, caller, t, args, create_order),
        _ => Err(unknown()),
    }
}

/// `accountId` may be omitted; if given it must be the caller's own
/// (jmap/src/api/request.rs:368-379,719-738).
fn check_account(caller: &Caller, args: &Props) -> Result<(), MethodError> {
    match args.get("accountId") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(id)) if decode_id(id).is_none() || *id == caller.account_id => Ok(()),
        Some(Value::String(id)) => Err(method_error(
            "forbidden",
            format!("You are not an owner of account {id}"),
        )),
        Some(_) => Err(method_error("invalidArguments", "Invalid accountId")),
    }
}

fn check_args(args: &Props, allowed: &[&str]) -> Result<(), MethodError> {
    match args.keys().find(|k| !allowed.contains(&k.as_str())) {
        // parser.rs:701-707
        Some(k) => Err(method_error(
            "invalidArguments",
            format!("Unknown argument {k}"),
        )),
        None => Ok(()),
    }
}

fn get(store: &Store, caller: &Caller, t: ObjectType, args: &Props) -> Result<Value, MethodError> {
    check_args(args, &["accountId", "ids", "properties"])?;
    let ids: Vec<Value> = match args.get("ids") {
        None | Some(Value::Null) => {
            // ids:null is every object, silently cut at maxObjectsInGet (get.rs:198-210).
            let mut all = store.ids(t);
            all.truncate(MAX_OBJECTS_IN_GET);
            all.into_iter().map(|n| json!(encode_id(n))).collect()
        }
        Some(Value::Array(ids)) if ids.len() > MAX_OBJECTS_IN_GET => {
            return Err(method_error(
                "requestTooLarge",
                "Too many objects requested",
            ));
        }
        Some(Value::Array(ids)) => ids.clone(),
        Some(_) => return Err(method_error("invalidArguments", "Invalid ids")),
    };
    let properties: Option<Vec<String>> = match args.get("properties") {
        None | Some(Value::Null) => None,
        Some(Value::Array(p)) => Some(
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        Some(_) => return Err(method_error("invalidArguments", "Invalid properties")),
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in ids {
        let rendered = id
            .as_str()
            .and_then(decode_id)
            .and_then(|n| store.render(t, n));
        match rendered {
            Some(Value::Object(mut obj)) => {
                if let Some(props) = &properties {
                    // `id` is always there; unknown names are ignored (get.rs:75-95).
                    obj.retain(|k, _| k == "id" || props.contains(k));
                }
                list.push(Value::Object(obj));
            }
            _ => not_found.push(id),
        }
    }
    Ok(json!({"accountId": caller.account_id, "list": list, "notFound": not_found}))
}

/// The indexed properties each type can be filtered on (registry
/// properties_impl.rs:3363+).
fn filterable(t: ObjectType) -> &'static [&'static str] {
    match t {
        ObjectType::Account => &[
            "text",
            "@type",
            "domainId",
            "memberGroupIds",
            "memberTenantId",
            "name",
        ],
        ObjectType::Domain => &["text", "name", "aliases", "memberTenantId"],
        ObjectType::MailingList => &["text", "memberTenantId"],
    }
}

fn words(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn matches(props: &Props, key: &str, want: &Value) -> bool {
    match key {
        "text" => {
            let mut hay = Vec::new();
            for field in ["name", "description"] {
                if let Some(s) = props.get(field).and_then(Value::as_str) {
                    hay.extend(words(s));
                }
            }
            if let Some(Value::Object(aliases)) = props.get("aliases") {
                for (k, v) in aliases {
                    hay.extend(words(k));
                    if let Some(n) = v.get("name").and_then(Value::as_str) {
                        hay.extend(words(n));
                    }
                }
            }
            want.as_str()
                .is_some_and(|w| words(w).iter().all(|w| hay.contains(w)))
        }
        "memberGroupIds" | "aliases" => want.as_str().is_some_and(|w| {
            props
                .get(key)
                .and_then(Value::as_object)
                .is_some_and(|m| m.contains_key(w))
        }),
        _ => props.get(key).unwrap_or(&Value::Null) == want,
    }
}

fn query(
    store: &Store,
    caller: &Caller,
    t: ObjectType,
    args: &Props,
) -> Result<Value, MethodError> {
    check_args(
        args,
        &[
            "accountId",
            "filter",
            "sort",
            "position",
            "anchor",
            "anchorOffset",
            "limit",
            "calculateTotal",
        ],
    )?;
    let filter = match args.get("filter") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(f)) => f.clone(),
        Some(_) => return Err(method_error("invalidArguments", "Invalid filter")),
    };
    if filter.contains_key("operator") {
        // query.rs:383-388
        return Err(method_error("unsupportedFilter", "Only AND is supported"));
    }
    for key in filter.keys() {
        if !filterable(t).contains(&key.as_str()) {
            return Err(method_error(
                "unsupportedFilter",
                format!("Unsupported filter property {key}"),
            ));
        }
    }
    let mut ids: Vec<(u64, Value)> = store
        .iter(t)
        .filter(|(_, p)| filter.iter().all(|(k, v)| matches(p, k, v)))
        .map(|(id, p)| (id, Value::Object(p.clone())))
        .collect();
    // The default order is id descending (query.rs:409-415).
    let (sort_by, ascending) = match args.get("sort") {
        None | Some(Value::Null) => ("id".to_owned(), false),
        Some(Value::Array(s)) if s.len() == 1 => {
            let property = s[0].get("property").and_then(Value::as_str).unwrap_or("");
            let ascending = s[0]
                .get("isAscending")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let sortable =
                property == "id" || (property != "text" && filterable(t).contains(&property));
            if !sortable {
                return Err(method_error(
                    "unsupportedSort",
                    format!("Unsupported sort property {property}"),
                ));
            }
            (property.to_owned(), ascending)
        }
        Some(_) => return Err(method_error("unsupportedSort", "One comparator only")),
    };
    ids.sort_by(|(a, pa), (b, pb)| {
        let ord = if sort_by == "id" {
            a.cmp(b)
        } else {
            let key = |p: &Value| p.get(&sort_by).map(Value::to_string).unwrap_or_default();
            key(pa).cmp(&key(pb)).then(a.cmp(b))
        };
        if ascending { ord } else { ord.reverse() }
    });
    let all: Vec<String> = ids.into_iter().map(|(id, _)| encode_id(id)).collect();
    let total = all.len();
    let mut start = match args.get("anchor").and_then(Value::as_str) {
        Some(anchor) => {
            let at = all
                .iter()
                .position(|id| id == anchor)
                .ok_or_else(|| method_error("anchorNotFound", "Anchor not found"))?;
            let offset = args
                .get("anchorOffset")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            (at as i64 + offset).max(0) as usize
        }
        None => {
            let position = args.get("position").and_then(Value::as_i64).unwrap_or(0);
            if position < 0 {
                total.saturating_sub(position.unsigned_abs() as usize)
            } else {
                position as usize
            }
        }
    };
    start = start.min(total);
    let requested = args
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(MAX_QUERY_RESULTS, |l| l as usize);
    let limit = requested.min(MAX_QUERY_RESULTS);
    let page: Vec<&String> = all.iter().skip(start).take(limit).collect();
    let mut out = json!({
        "accountId": caller.account_id,
        "queryState": format!("{:x}", store.version),
        "canCalculateChanges": true,
        "position": start,
        "ids": page,
    });
    if args.get("calculateTotal") == Some(&Value::Bool(true)) {
        out["total"] = json!(total);
    }
    // `limit` appears only when the results were cut (api/query.rs:130-175).
    if start + limit < total {
        out["limit"] = json!(limit);
    }
    Ok(out)
}

/// Replaces `#cid` references to creates made earlier in this call, as
/// values and as object keys (set.rs:343; references/resolve.rs:139-170).
fn resolve_cids(value: &Value, created: &BTreeMap<String, String>) -> Value {
    let swap = |s: &str| {
        s.strip_prefix('#')
            .and_then(|cid| created.get(cid))
            .cloned()
            .unwrap_or_else(|| s.to_owned())
    };
    match value {
        Value::String(s) => Value::String(swap(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve_cids(v, created)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (swap(k), resolve_cids(v, created)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn set(
    store: &mut Store,
    caller: &Caller,
    t: ObjectType,
    args: &Props,
    create_order: Option<&[String]>,
) -> Result<Value, MethodError> {
    check_args(
        args,
        &["accountId", "ifInState", "create", "update", "destroy"],
    )?;
    let empty = Map::new();
    let invalid = |what: &str| method_error("invalidArguments", format!("Invalid {what}"));
    let create = match args.get("create") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(c)) => c,
        Some(_) => return Err(invalid("create")),
    };
    let update = match args.get("update") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(u)) => u,
        Some(_) => return Err(invalid("update")),
    };
    let destroy: Vec<String> = match args.get("destroy") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(d)) => d
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("destroy"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("destroy")),
    };
    // method/set.rs:177-206
    if create.len() + update.len() + destroy.len() > MAX_OBJECTS_IN_SET {
        return Err(method_error("requestTooLarge", "Too many objects"));
    }
    let mut created = Map::new();
    let mut not_created = Map::new();
    let mut cids: BTreeMap<String, String> = BTreeMap::new();
    let order: Vec<String> = match create_order {
        Some(order) if order.len() == create.len() => order.to_vec(),
        _ => create.keys().cloned().collect(),
    };
    for cid in order {
        let Some(input) = create.get(&cid) else {
            continue;
        };
        let result = match resolve_cids(input, &cids) {
            Value::Object(input) => store.create(t, &input),
            _ => Err(SetError::new("invalidProperties", "Not an object")),
        };
        match result {
            Ok(id) => {
                cids.insert(cid.clone(), encode_id(id));
                created.insert(cid, json!({"id": encode_id(id)}));
            }
            Err(e) => {
                not_created.insert(cid, e.to_json());
            }
        }
    }
    let resolve_id = |id: &str| {
        id.strip_prefix('#')
            .and_then(|c| cids.get(c).cloned())
            .unwrap_or_else(|| id.to_owned())
    };
    let destroy: Vec<String> = destroy.iter().map(|d| resolve_id(d)).collect();
    let mut updated = Map::new();
    let mut not_updated = Map::new();
    for (id, patch) in update {
        let id = resolve_id(id);
        let result = if destroy.contains(&id) {
            // set.rs:147-151
            Err(SetError::new("willDestroy", "Object will be destroyed"))
        } else {
            match (decode_id(&id), resolve_cids(patch, &cids)) {
                (Some(n), Value::Object(patch)) => store.update(t, n, &patch),
                (None, _) => Err(SetError::new("notFound", "Object not found")),
                (_, _) => Err(SetError::new("invalidPatch", "Not an object")),
            }
        };
        match result {
            Ok(()) => {
                updated.insert(id, Value::Null);
            }
            Err(e) => {
                not_updated.insert(id, e.to_json());
            }
        }
    }
    let mut destroyed = Vec::new();
    let mut not_destroyed = Map::new();
    for id in destroy {
        let result = match decode_id(&id) {
            Some(n) => store.destroy(t, n),
            None => Err(SetError::new("notFound", "Object not found")),
        };
        match result {
            Ok(()) => destroyed.push(json!(id)),
            Err(e) => {
                not_destroyed.insert(id, e.to_json());
            }
        }
    }
    // Empty maps are omitted; no oldState/newState (method/set.rs:38-74).
    let mut out = Map::new();
    out.insert("accountId".into(), json!(caller.account_id));
    for (key, value) in [
        ("created", Value::Object(created)),
        ("notCreated", Value::Object(not_created)),
        ("updated", Value::Object(updated)),
        ("notUpdated", Value::Object(not_updated)),
        ("destroyed", Value::Array(destroyed)),
        ("notDestroyed", Value::Object(not_destroyed)),
    ] {
        let empty = match &value {
            Value::Object(o) => o.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => true,
        };
        if !empty {
            out.insert(key.into(), value);
        }
    }
    Ok(Value::Object(out))
}
