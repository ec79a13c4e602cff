//! What every reconciler process shares.
//!
//! - [`telemetry`]: `tracing` setup, with OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`propagation`]: W3C trace context carried in gRPC metadata, both directions.
//! - [`grpc`]: the server scaffold every service uses (health, reflection v1 and v1alpha).
//! - `exec` (feature `exec`, agents only): commands in a container or locally.
//! - [`secrets`]: configuration secrets from `NAME` or `NAME_FILE`, and constant-time comparison.

#[cfg(feature = "exec")]
pub mod exec;
pub mod grpc;
pub mod propagation;
pub mod secrets;
pub mod telemetry;

/// Installs the process-wide rustls crypto provider (ring). Every binary calls
/// this first, so no dependency can pick a different provider at random.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
