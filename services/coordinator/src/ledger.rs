//! Ownership records, as the planner reads them: what we created, what we
//! meant to create, and what a person made and we must never remove. Pure
//! data; `store` persists it.

use std::collections::BTreeSet;

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
    pub key: String,
    pub state: LedgerState,
    pub username: String,
    pub groups: BTreeSet<String>,
    pub remote_id: String,
}

/// Ledger keys: one definition of each resource's key, built and read only
/// here. The stored form joins the parts with `|`; the last part may itself
/// contain `|` (a folder name), so it always goes last and is never split.
pub mod keys {
    /// `login|send_as`: `login` may send as `send_as`.
    pub fn sender_acl(login: &str, send_as: &str) -> String {
        format!("{login}|{send_as}")
    }

    /// `(login, send_as)` of a [`sender_acl`] key.
    pub fn parse_sender_acl(key: &str) -> Option<(&str, &str)> {
        key.split_once('|')
    }

    /// `mailbox|name`: the app password `name` on `mailbox`.
    pub fn app_password(mailbox: &str, name: &str) -> String {
        format!("{mailbox}|{name}")
    }

    /// `(mailbox, name)` of an [`app_password`] key.
    pub fn parse_app_password(key: &str) -> Option<(&str, &str)> {
        key.split_once('|')
    }

    /// `owner|delegate`: `delegate` may use `owner`'s identity in SOGo.
    pub fn sogo_delegation(owner: &str, delegate: &str) -> String {
        format!("{owner}|{delegate}")
    }

    /// `(owner, delegate)` of a [`sogo_delegation`] key.
    pub fn parse_sogo_delegation(key: &str) -> Option<(&str, &str)> {
        key.split_once('|')
    }

    /// `user|email`: `user`'s Nextcloud Mail account for `email`.
    pub fn nextcloud_account(user: &str, email: &str) -> String {
        format!("{user}|{email}")
    }

    /// `(user, email)` of a [`nextcloud_account`] key.
    pub fn parse_nextcloud_account(key: &str) -> Option<(&str, &str)> {
        key.split_once('|')
    }

    /// `owner|grantee`: one grant of folder rights, before it is planned
    /// per folder (desired state's key for mailbox ACLs).
    pub fn mailbox_grant(owner: &str, grantee: &str) -> String {
        format!("{owner}|{grantee}")
    }

    /// `owner|grantee|folder`: one folder's ACL entry.
    pub fn mailbox_acl(owner: &str, grantee: &str, folder: &str) -> String {
        format!("{owner}|{grantee}|{folder}")
    }

    /// `(owner, grantee, folder)` of a [`mailbox_acl`] key.
    pub fn parse_mailbox_acl(key: &str) -> Option<(&str, &str, &str)> {
        let mut parts = key.splitn(3, '|');
        Some((parts.next()?, parts.next()?, parts.next()?))
    }

    /// The first part of any key: the login, mailbox, owner or user the
    /// object lives under (what an agent is asked about).
    pub fn subject(key: &str) -> &str {
        key.split('|').next().unwrap_or(key)
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
            assert_eq!(subject(&key), "info@x.org");
        }
    }
}
