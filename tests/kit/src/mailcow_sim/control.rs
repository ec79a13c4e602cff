//! `/__sim/*`: unauthenticated, uncounted control endpoints for shell demos
//! (seed, inspect, inject faults, read counters). They change state the
//! way the in-process mutators do.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::php::{htmlspecialchars, trim};
use super::sql::sql_eq;
use super::state::Db;
use super::{FailMode, Shared, lock};

/// `{"domains": [..], "alias_domains": [{"alias_domain", "target_domain"}],
/// "mailboxes": [..], "aliases": [{"address", "goto": [..],
/// "sender_allowed"?, "private_comment"?}], "sender_acl": [{"logged_in_as",
/// "send_as", "external"?}], "app_passwords": [{"mailbox", "name",
/// "password"}]}`, every key optional. Re-seeding skips what exists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Seed {
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    alias_domains: Vec<SeedAliasDomain>,
    #[serde(default)]
    mailboxes: Vec<String>,
    #[serde(default)]
    aliases: Vec<SeedAlias>,
    #[serde(default)]
    sender_acl: Vec<SeedSenderAcl>,
    #[serde(default)]
    app_passwords: Vec<SeedAppPassword>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedAliasDomain {
    alias_domain: String,
    target_domain: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedAlias {
    address: String,
    goto: Vec<String>,
    /// Seeded aliases stand for ones made by hand, usually to send from.
    #[serde(default = "yes")]
    sender_allowed: bool,
    #[serde(default)]
    private_comment: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedSenderAcl {
    logged_in_as: String,
    send_as: String,
    #[serde(default)]
    external: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedAppPassword {
    mailbox: String,
    name: String,
    password: String,
}

pub(crate) fn apply_seed(db: &mut Db, seed: &Seed) -> Result<Value, String> {
    for domain in &seed.domains {
        db.create_domain(domain)?;
    }
    for ad in &seed.alias_domains {
        db.create_alias_domain(&ad.alias_domain, &ad.target_domain)?;
    }
    for mailbox in &seed.mailboxes {
        db.create_mailbox(mailbox)?;
    }
    for alias in &seed.aliases {
        if db.alias_by_address(&alias.address).is_some() {
            continue;
        }
        let goto: Vec<&str> = alias.goto.iter().map(String::as_str).collect();
        db.create_alias(
            &alias.address,
            &goto,
            alias.sender_allowed,
            &alias.private_comment,
        )?;
    }
    for row in &seed.sender_acl {
        let external = i64::from(row.external);
        let exists = db.sender_acl.iter().any(|r| {
            r.logged_in_as == row.logged_in_as && r.send_as == row.send_as && r.external == external
        });
        if !exists {
            db.insert_sender_acl(&row.logged_in_as, &row.send_as, external);
        }
    }
    for p in &seed.app_passwords {
        let name = htmlspecialchars(trim(&p.name));
        let exists = db
            .app_passwd
            .iter()
            .any(|r| sql_eq(&r.mailbox, &p.mailbox) && r.name == name);
        if !exists {
            db.create_app_password(&p.mailbox, &p.name, &p.password)?;
        }
    }
    Ok(json!({
        "domains": db.domains.len(),
        "alias_domains": db.alias_domains.len(),
        "mailboxes": db.mailboxes.len(),
        "aliases": db.aliases().iter().filter(|a| !a.is_self_alias()).count(),
        "sender_acl": db.sender_acl.len(),
        "app_passwords": db.app_passwd.len(),
    }))
}

/// The tables as they are, self-alias rows included; app password hashes
/// are left out.
pub(crate) fn dump(db: &Db) -> Value {
    json!({
        "domains": db.domain_names(),
        "alias_domains": db.alias_domains.iter().map(|ad| json!({
            "alias_domain": ad.alias_domain,
            "target_domain": ad.target_domain,
        })).collect::<Vec<_>>(),
        "mailboxes": db.mailboxes.iter().map(|m| json!({
            "username": m.username,
            "name": m.name,
            "active": m.active,
            "quota": m.quota,
        })).collect::<Vec<_>>(),
        "aliases": db.aliases().iter().map(|a| json!({
            "id": a.id,
            "address": a.address,
            "goto": a.goto,
            "domain": a.domain,
            "active": a.active,
            "sogo_visible": a.sogo_visible,
            "sender_allowed": a.sender_allowed,
            "internal": a.internal,
            "private_comment": a.private_comment,
            "public_comment": a.public_comment,
        })).collect::<Vec<_>>(),
        "sender_acl": db.sender_acl.iter().map(|r| json!({
            "id": r.id,
            "logged_in_as": r.logged_in_as,
            "send_as": r.send_as,
            "external": r.external,
        })).collect::<Vec<_>>(),
        "app_passwords": db.app_passwd.iter().map(|p| json!({
            "id": p.id,
            "mailbox": p.mailbox,
            "name": p.name,
            "active": p.active,
            "imap_access": p.imap_access,
            "smtp_access": p.smtp_access,
            "dav_access": p.dav_access,
            "eas_access": p.eas_access,
            "pop3_access": p.pop3_access,
            "sieve_access": p.sieve_access,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__sim/state", get(state))
        .route("/__sim/seed", post(seed))
        .route("/__sim/fail", post(fail))
        .route("/__sim/counts", get(counts).delete(reset_counts))
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(dump(&shared.db()))
}

async fn seed(
    State(shared): State<Arc<Shared>>,
    Json(seed): Json<Seed>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    apply_seed(&mut shared.db(), &seed)
        .map(Json)
        .map_err(|error| (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    n: usize,
    #[serde(default)]
    mode: FailModeName,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailModeName {
    #[default]
    Http502,
    EmptyBody,
}

async fn fail(State(shared): State<Arc<Shared>>, Json(fail): Json<Fail>) -> Json<Value> {
    let mode = match fail.mode {
        FailModeName::Http502 => FailMode::Http502,
        FailModeName::EmptyBody => FailMode::EmptyBody,
    };
    let mut faults = lock(&shared.faults);
    faults.extend(std::iter::repeat_n(mode, fail.n));
    Json(json!({ "pending_failures": faults.len() }))
}

async fn counts(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "writes": shared.writes.load(std::sync::atomic::Ordering::Relaxed),
        "counts": shared.counts(),
        "max_writes_in_flight": shared.overlap.maxima().0,
        "max_writes_in_flight_per_object": shared.overlap.maxima().1,
    }))
}

async fn reset_counts(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_counts();
    StatusCode::NO_CONTENT
}
