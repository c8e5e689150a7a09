//! The `[server]` section: the client-facing listener (address, port,
//! TLS, timeouts, connection and head limits, workers). Its own module so
//! that `config` can hold it without depending on the app it configures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::{parse_duration, serialize_duration, within, ConfigError};
use crate::tls::{RawServerTls, ServerTlsSettings};

/// Bounds of `server.max_request_header_size`. actix-http refuses request
/// heads over 128 KiB (431) before the gateway sees them, so a larger
/// setting would promise what the server cannot do.
const HEAD_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1024..=128 * 1024;

/// Bounds of `server.max_request_headers`: actix-http parses at most 96.
const HEADER_COUNT_RANGE: std::ops::RangeInclusive<usize> = 8..=96;

/// The listener and its limits.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSettings {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    /// How long in-flight requests may take to finish after shutdown begins.
    #[serde(serialize_with = "serialize_duration")]
    pub graceful_shutdown_timeout: Duration,
    /// How long `/ready` answers 503 before the listener closes, so that load
    /// balancers stop sending new requests first.
    #[serde(serialize_with = "serialize_duration")]
    pub shutdown_delay: Duration,
    /// Time a client has to send its request head (Go flag
    /// `-server.http-read-timeout`); guards against slowloris clients.
    #[serde(serialize_with = "serialize_duration")]
    pub http_read_timeout: Duration,
    /// How long a kept-alive client connection may wait for its next
    /// request (Go flag `-server.http-idle-timeout`, same default); `0s`
    /// closes each connection after its response.
    #[serde(serialize_with = "serialize_duration")]
    pub http_idle_timeout: Duration,
    /// Largest request body forwarded, in bytes; larger ones get 413.
    pub max_request_body_size: u64,
    /// Largest request head (request line and header fields), in bytes;
    /// larger ones get 431.
    pub max_request_header_size: usize,
    /// Most header fields in one request; more get 431.
    pub max_request_headers: usize,
    /// Most simultaneous client connections; 0 means unlimited.
    pub http_conn_limit: usize,
    /// Serve HTTPS instead of HTTP when set.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
}

/// `[server]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    http_listen_address: String,
    http_listen_port: u16,
    graceful_shutdown_timeout: String,
    shutdown_delay: String,
    http_read_timeout: String,
    http_idle_timeout: String,
    max_request_body_size: u64,
    max_request_header_size: usize,
    max_request_headers: usize,
    http_conn_limit: usize,
    #[serde(flatten)]
    tls: RawServerTls,
    workers: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            http_listen_address: "0.0.0.0".to_owned(),
            http_listen_port: 80,
            graceful_shutdown_timeout: "30s".to_owned(),
            shutdown_delay: "0s".to_owned(),
            http_read_timeout: "30s".to_owned(),
            http_idle_timeout: "2m".to_owned(),
            max_request_body_size: 64 * 1024 * 1024,
            max_request_header_size: 64 * 1024,
            max_request_headers: 64,
            http_conn_limit: 0,
            tls: RawServerTls::default(),
            workers: 0,
        }
    }
}

impl RawServer {
    pub fn validate(self) -> Result<ServerSettings, ConfigError> {
        if self
            .http_listen_address
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            return Err(ConfigError::invalid(
                "server.http_listen_address",
                format!(
                    "`{}` is not an IP address (e.g. 0.0.0.0 or ::)",
                    self.http_listen_address
                ),
            ));
        }
        Ok(ServerSettings {
            http_listen_address: self.http_listen_address,
            http_listen_port: self.http_listen_port,
            graceful_shutdown_timeout: parse_duration(
                "server.graceful_shutdown_timeout",
                &self.graceful_shutdown_timeout,
            )?,
            shutdown_delay: parse_duration("server.shutdown_delay", &self.shutdown_delay)?,
            http_read_timeout: parse_duration("server.http_read_timeout", &self.http_read_timeout)?,
            http_idle_timeout: parse_duration("server.http_idle_timeout", &self.http_idle_timeout)?,
            max_request_body_size: self.max_request_body_size,
            max_request_header_size: within(
                "server.max_request_header_size",
                self.max_request_header_size,
                HEAD_SIZE_RANGE,
            )?,
            max_request_headers: within(
                "server.max_request_headers",
                self.max_request_headers,
                HEADER_COUNT_RANGE,
            )?,
            http_conn_limit: self.http_conn_limit,
            tls: self.tls.validate()?,
            workers: self.workers,
        })
    }
}
