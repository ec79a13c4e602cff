//! The end-to-end suite, one test binary (`cargo test -p reconciler-e2e
//! --test e2e`): every module starts the real service binaries against real
//! peers or the simulators of the test kit (`reconciler-testkit`). One binary
//! links the workspace once instead of once per file, which keeps a clean
//! build small enough for a CI machine's disk: a new suite is a module here.

// The whole binary is tests: helpers may unwrap, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod authentik_listing;
mod catchup;
mod cli;
mod compose;
mod dovecot;
mod edges;
mod grpc;
mod ha;
mod mailcow;
mod mailcow_agent;
mod matrix_agent;
mod matrix_client;
mod matrix_coordinator;
mod metrics;
mod mtls;
mod nextcloud;
mod nextcloud_db;
mod operator_tls;
mod request_floor;
mod safety;
mod sogo;
mod stalwart_agent;
mod stalwart_coordinator;
mod stalwart_ingest;
mod state_db;
mod status_page;
mod trace_context;
