//! A running gateway following its configuration: on `SIGHUP`, and when
//! the configuration file changes, the settings are read again the way
//! they were at start-up (file, environment, flags); the `[auth]` section
//! (keys, secrets, versions, audiences, issuers, JWKS sources, per-tenant
//! settings) is swapped in whole, between two requests, and the limits'
//! numbers follow (buckets of unchanged tenants kept). A configuration that
//! does not load is logged and the running one stays. Settings that only
//! take effect on a restart (listener, upstreams, the limits' backend, ...)
//! are named in the log when they changed.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::auth::Authenticator;
use crate::config::{ConfigSource, Settings};
use crate::metrics::ReloadMetrics;
use crate::ratelimit::RateLimiter;
use crate::reload::{modified, Reload, Trigger};

/// The configuration in force and where it comes from.
pub struct Reconfigure {
    source: ConfigSource,
    authenticator: Arc<Authenticator>,
    rate_limiter: Arc<RateLimiter>,
    metrics: ReloadMetrics,
    /// The settings in force, and the file's modification time when they
    /// were read.
    running: Mutex<(Settings, Option<SystemTime>)>,
}

impl Reconfigure {
    pub fn new(
        source: ConfigSource,
        running: Settings,
        authenticator: Arc<Authenticator>,
        rate_limiter: Arc<RateLimiter>,
        metrics: ReloadMetrics,
    ) -> Self {
        let stamp = source.file.as_deref().and_then(modified);
        Self {
            source,
            authenticator,
            rate_limiter,
            metrics,
            running: Mutex::new((running, stamp)),
        }
    }

    /// Loads and applies the configuration; the error names the key.
    fn apply(&self, running: &Settings) -> Result<Settings, String> {
        let new = self.source.load().map_err(|e| e.to_string())?;
        self.authenticator
            .replace(&new.auth)
            .map_err(|e| format!("auth: {e}"))?;
        self.rate_limiter
            .update(&new.limits.values, &new.auth.tenants);
        let restart = sections_needing_restart(running, &new);
        if !restart.is_empty() {
            tracing::warn!(
                sections = restart.join(", "),
                "configuration changed outside [auth]: those changes take effect after a restart"
            );
        }
        Ok(new)
    }
}

impl Reload for Reconfigure {
    fn reload(&self, trigger: Trigger) {
        let stamp = self.source.file.as_deref().and_then(modified);
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if trigger == Trigger::Poll && stamp == running.1 {
            return;
        }
        // Whatever the outcome, this version of the file was tried: a
        // broken file is reported once, not on every poll.
        running.1 = stamp;
        match self.apply(&running.0) {
            Ok(new) => {
                running.0 = new;
                self.metrics.reloaded(true);
                tracing::info!(trigger = trigger.name(), "configuration reloaded");
            }
            Err(error) => {
                self.metrics.reloaded(false);
                tracing::error!(
                    trigger = trigger.name(),
                    %error,
                    "configuration reload failed; the running configuration stays"
                );
            }
        }
    }
}

/// The limits' numbers, which a reload applies; the rest of `[limits]`
/// (backend, Redis) needs a restart.
const RELOADED_LIMITS: [&str; 5] = [
    "requests_per_second",
    "burst",
    "ingest_bytes_per_second",
    "ingest_burst_bytes",
    "max_inflight",
];

/// The top-level sections whose restart-only settings differ.
fn sections_needing_restart(running: &Settings, new: &Settings) -> Vec<String> {
    let table = |settings: &Settings| {
        let mut table = match toml::Value::try_from(settings) {
            Ok(toml::Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        if let Some(toml::Value::Table(limits)) = table.get_mut("limits") {
            limits.retain(|key, _| !RELOADED_LIMITS.contains(&key));
        }
        table
    };
    let (before, after) = (table(running), table(new));
    let mut changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|section| section.as_str() != "auth")
        .filter(|section| before.get(*section) != after.get(*section))
        .cloned()
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let env = [
            ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://d:1"),
            ("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND", "http://q:1"),
            ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "reload-test-secret"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load(None, env, &Overrides::default()).unwrap()
    }

    #[test]
    fn only_sections_outside_auth_need_a_restart() {
        let running = settings(&[]);
        let reloaded = settings(&[
            ("CORTEX_GATEWAY__AUTH__MIN_TOKEN_VERSION", "3"),
            ("CORTEX_GATEWAY__LIMITS__REQUESTS_PER_SECOND", "7"),
        ]);
        assert!(sections_needing_restart(&running, &reloaded).is_empty());
        let backend = settings(&[
            ("CORTEX_GATEWAY__LIMITS__BACKEND", "redis"),
            ("CORTEX_GATEWAY__LIMITS__REDIS_URL", "redis://127.0.0.1:1"),
        ]);
        assert_eq!(sections_needing_restart(&running, &backend), ["limits"]);
        let moved = settings(&[
            ("CORTEX_GATEWAY__SERVER__HTTP_LISTEN_PORT", "9999"),
            (
                "CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR",
                "http://elsewhere:1",
            ),
        ]);
        assert_eq!(
            sections_needing_restart(&running, &moved),
            ["server", "upstreams"]
        );
    }
}
