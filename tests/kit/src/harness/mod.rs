//! Runs the real coordinator and agent binaries over loopback against
//! in-process simulators and real peers, for end-to-end tests, the demo and
//! benchmarks. Every server binds port 0 and reports the port it got: the
//! binaries announce theirs ([`Service::listeners`]); memcached's and sogod's
//! are read from memcached and from the kernel ([`ports`]). MariaDB, which
//! reads port 0 as 3306, is offered ports until it binds one ([`MariaDb`]).
//! Synapse binds port 0 and its port is read from the kernel ([`Synapse`]).
//! PostgreSQL, like MariaDB, is offered ports until it binds one ([`Postgres`]).
//! [`compose`] runs the shipped compose files with the real docker-compose.

mod command;
pub mod compose;
pub mod dovecot;
pub mod mariadb;
pub mod nextcloud;
pub mod ports;
pub mod postgres;
mod process;
pub mod sogo;
mod stack;
pub mod synapse;
pub mod tls;

pub use command::Exec;
pub use dovecot::{DovecotContainer, Imap};
pub use mariadb::MariaDb;
pub use nextcloud::NextcloudContainer;
pub use ports::RefusedPort;
pub use postgres::Postgres;
pub use process::{Service, bin_dir, grpcurl};
pub use sogo::SogoPeers;
pub use stack::{
    AGENT_TOKEN, Authed, MAILCOW_KEY, Stack, StackOptions, StateDbKind, env_pair, start_agent,
};
pub use synapse::{MatrixUser, RateLimits, RoomSpec, Synapse};
pub use tls::CertDir;

/// The tokens the test stack configures.
pub mod stack_tokens {
    pub use super::stack::{ADMIN_TOKEN, AGENT_TOKEN, WEBHOOK_TOKEN};
}

/// The webhook token the test stack configures.
pub const WEBHOOK_TOKEN_FOR_TESTS: &str = stack::WEBHOOK_TOKEN;
