//! Logging set-up: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` for machines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. Later calls do nothing (tests call it repeatedly).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
