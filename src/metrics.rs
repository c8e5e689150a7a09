//! The Go gateway's Prometheus series, under their original names and labels,
//! so existing dashboards and alerts keep working after the switch.

use prometheus::{IntCounterVec, Opts, Registry};

use crate::auth::AuthError;

const NAMESPACE: &str = "cortex_gateway";

/// Counters for authentication outcomes, owned by the authenticator.
#[derive(Clone)]
pub struct AuthMetrics {
    failed: IntCounterVec,
    succeeded: IntCounterVec,
}

impl AuthMetrics {
    pub fn failed(&self, error: &AuthError) {
        self.failed.with_label_values(&[error.reason()]).inc();
    }

    pub fn succeeded(&self, tenant: &str) {
        self.succeeded.with_label_values(&[tenant]).inc();
    }
}

/// Counters for forwarded and refused requests.
#[derive(Clone)]
pub struct ProxyMetrics {
    requests: IntCounterVec,
    rejected: IntCounterVec,
}

impl ProxyMetrics {
    pub fn forwarded(&self, target: &str) {
        self.requests.with_label_values(&[target]).inc();
    }

    /// A request refused by a limit; `limit` is one of [`Metrics::LIMITS`].
    pub fn rejected(&self, limit: &str) {
        self.rejected.with_label_values(&[limit]).inc();
    }
}

/// Every series the gateway exports, registered in one registry that
/// `actix-web-prom` serves on `/metrics` together with its request metrics.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub auth: AuthMetrics,
    pub proxy: ProxyMetrics,
}

fn counter(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help).namespace(NAMESPACE), &[label])
        .expect("metric definitions are static and valid");
    registry
        .register(Box::new(counter.clone()))
        .expect("each metric is registered once");
    counter
}

impl Metrics {
    /// The limits counted in `cortex_gateway_rejected_requests_total`.
    pub const LIMITS: [&'static str; 1] = ["body_too_large"];

    /// Creates the registry and the series, with every failure reason and
    /// upstream present from the start so that `rate()` sees the first event.
    pub fn new<'a>(targets: impl IntoIterator<Item = &'a str>) -> Self {
        let registry = Registry::new();
        let auth = AuthMetrics {
            failed: counter(
                &registry,
                "failed_authentications_total",
                "The total number of failed authentications.",
                "reason",
            ),
            succeeded: counter(
                &registry,
                "succeeded_authentications_total",
                "The total number of succeeded authentications.",
                "tenant",
            ),
        };
        for reason in AuthError::REASONS {
            auth.failed.with_label_values(&[reason]);
        }
        let proxy = ProxyMetrics {
            requests: counter(
                &registry,
                "proxy_requests_total",
                "The total number of requests forwarded to an upstream.",
                "targetname",
            ),
            rejected: counter(
                &registry,
                "rejected_requests_total",
                "Requests refused because they exceeded a configured limit.",
                "limit",
            ),
        };
        for target in targets {
            proxy.requests.with_label_values(&[target]);
        }
        for limit in Self::LIMITS {
            proxy.rejected.with_label_values(&[limit]);
        }
        Self {
            registry,
            auth,
            proxy,
        }
    }
}
