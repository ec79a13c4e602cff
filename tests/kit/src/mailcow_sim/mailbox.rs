//! Mailboxes: `mailbox_details`, the `get/mailbox` listings and
//! `edit/mailbox` with its sender_acl and extended_sender_acl handling
//! (§2, `functions.mailbox.inc.php`).

use super::app_passwd::{is_email, password_check};
use super::domain;
use super::envelope::{Ctx, mailbox_log};
use super::php::{Arr, Key, Php, Val, htmlspecialchars, split_list, str_empty};
use super::sql::{sql_eq, sql_str_matches, sql_text, tinyint};
use super::state::{Alias, MIB, Mailbox, now};
use super::validate::{filter_email, idn_to_ascii, is_valid_domain_name};

/// `mailbox('get', 'mailbox_details', $x, $extra)`. `"API"` passes the
/// access check without being a mailbox and yields an object of nulls, as
/// in PHP.
pub(crate) fn details_arr(ctx: &Ctx, key: &Val, extra: Option<&str>) -> Option<Arr> {
    if !ctx.has_mailbox_object_access(key) {
        return None;
    }
    let row: Option<&Mailbox> = ctx
        .db
        .mailboxes
        .iter()
        .find(|m| sql_str_matches(&m.username, key));
    let opt_str = |f: fn(&Mailbox) -> &str| row.map_or(Val::Null, |m| Val::str(f(m)));
    let opt_int = |f: fn(&Mailbox) -> i64| row.map_or(Val::Null, |m| Val::Int(f(m)));
    let quota = row.map_or(0, |m| m.quota);
    let (percent, class) = if quota == 0 {
        (Val::str("- "), "info")
    } else {
        // round() returns a float; nothing is ever stored, so it is 0.
        (Val::Float(0.0), "success")
    };
    let mut out = Arr::assoc([
        ("username", opt_str(|m| &m.username)),
        ("active", opt_int(|m| m.active)),
        ("active_int", opt_int(|m| m.active)),
        ("domain", opt_str(|m| &m.domain)),
        ("name", opt_str(|m| &m.name)),
        ("local_part", opt_str(|m| &m.local_part)),
        ("quota", opt_int(|m| m.quota)),
        ("messages", row.map_or(Val::Null, |_| Val::Int(0))),
        (
            "attributes",
            row.map_or(Val::Null, |m| Val::Arr(m.attributes.clone())),
        ),
        // json_decode('{}', true) is an empty array, printed as [].
        (
            "custom_attributes",
            row.map_or(Val::Null, |_| Val::Arr(Arr::new())),
        ),
        ("quota_used", Val::Int(0)),
        ("percent_in_use", percent),
        ("created", opt_str(|m| &m.created)),
        (
            "modified",
            row.map_or(Val::Null, |m| m.modified.clone().into()),
        ),
        ("authsource", Val::str("mailcow")),
        ("percent_class", Val::str(class)),
        ("last_imap_login", Val::Int(0)),
        ("last_smtp_login", Val::Int(0)),
        ("last_pop3_login", Val::Int(0)),
        ("last_sso_login", Val::Int(0)),
    ]);
    if extra != Some("reduced") {
        let domain = row.and_then(|m| ctx.db.domain(&m.domain));
        let in_use: i64 = row.map_or(0, |m| {
            ctx.db
                .mailboxes
                .iter()
                .filter(|o| sql_eq(&o.domain, &m.domain) && !sql_str_matches(&o.username, key))
                .map(|o| o.quota)
                .sum()
        });
        let mut max_new = domain.map_or(0, |d| d.quota * MIB) - in_use;
        let cap = domain.map_or(0, |d| d.maxquota * MIB);
        if max_new > cap {
            max_new = cap;
        }
        out.set(Key::Str("max_new_quota".into()), Val::Int(max_new));
        out.set(Key::Str("spam_aliases".into()), Val::Int(0));
        out.set(Key::Str("pushover_active".into()), Val::Int(0));
        out.set(Key::Str("rl".into()), Val::Bool(false));
        out.set(Key::Str("rl_scope".into()), Val::str("domain"));
        out.set(
            Key::Str("is_relayed".into()),
            domain.map_or(Val::Null, |_| Val::Int(0)),
        );
        // Since 2026-07a (PR #7348); older servers have no such key.
        if !ctx.omit_sender_acl {
            let grants = internal_sender_acl(ctx, key);
            out.set(Key::Str("sender_acl".into()), Val::list(grants));
        }
    }
    Some(out)
}

/// `SELECT send_as FROM sender_acl WHERE logged_in_as = :u AND external = 0`.
fn internal_sender_acl(ctx: &Ctx, login: &Val) -> Vec<Val> {
    ctx.db
        .sender_acl
        .iter()
        .filter(|r| r.external == 0 && sql_str_matches(&r.logged_in_as, login))
        .map(|r| Val::str(&r.send_as))
        .collect()
}

pub(crate) fn details(ctx: &Ctx, key: &Val, extra: Option<&str>) -> Option<Val> {
    details_arr(ctx, key, extra).map(Val::Arr)
}

/// `GET /api/v1/get/mailbox/{all|reduced}[/dom1,dom2]`. A listed domain the
/// caller has no access to (say, a typo) falls through to "every mailbox".
pub(crate) fn list(ctx: &Ctx, object: &str, extra: Option<&str>, tags: bool) -> Option<Val> {
    let domains: Vec<String> = match extra.filter(|e| !str_empty(e)) {
        None if ctx.session.is_some() => ctx.db.domain_names(),
        None => Vec::new(),
        Some(e) => e.split(',').map(str::to_owned).collect(),
    };
    let mut data = Vec::new();
    for domain in domains {
        let usernames = if tags {
            // No mailbox carries tags in the simulator.
            Vec::new()
        } else if ctx.has_domain_access(&domain) {
            ctx.db.mailbox_names(Some(&domain))
        } else {
            ctx.db.mailbox_names(None)
        };
        data.extend(
            usernames
                .into_iter()
                .filter_map(|u| details(ctx, &Val::str(u), Some(object))),
        );
    }
    (!data.is_empty()).then(|| Val::list(data))
}

/// `POST /api/v1/edit/mailbox` (§2.3).
pub(crate) fn edit(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let log = mailbox_log("edit", "mailbox", data);
    let usernames: Vec<Val> = match data.get("username") {
        Val::Arr(a) => a.values().cloned().collect(),
        other => vec![other.clone()],
    };
    // A variable of the whole call that one message reads before it is set.
    let mut extra_acl_domain = Val::Null;
    for username_val in usernames {
        if !is_email(&username_val) {
            ctx.danger(
                &log,
                Val::list([Val::str("username_invalid"), username_val]),
            );
            continue;
        }
        let username = username_val.to_php_string().unwrap_or_default();
        let Some(is_now) = details_arr(ctx, &username_val, None) else {
            ctx.danger(&log, "access_denied");
            continue;
        };
        let changes = Changes::read(data, &is_now)?;
        let domain = is_now.get("domain").to_php_string().unwrap_or_default();
        if !ctx.has_domain_access(&domain) {
            ctx.danger(&log, "access_denied");
            continue;
        }
        let domain_data = domain::details_arr(ctx, &Val::str(&domain))?.unwrap_or_default();
        let max_new_quota = is_now.get("max_new_quota").intval();
        if changes.quota_mib as f64 > max_new_quota as f64 / MIB as f64 {
            let left = if max_new_quota % MIB == 0 {
                Val::Int(max_new_quota / MIB)
            } else {
                Val::Float(max_new_quota as f64 / MIB as f64)
            };
            ctx.danger(
                &log,
                Val::list([Val::str("mailbox_quota_left_exceeded"), left]),
            );
            continue;
        }
        // Mailcow compares MiB with bytes here, so this practically never fires.
        let max_for_mbox = domain_data.get("max_quota_for_mbox").intval();
        if changes.quota_mib > max_for_mbox {
            ctx.danger(
                &log,
                Val::list([Val::str("mailbox_quota_exceeded"), Val::Int(max_for_mbox)]),
            );
            continue;
        }
        if data.isset("extended_sender_acl") {
            extended_sender_acl(
                ctx,
                &log,
                &username,
                data.get("extended_sender_acl"),
                &mut extra_acl_domain,
            )?;
        }
        if data.isset("sender_acl") {
            sender_acl(ctx, &log, &username, data.get("sender_acl"))?;
        }
        let password = data.get("password");
        if !password.is_empty() {
            let password2 = if data.get("password2").is_empty() {
                Val::Null
            } else {
                data.get("password2").clone()
            };
            if !password_check(ctx, password, &password2)? {
                continue;
            }
            if let Some(m) = ctx.db.mailbox_mut(&username) {
                m.attributes
                    .set(Key::Str("passwd_update".into()), Val::str(now()));
            }
        }
        // The self-alias follows the mailbox's active flag on every edit;
        // this UPDATE is outside the try block below.
        let active = tinyint(changes.active)?;
        if let Some(alias) = ctx.db.alias_by_address(&username) {
            let alias = Alias {
                active,
                ..alias.clone()
            };
            ctx.db.replace_alias(alias);
        }
        if changes.name.chars().count() > 255 {
            ctx.danger(&log, NAME_TOO_LONG);
            return Ok(false);
        }
        if let Some(m) = ctx.db.mailbox_mut(&username) {
            changes.apply(m);
        }
        ctx.success(
            &log,
            Val::list([Val::str("mailbox_modified"), username_val]),
        );
    }
    Ok(true)
}

/// The mailbox UPDATE sits in a try block that reports the PDOException.
const NAME_TOO_LONG: &str =
    "SQLSTATE[22001]: String data, right truncated: 1406 Data too long for column 'name' at row 1";

/// The values `edit/mailbox` writes back, each from the request or else
/// from the current row.
struct Changes {
    active: i64,
    name: String,
    quota_mib: i64,
    /// Attribute updates (`JSON_SET`), in the order the UPDATE sets them.
    attributes: Vec<(&'static str, Val)>,
}

const FLAG_ATTRIBUTES: [&str; 10] = [
    "force_pw_update",
    "force_tfa",
    "sogo_access",
    "imap_access",
    "sieve_access",
    "pop3_access",
    "relayhost",
    "smtp_access",
    "eas_access",
    "dav_access",
];

impl Changes {
    fn read(data: &Arr, is_now: &Arr) -> Php<Changes> {
        let mut data = data.clone();
        if data.isset("protocol_access") {
            let given = data.get("protocol_access").to_array();
            for protocol in ["imap", "pop3", "smtp", "sieve", "eas", "dav"] {
                let on = Val::str(protocol).in_array(given.values());
                data.set(
                    Key::Str(format!("{protocol}_access")),
                    Val::Int(i64::from(on)),
                );
            }
        }
        let current = is_now
            .get("attributes")
            .as_arr()
            .cloned()
            .unwrap_or_default();
        let active = if data.isset("active") {
            data.get("active").intval()
        } else {
            is_now.get("active").intval()
        };
        let quota = data.get("quota");
        let quota_mib = if !matches!(quota, Val::Null) && !quota.loose_eq(&Val::str("")) {
            quota.intval()
        } else {
            is_now.get("quota").intval() / MIB
        };
        let name = if data.get("name").is_empty() {
            is_now.get("name").to_php_string().unwrap_or_default()
        } else {
            data.get("name")
                .string_arg("rtrim")?
                .trim_end_matches('>')
                .trim_start_matches('<')
                .to_owned()
        };
        let mut attributes = Vec::new();
        for key in FLAG_ATTRIBUTES {
            let value = if data.isset(key) {
                data.get(key).intval()
            } else {
                current.get(key).intval()
            };
            attributes.push((key, Val::str(value.to_string())));
        }
        let recovery = if data.isset("pw_recovery_email") {
            data.get("pw_recovery_email").clone()
        } else {
            current.get("recovery_email").clone()
        };
        attributes.push(("recovery_email", sql_text(&recovery).into()));
        let hash = if data.get("attribute_hash").is_empty() {
            Val::str("")
        } else {
            sql_text(data.get("attribute_hash")).into()
        };
        attributes.push(("attribute_hash", hash));
        Ok(Changes {
            active,
            name,
            quota_mib,
            attributes,
        })
    }

    fn apply(self, m: &mut Mailbox) {
        let before = (m.active, m.name.clone(), m.quota, m.attributes.clone());
        m.active = self.active;
        m.name = self.name;
        m.quota = self.quota_mib.saturating_mul(MIB);
        for (key, value) in self.attributes {
            m.attributes.set(Key::Str(key.into()), value);
        }
        if before != (m.active, m.name.clone(), m.quota, m.attributes.clone()) {
            m.modified = Some(now());
        }
    }
}

/// `ltrim($v, '@')`, a string parameter.
fn ltrim_at(v: &Val) -> Php<String> {
    Ok(v.string_arg("ltrim")?.trim_start_matches('@').to_owned())
}

/// Domain names then alias domain names, as `sender_acl` checks them.
fn all_domains(ctx: &Ctx) -> Vec<Val> {
    let mut domains = ctx.db.domain_names();
    domains.extend(ctx.db.alias_domain_names());
    domains.into_iter().map(Val::Str).collect()
}

/// Grants the caller cannot manage (`sender_acl_handles` "ro"): domains no
/// longer hosted and addresses that are no longer aliases. They survive a
/// replacement.
fn read_only_grants(ctx: &Ctx, login: &str) -> Vec<Val> {
    let rows: Vec<String> = ctx
        .db
        .sender_acl
        .iter()
        .filter(|r| r.external == 0 && sql_eq(&r.logged_in_as, login))
        .map(|r| r.send_as.clone())
        .collect();
    let mut domains = Vec::new();
    let mut addresses = Vec::new();
    for send_as in rows {
        if send_as.starts_with('@') || sql_eq(&send_as, "*") {
            let domain = send_as.replace('@', "");
            if is_valid_domain_name(&domain) && !ctx.has_domain_access(&domain) {
                domains.push(Val::str(domain));
            }
        } else if filter_email(&send_as) && !ctx.has_alias_object_access(&Val::str(&send_as)) {
            addresses.push(Val::str(send_as));
        }
    }
    domains.extend(addresses);
    domains
}

/// The `sender_acl` block: validate, replace every internal row, and skip
/// addresses the mailbox may already send as through `sender_allowed`.
fn sender_acl(ctx: &mut Ctx, log: &Val, username: &str, given: &Val) -> Php<()> {
    let read_only = read_only_grants(ctx, username);
    let given = given.to_array();
    let star = Val::str("*");
    let default = Val::str("default");
    let requested: Vec<Val> = if star.in_array(given.values()) {
        vec![star.clone()]
    } else if given == Arr::list([default.clone()]) {
        Vec::new()
    } else {
        let mut values: Vec<Val> = given.values().cloned().collect();
        if let Some(i) = values.iter().position(|v| default.loose_eq(v)) {
            values.remove(i);
        }
        values
    };
    if requested.is_empty() && read_only.is_empty() {
        delete_internal(ctx, username);
        return Ok(());
    }
    let mut kept = Vec::new();
    for value in requested {
        let invalid = Val::list([Val::str("sender_acl_invalid"), value.clone()]);
        let email = is_email(&value);
        let stripped = ltrim_at(&value)?;
        if !email && !is_valid_domain_name(&stripped) && !value.loose_eq(&star) {
            ctx.danger(log, invalid);
            continue;
        }
        if is_valid_domain_name(&stripped) {
            let domains = all_domains(ctx);
            if !domains.is_empty() && !Val::str(&stripped).in_array(domains.iter()) {
                ctx.danger(log, invalid);
                continue;
            }
            if !ctx.has_domain_access(&stripped) {
                ctx.danger(log, invalid);
                continue;
            }
        }
        if email && !ctx.has_alias_object_access(&value) {
            ctx.danger(log, invalid);
            continue;
        }
        kept.push(value);
    }
    kept.extend(read_only);
    if star.in_array(kept.iter()) {
        kept = vec![star];
    }
    delete_internal(ctx, username);
    let fixed_allowed = ctx.db.fixed_sender_aliases_allowed(username);
    for value in kept {
        let mut send_as = value.to_php_string().unwrap_or_default();
        let domain = send_as.trim_start_matches('@').to_owned();
        if is_valid_domain_name(&domain) {
            send_as = format!("@{domain}");
        }
        // Already allowed through the alias table: silently not stored.
        if Val::str(&send_as).in_array(fixed_allowed.iter()) {
            continue;
        }
        ctx.db.insert_sender_acl(username, &send_as, 0);
    }
    Ok(())
}

fn delete_internal(ctx: &mut Ctx, username: &str) {
    ctx.db
        .sender_acl
        .retain(|r| !(r.external == 0 && sql_eq(&r.logged_in_as, username)));
}

/// The `extended_sender_acl` block: external senders only, full
/// replacement of the `external = 1` rows.
fn extended_sender_acl(
    ctx: &mut Ctx,
    log: &Val,
    username: &str,
    given: &Val,
    extra_acl_domain: &mut Val,
) -> Php<()> {
    let mut entries: Vec<Option<String>> = split_list(&given.string_arg("preg_split")?)
        .into_iter()
        .map(Some)
        .collect();
    for slot in entries.iter_mut() {
        let Some(mut entry) = slot.clone() else {
            continue;
        };
        if str_empty(&entry) {
            continue;
        }
        if entry.starts_with('@') {
            entry = entry.trim_start_matches('@').to_owned();
            *slot = Some(entry.clone());
        }
        if !filter_email(&entry) && !is_valid_domain_name(&entry) {
            ctx.danger(
                log,
                Val::list([
                    Val::str("extra_acl_invalid"),
                    htmlspecialchars(&entry).into(),
                ]),
            );
            *slot = None;
            continue;
        }
        let domains = all_domains(ctx);
        if filter_email(&entry) {
            let domain_part = entry.split_once('@').map_or("", |(_, d)| d);
            *extra_acl_domain = idn_to_ascii(domain_part).map_or(Val::Bool(false), Val::Str);
            if extra_acl_domain.in_array(domains.iter()) {
                ctx.danger(
                    log,
                    Val::list([
                        Val::str("extra_acl_invalid_domain"),
                        extra_acl_domain.clone(),
                    ]),
                );
                *slot = None;
            }
        } else if Val::str(&entry).in_array(domains.iter()) {
            // PHP reports `$extra_acl_domain` here, which this branch never
            // sets: null, or whatever an earlier entry left in it.
            ctx.danger(
                log,
                Val::list([
                    Val::str("extra_acl_invalid_domain"),
                    extra_acl_domain.clone(),
                ]),
            );
            *slot = None;
        } else {
            *slot = Some(format!("@{entry}"));
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for entry in entries.into_iter().flatten() {
        if !str_empty(&entry) && !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    ctx.db
        .sender_acl
        .retain(|r| !(r.external == 1 && sql_eq(&r.logged_in_as, username)));
    for entry in unique {
        ctx.db.insert_sender_acl(username, &entry, 1);
    }
    Ok(())
}
