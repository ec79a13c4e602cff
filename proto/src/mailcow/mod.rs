//! What is Mailcow's alone: the markers of the objects we create there, and
//! the conversions between the contract's enums and Mailcow's and Dovecot's
//! names. The Mailcow contract's messages are in [`crate::agent`]
//! (`reconciler/agent/v2/mailcow.proto`).

pub mod markers;
pub mod names;
