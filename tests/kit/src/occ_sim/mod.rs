//! A stand-in for Nextcloud's `occ` with the Mail app, faithful to
//! reference sogo-nextcloud.md B6/B7: positional arguments, output strings
//! on the streams the real one uses, exit codes, JSON export, maintenance
//! mode, a disabled Mail app, a wrong uid. It runs inside a container as
//! `php occ …` so the nextcloud-agent's real `docker exec` path is tested.
//!
//! State lives in one JSON file (locked while a command runs); the Mail
//! accounts can live in a real MariaDB `oc_mail_accounts` table instead
//! ([`MariaDbAccounts`]). Unlike real Nextcloud it keeps passwords in clear,
//! so tests can check that an account's password verifies against its
//! Mailcow app password. Each call can spend a configured PHP boot time
//! first (`OCC_SIM_BOOT_MS`), and every call is logged by command, so tests
//! count occ processes.

mod argv;
mod commands;
mod mariadb;
mod state;

pub use commands::{Invocation, run, run_with, unhandled};
pub use mariadb::{MariaDbAccounts, create_table_sql};
pub use state::{Account, AccountStore, Endpoint, FileAccounts, State, StoreError};
