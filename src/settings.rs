//! What every section of the configuration shares: the error that names
//! the key to change, the value types the file, environment and flags all
//! spell the same way, and a secret that never prints itself.
//!
//! Each module owns its section (`auth`, `routes`, `upstream`, `tls`,
//! `server`, `telemetry`, `metrics`): the raw form as deserialized, its
//! validation, and the validated settings, which serialize back to the same
//! keys for `check-config`. `config` only merges the sources and hands each
//! module its section.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::duration;

/// The environment variable prefix; keys are `CORTEX_GATEWAY__<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "CORTEX_GATEWAY";

/// A configuration mistake, always tied to the key that has to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key holds a value we refuse to run with.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// The file or environment could not be read or parsed at all.
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses a Go-style duration (`500ms`, `1m30s`), naming `key` on failure.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    duration::parse(text).map_err(|message| ConfigError::invalid(key, message))
}

/// Writes a duration back the way the file spells it.
pub fn serialize_duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&duration::format(*value))
}

/// Writes a value through its `Display`, for types the file spells as a
/// string (header names, algorithms).
pub fn serialize_display_list<T: fmt::Display, S: Serializer>(
    values: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(ToString::to_string))
}

/// Checks that `value` of `key` lies within `range`, the bounds of what the
/// HTTP layer can enforce.
pub fn within(
    key: &str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "{value} is out of range: it must be between {} and {} (actix-http's own ceiling)",
                range.start(),
                range.end()
            ),
        ))
    }
}

/// A list given either as a TOML array or as one comma-separated string, which
/// is how a list arrives from an environment variable or a flag.
#[derive(Debug, Default, Clone)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            Csv(String),
        }
        let items = match Either::deserialize(deserializer)? {
            Either::List(items) => items,
            Either::Csv(text) => text.split(',').map(str::to_owned).collect(),
        };
        Ok(Self(
            items
                .into_iter()
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
        ))
    }
}

/// Key material: compared and used as bytes, but `{:?}` and `check-config`
/// only ever show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_themselves() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        assert_eq!(secret.expose(), b"hunter2");
    }
}
