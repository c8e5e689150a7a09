//! The `[log]` and `[tracing]` sections.

use serde::{Deserialize, Serialize};

use crate::settings::ConfigError;
use crate::upstream::Upstream;

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    level: String,
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: "text".to_owned(),
        }
    }
}

impl RawLog {
    pub fn validate(self) -> Result<LogSettings, ConfigError> {
        let format = match self.format.as_str() {
            "text" | "logfmt" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("`{other}` is not one of text, json"),
                ))
            }
        };
        let level = self.level.to_ascii_lowercase();
        if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "`{}` is not one of trace, debug, info, warn, error",
                    self.level
                ),
            ));
        }
        Ok(LogSettings { level, format })
    }
}

/// Trace export over OTLP/HTTP, the one protocol built in. No endpoint
/// means no exporter at all.
#[derive(Debug, Clone, Serialize)]
pub struct TracingSettings {
    /// Base OTLP/HTTP endpoint (`http://jaeger:4318`); `/v1/traces` is appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled; a sampled parent is always followed.
    pub sample_ratio: f64,
    pub service_name: String,
}

/// `[tracing]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTracing {
    otlp_endpoint: Option<String>,
    protocol: String,
    sample_ratio: f64,
    service_name: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            protocol: "http".to_owned(),
            sample_ratio: 1.0,
            service_name: "cortex-gateway".to_owned(),
        }
    }
}

impl RawTracing {
    pub fn validate(self) -> Result<TracingSettings, ConfigError> {
        match self.protocol.as_str() {
            "http" | "http/protobuf" => {}
            "grpc" => {
                return Err(ConfigError::invalid(
                    "tracing.protocol",
                    "grpc is not built in; use http (OTLP/HTTP, port 4318 on Jaeger and the OpenTelemetry Collector)",
                ))
            }
            other => {
                return Err(ConfigError::invalid(
                    "tracing.protocol",
                    format!("`{other}` is not one of http, grpc"),
                ))
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                "tracing.sample_ratio",
                "must be between 0 and 1",
            ));
        }
        let otlp_endpoint = match self
            .otlp_endpoint
            .map(|e| e.trim().trim_end_matches('/').to_owned())
        {
            None => None,
            Some(endpoint) if endpoint.is_empty() => None,
            Some(endpoint) => {
                if !endpoint.starts_with("http://") {
                    return Err(ConfigError::invalid(
                        "tracing.otlp_endpoint",
                        format!(
                            "`{endpoint}` must be an http:// URL (send to a local collector or agent)"
                        ),
                    ));
                }
                Upstream::parse(&endpoint)
                    .map_err(|m| ConfigError::invalid("tracing.otlp_endpoint", m))?;
                Some(endpoint)
            }
        };
        Ok(TracingSettings {
            otlp_endpoint,
            sample_ratio: self.sample_ratio,
            service_name: self.service_name,
        })
    }
}
