//! Logging set-up: text or JSON lines on stderr, filtered by `log.level`.
//!
//! What is logged is decided at the call sites, which never pass a token, a
//! secret or an `Authorization` value; this module only decides the shape.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, refines the level
/// for debugging a single module without touching the configuration.
pub fn init(settings: &LogSettings) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(&settings.level));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match settings.format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Only fails when a subscriber already exists (embedding, tests); the
    // existing one keeps working.
    drop(result);
}
