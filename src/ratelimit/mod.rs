//! Per-tenant limits at the edge (issue 15): request rate, ingest bytes per
//! second on write routes, and concurrent requests, checked after
//! authentication and before the upstream is touched.
//!
//! A tenant that exceeds a rate gets `429` with `Retry-After` from its
//! bucket: Prometheus retries a 429, so a limit delays samples instead of
//! dropping them, and the upstream never sees the excess. The rates are
//! GCRA buckets: governor's in each replica ([`local`]), or one shared
//! bucket per tenant in Redis ([`redis`]) so that N replicas enforce one
//! limit, not N. Redis is an optimisation of accuracy, never a dependency
//! of serving: when it fails, the request is checked against the local
//! buckets instead (fail open). `max_inflight` is always per replica.

mod local;
mod redis;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use crate::auth::settings::TenantSettings;
use crate::auth::Principal;
use crate::metrics::RateLimitMetrics;
use crate::routes::{Access, Route};
use crate::settings::{parse_duration, serialize_duration, ConfigError, Secret};

use local::{Inflight, TenantBuckets};
use redis::{RedisBackend, RedisTarget};

/// The largest rate either bucket takes: governor counts time in
/// nanoseconds, so one cell must last at least one.
const MAX_RATE: f64 = 1e9;
/// The slowest request rate: one request every ~3 hours; below that a
/// limit is a ban, which is what `auth.tenants.<id>.min_token_version` is for.
const MIN_REQUEST_RATE: f64 = 1e-4;
/// How often a failing Redis backend is logged, at most: every request that
/// falls back is counted, but a log line per request would flood the logs
/// during an outage.
const BACKEND_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The numbers of `[limits]`, or a tenant's after its overrides; `0` means
/// unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LimitValues {
    pub requests_per_second: f64,
    pub burst: u32,
    pub ingest_bytes_per_second: u64,
    pub ingest_burst_bytes: u64,
    pub max_inflight: u32,
}

/// `[auth.tenants.<id>.limits]`: each key given replaces the global one, so
/// a tenant can get a higher rate and keep the global burst; `0` lifts that
/// limit for the tenant.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_bytes_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_burst_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inflight: Option<u32>,
}

/// `TenantSettings` is compared whole on reload; the one float here is
/// validated finite ([`validate_tenant_limits`]) before it is ever compared.
impl Eq for TenantLimits {}

impl TenantLimits {
    /// The tenant's numbers: `global` with every key given here replaced.
    pub fn over(&self, global: &LimitValues) -> LimitValues {
        LimitValues {
            requests_per_second: self
                .requests_per_second
                .unwrap_or(global.requests_per_second),
            burst: self.burst.unwrap_or(global.burst),
            ingest_bytes_per_second: self
                .ingest_bytes_per_second
                .unwrap_or(global.ingest_bytes_per_second),
            ingest_burst_bytes: self.ingest_burst_bytes.unwrap_or(global.ingest_burst_bytes),
            max_inflight: self.max_inflight.unwrap_or(global.max_inflight),
        }
    }
}

/// Where the rate buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In each replica: N replicas allow N times the rate.
    Local,
    /// In Redis, shared by every replica that uses the same Redis.
    Redis,
}

/// The `[limits]` section, validated.
#[derive(Debug, Clone, Serialize)]
pub struct LimitSettings {
    #[serde(flatten)]
    pub values: LimitValues,
    pub backend: Backend,
    /// `limits.redis_url` without its password (shown as `<redacted>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_password_file: Option<PathBuf>,
    #[serde(serialize_with = "serialize_duration")]
    pub redis_timeout: Duration,
    /// Where and how to reach Redis, the password included.
    #[serde(skip)]
    redis: Option<RedisTarget>,
}

/// `[limits]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    requests_per_second: f64,
    burst: u32,
    ingest_bytes_per_second: u64,
    ingest_burst_bytes: u64,
    max_inflight: u32,
    backend: String,
    redis_url: Option<String>,
    redis_password_file: Option<PathBuf>,
    redis_timeout: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            requests_per_second: 0.0,
            burst: 0,
            ingest_bytes_per_second: 0,
            ingest_burst_bytes: 0,
            max_inflight: 0,
            backend: "local".to_owned(),
            redis_url: None,
            redis_password_file: None,
            redis_timeout: "50ms".to_owned(),
        }
    }
}

impl RawLimits {
    /// Checks every key; with the Redis backend, parses the URL and reads
    /// the password file, so that a mistake stops the start, not a request.
    pub fn validate(self) -> Result<LimitSettings, ConfigError> {
        let values = LimitValues {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            ingest_bytes_per_second: self.ingest_bytes_per_second,
            ingest_burst_bytes: self.ingest_burst_bytes,
            max_inflight: self.max_inflight,
        };
        validate_values("limits", &values)?;
        let backend = match self.backend.trim() {
            "local" | "" => Backend::Local,
            "redis" => Backend::Redis,
            other => {
                return Err(ConfigError::invalid(
                    "limits.backend",
                    format!("`{other}` is not a backend (local, redis)"),
                ))
            }
        };
        let redis_timeout = parse_duration("limits.redis_timeout", &self.redis_timeout)?;
        if redis_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "limits.redis_timeout",
                "must be longer than 0",
            ));
        }
        let redis_url = self.redis_url.filter(|url| !url.trim().is_empty());
        let redis = match (backend, &redis_url) {
            (Backend::Local, _) => None,
            (Backend::Redis, None) => {
                return Err(ConfigError::invalid(
                    "limits.redis_url",
                    "must be set when limits.backend = \"redis\"",
                ))
            }
            (Backend::Redis, Some(url)) => {
                let password = match &self.redis_password_file {
                    Some(path) => Some(read_password(path)?),
                    None => None,
                };
                Some(RedisTarget::parse(url.trim(), password)?)
            }
        };
        Ok(LimitSettings {
            values,
            backend,
            // Never the password, whichever backend is in use.
            redis_url: redis_url.map(|url| {
                RedisTarget::parse(url.trim(), None)
                    .map_or_else(|_| "<redacted>".to_owned(), |target| target.redacted_url())
            }),
            redis_password_file: self.redis_password_file,
            redis_timeout,
            redis,
        })
    }
}

/// Reads `limits.redis_password_file` once, at start, without the line end
/// an editor or `echo` leaves.
fn read_password(path: &std::path::Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            "limits.redis_password_file",
            format!("{}: {e}", path.display()),
        )
    })?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(ConfigError::invalid(
            "limits.redis_password_file",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(password))
}

/// Checks the numbers of `[limits]` or of one tenant's overrides; `section`
/// prefixes the key named in the error.
fn validate_values(section: &str, values: &LimitValues) -> Result<(), ConfigError> {
    let rate = values.requests_per_second;
    if !(rate == 0.0 || (MIN_REQUEST_RATE..=MAX_RATE).contains(&rate)) {
        return Err(ConfigError::invalid(
            format!("{section}.requests_per_second"),
            format!("{rate} must be 0 (unlimited) or between {MIN_REQUEST_RATE} and {MAX_RATE}"),
        ));
    }
    if values.ingest_bytes_per_second as f64 > MAX_RATE {
        return Err(ConfigError::invalid(
            format!("{section}.ingest_bytes_per_second"),
            format!("must be at most {MAX_RATE}"),
        ));
    }
    if values.ingest_burst_bytes > u64::from(u32::MAX) {
        return Err(ConfigError::invalid(
            format!("{section}.ingest_burst_bytes"),
            format!("must be at most {}", u32::MAX),
        ));
    }
    Ok(())
}

/// Checks every `[auth.tenants.<id>.limits]` against the global values, so
/// that a mistake names the tenant's key.
pub fn validate_tenant_limits(
    global: &LimitValues,
    tenants: &BTreeMap<String, TenantSettings>,
) -> Result<(), ConfigError> {
    for (tenant, settings) in tenants {
        if let Some(limits) = &settings.limits {
            validate_values(
                &format!("auth.tenants.{tenant}.limits"),
                &limits.over(global),
            )?;
        }
    }
    Ok(())
}

/// A rate as a bucket: cells per second and how many may be taken at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub per_second: f64,
    pub burst: u32,
}

impl Bucket {
    /// `None` for an unlimited rate; a burst of 0 means one second's worth
    /// of the rate, at least one cell.
    fn new(per_second: f64, burst: u64) -> Option<Self> {
        if per_second <= 0.0 {
            return None;
        }
        let burst = match burst {
            0 => per_second.ceil().max(1.0) as u64,
            burst => burst,
        };
        Some(Self {
            per_second,
            burst: u32::try_from(burst).unwrap_or(u32::MAX),
        })
    }

    /// The time one cell takes to come back: GCRA's emission interval.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }

    /// The time an empty bucket takes to fill up.
    fn refill(&self) -> Duration {
        self.interval() * self.burst
    }

    /// What taking `cells` costs: a body larger than the whole burst takes
    /// the whole burst, so that it passes once the bucket is full instead
    /// of never (a 429 that can never turn into a 200 would be retried
    /// forever).
    fn cost(&self, cells: u64) -> u32 {
        u32::try_from(cells).unwrap_or(u32::MAX).min(self.burst)
    }
}

/// What one tenant runs with, after its overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effective {
    requests: Option<Bucket>,
    ingest: Option<Bucket>,
    max_inflight: Option<u32>,
}

impl Effective {
    fn new(values: &LimitValues) -> Self {
        Self {
            requests: Bucket::new(values.requests_per_second, u64::from(values.burst)),
            ingest: Bucket::new(
                values.ingest_bytes_per_second as f64,
                values.ingest_burst_bytes,
            ),
            max_inflight: (values.max_inflight > 0).then_some(values.max_inflight),
        }
    }

    fn of(global: &LimitValues, overrides: Option<&TenantLimits>) -> Self {
        Self::new(&overrides.map_or(*global, |limits| limits.over(global)))
    }
}

/// Which limit refused a request, and when to try again; answered 429.
/// `Clone`, since a refusal of a streamed body travels inside the upstream
/// client's error and is taken out of it by reference.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RateLimitError {
    #[error("tenant {tenant} exceeded requests_per_second")]
    Requests {
        tenant: Arc<str>,
        retry_after: Duration,
    },
    #[error("tenant {tenant} exceeded ingest_bytes_per_second")]
    IngestBytes {
        tenant: Arc<str>,
        retry_after: Duration,
    },
    #[error("tenant {tenant} exceeded max_inflight")]
    Inflight { tenant: Arc<str> },
}

impl RateLimitError {
    /// The labels of `cortex_gateway_limited_requests_total{limit}`.
    pub const LIMITS: [&'static str; 3] = ["requests", "ingest_bytes", "inflight"];

    /// This refusal's `limit` label.
    pub fn limit(&self) -> &'static str {
        match self {
            RateLimitError::Requests { .. } => Self::LIMITS[0],
            RateLimitError::IngestBytes { .. } => Self::LIMITS[1],
            RateLimitError::Inflight { .. } => Self::LIMITS[2],
        }
    }

    /// The tenant refused, for the per-tenant counter.
    pub fn tenant(&self) -> &str {
        match self {
            RateLimitError::Requests { tenant, .. }
            | RateLimitError::IngestBytes { tenant, .. }
            | RateLimitError::Inflight { tenant } => tenant,
        }
    }

    /// `Retry-After` in whole seconds, rounded up and at least 1: a client
    /// that waits that long finds the cell back. An in-flight refusal has
    /// no bucket to ask; a second is about how long a query runs.
    pub fn retry_after_secs(&self) -> u64 {
        let wait = match self {
            RateLimitError::Requests { retry_after, .. }
            | RateLimitError::IngestBytes { retry_after, .. } => *retry_after,
            RateLimitError::Inflight { .. } => Duration::ZERO,
        };
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

/// One tenant's limiters: its buckets (replaced when its limits change)
/// and its in-flight count (kept across a change, since requests admitted
/// under the old limits are still running).
struct TenantState {
    effective: Effective,
    buckets: Arc<TenantBuckets>,
    inflight: Arc<Inflight>,
}

/// The fewest tenants kept before idle ones are looked for: a sweep walks
/// the whole map under the write lock, so it runs only when the map has
/// doubled since the last one, and never for a small set of tenants.
const SWEEP_AT_LEAST: usize = 1024;

/// What the limits are and the tenants of recent traffic.
struct State {
    global: LimitValues,
    overrides: BTreeMap<String, TenantLimits>,
    tenants: HashMap<Arc<str>, TenantState>,
    /// How many tenants make the next new one sweep out the idle ones.
    sweep_at: usize,
}

impl State {
    /// Forgets the tenants whose limiters are what a new tenant's would be:
    /// nothing in flight or streaming (no one else holds their limiters) and
    /// every bucket full again at `now`. A tenant that comes back then
    /// starts with exactly that, so no limit changes, and the map holds the
    /// tenants of recent traffic instead of every tenant ever seen (100,000
    /// tenants over time must not mean 100,000 limiters for good).
    fn evict_idle(&mut self, now: Duration) {
        self.tenants.retain(|_, current| {
            Arc::strong_count(&current.buckets) > 1
                || Arc::strong_count(&current.inflight) > 1
                || !current.buckets.full_at(now)
        });
        self.sweep_at = (2 * self.tenants.len()).max(SWEEP_AT_LEAST);
    }
}

/// The per-tenant limiter of the pipeline's admit step: one for the whole
/// process, shared by every worker.
pub struct RateLimiter {
    state: RwLock<State>,
    /// No limit anywhere and no per-tenant series: every request is
    /// admitted without a lookup, and no state is kept per tenant (so
    /// memory stays bounded however many tenants come and go).
    idle: AtomicBool,
    redis: Option<RedisBackend>,
    metrics: RateLimitMetrics,
    /// When a backend failure was last logged, in ms since `started`.
    last_backend_log: AtomicU64,
    started: Instant,
}

impl RateLimiter {
    /// The limiter of `settings` and the tenants' overrides; with the Redis
    /// backend, starts its connection thread (Redis need not be up yet).
    pub fn new(
        settings: &LimitSettings,
        tenants: &BTreeMap<String, TenantSettings>,
        metrics: RateLimitMetrics,
    ) -> Result<Self, ConfigError> {
        let redis = match &settings.redis {
            Some(target) => Some(RedisBackend::start(target.clone(), settings.redis_timeout)?),
            None => None,
        };
        let overrides = overrides_of(tenants);
        Ok(Self {
            idle: AtomicBool::new(is_idle(&settings.values, &overrides, &metrics)),
            state: RwLock::new(State {
                global: settings.values,
                overrides,
                tenants: HashMap::new(),
                sweep_at: SWEEP_AT_LEAST,
            }),
            redis,
            metrics,
            last_backend_log: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Takes new limits (a reload of the configuration): a tenant whose
    /// effective limits did not change keeps its buckets, so a reload does
    /// not hand every tenant a fresh burst; the others start full under
    /// their new limits.
    pub fn update(&self, global: &LimitValues, tenants: &BTreeMap<String, TenantSettings>) {
        // A panic elsewhere while the lock was held leaves consistent
        // maps behind (every write is a single insert or retain): the
        // limits still follow the configuration.
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.global = *global;
        state.overrides = overrides_of(tenants);
        self.idle.store(
            is_idle(&state.global, &state.overrides, &self.metrics),
            Ordering::Release,
        );
        let State {
            global,
            overrides,
            tenants,
            ..
        } = &mut *state;
        for (tenant, current) in tenants.iter_mut() {
            let effective = Effective::of(global, overrides.get(&**tenant));
            if effective != current.effective {
                current.effective = effective;
                current.buckets = Arc::new(TenantBuckets::new(&effective));
            }
        }
    }

    /// Admits one request of `principal` on `route`: refuses it over
    /// `max_inflight` or over a rate, charging its declared body to the
    /// ingest bucket on write routes. The returned admission is held until
    /// the response body has been sent. A federated read (`a|b`) counts
    /// against each of its tenants, so a token for several tenants is no
    /// way around any one tenant's limits (a tenant admitted before one
    /// that refuses keeps the charge).
    pub async fn admit(
        &self,
        principal: &Principal,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Admission, RateLimitError> {
        let mut admission = Admission {
            _inflight: None,
            streamed: None,
            _members: Vec::new(),
        };
        if self.idle.load(Ordering::Acquire) {
            return Ok(admission);
        }
        let tenants = principal.tenant.as_str();
        if !tenants.contains('|') {
            return self.admit_tenant(tenants, route, headers).await;
        }
        for tenant in tenants.split('|') {
            let member = self.admit_tenant(tenant, route, headers).await?;
            admission._members.push(member);
        }
        Ok(admission)
    }

    /// [`RateLimiter::admit`] for one tenant.
    async fn admit_tenant(
        &self,
        tenant: &str,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Admission, RateLimitError> {
        let (tenant, effective, buckets, inflight) = self.tenant(tenant);
        let inflight =
            inflight
                .enter(effective.max_inflight)
                .ok_or_else(|| RateLimitError::Inflight {
                    tenant: Arc::clone(&tenant),
                })?;
        let writes = route.access == Some(Access::Write) && effective.ingest.is_some();
        let (bytes, streamed) = match body_length(headers) {
            _ if !writes => (0, false),
            BodyLength::Declared(length) => (length, false),
            BodyLength::Streamed => (0, true),
        };
        if effective.requests.is_some() || bytes > 0 {
            self.charge(&tenant, &effective, &buckets, bytes).await?;
        }
        Ok(Admission {
            _inflight: Some(inflight),
            streamed: streamed.then_some(BodyMeter { tenant, buckets }),
            _members: Vec::new(),
        })
    }

    /// The tenant's limiters, made on its first request.
    fn tenant(&self, id: &str) -> (Arc<str>, Effective, Arc<TenantBuckets>, Arc<Inflight>) {
        let found = |state: &State| {
            state.tenants.get_key_value(id).map(|(tenant, current)| {
                (
                    Arc::clone(tenant),
                    current.effective,
                    Arc::clone(&current.buckets),
                    Arc::clone(&current.inflight),
                )
            })
        };
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = found(&state) {
            return found;
        }
        drop(state);
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = found(&state) {
            return found;
        }
        if state.tenants.len() >= state.sweep_at {
            state.evict_idle(local::since_epoch());
        }
        let effective = Effective::of(&state.global, state.overrides.get(id));
        let tenant: Arc<str> = Arc::from(id);
        let current = TenantState {
            effective,
            buckets: Arc::new(TenantBuckets::new(&effective)),
            inflight: Arc::new(Inflight::new(self.metrics.tenant_inflight(id))),
        };
        let result = (
            Arc::clone(&tenant),
            effective,
            Arc::clone(&current.buckets),
            Arc::clone(&current.inflight),
        );
        state.tenants.insert(tenant, current);
        result
    }

    /// Charges one request and `bytes` of body to the shared buckets in
    /// Redis, or to the local ones without Redis or when Redis fails.
    async fn charge(
        &self,
        tenant: &Arc<str>,
        effective: &Effective,
        buckets: &TenantBuckets,
        bytes: u64,
    ) -> Result<(), RateLimitError> {
        if let Some(redis) = &self.redis {
            match redis.charge(tenant, effective, bytes).await {
                Ok(refusal) => return refusal.map_or(Ok(()), |r| Err(r.into_error(tenant))),
                Err(error) => self.backend_failed(&error),
            }
        }
        buckets.charge(bytes).map_err(|r| r.into_error(tenant))
    }

    /// Counts a request that fell back to the local buckets, and logs why,
    /// at most once per [`BACKEND_LOG_INTERVAL`].
    fn backend_failed(&self, error: &redis::BackendError) {
        self.metrics.backend_error();
        // Shifted by one interval, so that the first failure is logged.
        let interval = BACKEND_LOG_INTERVAL.as_millis() as u64;
        let now = self.started.elapsed().as_millis() as u64 + interval;
        let last = self.last_backend_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= interval
            && self
                .last_backend_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %error,
                "limits backend unavailable: checking against this replica's local limits"
            );
        }
    }
}

/// Whether no limit is set, globally or for any tenant, and no per-tenant
/// series is kept: then the limiter has nothing to do.
fn is_idle(
    global: &LimitValues,
    overrides: &BTreeMap<String, TenantLimits>,
    metrics: &RateLimitMetrics,
) -> bool {
    *global == LimitValues::default() && overrides.is_empty() && !metrics.per_tenant()
}

/// The tenants that have limits of their own.
fn overrides_of(tenants: &BTreeMap<String, TenantSettings>) -> BTreeMap<String, TenantLimits> {
    tenants
        .iter()
        .filter_map(|(tenant, settings)| Some((tenant.clone(), settings.limits.clone()?)))
        .collect()
}

/// How a request's body is framed, for the ingest bucket.
enum BodyLength {
    /// `Content-Length`: charged before forwarding.
    Declared(u64),
    /// Chunked: charged as it streams ([`BodyMeter`]).
    Streamed,
}

/// How `headers` frame the body.
fn body_length(headers: &HeaderMap) -> BodyLength {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return BodyLength::Streamed;
    }
    BodyLength::Declared(crate::proxy::content_length(headers).unwrap_or(0))
}

/// Which bucket refused, and how long until it has room.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    Requests(Duration),
    IngestBytes(Duration),
}

impl Refusal {
    fn into_error(self, tenant: &Arc<str>) -> RateLimitError {
        let tenant = Arc::clone(tenant);
        match self {
            Refusal::Requests(retry_after) => RateLimitError::Requests {
                tenant,
                retry_after,
            },
            Refusal::IngestBytes(retry_after) => RateLimitError::IngestBytes {
                tenant,
                retry_after,
            },
        }
    }
}

/// A request admitted under the limits: it counts as in flight until this
/// is dropped, with the response body's end (or the client's going away).
pub struct Admission {
    _inflight: Option<local::InflightPermit>,
    streamed: Option<BodyMeter>,
    /// A federated request's admissions, one per tenant.
    _members: Vec<Admission>,
}

impl Admission {
    /// What charges a chunked body as it streams, when the request has one
    /// on a write route under an ingest rate.
    pub fn body_meter(&mut self) -> Option<BodyMeter> {
        self.streamed.take()
    }
}

/// Charges a chunked body to the tenant's ingest bucket as it streams: a
/// body without a declared length cannot be charged up front. It uses this
/// replica's bucket even with Redis, since a chunk is not worth a round
/// trip.
pub struct BodyMeter {
    tenant: Arc<str>,
    buckets: Arc<TenantBuckets>,
}

impl BodyMeter {
    /// Charges one chunk, or refuses the rest of the body.
    pub fn charge(&self, bytes: u64) -> Result<(), RateLimitError> {
        self.buckets
            .charge_ingest(bytes)
            .map_err(|refusal| refusal.into_error(&self.tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn without_limits_or_per_tenant_series_nothing_is_kept_per_tenant() {
        let limiter = limiter(LimitValues::default());
        for tenant in ["team-a", "team-b", "team-c"] {
            assert!(admit_as(&limiter, tenant).await.is_ok());
        }
        assert!(kept(&limiter).is_empty());

        // A limit set by a reload puts the limiter to work.
        limiter.update(&values(1.0, 1), &BTreeMap::new());
        assert!(!limiter.idle.load(Ordering::Acquire));
    }

    /// A limiter of `limits`, per-tenant metrics off.
    fn limiter(limits: LimitValues) -> RateLimiter {
        let settings = RawLimits::default().validate().unwrap();
        let metrics = crate::metrics::Metrics::new(false).rate_limits;
        let limiter = RateLimiter::new(&settings, &BTreeMap::new(), metrics).unwrap();
        limiter.update(&limits, &BTreeMap::new());
        limiter
    }

    fn push_route() -> Route {
        Route {
            prefix: "/api/v1/push".to_owned(),
            upstream: "distributor".to_owned(),
            access: Some(Access::Write),
        }
    }

    async fn admit_as(limiter: &RateLimiter, tenant: &str) -> Result<Admission, RateLimitError> {
        let principal = Principal {
            tenant: crate::auth::Tenant::new(tenant).unwrap(),
            version: 1,
            expires_at: None,
            scopes: None,
        };
        limiter
            .admit(&principal, &push_route(), &HeaderMap::new())
            .await
    }

    fn kept(limiter: &RateLimiter) -> Vec<String> {
        let mut kept: Vec<String> = (limiter.state.read().unwrap().tenants.keys())
            .map(|tenant| tenant.to_string())
            .collect();
        kept.sort();
        kept
    }

    #[actix_rt::test]
    async fn a_tenant_is_forgotten_only_once_its_bucket_is_full_and_nothing_is_in_flight() {
        // A request every 100 s, burst 2: an empty bucket is full after
        // 200 s, and no cell comes back while the test runs.
        let limiter = limiter(values(0.01, 2));
        for _ in 0..2 {
            drop(admit_as(&limiter, "spent").await.unwrap());
        }
        let _in_flight = admit_as(&limiter, "busy").await.unwrap();
        let now = local::since_epoch();

        // Within the refill time the spent tenant is kept: forgetting it
        // would hand it a fresh burst early.
        limiter
            .state
            .write()
            .unwrap()
            .evict_idle(now + Duration::from_secs(150));
        assert_eq!(kept(&limiter), ["busy", "spent"]);
        assert!(matches!(
            admit_as(&limiter, "spent").await,
            Err(RateLimitError::Requests { .. })
        ));

        // Once full again it is forgotten; the tenant in flight is kept.
        limiter
            .state
            .write()
            .unwrap()
            .evict_idle(local::since_epoch() + Duration::from_secs(300));
        assert_eq!(kept(&limiter), ["busy"]);
    }

    #[actix_rt::test]
    async fn many_tenants_over_time_keep_the_map_bounded() {
        // A bucket that is full again a microsecond after a request: every
        // tenant is idle by the time the next sweep runs.
        let limiter = limiter(values(1e6, 1));
        for i in 0..5 * SWEEP_AT_LEAST {
            drop(admit_as(&limiter, &format!("t-{i}")).await.unwrap());
            std::thread::sleep(Duration::from_micros(2));
        }
        let kept = limiter.state.read().unwrap().tenants.len();
        assert!(
            (1..=SWEEP_AT_LEAST).contains(&kept),
            "{kept} tenants kept after {} came and went",
            5 * SWEEP_AT_LEAST
        );
    }

    fn values(requests_per_second: f64, burst: u32) -> LimitValues {
        LimitValues {
            requests_per_second,
            burst,
            ..LimitValues::default()
        }
    }

    #[test]
    fn a_tenants_keys_replace_the_global_ones_one_by_one() {
        let global = LimitValues {
            requests_per_second: 10.0,
            burst: 20,
            ingest_bytes_per_second: 1000,
            ingest_burst_bytes: 5000,
            max_inflight: 4,
        };
        let overrides = TenantLimits {
            requests_per_second: Some(50.0),
            ingest_bytes_per_second: Some(0),
            ..TenantLimits::default()
        };
        assert_eq!(
            overrides.over(&global),
            LimitValues {
                requests_per_second: 50.0,
                ingest_bytes_per_second: 0,
                ..global
            }
        );
        let effective = Effective::of(&global, Some(&overrides));
        assert_eq!(
            effective.requests,
            Some(Bucket {
                per_second: 50.0,
                burst: 20
            })
        );
        assert_eq!(effective.ingest, None, "0 lifts the global limit");
        assert_eq!(effective.max_inflight, Some(4));
        assert_eq!(Effective::of(&global, None), Effective::new(&global));
    }

    #[test]
    fn a_burst_of_zero_is_one_seconds_worth_and_at_least_one() {
        assert_eq!(Bucket::new(2.5, 0).unwrap().burst, 3);
        assert_eq!(Bucket::new(0.1, 0).unwrap().burst, 1);
        assert_eq!(Bucket::new(0.1, 7).unwrap().burst, 7);
        assert_eq!(Bucket::new(0.0, 7), None);
        assert_eq!(Bucket::new(100.0, 10).unwrap().cost(25), 10);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let tenant: Arc<str> = Arc::from("team-a");
        let after = |wait: Duration| {
            Refusal::Requests(wait)
                .into_error(&tenant)
                .retry_after_secs()
        };
        assert_eq!(after(Duration::ZERO), 1);
        assert_eq!(after(Duration::from_millis(1)), 1);
        assert_eq!(after(Duration::from_secs(2)), 2);
        assert_eq!(after(Duration::from_millis(2001)), 3);
        let inflight = RateLimitError::Inflight { tenant };
        assert_eq!(
            (inflight.retry_after_secs(), inflight.limit()),
            (1, "inflight")
        );
        assert_eq!(inflight.to_string(), "tenant team-a exceeded max_inflight");
    }

    #[test]
    fn an_update_keeps_the_buckets_of_tenants_whose_limits_did_not_change() {
        let settings = RawLimits {
            requests_per_second: 1.0,
            burst: 5,
            ..RawLimits::default()
        }
        .validate()
        .unwrap();
        let tenants = |team_b_rate: f64| {
            BTreeMap::from([(
                "team-b".to_owned(),
                TenantSettings {
                    limits: Some(TenantLimits {
                        requests_per_second: Some(team_b_rate),
                        ..TenantLimits::default()
                    }),
                    ..TenantSettings::default()
                },
            )])
        };
        let metrics = crate::metrics::Metrics::new(true).rate_limits;
        let limiter = RateLimiter::new(&settings, &tenants(2.0), metrics).unwrap();
        let (_, _, team_a, _) = limiter.tenant("team-a");
        let (_, _, team_b, _) = limiter.tenant("team-b");
        for _ in 0..5 {
            team_a.charge(0).unwrap();
        }

        limiter.update(&settings.values, &tenants(3.0));
        let (_, _, team_a_after, _) = limiter.tenant("team-a");
        let (_, team_b_limits, team_b_after, _) = limiter.tenant("team-b");
        assert!(Arc::ptr_eq(&team_a, &team_a_after));
        assert!(
            team_a_after.charge(0).is_err(),
            "team-a's bucket stays empty"
        );
        assert!(!Arc::ptr_eq(&team_b, &team_b_after));
        assert_eq!(team_b_limits.requests.unwrap().per_second, 3.0);

        // A global key reaches every tenant that does not override it.
        let global = LimitValues {
            burst: 6,
            ..settings.values
        };
        limiter.update(&global, &tenants(3.0));
        let (_, team_a_limits, team_a_new, _) = limiter.tenant("team-a");
        assert!(!Arc::ptr_eq(&team_a, &team_a_new));
        assert_eq!(team_a_limits.requests.unwrap().burst, 6);
        assert_eq!(limiter.tenant("team-b").1.requests.unwrap().burst, 6);
    }

    #[test]
    fn validation_names_the_key() {
        let error =
            |values: LimitValues| validate_values("limits", &values).unwrap_err().to_string();
        assert!(error(values(-1.0, 0)).starts_with("limits.requests_per_second: "));
        assert!(error(values(f64::NAN, 0)).starts_with("limits.requests_per_second: "));
        let too_big = LimitValues {
            ingest_burst_bytes: 1 << 40,
            ..LimitValues::default()
        };
        assert!(error(too_big).starts_with("limits.ingest_burst_bytes: "));
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "team-a".to_owned(),
            TenantSettings {
                limits: Some(TenantLimits {
                    requests_per_second: Some(f64::INFINITY),
                    ..TenantLimits::default()
                }),
                ..TenantSettings::default()
            },
        );
        let error = validate_tenant_limits(&LimitValues::default(), &tenants)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("auth.tenants.team-a.limits.requests_per_second: "),
            "{error}"
        );
    }
}
