//! Domains and alias domains: `domain_details`, `alias_domain_details` and
//! their `all` listings (§5).

use super::envelope::Ctx;
use super::php::{Arr, Php, Val, trim};
use super::sql::{sql_eq, sql_str_matches};
use super::state::MIB;
use super::validate::{idn_to_ascii, idn_to_utf8};

/// `mailbox('get', 'domain_details', $name)`. An alias domain's name gives
/// its target's details.
pub(crate) fn details_arr(ctx: &Ctx, name: &Val) -> Php<Option<Arr>> {
    let lowered = trim(&name.string_arg("trim")?).to_ascii_lowercase();
    let Some(mut name) = idn_to_ascii(&lowered) else {
        return Ok(None);
    };
    if !ctx.has_domain_access(&name) {
        return Ok(None);
    }
    if let Some(alias_domain) = ctx.db.alias_domain(&name) {
        name = alias_domain.target_domain.clone();
    }
    let Some(domain) = ctx.db.domain(&name) else {
        return Ok(None);
    };
    let (mut count, mut in_use) = (0i64, 0i64);
    for mailbox in ctx
        .db
        .mailboxes
        .iter()
        .filter(|m| sql_eq(&m.domain, &domain.name))
    {
        count += 1;
        in_use += mailbox.quota;
    }
    let alias_count = ctx.db.aliases_in_domain(&name);
    let mut max_new = domain.quota * MIB - in_use;
    if max_new > domain.maxquota * MIB {
        max_new = domain.maxquota * MIB;
    }
    let mut def_new = max_new;
    if def_new > domain.defquota * MIB {
        def_new = domain.defquota * MIB;
    }
    Ok(Some(Arr::assoc([
        ("max_new_mailbox_quota", Val::Int(max_new)),
        ("def_new_mailbox_quota", Val::Int(def_new)),
        // SUM() of a BIGINT is a DECIMAL, which PDO hands over as a string.
        ("quota_used_in_domain", Val::str(in_use.to_string())),
        ("bytes_total", Val::Int(0)),
        ("msgs_total", Val::Int(0)),
        ("mboxes_in_domain", Val::Int(count)),
        ("mboxes_left", Val::Int(domain.max_mailboxes - count)),
        ("domain_name", Val::str(&domain.name)),
        ("domain_h_name", Val::str(idn_to_utf8(&domain.name))),
        ("description", Val::str(&domain.description)),
        ("max_num_aliases_for_domain", Val::Int(domain.max_aliases)),
        ("max_num_mboxes_for_domain", Val::Int(domain.max_mailboxes)),
        ("def_quota_for_mbox", Val::Int(domain.defquota * MIB)),
        ("max_quota_for_mbox", Val::Int(domain.maxquota * MIB)),
        ("max_quota_for_domain", Val::Int(domain.quota * MIB)),
        ("relayhost", Val::str("0")),
        ("backupmx", Val::Int(0)),
        ("backupmx_int", Val::Int(0)),
        ("gal", Val::Int(1)),
        ("gal_int", Val::Int(1)),
        ("rl", Val::Bool(false)),
        ("active", Val::Int(domain.active)),
        ("active_int", Val::Int(domain.active)),
        ("relay_all_recipients", Val::Int(0)),
        ("relay_all_recipients_int", Val::Int(0)),
        ("relay_unknown_only", Val::Int(0)),
        ("relay_unknown_only_int", Val::Int(0)),
        ("created", Val::str(&domain.created)),
        ("modified", domain.modified.clone().into()),
        ("aliases_in_domain", Val::Int(alias_count)),
        ("aliases_left", Val::Int(domain.max_aliases - alias_count)),
        ("domain_admins", Val::str("-")),
    ])))
}

/// `GET /api/v1/get/domain/all`: primary domains only. Tags are never set
/// in the simulator, so a tag filter finds nothing.
pub(crate) fn list(ctx: &Ctx, tags: bool) -> Php<Option<Val>> {
    if tags {
        return Ok(None);
    }
    let mut data = Vec::new();
    for name in ctx.db.domain_names() {
        if let Some(details) = details_arr(ctx, &Val::str(name))? {
            data.push(Val::Arr(details));
        }
    }
    Ok((!data.is_empty()).then(|| Val::list(data)))
}

/// `mailbox('get', 'alias_domain_details', $name)`.
pub(crate) fn alias_domain_details(ctx: &Ctx, name: &Val) -> Option<Val> {
    let row = ctx
        .db
        .alias_domains
        .iter()
        .find(|ad| sql_str_matches(&ad.alias_domain, name))?;
    if !ctx.has_domain_access(&row.target_domain) {
        return None;
    }
    let parent_backupmx = ctx
        .db
        .domain(&row.target_domain)
        .map_or(Val::Null, |_| Val::Int(0));
    Some(Val::Arr(Arr::assoc([
        ("alias_domain", Val::str(&row.alias_domain)),
        ("parent_is_backupmx", parent_backupmx),
        ("target_domain", Val::str(&row.target_domain)),
        ("active", Val::Int(row.active)),
        ("active_int", Val::Int(row.active)),
        ("rl", Val::Bool(false)),
        ("created", Val::str(&row.created)),
        ("modified", row.modified.clone().into()),
    ])))
}

pub(crate) fn alias_domain_list(ctx: &Ctx) -> Option<Val> {
    let data: Vec<Val> = ctx
        .db
        .alias_domain_names()
        .into_iter()
        .filter_map(|name| alias_domain_details(ctx, &Val::str(name)))
        .collect();
    (!data.is_empty()).then(|| Val::list(data))
}
