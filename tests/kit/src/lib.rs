//! The test kit, for the end-to-end suite, the demo and the benchmarks
//! (package `reconciler-e2e`, `tests/e2e`): simulators of the systems that
//! cannot run here (the Mailcow API, the Authentik API, Nextcloud's `occ`),
//! each also a standalone binary, and the harness that starts the real
//! binaries and the real peers (Dovecot, SOGo, MariaDB, memcached) they talk
//! to.
pub mod authentik_sim;
pub mod harness;
pub mod mailcow_sim;
pub mod occ_sim;
