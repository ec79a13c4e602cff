//! The Mailcow contract's enums at the coordinator's edge: inside, rights
//! and protocols keep the names group attributes and `APP_PASSWORD_PROTOCOLS`
//! use (doveadm's, Mailcow's flags).

use reconciler_proto::agent::{AppPasswordProtocol, MailboxRight};

/// A right as the coordinator names it (doveadm's name) on the wire. A
/// name the contract does not know goes as UNSPECIFIED, which the agent
/// refuses for good; attribute parsing only lets doveadm's names through.
pub fn wire_right(name: &str) -> i32 {
    MailboxRight::from_doveadm_name(name).unwrap_or_default() as i32
}

/// An observed right under doveadm's name; one the contract does not know
/// keeps a name no wanted set holds, so the entry is rewritten.
pub fn right_name(right: MailboxRight) -> String {
    right.doveadm_name().unwrap_or("unspecified").to_owned()
}

/// Protocols as configured (Mailcow's flags, `APP_PASSWORD_PROTOCOLS`) on
/// the wire; an unknown flag goes as UNSPECIFIED, which the agent refuses.
pub fn wire_protocols(flags: &[String]) -> Vec<i32> {
    flags
        .iter()
        .map(|f| AppPasswordProtocol::from_mailcow_flag(f).unwrap_or_default() as i32)
        .collect()
}

/// An observed protocol under Mailcow's flag name.
pub fn protocol_name(protocol: AppPasswordProtocol) -> String {
    protocol.mailcow_flag().unwrap_or("unspecified").to_owned()
}
