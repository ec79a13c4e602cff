//! The test kit, for the end-to-end suite, the demo and the benchmarks
//! (package `reconciler-e2e`, `tests/e2e`): simulators of the systems that
//! cannot run here (the Mailcow API, the Authentik API, Nextcloud's `occ`, Stalwart's
//! management API),
//! each also a standalone binary, and the harness that starts the real
//! binaries and the real peers (Dovecot, SOGo, MariaDB, memcached) they talk
//! to.
//!
//! Every server a test starts binds port 0 and reports the port it got: the
//! simulators in the test process read their listener's address, and the
//! binaries the harness spawns write theirs to `LISTEN_ADDR_FILE`
//! ([`harness::Service::listeners`]).
pub mod authentik_sim;
pub mod harness;
pub mod mailcow_sim;
pub mod occ_sim;
pub mod stalwart_sim;
