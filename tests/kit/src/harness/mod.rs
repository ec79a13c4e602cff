//! Runs the real coordinator and mailcow-agent binaries over loopback against
//! in-process simulators, for end-to-end tests and benchmarks.

pub mod dovecot;
pub mod nextcloud;
mod process;
pub mod sogo;
mod stack;

pub use dovecot::{DovecotContainer, Imap};
pub use nextcloud::NextcloudContainer;
pub use process::{Service, bin_dir, free_port};
pub use sogo::SogoPeers;
pub use stack::{AGENT_TOKEN, Authed, MAILCOW_KEY, Stack, StackOptions};

/// The tokens the test stack configures.
pub mod stack_tokens {
    pub use super::stack::{ADMIN_TOKEN, AGENT_TOKEN, WEBHOOK_TOKEN};
}

/// The webhook token the test stack configures.
pub const WEBHOOK_TOKEN_FOR_TESTS: &str = stack::WEBHOOK_TOKEN;
