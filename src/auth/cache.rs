//! Verified tokens, remembered per worker thread.
//!
//! A Prometheus sends the same token with every remote-write batch and a
//! Grafana with every query, so after the first verification a request costs
//! one hash lookup instead of an HMAC and two JSON parses. Only tokens that
//! passed every check are stored, keyed by their exact text, and each hit
//! re-checks `exp`/`nbf` against the clock, so a cached token expires on
//! time. The cache is per thread (no locks) and bounded.

use std::cell::RefCell;
use std::collections::HashMap;

use prometheus::IntCounter;

use super::Principal;

/// Entries per worker thread before the cache starts over; far above the
/// number of distinct tokens a gateway sees in practice.
const CAPACITY: usize = 4096;

/// What a verified token grants, and until when.
#[derive(Clone)]
pub struct Verified {
    pub principal: Principal,
    /// Earliest valid second (`nbf` minus leeway), 0 when absent.
    pub valid_from: u64,
    /// Last valid second (`exp` plus leeway), `u64::MAX` when absent.
    pub valid_until: u64,
    /// The tenant's success counter, resolved once.
    pub success_counter: Option<IntCounter>,
}

/// The key set the entries were verified with, and the entries by token
/// text. A new key set (a reload, or another authenticator on the thread in
/// tests) starts the cache over, so old verifications are dropped, not kept.
type Cache = (u64, HashMap<Box<str>, Verified>);

thread_local! {
    static VERIFIED: RefCell<Cache> = RefCell::new((0, HashMap::new()));
}

/// The cached verification of `token` under key set `owner`, if still valid at `now`.
pub fn get(owner: u64, token: &str, now: u64) -> Option<Verified> {
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (cached_owner, tokens) = &mut *cache;
        if *cached_owner != owner {
            return None;
        }
        match tokens.get(token) {
            Some(hit) if (hit.valid_from..=hit.valid_until).contains(&now) => Some(hit.clone()),
            Some(_) => {
                tokens.remove(token);
                None
            }
            None => None,
        }
    })
}

/// Remembers a token that passed every check under key set `owner`.
pub fn insert(owner: u64, token: &str, verified: Verified) {
    VERIFIED.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (cached_owner, tokens) = &mut *cache;
        if *cached_owner != owner || tokens.len() >= CAPACITY {
            *cached_owner = owner;
            tokens.clear();
        }
        tokens.insert(token.into(), verified);
    });
}
