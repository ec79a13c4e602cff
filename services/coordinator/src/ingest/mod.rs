//! Events other systems send us, stored in the audit log next to the
//! reconciler's own changes (README, "Stalwart security events").
//!
//! - [`signature`]: Stalwart's `X-Signature`, checked before anything is read.
//! - [`stalwart`]: a webhook batch, parsed defensively, mapped onto audit rows.
//! - [`proxy`]: which address delivered a request (`TRUSTED_PROXIES`).
//! - [`handler`]: `POST /ingest/stalwart`.

pub mod handler;
pub mod proxy;
pub mod signature;
pub mod stalwart;

/// The largest webhook body accepted; a larger one is answered 413. Stalwart
/// batches one throttle window (a second by default) of events, far below it.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
