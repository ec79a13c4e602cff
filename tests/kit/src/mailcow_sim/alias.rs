//! Aliases: `mailbox('add'|'edit'|'delete'|'get', 'alias', ...)` from
//! `functions.mailbox.inc.php` (§4), statement by statement where the order
//! of checks shows in the answer.

use super::domain;
use super::envelope::{Ctx, mailbox_log};
use super::php::{
    Arr, Php, Uncaught, Val, html_val, htmlspecialchars, split_at_sign, split_list, str_empty,
};
use super::sql::{sql_eq, sql_id_matches, sql_str_matches, sql_text, tinyint, varchar255};
use super::state::{Alias, now};
use super::validate::{filter_email, idn_to_ascii};

/// `mailbox('get', 'alias_details', $x)`: by id or address, never a
/// mailbox's self-alias, and only in a domain the caller may see.
pub(crate) fn find(ctx: &Ctx, key: &Val) -> Option<Alias> {
    let row = ctx
        .db
        .aliases()
        .iter()
        .filter(|a| !a.is_self_alias())
        .find(|a| sql_id_matches(a.id, key) || sql_str_matches(&a.address, key))?;
    ctx.has_domain_access(&row.domain).then(|| row.clone())
}

/// The details object, fields in the order PHP assigns them.
pub(crate) fn details(ctx: &Ctx, key: &Val) -> Option<Val> {
    let alias = find(ctx, key)?;
    let in_primary_domain = ctx
        .db
        .alias_domain(&alias.domain)
        .map_or(String::new(), |ad| ad.target_domain.clone());
    Some(Val::Arr(Arr::assoc([
        ("in_primary_domain", Val::str(in_primary_domain)),
        ("id", Val::Int(alias.id)),
        ("domain", Val::str(&alias.domain)),
        ("public_comment", alias.public_comment.clone().into()),
        ("private_comment", alias.private_comment.clone().into()),
        ("goto", Val::str(&alias.goto)),
        ("address", Val::str(&alias.address)),
        (
            "is_catch_all",
            Val::Int(i64::from(!filter_email(&alias.address))),
        ),
        ("internal", Val::Int(alias.internal)),
        ("active", Val::Int(alias.active)),
        ("active_int", Val::Int(alias.active)),
        ("sogo_visible", Val::Int(alias.sogo_visible)),
        ("sogo_visible_int", Val::Int(alias.sogo_visible)),
        ("sender_allowed", Val::Int(alias.sender_allowed)),
        ("created", Val::str(&alias.created)),
        ("modified", alias.modified.clone().into()),
    ])))
}

/// `GET /api/v1/get/alias/all[/dom1,dom2]`: every domain and alias domain
/// (or the listed ones), aliases in id order, self-aliases hidden.
pub(crate) fn list(ctx: &Ctx, extra: Option<&str>) -> Option<Val> {
    let domains: Vec<String> = match extra.filter(|e| !str_empty(e)) {
        None => {
            let mut all = ctx.db.domain_names();
            all.extend(ctx.db.alias_domain_names());
            all
        }
        Some(e) => e.split(',').map(str::to_owned).collect(),
    };
    let mut data = Vec::new();
    for domain in domains {
        if !ctx.has_domain_access(&domain) {
            continue;
        }
        let ids: Vec<i64> = ctx
            .db
            .aliases()
            .iter()
            .filter(|a| !a.is_self_alias() && sql_eq(&a.domain, &domain))
            .map(|a| a.id)
            .collect();
        data.extend(ids.into_iter().filter_map(|id| details(ctx, &Val::Int(id))));
    }
    (!data.is_empty()).then(|| Val::list(data))
}

/// `strstr($address, '@', true)` and the IDN-normalised domain, as the add
/// and edit paths compute them; PHP's `false` for either becomes "" when
/// concatenated, so `"alice"` normalises to `"@"`.
fn normalise(address: &str) -> (String, String) {
    let (local, domain_part) = split_at_sign(address);
    let domain = idn_to_ascii(domain_part.unwrap_or("")).unwrap_or_default();
    (local.unwrap_or("").to_owned(), domain)
}

/// `POST /api/v1/add/alias` (§4.1).
pub(crate) fn add(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let log = mailbox_log("add", "alias", data);
    let addresses = split_list(&data.get("address").string_arg("preg_split")?);
    let raw_gotos = split_list(&data.get("goto").string_arg("preg_split")?);
    let internal = data.get("internal").intval();
    let active = data.get("active").intval();
    let sender_allowed = data.get("sender_allowed").intval();
    let sogo_visible = data.get("sogo_visible").intval();
    let goto_null = data.get("goto_null").intval();
    let goto_spam = data.get("goto_spam").intval();
    let goto_ham = data.get("goto_ham").intval();
    let private_comment = data.get("private_comment");
    let public_comment = data.get("public_comment");
    // Both strlen() calls run (the PHP uses a bitwise `|`).
    let private_len = private_comment.string_arg("strlen")?.len();
    let public_len = public_comment.string_arg("strlen")?.len();
    if private_len > 160 || public_len > 160 {
        ctx.danger(&log, "comment_too_long");
        return Ok(false);
    }
    if str_empty(&addresses[0]) {
        ctx.danger(&log, "alias_empty");
        return Ok(false);
    }
    let special = i128::from(goto_null) + i128::from(goto_spam) + i128::from(goto_ham);
    if str_empty(&raw_gotos[0]) && special == 0 {
        ctx.danger(&log, "goto_empty");
        return Ok(false);
    }
    // What `in_array($address, $gotos)` later compares against.
    let mut check_gotos: Vec<String>;
    let goto = if let Some(target) = special_goto(goto_null, goto_spam, goto_ham) {
        check_gotos = raw_gotos;
        target.to_owned()
    } else {
        let last = raw_gotos.len() - 1;
        let mut kept: Vec<(usize, String)> = Vec::new();
        for (i, raw) in raw_gotos.into_iter().enumerate() {
            if str_empty(&raw) {
                kept.push((i, raw));
                continue;
            }
            let (local, domain) = normalise(&raw);
            let target = format!("{local}@{domain}");
            // Resources (location/thing/group) are never simulated.
            if !filter_email(&target) {
                ctx.danger(
                    &log,
                    Val::list([Val::str("goto_invalid"), htmlspecialchars(&target).into()]),
                );
                continue;
            }
            kept.push((i, target));
        }
        // array_unique (first occurrence wins), then array_filter.
        let mut unique: Vec<(usize, String)> = Vec::new();
        for (i, g) in kept {
            if !unique.iter().any(|(_, u)| *u == g) {
                unique.push((i, g));
            }
        }
        unique.retain(|(_, g)| !str_empty(g));
        if unique.is_empty() {
            return Ok(false);
        }
        let joined = unique
            .iter()
            .map(|(_, g)| g.as_str())
            .collect::<Vec<_>>()
            .join(",");
        // The `foreach (... as &$goto)` reference survives the loop, so the
        // later `$goto = implode(...)` also overwrites the last element of
        // the list, when that element is still in it.
        check_gotos = unique
            .into_iter()
            .map(|(i, g)| if i == last { joined.clone() } else { g })
            .collect();
        joined
    };
    for raw in addresses {
        if str_empty(&raw) {
            continue;
        }
        let needle = Val::str(&raw);
        if check_gotos.iter().any(|g| needle.loose_eq(&Val::str(g))) {
            continue;
        }
        let (local, domain) = normalise(&raw);
        let address = format!("{local}@{domain}");
        let domain_data = domain::details_arr(ctx, &Val::str(&domain))?;
        if domain_data.is_some_and(|d| d.get("aliases_left").loose_eq(&Val::str("0"))) {
            ctx.danger(&log, "max_alias_exceeded");
            return Ok(false);
        }
        if ctx.db.alias_by_address(&address).is_some()
            || ctx.db.is_alias_domain_mailbox(&local, &domain)
        {
            ctx.danger(
                &log,
                Val::list([
                    Val::str("is_alias_or_mailbox"),
                    htmlspecialchars(&address).into(),
                ]),
            );
            continue;
        }
        if !ctx.db.domain_or_alias_target_exists(&domain) {
            ctx.danger(
                &log,
                Val::list([
                    Val::str("domain_not_found"),
                    htmlspecialchars(&domain).into(),
                ]),
            );
            continue;
        }
        if !filter_email(&address) && !str_empty(&local) {
            ctx.danger(
                &log,
                Val::list([Val::str("alias_invalid"), Val::str(&address)]),
            );
            continue;
        }
        if !ctx.has_domain_access(&domain) {
            ctx.danger(&log, "access_denied");
            continue;
        }
        let stored = if filter_email(&address) {
            address.clone()
        } else {
            format!("@{domain}")
        };
        varchar255(&stored)?;
        let [sogo_visible, internal, sender_allowed, active] = [
            tinyint(sogo_visible)?,
            tinyint(internal)?,
            tinyint(sender_allowed)?,
            tinyint(active)?,
        ];
        let id = ctx.db.next_alias_id();
        ctx.db.insert_alias(Alias {
            id,
            address: stored,
            goto: goto.clone(),
            domain: domain.clone(),
            created: now(),
            modified: None,
            private_comment: sql_text(private_comment),
            public_comment: sql_text(public_comment),
            sogo_visible,
            internal,
            sender_allowed,
            active,
        });
        ctx.success(
            &log,
            Val::list([
                Val::str("alias_added"),
                Val::str(&address),
                Val::str(id.to_string()),
            ]),
        );
        // The SOGo bookkeeping reassigns $gotos from the stored goto.
        check_gotos = goto.split(',').map(|g| g.trim().to_owned()).collect();
    }
    Ok(true)
}

fn special_goto(null: i64, spam: i64, ham: i64) -> Option<&'static str> {
    if null == 1 {
        Some("null@localhost")
    } else if spam == 1 {
        Some("spam@localhost")
    } else if ham == 1 {
        Some("ham@localhost")
    } else {
        None
    }
}

/// The `(array)$_data['id']` of edit and delete.
fn ids(data: &Arr) -> Vec<Val> {
    match data.get("id") {
        Val::Arr(a) => a.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// `POST /api/v1/edit/alias` (§4.2).
pub(crate) fn edit(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let log = mailbox_log("edit", "alias", data);
    // PHP's `$address` outlives each iteration, so an unknown id reports the
    // previous item's address (null for the first).
    let mut address_var = Val::Null;
    for id in ids(data) {
        let Some(is_now) = find(ctx, &id) else {
            ctx.danger(
                &log,
                Val::list([Val::str("alias_invalid"), address_var.clone()]),
            );
            continue;
        };
        let keep = |key: &str, current: i64| -> i64 {
            if data.isset(key) {
                data.get(key).intval()
            } else {
                current
            }
        };
        let internal = keep("internal", is_now.internal);
        let active = keep("active", is_now.active);
        let sender_allowed = keep("sender_allowed", is_now.sender_allowed);
        let sogo_visible = keep("sogo_visible", is_now.sogo_visible);
        // Not kept: every edit that omits them resets them to 0.
        let goto_null = keep("goto_null", 0);
        let goto_spam = keep("goto_spam", 0);
        let goto_ham = keep("goto_ham", 0);
        let comment = |key: &str, current: &Option<String>| -> Option<String> {
            if data.isset(key) {
                sql_text(data.get(key))
            } else {
                current.clone()
            }
        };
        let public_comment = comment("public_comment", &is_now.public_comment);
        let private_comment = comment("private_comment", &is_now.private_comment);
        let goto_val = if data.get("goto").is_empty() {
            Val::str(&is_now.goto)
        } else {
            data.get("goto").clone()
        };
        address_var = if data.get("address").is_empty() {
            Val::str(&is_now.address)
        } else {
            data.get("address").clone()
        };
        if matches!(data.get("expand_alias"), Val::Bool(true))
            || data.get("expand_alias").loose_eq(&Val::Int(1))
        {
            expand(ctx, &log, &address_var)?;
            continue;
        }
        let mut address = address_var.string_arg("strstr")?;
        let (_, domain) = normalise(&address);
        if !Val::str(&is_now.address).loose_eq(&Val::str(&address)) {
            let local = split_at_sign(&address).0.unwrap_or("").to_owned();
            address = format!("{local}@{domain}");
            address_var = Val::str(&address);
            if !ctx.has_domain_access(&domain) {
                ctx.danger(&log, "access_denied");
                continue;
            }
            if !filter_email(&address) && !str_empty(&local) {
                ctx.danger(
                    &log,
                    Val::list([Val::str("alias_invalid"), Val::str(&address)]),
                );
                continue;
            }
            if is_now.address.to_lowercase() != address.to_lowercase()
                && (ctx.db.alias_by_address(&address).is_some()
                    || ctx.db.is_alias_domain_mailbox(&local, &domain))
            {
                ctx.danger(
                    &log,
                    Val::list([
                        Val::str("is_alias_or_mailbox"),
                        htmlspecialchars(&address).into(),
                    ]),
                );
                continue;
            }
            if !ctx.db.domain_or_alias_target_exists(&domain) {
                ctx.danger(
                    &log,
                    Val::list([
                        Val::str("domain_not_found"),
                        htmlspecialchars(&domain).into(),
                    ]),
                );
                continue;
            }
        }
        let goto = match special_goto(goto_null, goto_spam, goto_ham) {
            Some(target) => target.to_owned(),
            None => {
                let mut kept: Vec<String> = Vec::new();
                for g in split_list(&goto_val.string_arg("preg_split")?) {
                    if str_empty(&g) {
                        kept.push(g);
                        continue;
                    }
                    // `null@localhost` & co. fail here, which empties the
                    // goto of a null/spam/ham alias edited without its flag.
                    if !filter_email(&g) {
                        ctx.danger(&log, Val::list([Val::str("goto_invalid"), Val::str(&g)]));
                        continue;
                    }
                    if Val::str(&g).loose_eq(&Val::str(&address)) {
                        ctx.danger(&log, "alias_goto_identical");
                        continue;
                    }
                    // "Delete from sender_acl to prevent duplicates".
                    ctx.db
                        .sender_acl
                        .retain(|r| !(sql_eq(&r.logged_in_as, &g) && sql_eq(&r.send_as, &address)));
                    kept.push(g);
                }
                let mut unique: Vec<String> = Vec::new();
                for g in kept {
                    if !str_empty(&g) && !unique.contains(&g) {
                        unique.push(g);
                    }
                }
                unique.join(",")
            }
        };
        if !str_empty(&goto) {
            update(
                ctx,
                Alias {
                    address: address.clone(),
                    domain,
                    goto,
                    public_comment,
                    private_comment,
                    sogo_visible: tinyint(sogo_visible)?,
                    internal: tinyint(internal)?,
                    sender_allowed: tinyint(sender_allowed)?,
                    active: tinyint(active)?,
                    ..is_now
                },
            )?;
        }
        // Emitted even when the goto came out empty and nothing was saved.
        ctx.success(
            &log,
            Val::list([
                Val::str("alias_modified"),
                htmlspecialchars(&address).into(),
            ]),
        );
    }
    Ok(true)
}

/// The UPDATE of an edit (by id). The address column is UNIQUE, and
/// MariaDB only bumps `modified` when a value really changes.
fn update(ctx: &mut Ctx, next: Alias) -> Php<()> {
    varchar255(&next.address)?;
    let duplicate = ctx
        .db
        .alias_by_address(&next.address)
        .is_some_and(|a| a.id != next.id);
    if duplicate {
        return Err(Uncaught(format!(
            "SQLSTATE[23000]: Duplicate entry '{}' for key 'address'",
            next.address
        )));
    }
    let Some(row) = ctx.db.alias_by_id(next.id) else {
        return Ok(());
    };
    let changed = (
        &row.address,
        &row.goto,
        &row.domain,
        &row.public_comment,
        &row.private_comment,
        [
            row.sogo_visible,
            row.internal,
            row.sender_allowed,
            row.active,
        ],
    ) != (
        &next.address,
        &next.goto,
        &next.domain,
        &next.public_comment,
        &next.private_comment,
        [
            next.sogo_visible,
            next.internal,
            next.sender_allowed,
            next.active,
        ],
    );
    let modified = if changed {
        Some(now())
    } else {
        row.modified.clone()
    };
    ctx.db.replace_alias(Alias { modified, ..next });
    Ok(())
}

/// `expand_alias`: creates `local@<alias domain>` copies of a primary
/// alias for every alias domain of its domain.
fn expand(ctx: &mut Ctx, log: &Val, address: &Val) -> Php<()> {
    let primary = ctx
        .db
        .aliases()
        .iter()
        .find(|a| sql_str_matches(&a.address, address) && ctx.db.alias_domain(&a.domain).is_none())
        .cloned();
    let Some(primary) = primary else {
        ctx.push(
            "warning",
            log,
            Val::list([Val::str("is_not_primary_alias"), html_val(address)?.into()]),
        );
        return Ok(());
    };
    if !primary.is_self_alias() {
        let local = primary.address.split('@').next().unwrap_or("");
        let missing: Vec<String> = ctx
            .db
            .alias_domains
            .iter()
            .filter(|ad| sql_eq(&ad.target_domain, &primary.domain))
            .map(|ad| format!("{local}@{}", ad.alias_domain))
            .filter(|candidate| {
                !ctx.db
                    .aliases()
                    .iter()
                    .any(|a| !a.is_self_alias() && sql_eq(&a.address, candidate))
            })
            .collect();
        if !missing.is_empty() {
            let data = Arr::assoc([
                ("address", Val::str(missing.join(","))),
                ("goto", Val::str(&primary.goto)),
                ("sogo_visible", Val::Int(1)),
                ("active", Val::Int(1)),
            ]);
            add(ctx, &data)?;
        }
    }
    ctx.success(
        log,
        Val::list([Val::str("alias_modified"), html_val(address)?.into()]),
    );
    Ok(())
}

/// `POST /api/v1/delete/alias` (§4.3): unknown items are `access_denied`
/// and the rest still go; send-as grants for the address go with it.
pub(crate) fn delete(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let log = mailbox_log("delete", "alias", data);
    for id in ids(data) {
        let Some(alias) = find(ctx, &id) else {
            ctx.danger(&log, "access_denied");
            continue;
        };
        ctx.db.remove_alias(alias.id);
        ctx.db
            .sender_acl
            .retain(|r| !sql_eq(&r.send_as, &alias.address));
        ctx.success(
            &log,
            Val::list([
                Val::str("alias_removed"),
                htmlspecialchars(&alias.address).into(),
            ]),
        );
    }
    Ok(true)
}
