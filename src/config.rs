//! Typed settings, merged from defaults < TOML file < environment < flags,
//! and validated once at start-up.
//!
//! Everything that can be wrong with a configuration is found here, before a
//! socket is opened, and reported as one line that names the offending key:
//! an operator paging through a crash-looping pod sees the fix, not a trace.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::header::HeaderName;
use actix_web::http::Uri;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::auth::keys::HMAC_ALGORITHMS;
use crate::duration;
pub use crate::routes::{CustomRoute, ALERTMANAGER, DISTRIBUTOR, QUERY_FRONTEND, RULER};

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
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Values given on the command line; each one overrides file and environment.
///
/// Kept as strings so that the `config` crate converts and reports them with
/// the same rules (and the same key names) as file and environment values.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pairs: Vec<(&'static str, String)>,
}

impl Overrides {
    /// Records `key = value` when the flag was given.
    pub fn set(&mut self, key: &'static str, value: Option<String>) {
        if let Some(value) = value {
            self.pairs.push((key, value));
        }
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    /// Upstreams by name; always holds `distributor` and `query_frontend`.
    pub upstreams: BTreeMap<String, Upstream>,
    pub proxy: ProxySettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub tracing: TracingSettings,
    pub metrics: MetricsSettings,
    /// Operator-defined routes, in file order.
    pub routes: Vec<CustomRoute>,
}

/// Trace export over OTLP. No endpoint means no exporter at all.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// Base OTLP/HTTP endpoint (`http://jaeger:4318`); `/v1/traces` is appended.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled; a sampled parent is always followed.
    pub sample_ratio: f64,
    pub service_name: String,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// Whether success counters carry a `tenant` label.
    pub per_tenant: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub http_listen_address: String,
    pub http_listen_port: u16,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub graceful_shutdown_timeout: Duration,
    /// How long `/ready` answers 503 before the listener closes, so that load
    /// balancers stop sending new requests first.
    pub shutdown_delay: Duration,
    /// Time a client has to send its request head (Go flag
    /// `-server.http-read-timeout`); guards against slowloris clients.
    pub http_read_timeout: Duration,
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
    pub tls: Option<ServerTlsSettings>,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Time an upstream may take to accept the request and send its response head.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for https upstreams.
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any upstream certificate. Logged loudly; for testing only.
    pub tls_insecure_skip_verify: bool,
}

/// The listener's certificate and client-certificate policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub client_auth: ClientAuth,
    pub ca_path: Option<PathBuf>,
}

/// Client certificate policy, named as Go's `tls.ClientAuthType` (the Go
/// gateway's `-server.http-tls-client-auth` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone)]
pub struct AuthSettings {
    /// The key tokens are signed with (`token` mints with it).
    pub jwt_secret: Vec<u8>,
    /// Further keys that are still accepted, for rotation: the lines after
    /// the first in `auth.jwt_secret_file`.
    pub additional_secrets: Vec<Vec<u8>>,
    /// Where the keys came from, when a file: re-read on change and SIGHUP.
    pub jwt_secret_file: Option<PathBuf>,
    pub tenant_claim: String,
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Headers searched for a token after `Authorization` (Go flag
    /// `-gateway.auth.jwt-extra-headers`); never forwarded upstream.
    pub extra_headers: Vec<HeaderName>,
}

impl AuthSettings {
    /// Every `auth.*` default around one HMAC key, from the same defaults a
    /// config file starts from: for benchmarks, fuzz targets and tests that
    /// need an authenticator without a configuration.
    pub fn with_secret(secret: &str) -> Self {
        validate_auth(RawAuth {
            jwt_secret: Some(secret.to_owned()),
            ..RawAuth::default()
        })
        .expect("the default auth settings are valid")
    }
}

impl fmt::Debug for AuthSettings {
    // Hand-written so that a stray `{:?}` can never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"<redacted>")
            .field("additional_secrets", &self.additional_secrets.len())
            .field("jwt_secret_file", &self.jwt_secret_file)
            .field("tenant_claim", &self.tenant_claim)
            .field("audience", &self.audience)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("extra_headers", &self.extra_headers)
            .finish()
    }
}

#[derive(Debug, Clone)]
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

/// An upstream base address, split once so forwarding only concatenates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `scheme://authority`, without a trailing slash.
    pub origin: String,
    /// Path prefix from the address (`""` or `/prefix` without a trailing slash).
    pub path_prefix: String,
}

impl Upstream {
    /// `host[:port]`, as the `Host` header names it.
    pub fn authority(&self) -> &str {
        self.origin
            .split_once("://")
            .map_or(self.origin.as_str(), |(_, authority)| authority)
    }

    /// Parses an absolute `http://` or `https://` address.
    pub fn parse(address: &str) -> Result<Self, String> {
        let uri: Uri = address
            .parse()
            .map_err(|_| format!("`{address}` is not a valid URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(format!(
                    "`{address}` must be an absolute http:// or https:// URL"
                ))
            }
        }
        let authority = uri
            .authority()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("`{address}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{address}` must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(format!("`{address}` must not have a query string"));
        }
        Ok(Self {
            origin: format!("{}://{}", uri.scheme_str().unwrap_or("http"), authority),
            path_prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The address as configured, for logs and `check-config`.
    pub fn address(&self) -> String {
        format!("{}{}", self.origin, self.path_prefix)
    }
}

// ---- raw, as deserialized ------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSettings {
    server: RawServer,
    upstreams: BTreeMap<String, String>,
    proxy: RawProxy,
    auth: RawAuth,
    log: RawLog,
    tracing: RawTracing,
    metrics: RawMetrics,
    routes: Vec<CustomRoute>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTracing {
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

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawMetrics {
    per_tenant: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { per_tenant: true }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawServer {
    http_listen_address: String,
    http_listen_port: u16,
    graceful_shutdown_timeout: String,
    shutdown_delay: String,
    http_read_timeout: String,
    max_request_body_size: u64,
    max_request_header_size: usize,
    max_request_headers: usize,
    http_conn_limit: usize,
    http_tls_cert_path: Option<PathBuf>,
    http_tls_key_path: Option<PathBuf>,
    http_tls_client_auth: String,
    http_tls_ca_path: Option<PathBuf>,
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
            max_request_body_size: 64 * 1024 * 1024,
            max_request_header_size: 64 * 1024,
            max_request_headers: 64,
            http_conn_limit: 0,
            http_tls_cert_path: None,
            http_tls_key_path: None,
            http_tls_client_auth: String::new(),
            http_tls_ca_path: None,
            workers: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawProxy {
    timeout: String,
    connect_timeout: String,
    tls_ca_file: Option<PathBuf>,
    tls_insecure_skip_verify: bool,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            timeout: "5m".to_owned(),
            connect_timeout: "5s".to_owned(),
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawAuth {
    jwt_secret: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    tenant_claim: String,
    audience: StringList,
    algorithms: StringList,
    leeway: String,
    extra_headers: StringList,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secret_file: None,
            tenant_claim: "tenant_id".to_owned(),
            audience: StringList::default(),
            algorithms: StringList(vec![
                "HS256".to_owned(),
                "HS384".to_owned(),
                "HS512".to_owned(),
            ]),
            leeway: "60s".to_owned(),
            extra_headers: StringList::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLog {
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

/// A list given either as a TOML array or as one comma-separated string, which
/// is how a list arrives from an environment variable or a flag.
#[derive(Default)]
struct StringList(Vec<String>);

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

// ---- loading ---------------------------------------------------------------

impl Settings {
    /// Loads defaults, the optional TOML `file`, `CORTEX_GATEWAY__…` variables
    /// from `env` and the flag `overrides`, in rising precedence, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Load(format!(
                    "--config: {} is not a readable file",
                    file.display()
                )));
            }
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let mut env: config::Map<String, String> = env.into_iter().collect();
        adopt_otel_variables(&mut env);
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .separator("__")
                .source(Some(env)),
        );
        for (key, value) in &overrides.pairs {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        let raw: RawSettings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        raw.validate()
    }
}

/// The standard `OTEL_*` variables configure `[tracing]` like our own
/// variables do; `CORTEX_GATEWAY__TRACING__*` wins when both are set.
fn adopt_otel_variables(env: &mut config::Map<String, String>) {
    let sampler_ratio = match env.get("OTEL_TRACES_SAMPLER").map(String::as_str) {
        Some("always_off" | "parentbased_always_off") => Some("0".to_owned()),
        Some("always_on" | "parentbased_always_on") => Some("1".to_owned()),
        Some("traceidratio" | "parentbased_traceidratio") => {
            env.get("OTEL_TRACES_SAMPLER_ARG").cloned()
        }
        _ => None,
    };
    let endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT").cloned().or_else(|| {
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .map(|traces| traces.trim_end_matches("/v1/traces").to_owned())
    });
    let adopted = [
        ("CORTEX_GATEWAY__TRACING__OTLP_ENDPOINT", endpoint),
        (
            "CORTEX_GATEWAY__TRACING__PROTOCOL",
            env.get("OTEL_EXPORTER_OTLP_PROTOCOL").cloned(),
        ),
        (
            "CORTEX_GATEWAY__TRACING__SERVICE_NAME",
            env.get("OTEL_SERVICE_NAME").cloned(),
        ),
        ("CORTEX_GATEWAY__TRACING__SAMPLE_RATIO", sampler_ratio),
    ];
    for (key, value) in adopted {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            env.entry(key.to_owned()).or_insert(value);
        }
    }
}

fn validate_tracing(raw: RawTracing) -> Result<TracingSettings, ConfigError> {
    match raw.protocol.as_str() {
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
    if !(0.0..=1.0).contains(&raw.sample_ratio) {
        return Err(ConfigError::invalid(
            "tracing.sample_ratio",
            "must be between 0 and 1",
        ));
    }
    let otlp_endpoint = match raw
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
        sample_ratio: raw.sample_ratio,
        service_name: raw.service_name,
    })
}

fn parse_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    duration::parse(text).map_err(|message| ConfigError::invalid(key, message))
}

/// Bounds of `server.max_request_header_size`. actix-http refuses request
/// heads over 128 KiB (431) before the gateway sees them, so a larger
/// setting would promise what the server cannot do.
const HEAD_SIZE_RANGE: std::ops::RangeInclusive<usize> = 1024..=128 * 1024;

/// Bounds of `server.max_request_headers`: actix-http parses at most 96.
const HEADER_COUNT_RANGE: std::ops::RangeInclusive<usize> = 8..=96;

fn within(
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

fn is_upstream_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RawSettings {
    fn validate(self) -> Result<Settings, ConfigError> {
        let server = ServerSettings {
            http_listen_address: self.server.http_listen_address,
            http_listen_port: self.server.http_listen_port,
            graceful_shutdown_timeout: parse_duration(
                "server.graceful_shutdown_timeout",
                &self.server.graceful_shutdown_timeout,
            )?,
            shutdown_delay: parse_duration("server.shutdown_delay", &self.server.shutdown_delay)?,
            http_read_timeout: parse_duration(
                "server.http_read_timeout",
                &self.server.http_read_timeout,
            )?,
            max_request_body_size: self.server.max_request_body_size,
            max_request_header_size: within(
                "server.max_request_header_size",
                self.server.max_request_header_size,
                HEAD_SIZE_RANGE,
            )?,
            max_request_headers: within(
                "server.max_request_headers",
                self.server.max_request_headers,
                HEADER_COUNT_RANGE,
            )?,
            http_conn_limit: self.server.http_conn_limit,
            tls: validate_server_tls(
                self.server.http_tls_cert_path,
                self.server.http_tls_key_path,
                &self.server.http_tls_client_auth,
                self.server.http_tls_ca_path,
            )?,
            workers: self.server.workers,
        };
        if server
            .http_listen_address
            .parse::<std::net::IpAddr>()
            .is_err()
        {
            return Err(ConfigError::invalid(
                "server.http_listen_address",
                format!(
                    "`{}` is not an IP address (e.g. 0.0.0.0 or ::)",
                    server.http_listen_address
                ),
            ));
        }

        let upstreams = validate_upstreams(self.upstreams)?;
        for (index, route) in self.routes.iter().enumerate() {
            if !upstreams.contains_key(&route.upstream) {
                let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
                return Err(ConfigError::invalid(
                    format!("routes[{index}].upstream"),
                    format!(
                        "unknown upstream `{}` (configured: {})",
                        route.upstream,
                        known.join(", ")
                    ),
                ));
            }
            crate::routes::validate_custom_prefix(&route.prefix).map_err(|message| {
                ConfigError::invalid(format!("routes[{index}].prefix"), message)
            })?;
        }

        let proxy = ProxySettings {
            timeout: parse_duration("proxy.timeout", &self.proxy.timeout)?,
            connect_timeout: parse_duration("proxy.connect_timeout", &self.proxy.connect_timeout)?,
            tls_ca_file: self.proxy.tls_ca_file,
            tls_insecure_skip_verify: self.proxy.tls_insecure_skip_verify,
        };
        if proxy.timeout.is_zero() {
            return Err(ConfigError::invalid("proxy.timeout", "must be positive"));
        }
        if proxy.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "proxy.connect_timeout",
                "must be positive",
            ));
        }

        let auth = validate_auth(self.auth)?;

        let format = match self.log.format.as_str() {
            "text" | "logfmt" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::invalid(
                    "log.format",
                    format!("`{other}` is not one of text, json"),
                ))
            }
        };
        let level = self.log.level.to_ascii_lowercase();
        if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "`{}` is not one of trace, debug, info, warn, error",
                    self.log.level
                ),
            ));
        }

        Ok(Settings {
            server,
            upstreams,
            proxy,
            auth,
            log: LogSettings { level, format },
            tracing: validate_tracing(self.tracing)?,
            metrics: MetricsSettings {
                per_tenant: self.metrics.per_tenant,
            },
            routes: self.routes,
        })
    }
}

fn validate_server_tls(
    cert_path: Option<PathBuf>,
    key_path: Option<PathBuf>,
    client_auth: &str,
    ca_path: Option<PathBuf>,
) -> Result<Option<ServerTlsSettings>, ConfigError> {
    let client_auth = match client_auth {
        "" | "NoClientCert" => ClientAuth::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(ConfigError::invalid(
                "server.http_tls_client_auth",
                format!("`{client_auth}` accepts unverified client certificates; use VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                "server.http_tls_client_auth",
                format!("`{other}` is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    let empty = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
    let settings = match (cert_path, key_path) {
        (cert, key) if empty(&cert) && empty(&key) => {
            if client_auth != ClientAuth::NoClientCert {
                return Err(ConfigError::invalid(
                    "server.http_tls_client_auth",
                    "needs server.http_tls_cert_path and server.http_tls_key_path",
                ));
            }
            return Ok(None);
        }
        (Some(cert_path), Some(key_path))
            if !cert_path.as_os_str().is_empty() && !key_path.as_os_str().is_empty() =>
        {
            ServerTlsSettings {
                cert_path,
                key_path,
                client_auth,
                ca_path: ca_path.filter(|p| !p.as_os_str().is_empty()),
            }
        }
        (cert, _) if empty(&cert) => {
            return Err(ConfigError::invalid(
                "server.http_tls_cert_path",
                "must be set together with server.http_tls_key_path",
            ))
        }
        _ => {
            return Err(ConfigError::invalid(
                "server.http_tls_key_path",
                "must be set together with server.http_tls_cert_path",
            ))
        }
    };
    crate::tls::check(&settings).map_err(|e| ConfigError::invalid(e.key, e.message))?;
    Ok(Some(settings))
}

fn validate_upstreams(
    raw: BTreeMap<String, String>,
) -> Result<BTreeMap<String, Upstream>, ConfigError> {
    let mut upstreams = BTreeMap::new();
    for (name, address) in raw {
        let key = format!("upstreams.{name}");
        if !is_upstream_name(&name) {
            return Err(ConfigError::invalid(
                key,
                "upstream names use only a-z, 0-9 and _",
            ));
        }
        // An empty address is how Go flags say "not set" (`-gateway.ruler.address=`).
        if address.trim().is_empty() {
            continue;
        }
        let upstream = Upstream::parse(address.trim()).map_err(|m| ConfigError::invalid(key, m))?;
        upstreams.insert(name, upstream);
    }
    for (name, flag) in [
        (DISTRIBUTOR, "-gateway.distributor.address"),
        (QUERY_FRONTEND, "-gateway.query-frontend.address"),
    ] {
        if !upstreams.contains_key(name) {
            return Err(ConfigError::invalid(
                format!("upstreams.{name}"),
                format!(
                    "must be set (flag {flag}, env {ENV_PREFIX}__UPSTREAMS__{})",
                    name.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(upstreams)
}

fn validate_auth(raw: RawAuth) -> Result<AuthSettings, ConfigError> {
    let (secret, additional_secrets, jwt_secret_file) = match (raw.jwt_secret, raw.jwt_secret_file)
    {
        (Some(secret), None) => (secret.into_bytes(), Vec::new(), None),
        (None, Some(path)) => {
            let mut keys = crate::auth::keys::read_secret_file(&path)
                .map_err(|error| ConfigError::invalid("auth.jwt_secret_file", error.to_string()))?
                .into_iter();
            let first = keys.next().unwrap_or_default();
            (first, keys.collect(), Some(path))
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                "set either auth.jwt_secret or auth.jwt_secret_file, not both",
            ))
        }
        (None, None) => (Vec::new(), Vec::new(), None),
    };
    if secret.is_empty() {
        return Err(ConfigError::invalid(
            "auth.jwt_secret",
            format!(
                "must be set (flag -gateway.auth.jwt-secret, env {ENV_PREFIX}__AUTH__JWT_SECRET, or auth.jwt_secret_file)"
            ),
        ));
    }
    let tenant_claim = raw.tenant_claim.trim().to_owned();
    if tenant_claim.is_empty() {
        return Err(ConfigError::invalid(
            "auth.tenant_claim",
            "must name a claim",
        ));
    }
    let mut algorithms = Vec::new();
    for name in raw.algorithms.0 {
        let upper = name.to_ascii_uppercase();
        let Some(&algorithm) = HMAC_ALGORITHMS
            .iter()
            .find(|known| format!("{known:?}") == upper)
        else {
            return Err(ConfigError::invalid(
                "auth.algorithms",
                format!("`{name}` is not supported (HS256, HS384, HS512)"),
            ));
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::invalid(
            "auth.algorithms",
            "must list at least one of HS256, HS384, HS512",
        ));
    }
    let mut extra_headers = Vec::new();
    for name in raw.extra_headers.0 {
        let header = HeaderName::try_from(name.as_str()).map_err(|_| {
            ConfigError::invalid(
                "auth.extra_headers",
                format!("`{name}` is not a header name"),
            )
        })?;
        extra_headers.push(header);
    }
    Ok(AuthSettings {
        extra_headers,
        additional_secrets,
        jwt_secret_file,
        jwt_secret: secret,
        tenant_claim,
        audience: raw.audience.0,
        algorithms,
        leeway: parse_duration("auth.leeway", &raw.leeway)?,
    })
}

// ---- effective configuration, for `check-config` -------------------------

#[derive(Serialize)]
struct Effective<'a> {
    server: EffectiveServer<'a>,
    upstreams: BTreeMap<&'a str, String>,
    proxy: EffectiveProxy<'a>,
    auth: EffectiveAuth<'a>,
    log: EffectiveLog<'a>,
    tracing: EffectiveTracing<'a>,
    metrics: EffectiveMetrics,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [CustomRoute],
}

#[derive(Serialize)]
struct EffectiveServer<'a> {
    http_listen_address: &'a str,
    http_listen_port: u16,
    graceful_shutdown_timeout: String,
    shutdown_delay: String,
    http_read_timeout: String,
    max_request_body_size: u64,
    max_request_header_size: usize,
    max_request_headers: usize,
    http_conn_limit: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_tls_cert_path: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_tls_key_path: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_tls_client_auth: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_tls_ca_path: Option<&'a Path>,
    workers: usize,
}

#[derive(Serialize)]
struct EffectiveProxy<'a> {
    timeout: String,
    connect_timeout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_ca_file: Option<&'a Path>,
    tls_insecure_skip_verify: bool,
}

#[derive(Serialize)]
struct EffectiveAuth<'a> {
    /// The secret is never printed; with a secret file, the file is named
    /// and the count of its keys shown instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_secret: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_secret_file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt_secret_file_keys: Option<usize>,
    tenant_claim: &'a str,
    audience: &'a [String],
    algorithms: Vec<String>,
    leeway: String,
    extra_headers: Vec<&'a str>,
}

#[derive(Serialize)]
struct EffectiveTracing<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<&'a str>,
    protocol: &'static str,
    sample_ratio: f64,
    service_name: &'a str,
}

#[derive(Serialize)]
struct EffectiveMetrics {
    per_tenant: bool,
}

#[derive(Serialize)]
struct EffectiveLog<'a> {
    level: &'a str,
    format: LogFormat,
}

impl Settings {
    /// The effective configuration as TOML, with every secret replaced by
    /// `<redacted>`, so it can be pasted into a ticket safely.
    pub fn to_redacted_toml(&self) -> String {
        let effective = Effective {
            server: EffectiveServer {
                http_listen_address: &self.server.http_listen_address,
                http_listen_port: self.server.http_listen_port,
                graceful_shutdown_timeout: duration::format(self.server.graceful_shutdown_timeout),
                shutdown_delay: duration::format(self.server.shutdown_delay),
                http_read_timeout: duration::format(self.server.http_read_timeout),
                max_request_body_size: self.server.max_request_body_size,
                max_request_header_size: self.server.max_request_header_size,
                max_request_headers: self.server.max_request_headers,
                http_conn_limit: self.server.http_conn_limit,
                http_tls_cert_path: self.server.tls.as_ref().map(|t| t.cert_path.as_path()),
                http_tls_key_path: self.server.tls.as_ref().map(|t| t.key_path.as_path()),
                http_tls_client_auth: self
                    .server
                    .tls
                    .as_ref()
                    .map(|t| format!("{:?}", t.client_auth)),
                http_tls_ca_path: self.server.tls.as_ref().and_then(|t| t.ca_path.as_deref()),
                workers: self.server.workers,
            },
            upstreams: self
                .upstreams
                .iter()
                .map(|(name, upstream)| (name.as_str(), upstream.address()))
                .collect(),
            proxy: EffectiveProxy {
                timeout: duration::format(self.proxy.timeout),
                connect_timeout: duration::format(self.proxy.connect_timeout),
                tls_ca_file: self.proxy.tls_ca_file.as_deref(),
                tls_insecure_skip_verify: self.proxy.tls_insecure_skip_verify,
            },
            auth: EffectiveAuth {
                jwt_secret: self.auth.jwt_secret_file.is_none().then_some("<redacted>"),
                jwt_secret_file: self.auth.jwt_secret_file.as_deref(),
                jwt_secret_file_keys: self
                    .auth
                    .jwt_secret_file
                    .as_ref()
                    .map(|_| 1 + self.auth.additional_secrets.len()),
                tenant_claim: &self.auth.tenant_claim,
                audience: &self.auth.audience,
                algorithms: self
                    .auth
                    .algorithms
                    .iter()
                    .map(|a| format!("{a:?}"))
                    .collect(),
                leeway: duration::format(self.auth.leeway),
                extra_headers: self.auth.extra_headers.iter().map(|h| h.as_str()).collect(),
            },
            log: EffectiveLog {
                level: &self.log.level,
                format: self.log.format,
            },
            tracing: EffectiveTracing {
                otlp_endpoint: self.tracing.otlp_endpoint.as_deref(),
                protocol: "http",
                sample_ratio: self.tracing.sample_ratio,
                service_name: &self.tracing.service_name,
            },
            metrics: EffectiveMetrics {
                per_tenant: self.metrics.per_tenant,
            },
            routes: &self.routes,
        };
        toml::to_string(&effective).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://d:8080"),
        (
            "CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND",
            "http://q:8080/prefix/",
        ),
        ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "s3cret"),
    ];

    fn write_file(contents: &str) -> tempfile_path::TempFile {
        tempfile_path::TempFile::new(contents)
    }

    /// A throwaway file for config tests, without a tempfile dependency.
    mod tempfile_path {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};

        pub struct TempFile(pub PathBuf);

        impl TempFile {
            pub fn new(contents: &str) -> Self {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "cortex-gateway-test-{}-{}.toml",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::write(&path, contents).unwrap();
                Self(path)
            }
        }

        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn defaults_apply_and_env_keys_use_double_underscores() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.http_listen_port, 80);
        assert_eq!(settings.server.http_listen_address, "0.0.0.0");
        assert_eq!(
            settings.server.graceful_shutdown_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(settings.proxy.timeout, Duration::from_secs(300));
        assert_eq!(settings.proxy.connect_timeout, Duration::from_secs(5));
        assert_eq!(settings.auth.tenant_claim, "tenant_id");
        assert_eq!(settings.auth.jwt_secret, b"s3cret");
        assert!(settings.auth.audience.is_empty());
        assert_eq!(settings.upstreams[DISTRIBUTOR].origin, "http://d:8080");
        assert_eq!(settings.upstreams[QUERY_FRONTEND].path_prefix, "/prefix");
        assert_eq!(settings.log.format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_env_and_env_beats_file() {
        let file = write_file(
            r#"
            [server]
            http_listen_port = 8080
            graceful_shutdown_timeout = "10s"
            [upstreams]
            distributor = "http://file-d"
            query_frontend = "http://file-q"
            [auth]
            jwt_secret = "from-file"
            "#,
        );
        let env_vars = env(&[
            ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://env-d"),
            ("CORTEX_GATEWAY__SERVER__HTTP_LISTEN_PORT", "9000"),
            ("CORTEX_GATEWAY__AUTH__JWT_SECRET", "from-env"),
        ]);
        let mut overrides = Overrides::default();
        overrides.set("server.http_listen_port", Some("9100".to_owned()));

        let settings = Settings::load(Some(&file.0), env_vars, &overrides).unwrap();
        assert_eq!(settings.server.http_listen_port, 9100, "flag wins");
        assert_eq!(
            settings.upstreams[DISTRIBUTOR].origin, "http://env-d",
            "env beats file"
        );
        assert_eq!(
            settings.upstreams[QUERY_FRONTEND].origin, "http://file-q",
            "file beats default"
        );
        assert_eq!(settings.auth.jwt_secret, b"from-env");
        assert_eq!(
            settings.server.graceful_shutdown_timeout,
            Duration::from_secs(10)
        );
    }

    #[test]
    fn numeric_looking_secrets_are_kept_verbatim() {
        let mut vars = env(&MINIMAL[..2]);
        vars.push(("CORTEX_GATEWAY__AUTH__JWT_SECRET".into(), "0123e5".into()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.jwt_secret, b"0123e5");
    }

    #[test]
    fn lists_come_from_arrays_or_comma_separated_env() {
        let mut vars = env(MINIMAL);
        vars.push((
            "CORTEX_GATEWAY__AUTH__AUDIENCE".into(),
            "cortex, mimir".into(),
        ));
        vars.push(("CORTEX_GATEWAY__AUTH__ALGORITHMS".into(), "HS512".into()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.audience, ["cortex", "mimir"]);
        assert_eq!(settings.auth.algorithms, [Algorithm::HS512]);

        let file = write_file("[auth]\naudience = [\"a\", \"b\"]\n");
        let settings = Settings::load(Some(&file.0), env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.auth.audience, ["a", "b"]);
    }

    fn error_of(file: Option<&str>, vars: &[(&str, &str)]) -> String {
        let file = file.map(write_file);
        Settings::load(
            file.as_ref().map(|f| f.0.as_path()),
            env(vars),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let no_secret = error_of(None, &MINIMAL[..2]);
        assert!(
            no_secret.starts_with("auth.jwt_secret: must be set (flag -gateway.auth.jwt-secret, env CORTEX_GATEWAY__AUTH__JWT_SECRET"),
            "{no_secret}"
        );
        let empty_secret = error_of(
            None,
            &[
                MINIMAL[0],
                MINIMAL[1],
                ("CORTEX_GATEWAY__AUTH__JWT_SECRET", ""),
            ],
        );
        assert!(
            empty_secret.starts_with("auth.jwt_secret: must be set"),
            "{empty_secret}"
        );

        let no_distributor = error_of(None, &MINIMAL[1..]);
        assert!(
            no_distributor.starts_with("upstreams.distributor: must be set"),
            "{no_distributor}"
        );

        for (address, why) in [
            ("d:8080", "absolute"),
            ("ftp://d", "absolute"),
            ("/relative", "absolute"),
            ("http://user:pw@d", "credentials"),
            ("http://d/?x=1", "query"),
        ] {
            let error = error_of(
                None,
                &[
                    ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", address),
                    MINIMAL[1],
                    MINIMAL[2],
                ],
            );
            assert!(
                error.starts_with("upstreams.distributor: "),
                "{address}: {error}"
            );
            assert!(error.contains(why), "{address}: {error}");
        }

        // A file mistake: the error starts with the key to change.
        for (file, start) in [
            (
                "[[routes]]\nprefix = \"/loki/api/v1/push\"\nupstream = \"loki\"\n",
                "routes[0].upstream: unknown upstream `loki`",
            ),
            ("[proxy]\ntimeout = \"soon\"\n", "proxy.timeout: "),
            ("[auth]\nalgorithms = [\"none\"]\n", "auth.algorithms: "),
            (
                "[server]\nmax_request_header_size = 131073\n",
                "server.max_request_header_size: 131073 is out of range",
            ),
            (
                "[server]\nmax_request_headers = 97\n",
                "server.max_request_headers: 97 is out of range",
            ),
            (
                "[server]\nmax_request_headers = 0\n",
                "server.max_request_headers: ",
            ),
        ] {
            let error = error_of(Some(file), MINIMAL);
            assert!(error.starts_with(start), "{file}: {error}");
        }
        // Mistakes the config crate reports still name the key.
        for (file, named) in [
            ("[auth]\njwt_secert = \"x\"\n", "jwt_secert"),
            (
                "[server]\nhttp_listen_port = \"eighty\"\n",
                "server.http_listen_port",
            ),
        ] {
            let error = error_of(Some(file), MINIMAL);
            assert!(error.contains(named), "{file}: {error}");
        }
    }

    #[test]
    fn otel_variables_configure_tracing_below_our_own() {
        let mut vars = env(MINIMAL);
        vars.push((
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            "http://jaeger:4318/".into(),
        ));
        vars.push(("OTEL_SERVICE_NAME".into(), "gw-eu".into()));
        vars.push((
            "OTEL_TRACES_SAMPLER".into(),
            "parentbased_traceidratio".into(),
        ));
        vars.push(("OTEL_TRACES_SAMPLER_ARG".into(), "0.25".into()));
        let settings = Settings::load(None, vars.clone(), &Overrides::default()).unwrap();
        assert_eq!(
            settings.tracing.otlp_endpoint.as_deref(),
            Some("http://jaeger:4318")
        );
        assert_eq!(settings.tracing.service_name, "gw-eu");
        assert_eq!(settings.tracing.sample_ratio, 0.25);

        vars.push((
            "CORTEX_GATEWAY__TRACING__SERVICE_NAME".into(),
            "ours".into(),
        ));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.tracing.service_name, "ours");

        let defaults = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(defaults.tracing.otlp_endpoint, None);
        assert_eq!(defaults.tracing.service_name, "cortex-gateway");

        let grpc = error_of(Some("[tracing]\nprotocol = \"grpc\"\n"), MINIMAL);
        assert!(grpc.starts_with("tracing.protocol: "), "{grpc}");
        let ratio = error_of(Some("[tracing]\nsample_ratio = 2.0\n"), MINIMAL);
        assert!(ratio.starts_with("tracing.sample_ratio: "), "{ratio}");
    }

    #[test]
    fn secret_files_hold_one_key_per_line_first_signs() {
        let file = write_file("new-key\n\nold-key  \r\n");
        let mut vars = env(&MINIMAL[..2]);
        vars.push((
            "CORTEX_GATEWAY__AUTH__JWT_SECRET_FILE".into(),
            file.0.display().to_string(),
        ));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert_eq!(settings.auth.jwt_secret, b"new-key");
        assert_eq!(settings.auth.additional_secrets, [b"old-key".to_vec()]);
        assert_eq!(
            settings.auth.jwt_secret_file.as_deref(),
            Some(file.0.as_path())
        );

        let empty = write_file("\n  \n");
        let mut vars = env(&MINIMAL[..2]);
        vars.push((
            "CORTEX_GATEWAY__AUTH__JWT_SECRET_FILE".into(),
            empty.0.display().to_string(),
        ));
        let error = Settings::load(None, vars, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("auth.jwt_secret_file: "), "{error}");
    }

    #[test]
    fn head_limits_default_and_stay_within_what_actix_can_enforce() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.max_request_header_size, 65536);
        assert_eq!(settings.server.max_request_headers, 64);

        let file = "[server]\nmax_request_header_size = 131072\nmax_request_headers = 96\n";
        let file = write_file(file);
        let settings = Settings::load(Some(&file.0), env(MINIMAL), &Overrides::default()).unwrap();
        assert_eq!(settings.server.max_request_header_size, 131072);
        assert_eq!(settings.server.max_request_headers, 96);
        // Beyond either bound is an error: see `errors_name_the_key`.
    }

    #[test]
    fn empty_optional_upstreams_mean_unset() {
        let mut vars = env(MINIMAL);
        vars.push(("CORTEX_GATEWAY__UPSTREAMS__RULER".into(), String::new()));
        let settings = Settings::load(None, vars, &Overrides::default()).unwrap();
        assert!(!settings.upstreams.contains_key(RULER));
    }

    #[test]
    fn redacted_toml_hides_the_secret_and_reloads() {
        let settings = Settings::load(None, env(MINIMAL), &Overrides::default()).unwrap();
        let rendered = settings.to_redacted_toml();
        assert!(!rendered.contains("s3cret"), "{rendered}");
        assert!(
            rendered.contains("jwt_secret = \"<redacted>\""),
            "{rendered}"
        );
        assert!(!format!("{settings:?}").contains("s3cret"));

        let file = write_file(&rendered);
        let reloaded =
            Settings::load(Some(&file.0), env(&MINIMAL[2..]), &Overrides::default()).unwrap();
        assert_eq!(reloaded.upstreams, settings.upstreams);
        assert_eq!(reloaded.proxy.timeout, settings.proxy.timeout);
    }
}
