//! One API call's PHP session: who is logged in, the `$_SESSION['return']`
//! messages the functions queue, the access checks they consult, and how
//! json_api.php turns all of that into a response (§1.3, §1.4).

use super::json::{json_encode, json_pretty};
use super::php::{Arr, Php, Val};
use super::sql::sql_str_matches;
use super::state::Db;
use super::validate::is_valid_domain_name;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Rw,
    Ro,
}

/// A logged-in API key is the admin `API`; without a key nobody is.
pub(crate) struct Ctx<'a> {
    pub db: &'a mut Db,
    pub session: Option<Access>,
    pub omit_sender_acl: bool,
    messages: Vec<Val>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(db: &'a mut Db, session: Option<Access>, omit_sender_acl: bool) -> Self {
        Self {
            db,
            session,
            omit_sender_acl,
            messages: Vec::new(),
        }
    }

    /// `$_SESSION['return'][] = ['type' => .., 'log' => .., 'msg' => ..]`.
    pub(crate) fn push(&mut self, kind: &str, log: &Val, msg: impl Into<Val>) {
        self.messages.push(Val::Arr(Arr::assoc([
            ("type", Val::str(kind)),
            ("log", log.clone()),
            ("msg", msg.into()),
        ])));
    }

    pub(crate) fn danger(&mut self, log: &Val, msg: impl Into<Val>) {
        self.push("danger", log, msg);
    }

    pub(crate) fn success(&mut self, log: &Val, msg: impl Into<Val>) {
        self.push("success", log, msg);
    }

    pub(crate) fn into_messages(self) -> Vec<Val> {
        self.messages
    }

    /// `hasDomainAccess('API', 'admin', $domain)`: a valid name of a domain
    /// or alias domain. Without a session the username check fails.
    pub(crate) fn has_domain_access(&self, domain: &str) -> bool {
        self.session.is_some()
            && is_valid_domain_name(domain)
            && (self.db.domain(domain).is_some() || self.db.alias_domain(domain).is_some())
    }

    /// `hasMailboxObjectAccess()`. Its `$username == $object` shortcut makes
    /// the literal `"API"` accessible although no such mailbox exists.
    pub(crate) fn has_mailbox_object_access(&self, object: &Val) -> bool {
        if self.session.is_none() || object.is_empty() {
            return false;
        }
        if Val::str("API").loose_eq(object) {
            return true;
        }
        let domain = self
            .db
            .mailboxes
            .iter()
            .find(|m| sql_str_matches(&m.username, object))
            .map(|m| m.domain.clone());
        domain.is_some_and(|d| self.has_domain_access(&d))
    }

    /// `hasAliasObjectAccess()`: the address is an alias row (mailboxes
    /// included, through their self-alias) in an accessible domain.
    pub(crate) fn has_alias_object_access(&self, object: &Val) -> bool {
        if self.session.is_none() || object.is_empty() {
            return false;
        }
        let domain = self
            .db
            .aliases()
            .iter()
            .find(|a| sql_str_matches(&a.address, object))
            .map(|a| a.domain.clone());
        domain.is_some_and(|d| self.has_domain_access(&d))
    }
}

/// The `log` entry `mailbox()` echoes: function, action, type, the request
/// data with `password`/`password2` masked, and the never-set `$_attr`.
pub(crate) fn mailbox_log(action: &str, kind: &str, data: &Arr) -> Val {
    Val::list([
        Val::str("mailbox"),
        Val::str(action),
        Val::str(kind),
        Val::Arr(data.masked(&["password", "password2"])),
        Val::Null,
    ])
}

/// An HTTP answer as PHP and nginx would send it.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

pub(crate) const JSON: &str = "application/json";
/// PHP's default, for output printed before json_api.php sets its header.
pub(crate) const HTML: &str = "text/html; charset=UTF-8";

impl Reply {
    pub(crate) fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// `{"type": "error", "msg": ...}`.
    pub(crate) fn error(status: u16, msg: &str) -> Self {
        let body = Val::Arr(Arr::assoc([
            ("type", Val::str("error")),
            ("msg", Val::str(msg)),
        ]));
        Self::new(status, JSON, json_encode(&body))
    }

    /// What an uncaught exception leaves: HTTP 200, nothing printed.
    pub(crate) fn empty() -> Self {
        Self::new(200, JSON, "")
    }

    /// `process_get_return($data)`: `{}` for anything empty.
    pub(crate) fn get(data: Option<Val>) -> Self {
        Self::get_or(data, "{}")
    }

    /// `process_get_return($data, false)`: `[]` when empty.
    pub(crate) fn get_list(data: Option<Val>) -> Self {
        Self::get_or(data, "[]")
    }

    fn get_or(data: Option<Val>, empty: &str) -> Self {
        match data {
            Some(v) if v.truthy() => Self::new(200, JSON, json_pretty(&v)),
            _ => Self::new(200, JSON, empty),
        }
    }

    /// `process_{add,edit,delete}_return()`: the queued messages, else a
    /// generic object depending on what the function returned.
    pub(crate) fn write(action: &str, result: Php<bool>, messages: Vec<Val>) -> Self {
        let returned = match result {
            Ok(returned) => returned,
            Err(uncaught) => {
                tracing::debug!(reason = %uncaught.0, "mailcow-sim: uncaught PHP error");
                return Self::empty();
            }
        };
        if !messages.is_empty() {
            return Self::new(200, JSON, json_encode(&Val::list(messages)));
        }
        if returned {
            let body = Val::Arr(Arr::assoc([
                ("type", Val::str("success")),
                ("msg", Val::str("Task completed")),
            ]));
            return Self::new(200, JSON, json_encode(&body));
        }
        let failure = match action {
            "add" => "Cannot add item",
            "edit" => "Cannot edit item",
            _ => "Cannot delete item",
        };
        Self::error(200, failure)
    }
}
