//! The buckets of one replica: governor's GCRA limiters, one direct
//! limiter per tenant and rate.
//!
//! Direct limiters rather than one keyed limiter: a keyed limiter has a
//! single quota for every key, and per-tenant overrides give each tenant its
//! own. The tenants are the ones with valid tokens, and a tenant whose
//! buckets are full again is forgotten (`State::evict_idle` in the parent
//! module), so the map holds the tenants of recent traffic.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, NotUntil, Quota};
use prometheus::IntGauge;

use super::{Bucket, Effective, Refusal};

/// One governor limiter and the bucket it was made from.
struct Limiter {
    governor: DefaultDirectRateLimiter,
    bucket: Bucket,
}

impl Limiter {
    fn new(bucket: Bucket) -> Self {
        // Validation keeps rates at most 1e9 per second (one cell per
        // nanosecond at least) and bursts at least 1.
        let quota = Quota::with_period(bucket.interval())
            .expect("a validated rate has a period of at least 1ns")
            .allow_burst(NonZeroU32::new(bucket.burst).expect("a bucket's burst is at least 1"));
        Self {
            governor: DefaultDirectRateLimiter::direct(quota),
            bucket,
        }
    }

    /// Takes `cells` (clamped to the burst, see [`Bucket::cost`]), or says
    /// how long until they are there.
    fn take(&self, cells: u64) -> Result<(), std::time::Duration> {
        let Some(cost) = NonZeroU32::new(self.bucket.cost(cells)) else {
            return Ok(());
        };
        let wait = |not_until: NotUntil<_>| not_until.wait_time_from(DefaultClock::default().now());
        match self.governor.check_n(cost) {
            Ok(taken) => taken.map_err(wait),
            // Cannot happen: the cost is clamped to the burst.
            Err(_) => Err(self.bucket.interval() * self.bucket.burst),
        }
    }
}

/// The start of the clock of [`TenantBuckets`]' last charge: one shared
/// start, so that an instant fits in an atomic.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Now, on the clock of [`TenantBuckets::full_at`].
pub fn since_epoch() -> Duration {
    EPOCH.elapsed()
}

/// A tenant's rate buckets; `None` where the rate is unlimited.
pub struct TenantBuckets {
    requests: Option<Limiter>,
    ingest: Option<Limiter>,
    /// How long the slower bucket takes to fill up from empty: its burst at
    /// its rate.
    refill: Duration,
    /// When a bucket was last charged, in nanoseconds since [`EPOCH`].
    last_charge: AtomicU64,
}

impl TenantBuckets {
    pub fn new(effective: &Effective) -> Self {
        let refill = |bucket: Option<Bucket>| bucket.map_or(Duration::ZERO, |b| b.refill());
        Self {
            requests: effective.requests.map(Limiter::new),
            ingest: effective.ingest.map(Limiter::new),
            refill: refill(effective.requests).max(refill(effective.ingest)),
            last_charge: AtomicU64::new(nanos(since_epoch())),
        }
    }

    /// Charges one request, then `bytes` of body.
    pub fn charge(&self, bytes: u64) -> Result<(), Refusal> {
        let charged = match &self.requests {
            Some(requests) => requests.take(1).map_err(Refusal::Requests),
            None => Ok(()),
        }
        .and_then(|()| self.take_ingest(bytes));
        self.charged(charged)
    }

    /// Charges `bytes` of body to the ingest bucket.
    pub fn charge_ingest(&self, bytes: u64) -> Result<(), Refusal> {
        self.charged(self.take_ingest(bytes))
    }

    /// Whether every bucket is full again at `now` (on [`since_epoch`]'s
    /// clock): nothing was charged for as long as a bucket takes to fill, so
    /// these buckets take exactly what new ones would.
    pub fn full_at(&self, now: Duration) -> bool {
        let last = Duration::from_nanos(self.last_charge.load(Ordering::Relaxed));
        now.saturating_sub(last) >= self.refill
    }

    fn take_ingest(&self, bytes: u64) -> Result<(), Refusal> {
        match &self.ingest {
            Some(ingest) => ingest.take(bytes).map_err(Refusal::IngestBytes),
            None => Ok(()),
        }
    }

    /// Notes the time of a charge (after it, so that a bucket is never
    /// taken for full while a charge is under way).
    fn charged(&self, result: Result<(), Refusal>) -> Result<(), Refusal> {
        self.last_charge
            .store(nanos(since_epoch()), Ordering::Relaxed);
        result
    }
}

/// `duration` in whole nanoseconds (584 years fit).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A tenant's requests in flight in this replica, and its gauge when
/// per-tenant metrics are on.
pub struct Inflight {
    count: AtomicU32,
    gauge: Option<IntGauge>,
}

impl Inflight {
    pub fn new(gauge: Option<IntGauge>) -> Self {
        Self {
            count: AtomicU32::new(0),
            gauge,
        }
    }

    /// Counts one more request in flight, unless `max` are already.
    pub fn enter(self: &Arc<Self>, max: Option<u32>) -> Option<InflightPermit> {
        let before = self.count.fetch_add(1, Ordering::AcqRel);
        if max.is_some_and(|max| before >= max) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if let Some(gauge) = &self.gauge {
            gauge.inc();
        }
        Some(InflightPermit(Arc::clone(self)))
    }

    #[cfg(test)]
    pub fn current(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }
}

/// One request in flight; dropping it ends it.
pub struct InflightPermit(Arc<Inflight>);

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        if let Some(gauge) = &self.0.gauge {
            gauge.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::LimitValues;

    fn buckets(requests_per_second: f64, burst: u32, bytes_per_second: u64) -> TenantBuckets {
        TenantBuckets::new(&Effective::new(&LimitValues {
            requests_per_second,
            burst,
            ingest_bytes_per_second: bytes_per_second,
            ingest_burst_bytes: 1000,
            max_inflight: 0,
        }))
    }

    #[test]
    fn exactly_the_burst_passes_and_the_refusal_says_when_to_return() {
        let buckets = buckets(0.001, 3, 0);
        for _ in 0..3 {
            assert_eq!(buckets.charge(0), Ok(()));
        }
        let Err(Refusal::Requests(wait)) = buckets.charge(0) else {
            panic!("the fourth request passed");
        };
        // One cell comes back every 1000 s; a slow machine may have used
        // some of them since the burst.
        assert!(wait > std::time::Duration::from_secs(900), "{wait:?}");
        assert!(wait <= std::time::Duration::from_secs(1000), "{wait:?}");
    }

    #[test]
    fn bodies_are_charged_by_their_bytes() {
        let buckets = buckets(0.0, 0, 1);
        assert_eq!(buckets.charge(600), Ok(()));
        assert!(matches!(buckets.charge(600), Err(Refusal::IngestBytes(_))));
        assert_eq!(buckets.charge(0), Ok(()), "no body, no charge");
        let fresh = self::buckets(0.0, 0, 1);
        assert_eq!(
            fresh.charge(5000),
            Ok(()),
            "a body over the burst passes on a full bucket"
        );
        assert!(fresh.charge(1).is_err());
    }

    #[test]
    fn in_flight_requests_are_counted_until_dropped() {
        let inflight = Arc::new(Inflight::new(None));
        let first = inflight.enter(Some(2)).unwrap();
        let second = inflight.enter(Some(2)).unwrap();
        assert!(inflight.enter(Some(2)).is_none());
        assert_eq!(inflight.current(), 2);
        drop(first);
        let third = inflight.enter(Some(2)).unwrap();
        drop((second, third));
        assert_eq!(inflight.current(), 0);
        assert!(inflight.enter(None).is_some());
    }
}
