//! Prometheus series. The Go gateway's series keep their names and labels so
//! existing dashboards and alerts keep working after the switch; the new
//! ones describe the upstreams and the process.
//!
//! Per-upstream handles are resolved once at start-up ([`TargetMetrics`]), so
//! the request path increments counters without hashing label values.

use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};
use serde::{Deserialize, Serialize};

const NAMESPACE: &str = "cortex_gateway";

/// The Go gateway's (weaveworks) request duration buckets.
const GO_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
];

/// The `[metrics]` section.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSettings {
    /// Whether success counters carry a `tenant` label.
    pub per_tenant: bool,
}

/// `[metrics]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    per_tenant: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { per_tenant: true }
    }
}

impl RawMetrics {
    pub fn validate(self) -> MetricsSettings {
        MetricsSettings {
            per_tenant: self.per_tenant,
        }
    }
}

/// Counters for authentication outcomes, owned by the authenticator.
#[derive(Clone)]
pub struct AuthMetrics {
    failed: IntCounterVec,
    succeeded: IntCounterVec,
    per_tenant: bool,
}

impl AuthMetrics {
    /// Creates the series of each reason at 0, so that rates exist from
    /// start-up.
    pub fn prepare(&self, reasons: &[&'static str]) {
        for reason in reasons {
            self.failed.with_label_values(&[reason]);
        }
    }

    /// Counts a refused authentication under its reason label.
    pub fn failed(&self, reason: &'static str) {
        self.failed.with_label_values(&[reason]).inc();
    }

    /// The success counter for `tenant`; with `metrics.per_tenant = false`
    /// the tenant label is left empty, which Prometheus treats as absent.
    pub fn succeeded_counter(&self, tenant: &str) -> IntCounter {
        let tenant = if self.per_tenant { tenant } else { "" };
        self.succeeded.with_label_values(&[tenant])
    }
}

/// The health of the key sources fetched over the network (JWKS, OIDC),
/// labelled by the URL configured (never carries credentials: URLs with
/// userinfo are refused at start-up).
#[derive(Clone)]
pub struct KeyMetrics {
    fetches: IntCounterVec,
    keys: IntGaugeVec,
    since_success: GaugeVec,
}

impl KeyMetrics {
    /// Counts one fetch of `source`, `success` or `error`.
    pub fn fetched(&self, source: &str, success: bool) {
        let outcome = if success { "success" } else { "error" };
        self.fetches.with_label_values(&[source, outcome]).inc();
    }

    /// Creates both outcome series of `source` at 0.
    pub fn prepare(&self, source: &str) {
        for outcome in ["success", "error"] {
            self.fetches.with_label_values(&[source, outcome]);
        }
    }

    /// The number of keys `source` serves now.
    pub fn loaded(&self, source: &str, keys: usize) {
        self.keys
            .with_label_values(&[source])
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    /// Seconds since `source` last fetched successfully (+Inf before the first).
    pub fn age(&self, source: &str, seconds: f64) {
        self.since_success.with_label_values(&[source]).set(seconds);
    }
}

/// Whether the last configuration reload worked, named as Prometheus names
/// its own (`prometheus_config_last_reload_successful`), so the same alerts
/// apply.
#[derive(Clone)]
pub struct ReloadMetrics {
    successful: IntGauge,
    success_timestamp: Gauge,
}

impl ReloadMetrics {
    /// Records a reload (or the start-up load) that worked, or one that failed.
    pub fn reloaded(&self, success: bool) {
        self.successful.set(i64::from(success));
        if success {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            self.success_timestamp.set(now.as_secs_f64());
        }
    }
}

/// The series of the per-tenant limits ([`crate::ratelimit`]), owned by
/// the rate limiter and counted by [`crate::error::observe_refusal`].
#[derive(Clone)]
pub struct RateLimitMetrics {
    limited: IntCounterVec,
    backend_errors: IntCounter,
    tenant_inflight: IntGaugeVec,
    per_tenant: bool,
}

impl RateLimitMetrics {
    /// Counts a request refused by `limit`; with `metrics.per_tenant =
    /// false` the tenant label is left empty, as for the success counter.
    pub fn limited(&self, tenant: &str, limit: &str) {
        let tenant = if self.per_tenant { tenant } else { "" };
        self.limited.with_label_values(&[tenant, limit]).inc();
    }

    /// Whether series carry the tenant.
    pub fn per_tenant(&self) -> bool {
        self.per_tenant
    }

    /// Counts a request checked locally because Redis failed.
    pub fn backend_error(&self) {
        self.backend_errors.inc();
    }

    /// The tenant's in-flight gauge: only with per-tenant metrics, since a
    /// gauge without the tenant would only repeat `inflight_requests`.
    pub fn tenant_inflight(&self, tenant: &str) -> Option<IntGauge> {
        self.per_tenant
            .then(|| self.tenant_inflight.with_label_values(&[tenant]))
    }
}

/// Why an upstream call failed, for `cortex_gateway_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Reset,
    Protocol,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// The series of one upstream, resolved once.
#[derive(Clone)]
pub struct TargetMetrics {
    forwarded: IntCounter,
    inflight: IntGauge,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    errors: [IntCounter; 4],
    duration: HistogramVec,
    name: String,
}

impl TargetMetrics {
    pub fn forwarded(&self) {
        self.forwarded.inc();
    }

    /// Tracks one in-flight upstream request until the guard is dropped.
    pub fn inflight(&self) -> InflightGuard {
        self.inflight.inc();
        InflightGuard(self.inflight.clone())
    }

    /// The request byte counter, handed to the body stream that counts.
    pub fn request_bytes_counter(&self) -> IntCounter {
        self.request_bytes.clone()
    }

    /// Counts the response body bytes streamed back, once the body ends.
    pub fn count_response_bytes(&self, bytes: u64) {
        self.response_bytes.inc_by(bytes);
    }

    pub fn error(&self, kind: UpstreamErrorKind) {
        let index = UpstreamErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        self.errors[index].inc();
    }

    /// Time from sending the request to the upstream's response head.
    pub fn observe(&self, status: &str, elapsed: Duration) {
        self.duration
            .with_label_values(&[self.name.as_str(), status])
            .observe(elapsed.as_secs_f64());
    }
}

/// Decrements the in-flight gauge when the request's last byte is done.
pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every series the gateway exports, registered in one registry that
/// `actix-web-prom` serves on `/metrics` together with its request metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub auth: AuthMetrics,
    pub keys: KeyMetrics,
    pub reloads: ReloadMetrics,
    pub rate_limits: RateLimitMetrics,
    forwarded: IntCounterVec,
    rejected: IntCounterVec,
    inflight: IntGaugeVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_duration: HistogramVec,
    request_duration: HistogramVec,
    connection_limit_reached: IntCounter,
    upstream_connections: IntGaugeVec,
}

/// `cortex_gateway_open_connections`, read when scraped from the count the
/// patched actix-http keeps (patches/README.md): a connection then needs no
/// guard of its own to be counted.
#[derive(Clone)]
struct OpenConnections(IntGauge);

impl Collector for OpenConnections {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let open = actix_http::h1::open_connections();
        self.0.set(i64::try_from(open).unwrap_or(i64::MAX));
        self.0.collect()
    }
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once");
    collector
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NAMESPACE)
}

impl Metrics {
    /// `server.max_request_body_size`, answered 413.
    pub const BODY_TOO_LARGE: &'static str = "body_too_large";
    /// `server.max_request_header_size` or actix-http's 128 KiB/96-field
    /// ceiling, answered 431.
    pub const HEADER_TOO_LARGE: &'static str = "header_too_large";
    /// `server.max_request_headers`, answered 431.
    pub const TOO_MANY_HEADERS: &'static str = "too_many_headers";
    /// `server.http_read_timeout` passed before the head was complete: 408.
    pub const READ_TIMEOUT: &'static str = "read_timeout";
    /// The limits counted in `cortex_gateway_rejected_requests_total`.
    pub const LIMITS: [&'static str; 4] = [
        Self::BODY_TOO_LARGE,
        Self::HEADER_TOO_LARGE,
        Self::TOO_MANY_HEADERS,
        Self::READ_TIMEOUT,
    ];

    /// Creates the registry and the series. Every failure reason, limit and
    /// upstream is present from the start so that `rate()` sees the first event.
    pub fn new(per_tenant: bool) -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(opts(name, help), labels).expect("valid metric"),
            )
        };
        let auth = AuthMetrics {
            failed: counter(
                "failed_authentications_total",
                "The total number of failed authentications.",
                &["reason"],
            ),
            succeeded: counter(
                "succeeded_authentications_total",
                "The total number of succeeded authentications.",
                &["tenant"],
            ),
            per_tenant,
        };
        let rate_limits = RateLimitMetrics {
            limited: counter(
                "limited_requests_total",
                "Requests refused (429) by a per-tenant limit: requests, ingest_bytes, inflight.",
                &["tenant", "limit"],
            ),
            backend_errors: register(
                &registry,
                IntCounter::with_opts(opts(
                    "limits_backend_errors_total",
                    "Requests checked against the local limits because Redis failed or was slow.",
                ))
                .expect("valid metric"),
            ),
            tenant_inflight: register(
                &registry,
                IntGaugeVec::new(
                    opts(
                        "tenant_inflight_requests",
                        "Requests of a tenant in flight in this replica (limits.max_inflight).",
                    ),
                    &["tenant"],
                )
                .expect("valid metric"),
            ),
            per_tenant,
        };
        if !per_tenant {
            for limit in crate::ratelimit::RateLimitError::LIMITS {
                rate_limits.limited.with_label_values(&["", limit]);
            }
        }
        let forwarded = counter(
            "proxy_requests_total",
            "The total number of requests forwarded to an upstream.",
            &["targetname"],
        );
        let rejected = counter(
            "rejected_requests_total",
            "Requests refused because they exceeded a configured limit.",
            &["limit"],
        );
        for limit in Self::LIMITS {
            rejected.with_label_values(&[limit]);
        }
        let request_bytes = counter(
            "request_body_bytes_total",
            "Request body bytes forwarded to an upstream.",
            &["targetname"],
        );
        let response_bytes = counter(
            "response_body_bytes_total",
            "Response body bytes streamed back from an upstream.",
            &["targetname"],
        );
        let upstream_errors = counter(
            "upstream_errors_total",
            "Failed upstream calls by kind: connect, timeout, reset, protocol.",
            &["targetname", "kind"],
        );
        let inflight = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "inflight_requests",
                    "Requests currently forwarded to an upstream.",
                ),
                &["targetname"],
            )
            .expect("valid metric"),
        );
        // The Go gateway's buckets for both, so dashboards compare them.
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::from(opts(name, help)).buckets(GO_BUCKETS.to_vec()),
                    labels,
                )
                .expect("valid metric"),
            )
        };
        let upstream_duration = histogram(
            "upstream_request_duration_seconds",
            "Time from sending a request upstream to its response head.",
            &["targetname", "status_code"],
        );
        let request_duration = histogram(
            "request_duration_seconds",
            "Time (in seconds) spent serving HTTP requests.",
            &["method", "route", "status_code", "ws"],
        );
        let build_info = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "build_info",
                    "The gateway's version and source revision; always 1.",
                ),
                &["version", "revision"],
            )
            .expect("valid metric"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("CORTEX_GATEWAY_REVISION")])
            .set(1);
        register(&registry, ProcessCollector::new());
        register(
            &registry,
            OpenConnections(
                IntGauge::with_opts(opts(
                    "open_connections",
                    "Client connections currently open (see server.http_conn_limit).",
                ))
                .expect("valid metric"),
            ),
        );
        let connection_limit_reached = register(
            &registry,
            IntCounter::with_opts(opts(
                "connection_limit_reached_total",
                "Times a worker reached its share of server.http_conn_limit; \
                 further clients then wait in the kernel's accept queue.",
            ))
            .expect("valid metric"),
        );
        let upstream_connections = register(
            &registry,
            IntGaugeVec::new(
                opts(
                    "upstream_connections",
                    "Connections to an upstream held by the gateway: idle in the pool, \
                     or active (lent to a request).",
                ),
                &["upstream", "state"],
            )
            .expect("valid metric"),
        );
        let keys = KeyMetrics {
            fetches: counter(
                "jwks_fetches_total",
                "Fetches of a JWKS (or its OIDC discovery document) by outcome.",
                &["source", "outcome"],
            ),
            keys: register(
                &registry,
                IntGaugeVec::new(
                    opts("jwks_keys", "Keys a JWKS source serves now."),
                    &["source"],
                )
                .expect("valid metric"),
            ),
            since_success: register(
                &registry,
                GaugeVec::new(
                    opts(
                        "jwks_seconds_since_last_success",
                        "Seconds since a JWKS source was last fetched successfully;                          +Inf before the first success.",
                    ),
                    &["source"],
                )
                .expect("valid metric"),
            ),
        };
        let reloads = ReloadMetrics {
            successful: register(
                &registry,
                IntGauge::with_opts(opts(
                    "config_last_reload_successful",
                    "Whether the last configuration reload attempt was successful.",
                ))
                .expect("valid metric"),
            ),
            success_timestamp: register(
                &registry,
                Gauge::with_opts(opts(
                    "config_last_reload_success_timestamp_seconds",
                    "Timestamp of the last successful configuration reload (or start-up).",
                ))
                .expect("valid metric"),
            ),
        };
        Self {
            registry,
            auth,
            keys,
            reloads,
            rate_limits,
            forwarded,
            rejected,
            inflight,
            request_bytes,
            response_bytes,
            upstream_errors,
            upstream_duration,
            request_duration,
            connection_limit_reached,
            upstream_connections,
        }
    }

    /// The upstream connection gauges, handed to each worker's pool.
    pub fn upstream_connections(&self) -> IntGaugeVec {
        self.upstream_connections.clone()
    }

    /// Counts each time a worker's connection share fills up.
    pub fn connection_limit_reached(&self) -> IntCounter {
        self.connection_limit_reached.clone()
    }

    /// Resolves the series of one upstream.
    pub fn target(&self, name: &str) -> TargetMetrics {
        TargetMetrics {
            forwarded: self.forwarded.with_label_values(&[name]),
            inflight: self.inflight.with_label_values(&[name]),
            request_bytes: self.request_bytes.with_label_values(&[name]),
            response_bytes: self.response_bytes.with_label_values(&[name]),
            errors: UpstreamErrorKind::ALL.map(|kind| {
                self.upstream_errors
                    .with_label_values(&[name, kind.label()])
            }),
            duration: self.upstream_duration.clone(),
            name: name.to_owned(),
        }
    }

    /// The counter of requests refused by `limit`, one of [`Metrics::LIMITS`],
    /// resolved once by whoever enforces that limit.
    pub fn rejected_counter(&self, limit: &str) -> IntCounter {
        self.rejected.with_label_values(&[limit])
    }

    /// The Go gateway's per-request histogram.
    pub fn request_duration(&self, method: &str, route: &str, status: &str, elapsed: Duration) {
        self.request_duration
            .with_label_values(&[method, route, status, "false"])
            .observe(elapsed.as_secs_f64());
    }
}

/// Every metric of `registry` in the text exposition format.
pub fn render(registry: &Registry) -> Result<Vec<u8>, prometheus::Error> {
    let mut exposition = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut exposition,
    )?;
    Ok(exposition)
}

/// The Go gateway's route label: the route pattern lower-cased, every run of
/// other characters turned into `_` (`/api/v1/push` → `api_v1_push`).
pub fn route_label(pattern: &str) -> String {
    let mut label = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.ends_with('_') {
            label.push('_');
        }
    }
    label.trim_matches('_').to_owned()
}

/// `process_*` series read from `/proc/self`: resident memory, CPU time,
/// open file descriptors. Written here rather than pulling in `procfs`.
struct ProcessCollector {
    descs: Vec<Desc>,
    resident: Gauge,
    virtual_memory: Gauge,
    cpu: Gauge,
    fds: Gauge,
    start_time: Gauge,
}

impl Clone for ProcessCollector {
    fn clone(&self) -> Self {
        Self {
            descs: self.descs.clone(),
            resident: self.resident.clone(),
            virtual_memory: self.virtual_memory.clone(),
            cpu: self.cpu.clone(),
            fds: self.fds.clone(),
            start_time: self.start_time.clone(),
        }
    }
}

impl ProcessCollector {
    fn new() -> Self {
        let gauge =
            |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help)).expect("valid metric");
        let resident = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        );
        let cpu = gauge(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        let fds = gauge("process_open_fds", "Number of open file descriptors.");
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        let descs = [&resident, &virtual_memory, &cpu, &fds, &start_time]
            .iter()
            .flat_map(|g| g.desc().into_iter().cloned())
            .collect();
        Self {
            descs,
            resident,
            virtual_memory,
            cpu,
            fds,
            start_time,
        }
    }
}

/// Fields of `/proc/self/stat` after the command name: (utime, stime, vsize, rss pages).
fn read_stat() -> Option<(f64, f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Field numbers from proc(5), minus the two before the command's end.
    let number = |index: usize| fields.get(index - 3)?.parse::<f64>().ok();
    Some((number(14)?, number(15)?, number(23)?, number(24)?))
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The kernel reports CPU time in clock ticks (100 per second on Linux)
        // and memory in pages (4 KiB on the platforms we ship for).
        const TICKS_PER_SECOND: f64 = 100.0;
        const PAGE_SIZE: f64 = 4096.0;
        if let Some((utime, stime, vsize, rss)) = read_stat() {
            self.cpu.set((utime + stime) / TICKS_PER_SECOND);
            self.virtual_memory.set(vsize);
            self.resident.set(rss * PAGE_SIZE);
        }
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.fds.set(entries.count() as f64);
        }
        [
            &self.resident,
            &self.virtual_memory,
            &self.cpu,
            &self.fds,
            &self.start_time,
        ]
        .iter()
        .flat_map(|g| g.collect())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_match_the_go_gateway() {
        assert_eq!(route_label("/api/v1/push"), "api_v1_push");
        assert_eq!(route_label("/prometheus/{tail}*"), "prometheus_tail");
        assert_eq!(route_label("/health"), "health");
    }

    #[test]
    fn process_metrics_read_real_values() {
        let collector = ProcessCollector::new();
        let families = collector.collect();
        let value = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map(|f| f.get_metric()[0].get_gauge().get_value())
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_start_time_seconds") > 1.7e9);
    }
}
