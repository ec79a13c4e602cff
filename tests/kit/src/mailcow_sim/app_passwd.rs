//! App passwords: `app_passwd()` from `functions.app_passwd.inc.php` and
//! the global `password_check()` / `hash_password()` (§3).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use super::envelope::Ctx;
use super::mailbox;
use super::php::{Arr, Php, Uncaught, Val, html_val, htmlspecialchars, str_empty, trim};
use super::sql::{sql_id_matches, sql_str_matches, sql_text, tinyint, varchar255};
use super::state::{AppPasswd, PROTOCOLS, now};
use super::validate::filter_email;

/// `['app_passwd', $action, $_data_log]`, the two password fields masked.
fn log(action: &str, data: &Val) -> Val {
    let data_log = match data {
        Val::Arr(a) => Val::Arr(a.masked(&["app_passwd", "app_passwd2"])),
        other => other.clone(),
    };
    Val::list([Val::str("app_passwd"), Val::str(action), data_log])
}

/// `filter_var($v, FILTER_VALIDATE_EMAIL)` on any request value.
pub(crate) fn is_email(v: &Val) -> bool {
    !matches!(v, Val::Arr(_)) && v.to_php_string().is_some_and(|s| filter_email(&s))
}

/// The owner resolution at the top of `app_passwd()` (§3.1): a valid
/// e-mail `username` the caller may access, else the session user, which
/// for API keys is the literal `"API"`. `None` means `access_denied` was
/// queued and the function returned false.
fn owner(ctx: &mut Ctx, action: &str, data: &Val) -> Option<Val> {
    let username = match data {
        Val::Arr(a) => a.get("username").clone(),
        _ => Val::Null,
    };
    if !matches!(username, Val::Null) && is_email(&username) {
        if !ctx.has_mailbox_object_access(&username) {
            ctx.danger(&log(action, data), "access_denied");
            return None;
        }
        return Some(username);
    }
    Some(if ctx.session.is_some() {
        Val::str("API")
    } else {
        Val::Null
    })
}

fn protocol_flags(protocols: &Val) -> [i64; 6] {
    let given = protocols.to_array();
    PROTOCOLS.map(|p| i64::from(Val::str(p).in_array(given.values())))
}

/// `POST /api/v1/add/app-passwd` (§3.2). The new id is not returned.
pub(crate) fn add(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let data_val = Val::Arr(data.clone());
    let log = log("add", &data_val);
    let Some(username) = owner(ctx, "add", &data_val) else {
        return Ok(false);
    };
    let app_name = htmlspecialchars(trim(&data.get("app_name").string_arg("trim")?));
    let active = data.get("active").intval();
    let flags = protocol_flags(data.get("protocols"));
    let domain =
        mailbox::details_arr(ctx, &username, None).map_or(Val::Null, |d| d.get("domain").clone());
    if domain.is_empty() {
        ctx.danger(&log, "access_denied");
        return Ok(false);
    }
    let password = data.get("app_passwd");
    if !password_check(ctx, password, data.get("app_passwd2"))? {
        return Ok(false);
    }
    let hashed = hash_password(&password.string_arg("hash_password")?);
    if str_empty(&app_name) {
        ctx.danger(&log, "app_name_empty");
        return Ok(false);
    }
    varchar255(&app_name)?;
    let mut row = AppPasswd {
        id: ctx.db.next_app_passwd_id(),
        name: app_name,
        mailbox: sql_text(&username).unwrap_or_default(),
        domain: sql_text(&domain).unwrap_or_default(),
        password: hashed,
        created: now(),
        modified: None,
        imap_access: 0,
        smtp_access: 0,
        dav_access: 0,
        eas_access: 0,
        pop3_access: 0,
        sieve_access: 0,
        active: tinyint(active)?,
    };
    row.set_flags(flags);
    ctx.db.app_passwd.push(row);
    ctx.success(&log, "app_passwd_added");
    Ok(true)
}

/// `app_passwd('details', $id)`: the full row (`SELECT *`), the name
/// escaped once more on the way out.
pub(crate) fn details(ctx: &Ctx, id: &Val) -> Option<(AppPasswd, Val)> {
    let row = ctx
        .db
        .app_passwd
        .iter()
        .find(|r| sql_id_matches(r.id, id))?;
    if !ctx.has_mailbox_object_access(&Val::str(&row.mailbox)) {
        return None;
    }
    let name = htmlspecialchars(trim(&row.name));
    let mut fields = vec![
        ("id", Val::Int(row.id)),
        ("name", Val::str(name)),
        ("mailbox", Val::str(&row.mailbox)),
        ("domain", Val::str(&row.domain)),
        ("password", Val::str(&row.password)),
        ("created", Val::str(&row.created)),
        ("modified", row.modified.clone().into()),
    ];
    for (protocol, flag) in PROTOCOLS.iter().zip(row.flags()) {
        fields.push((protocol, Val::Int(flag)));
    }
    fields.push(("active", Val::Int(row.active)));
    Some((row.clone(), Val::Arr(Arr::assoc(fields))))
}

/// `GET /api/v1/get/app-passwd/all[/{mailbox}]`.
pub(crate) fn list(ctx: &mut Ctx, mailbox: Option<&str>) -> Option<Val> {
    let data = match mailbox.filter(|m| !str_empty(m)) {
        None => Val::Null,
        Some(m) => Val::Arr(Arr::assoc([("username", Val::str(m))])),
    };
    let username = owner(ctx, "get", &data)?;
    let ids: Vec<i64> = ctx
        .db
        .app_passwd
        .iter()
        .filter(|r| sql_str_matches(&r.mailbox, &username))
        .map(|r| r.id)
        .collect();
    let rows: Vec<Val> = ids
        .into_iter()
        .filter_map(|id| details(ctx, &Val::Int(id)).map(|(_, v)| v))
        .collect();
    (!rows.is_empty()).then(|| Val::list(rows))
}

/// `POST /api/v1/edit/app-passwd` (§3.4). Without `attr.username` the
/// owner is `"API"`, the UPDATE breaks the mailbox foreign key and the
/// PDOException leaves an empty 200.
pub(crate) fn edit(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let data_val = Val::Arr(data.clone());
    let log = log("edit", &data_val);
    let Some(username) = owner(ctx, "edit", &data_val) else {
        return Ok(false);
    };
    let ids: Vec<Val> = data.get("id").to_array().values().cloned().collect();
    let mut joined = Vec::new();
    for id in &ids {
        joined.push(id.to_php_string().unwrap_or_else(|| "Array".into()));
    }
    let all_ids = htmlspecialchars(&joined.join(", "));
    for id in &ids {
        let Some((is_now, shown)) = details(ctx, id) else {
            ctx.danger(
                &log,
                Val::list([Val::str("app_passwd_id_invalid"), id.clone()]),
            );
            continue;
        };
        let shown = shown.as_arr().cloned().unwrap_or_default();
        // An edit without `app_name` re-saves the escaped-on-read name.
        let app_name = if data.get("app_name").is_empty() {
            shown.get("name").clone()
        } else {
            data.get("app_name").clone()
        };
        let flags = if data.isset("protocols") {
            protocol_flags(data.get("protocols"))
        } else {
            is_now.flags()
        };
        let active = if data.isset("active") {
            data.get("active").intval()
        } else {
            is_now.active
        };
        let app_name = htmlspecialchars(trim(&app_name.string_arg("trim")?));
        let (password, password2) = (data.get("app_passwd"), data.get("app_passwd2"));
        if !password.is_empty() && !password2.is_empty() {
            if !password_check(ctx, password, password2)? {
                continue;
            }
            let hashed = hash_password(&password.string_arg("hash_password")?);
            // `WHERE mailbox = :username AND id = :id`: only the current owner.
            if let Some(row) = ctx
                .db
                .app_passwd
                .iter_mut()
                .find(|r| sql_id_matches(r.id, id) && sql_str_matches(&r.mailbox, &username))
            {
                row.password = hashed;
                row.modified = Some(now());
            }
        }
        varchar255(&app_name)?;
        let active = tinyint(active)?;
        let owner = ctx
            .db
            .mailboxes
            .iter()
            .find(|m| sql_str_matches(&m.username, &username))
            .map(|_| sql_text(&username).unwrap_or_default());
        let Some(owner) = owner else {
            return Err(Uncaught(
                "SQLSTATE[23000]: Integrity constraint violation: 1452 Cannot add or update a \
                 child row: a foreign key constraint fails (fk_username_app_passwd)"
                    .into(),
            ));
        };
        if let Some(row) = ctx
            .db
            .app_passwd
            .iter_mut()
            .find(|r| sql_id_matches(r.id, id))
        {
            let before = (
                row.name.clone(),
                row.mailbox.clone(),
                row.flags(),
                row.active,
            );
            row.name = app_name;
            row.mailbox = owner;
            row.set_flags(flags);
            row.active = active;
            if before
                != (
                    row.name.clone(),
                    row.mailbox.clone(),
                    row.flags(),
                    row.active,
                )
            {
                row.modified = Some(now());
            }
        }
        ctx.success(
            &log,
            Val::list([Val::str("object_modified"), Val::str(&all_ids)]),
        );
    }
    Ok(true)
}

/// `POST /api/v1/delete/app-passwd` with a bare array of ids (§3.5): the
/// first unknown id ends the call.
pub(crate) fn delete(ctx: &mut Ctx, data: &Arr) -> Php<bool> {
    let data_val = Val::Arr(data.clone());
    let log = log("delete", &data_val);
    if owner(ctx, "delete", &data_val).is_none() {
        return Ok(false);
    }
    let ids: Vec<Val> = data.get("id").to_array().values().cloned().collect();
    for id in ids {
        let mailbox = ctx
            .db
            .app_passwd
            .iter()
            .find(|r| sql_id_matches(r.id, &id))
            .map(|r| r.mailbox.clone())
            .filter(|m| !str_empty(m));
        let Some(mailbox) = mailbox else {
            ctx.danger(&log, "app_passwd_id_invalid");
            return Ok(false);
        };
        if !ctx.has_mailbox_object_access(&Val::str(mailbox)) {
            ctx.danger(&log, "access_denied");
            return Ok(false);
        }
        ctx.db.app_passwd.retain(|r| !sql_id_matches(r.id, &id));
        ctx.success(
            &log,
            Val::list([Val::str("app_passwd_removed"), html_val(&id)?.into()]),
        );
    }
    Ok(true)
}

/// `password_check()` from `functions.inc.php` against the Redis policy.
pub(crate) fn password_check(ctx: &mut Ctx, password: &Val, password2: &Val) -> Php<bool> {
    let log = Val::list([Val::str("password_check"), Val::Null, Val::Null]);
    if password.is_empty() || password2.is_empty() {
        ctx.danger(&log, "password_complexity");
        return Ok(false);
    }
    if !password.loose_eq(password2) {
        ctx.danger(&log, "password_mismatch");
        return Ok(false);
    }
    let password = password.string_arg("strlen")?;
    let policy = &ctx.db.policy;
    let has = |pred: fn(char) -> bool| password.chars().any(pred);
    let special = has(|c| !c.is_ascii_alphanumeric());
    let letters = has(|c| c.is_ascii_alphabetic());
    let digits = has(|c| c.is_ascii_digit());
    let lowerupper = has(|c| c.is_ascii_lowercase()) && has(|c| c.is_ascii_uppercase());
    let fails = (password.len() as i64) < policy.length
        || (policy.special_chars == 1 && !special)
        || (policy.chars == 1 && !letters)
        || (policy.numbers == 1 && !digits)
        || (policy.lowerupper == 1 && !lowerupper);
    if fails {
        ctx.danger(&log, "password_complexity");
        return Ok(false);
    }
    Ok(true)
}

/// The schemes `hash_password()` accepts as already hashed.
const PREHASHED: &[&str] = &[
    "ARGON2I",
    "ARGON2ID",
    "BLF-CRYPT",
    "CLEAR",
    "CLEARTEXT",
    "CRYPT",
    "DES-CRYPT",
    "LDAP-MD5",
    "MD5",
    "MD5-CRYPT",
    "PBKDF2",
    "PLAIN",
    "PLAIN-MD4",
    "PLAIN-MD5",
    "PLAIN-TRUNC",
    "SHA",
    "SHA1",
    "SHA256",
    "SHA256-CRYPT",
    "SHA512",
    "SHA512-CRYPT",
    "SMD5",
    "SSHA",
    "SSHA256",
    "SSHA512",
];

/// `hash_password()`: a `{SCHEME}`-prefixed value is stored as it is;
/// anything else is hashed with `{SSHA256}`, one of the schemes Mailcow can
/// be configured for (the default bcrypt would need another dependency and
/// makes no observable difference to an API client).
pub(crate) fn hash_password(password: &str) -> String {
    let prehashed = password.strip_prefix('{').and_then(|rest| {
        let (scheme, _) = rest.split_once('}')?;
        PREHASHED
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
            .then_some(())
    });
    if prehashed.is_some() {
        return password.to_owned();
    }
    let salt: String = rand::random::<[u8; 8]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut blob = Sha256::digest(format!("{password}{salt}").as_bytes()).to_vec();
    blob.extend_from_slice(salt.as_bytes());
    format!("{{SSHA256}}{}", BASE64.encode(blob))
}

/// `verify_hash()` for the schemes the simulator can produce or that tests
/// are likely to pre-hash with.
pub(crate) fn verify_hash(hash: &str, password: &str) -> bool {
    let Some((scheme, encoded)) = hash
        .strip_prefix('{')
        .and_then(|rest| rest.rsplit_once('}'))
    else {
        return false;
    };
    match scheme.to_ascii_uppercase().as_str() {
        "SSHA256" => BASE64.decode(encoded).is_ok_and(|blob| {
            blob.len() > 32 && {
                let (digest, salt) = blob.split_at(32);
                let mut input = password.as_bytes().to_vec();
                input.extend_from_slice(salt);
                Sha256::digest(&input)[..] == *digest
            }
        }),
        "SHA256" => BASE64
            .decode(encoded)
            .is_ok_and(|digest| Sha256::digest(password.as_bytes())[..] == digest[..]),
        "CLEAR" | "CLEARTEXT" | "PLAIN" => Val::str(password).loose_eq(&Val::str(encoded)),
        _ => false,
    }
}
