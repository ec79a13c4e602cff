//! The contract's enums under the names Dovecot and Mailcow use, so each
//! side converts at its edge: the coordinator (group attributes, config,
//! its ledger) and the mailcow-agent (doveadm, Mailcow's API) speak names,
//! the wire speaks enums.

use crate::agent::{AppPasswordProtocol, MailboxRight};

impl MailboxRight {
    /// Every right doveadm knows by name, in the order of the enum.
    pub const ALL: [MailboxRight; 11] = [
        Self::Lookup,
        Self::Read,
        Self::Write,
        Self::WriteSeen,
        Self::WriteDeleted,
        Self::Insert,
        Self::Post,
        Self::Expunge,
        Self::Create,
        Self::Delete,
        Self::Admin,
    ];

    /// doveadm's name of the right; `None` for UNSPECIFIED, which has none.
    pub fn doveadm_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Unspecified => return None,
            Self::Lookup => "lookup",
            Self::Read => "read",
            Self::Write => "write",
            Self::WriteSeen => "write-seen",
            Self::WriteDeleted => "write-deleted",
            Self::Insert => "insert",
            Self::Post => "post",
            Self::Expunge => "expunge",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Admin => "admin",
        })
    }

    /// The right doveadm calls `name`.
    pub fn from_doveadm_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.doveadm_name() == Some(name))
    }
}

impl AppPasswordProtocol {
    /// Every protocol an app password can be used for.
    pub const ALL: [AppPasswordProtocol; 6] = [
        Self::Imap,
        Self::Smtp,
        Self::Dav,
        Self::Eas,
        Self::Pop3,
        Self::Sieve,
    ];

    /// Mailcow's flag for the protocol (`imap_access`, …); `None` for
    /// UNSPECIFIED, which has none.
    pub fn mailcow_flag(self) -> Option<&'static str> {
        Some(match self {
            Self::Unspecified => return None,
            Self::Imap => "imap_access",
            Self::Smtp => "smtp_access",
            Self::Dav => "dav_access",
            Self::Eas => "eas_access",
            Self::Pop3 => "pop3_access",
            Self::Sieve => "sieve_access",
        })
    }

    /// The protocol of Mailcow's flag `flag`.
    pub fn from_mailcow_flag(flag: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.mailcow_flag() == Some(flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_as_its_enum() {
        for right in MailboxRight::ALL {
            let name = right.doveadm_name().unwrap();
            assert_eq!(MailboxRight::from_doveadm_name(name), Some(right));
        }
        for protocol in AppPasswordProtocol::ALL {
            let flag = protocol.mailcow_flag().unwrap();
            assert_eq!(AppPasswordProtocol::from_mailcow_flag(flag), Some(protocol));
        }
        assert_eq!(MailboxRight::Unspecified.doveadm_name(), None);
        assert_eq!(MailboxRight::from_doveadm_name("all"), None);
        assert_eq!(AppPasswordProtocol::from_mailcow_flag("imap"), None);
    }
}
