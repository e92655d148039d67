//! Settings, telemetry and shutdown shared by the `voice-agent-api` and `voice-agent-worker`
//! binaries.
//!
//! | module | what it holds |
//! |---|---|
//! | [`settings`] | typed settings read from environment variables, validated at start-up |
//! | [`telemetry`] | `tracing` set-up honouring `RUST_LOG` and `LOG_FORMAT` |
//! | [`shutdown`] | one cancellation token fired by SIGINT or SIGTERM |
//!
//! Temporal connection settings are not here: they come from the SDK's own
//! `ClientOptions::load_from_config` (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
//! `TEMPORAL_API_KEY`, TLS variables, `temporal.toml`).
#![warn(missing_docs)]

pub mod settings;
pub mod shutdown;
pub mod telemetry;

mod temporal;

pub use settings::{
    AgentSettings, ConfigError, Env, MongoSettings, SenderLimitSettings, Settings, TwilioSettings,
    WorkerSettings,
};
pub use temporal::connect_temporal;

/// Installs the ring TLS provider for rustls. HTTP clients are built without a default
/// provider (to keep the build free of C crypto), so each binary installs one before its first
/// HTTPS request. Calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
