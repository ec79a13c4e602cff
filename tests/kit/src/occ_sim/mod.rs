//! A stand-in for Nextcloud's `occ` with the Mail app, faithful to
//! reference sogo-nextcloud.md B6/B7: positional arguments, output strings
//! on the streams the real one uses, exit codes, JSON export, maintenance
//! mode, a disabled Mail app, a wrong uid. It runs inside a container as
//! `php occ …` so the nextcloud-agent's real `docker exec` path is tested.
//!
//! State lives in one JSON file (locked while a command runs). Unlike real
//! Nextcloud it keeps passwords in clear, so tests can check that an
//! account's password verifies against its Mailcow app password.

mod argv;
mod commands;
mod state;

pub use commands::{Invocation, run};
pub use state::{Account, Endpoint, State};
