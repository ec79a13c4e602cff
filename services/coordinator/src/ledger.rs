//! Ownership records, as the planner reads them: what we created, what we
//! meant to create, and what a person made and we must never remove. Pure
//! data; `store` persists it.

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerState {
    /// Recorded before asking the target to create; the target may or may
    /// not have done it. The next run adopts or retries.
    Intent,
    /// The target confirmed the create.
    Created,
    /// It existed before we wanted it: a person made it. Never removed.
    Foreign,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intent => "intent",
            Self::Created => "created",
            Self::Foreign => "foreign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "intent" => Some(Self::Intent),
            "created" => Some(Self::Created),
            "foreign" => Some(Self::Foreign),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LedgerRow {
    pub resource: String,
    pub key: LedgerKey,
    pub state: LedgerState,
    pub username: String,
    pub groups: crate::group_set::GroupSet,
    pub remote_id: String,
}

/// Which object a ledger row (or a planned step) is about. Built only by
/// the constructors in [`keys`], or parsed from the state DB by
/// [`LedgerKey::parse`] with the shape of its resource checked, so an
/// arbitrary string can never stand in for one. Stored as text: the parts
/// joined with `|`, the last part whole (a folder name may contain `|`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct LedgerKey(String);

impl LedgerKey {
    fn of(parts: &[&str]) -> Self {
        Self(parts.join("|"))
    }

    /// A key read back from the state DB, if it has `resource`'s shape.
    pub fn parse(resource: &str, text: &str) -> Option<Self> {
        let parts = match resource {
            "alias"
            | "sogo_cache_eviction"
            | "matrix_account"
            | "stalwart_domain"
            | "stalwart_account"
            | "stalwart_suspension"
            | "stalwart_list" => 1,
            "mailbox_acl" => 3,
            "sender_acl" | "app_password" | "sogo_delegation" | "nextcloud_account"
            | "matrix_membership" | "matrix_power_level" | "matrix_ban" | "stalwart_alias" => 2,
            _ => return None,
        };
        let mut split = text.splitn(parts, '|');
        let whole = (0..parts).all(|_| split.next().is_some_and(|p| !p.is_empty()));
        whole.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first part: the login, mailbox, owner or user the object lives
    /// under (what an agent is asked about).
    pub fn subject(&self) -> &str {
        self.0.split('|').next().unwrap_or(&self.0)
    }

    fn two(&self) -> Option<(&str, &str)> {
        self.0.split_once('|')
    }
}

impl std::borrow::Borrow<str> for LedgerKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Each resource's key: built and read only here.
pub mod keys {
    use super::LedgerKey;

    /// `login` may send as `send_as`.
    pub fn sender_acl(login: &str, send_as: &str) -> LedgerKey {
        LedgerKey::of(&[login, send_as])
    }

    /// `(login, send_as)` of a [`sender_acl`] key.
    pub fn parse_sender_acl(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// The app password `name` on `mailbox`.
    pub fn app_password(mailbox: &str, name: &str) -> LedgerKey {
        LedgerKey::of(&[mailbox, name])
    }

    /// `(mailbox, name)` of an [`app_password`] key.
    pub fn parse_app_password(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// The group alias `address`.
    pub fn alias(address: &str) -> LedgerKey {
        LedgerKey::of(&[address])
    }

    /// `delegate` may use `owner`'s identity in SOGo.
    pub fn sogo_delegation(owner: &str, delegate: &str) -> LedgerKey {
        LedgerKey::of(&[owner, delegate])
    }

    /// `(owner, delegate)` of a [`sogo_delegation`] key.
    pub fn parse_sogo_delegation(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// `user`'s Nextcloud Mail account for `email`.
    pub fn nextcloud_account(user: &str, email: &str) -> LedgerKey {
        LedgerKey::of(&[user, email])
    }

    /// `(user, email)` of a [`nextcloud_account`] key.
    pub fn parse_nextcloud_account(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// One folder's ACL entry; the folder goes last, whole.
    pub fn mailbox_acl(owner: &str, grantee: &str, folder: &str) -> LedgerKey {
        LedgerKey::of(&[owner, grantee, folder])
    }

    /// `(owner, grantee, folder)` of a [`mailbox_acl`] key.
    pub fn parse_mailbox_acl(key: &LedgerKey) -> Option<(&str, &str, &str)> {
        let mut parts = key.0.splitn(3, '|');
        Some((parts.next()?, parts.next()?, parts.next()?))
    }

    /// SOGo's cached settings of `uid`, owed an eviction (a step, never a
    /// ledger row: owed evictions have their own table).
    pub fn sogo_cache_eviction(uid: &str) -> LedgerKey {
        LedgerKey::of(&[uid])
    }

    /// `user_id`'s membership, power level or our ban in `room_id` (room
    /// ids and Matrix IDs hold no `|`).
    pub fn matrix(room_id: &str, user_id: &str) -> LedgerKey {
        LedgerKey::of(&[room_id, user_id])
    }

    pub fn parse_matrix(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// A Stalwart domain, account, suspension or list, by name or address.
    pub fn stalwart(name: &str) -> LedgerKey {
        LedgerKey::of(&[name])
    }

    /// An alias we added to the Stalwart account `address`.
    pub fn stalwart_alias(address: &str, alias: &str) -> LedgerKey {
        LedgerKey::of(&[address, alias])
    }

    pub fn parse_stalwart_alias(key: &LedgerKey) -> Option<(&str, &str)> {
        key.two()
    }

    /// A Matrix account we created.
    pub fn matrix_account(user_id: &str) -> LedgerKey {
        LedgerKey::of(&[user_id])
    }

    /// One grant of folder rights before it is planned per folder: desired
    /// state's key for mailbox ACLs, not a ledger key.
    pub fn mailbox_grant(owner: &str, grantee: &str) -> String {
        format!("{owner}|{grantee}")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_key_reads_back_as_it_was_built() {
            let key = sender_acl("a@x.org", "info@x.org");
            assert_eq!(parse_sender_acl(&key), Some(("a@x.org", "info@x.org")));
            let key = app_password("info@x.org", "authentik-sync:a:info@x.org");
            assert_eq!(
                parse_app_password(&key),
                Some(("info@x.org", "authentik-sync:a:info@x.org"))
            );
            let key = mailbox_acl("info@x.org", "a@x.org", "Shared|Odd");
            assert_eq!(
                parse_mailbox_acl(&key),
                Some(("info@x.org", "a@x.org", "Shared|Odd")),
                "a folder with `|` stays whole"
            );
            assert_eq!(key.subject(), "info@x.org");
            assert_eq!(
                LedgerKey::parse("mailbox_acl", key.as_str()),
                Some(key.clone())
            );
        }

        #[test]
        fn stored_keys_of_the_wrong_shape_do_not_parse() {
            assert!(LedgerKey::parse("sender_acl", "no-separator").is_none());
            assert!(LedgerKey::parse("mailbox_acl", "owner|grantee").is_none());
            assert!(LedgerKey::parse("sender_acl", "|x").is_none());
            assert!(LedgerKey::parse("unknown", "a|b").is_none());
            assert!(LedgerKey::parse("alias", "team@x.org").is_some());
        }
    }
}
