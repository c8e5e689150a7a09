//! Keys an identity provider publishes: a JWKS URL (`auth.jwks_url`), or
//! the one an OIDC issuer's discovery document names (`auth.oidc_issuer_url`).
//!
//! Each source is fetched by a task of its own on the main runtime, with
//! the gateway's one HTTP client: at start-up (retried with back-off until
//! it works), every `auth.jwks_refresh_interval` (sooner when the response's
//! `max-age` says so), and when a token names a `kid` the source does not
//! know, at most once per `auth.jwks_min_refetch_interval`. A failed fetch
//! keeps the last good keys: an identity provider's outage must not lock
//! every client out. Until the first fetch works the source is *pending*,
//! which the authenticator answers with 503 (retry) rather than 401 (drop).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hyper::header::{ACCEPT, CACHE_CONTROL, HOST};
use hyper::{Request, StatusCode};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use super::keys::{Key, KeyError, KeySource};
use crate::metrics::KeyMetrics;
use crate::upstream::{ProxySettings, Upstream, UpstreamClient};

/// The largest key document read; real ones are a few KiB.
const MAX_DOCUMENT: usize = 1 << 20;
/// A whole fetch (connect, head, body) must finish within this.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The back-off after failures grows up to this (or the refresh interval).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The least time between two scheduled fetches, whatever `max-age` says.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// Why a fetch failed; logged, counted, and the keys in use stay.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    Address(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("document larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    #[error("not a JSON document: {0}")]
    Json(String),
    #[error("discovery document: {0}")]
    Discovery(String),
    #[error("holds no usable signing key")]
    NoKeys,
}

/// How documents are fetched: the upstream client's TLS and timeouts.
#[derive(Clone)]
pub struct Fetcher {
    pub tls: Arc<rustls::ClientConfig>,
    pub proxy: ProxySettings,
}

impl Fetcher {
    /// The fetcher of the `[proxy]` settings, with their CA trust but
    /// always verified ([`crate::tls::key_fetch_client_config`]).
    pub fn new(proxy: &ProxySettings) -> Result<Self, crate::tls::TlsError> {
        Ok(Self {
            tls: crate::tls::key_fetch_client_config(proxy)?,
            proxy: proxy.clone(),
        })
    }

    /// GETs `url` and returns its body and `max-age`, if any.
    async fn get(
        &self,
        client: &UpstreamClient<String>,
        url: &str,
    ) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let fetch = async {
            let upstream = Upstream::parse(url).map_err(FetchError::Address)?;
            let path = if upstream.path_prefix.is_empty() {
                "/"
            } else {
                upstream.path_prefix.as_str()
            };
            let request = Request::get(path)
                .header(HOST, upstream.authority())
                .header(ACCEPT, "application/json")
                .body(String::new())
                .map_err(|e| FetchError::Request(e.to_string()))?;
            let response = client
                .send(&upstream, request)
                .await
                .map_err(|e| FetchError::Request(e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status()));
            }
            let max_age = response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|value| value.to_str().ok())
                .and_then(max_age);
            let mut body = response.into_body();
            let mut document = Vec::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| FetchError::Request(e.to_string()))?;
                if document.len() + chunk.len() > MAX_DOCUMENT {
                    return Err(FetchError::TooLarge);
                }
                document.extend_from_slice(&chunk);
            }
            Ok((document, max_age))
        };
        actix_rt::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| FetchError::Timeout(FETCH_TIMEOUT))?
    }
}

/// `max-age=N` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())?
            .map(Duration::from_secs)
    })
}

/// What is configured: a JWKS document, or an OIDC issuer whose discovery
/// document names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Jwks(String),
    Oidc(String),
}

impl Location {
    fn url(&self) -> &str {
        match self {
            Location::Jwks(url) | Location::Oidc(url) => url,
        }
    }
}

/// What a source has fetched.
struct Fetched {
    keys: Vec<Key>,
    /// The JWKS document the keys came from: a refetch that returns the
    /// same bytes changes nothing (and does not empty the token cache).
    document: Vec<u8>,
    /// The JWKS URL, once discovery named it.
    jwks_uri: Option<String>,
    last_success: Option<Instant>,
    /// When an unknown `kid` last caused a fetch.
    last_refetch: Option<Instant>,
    /// Whether that fetch is still to finish: requests with the same new
    /// `kid` wait for it instead of being refused meanwhile.
    refetch_pending: bool,
}

/// One JWKS or OIDC source and its fetch task.
pub struct JwksSource {
    location: Location,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    fetcher: Fetcher,
    metrics: Option<KeyMetrics>,
    fetched: Mutex<Fetched>,
    /// Counts key changes, so the authenticator knows to gather keys again.
    version: AtomicU64,
    /// Wakes the fetch task early (an unknown `kid`, a `SIGHUP`).
    wake: Arc<Notify>,
    /// Counts finished fetch attempts; requests waiting for a refetch watch it.
    attempts: watch::Sender<u64>,
    started: AtomicBool,
}

impl JwksSource {
    pub fn new(
        location: Location,
        refresh_interval: Duration,
        min_refetch_interval: Duration,
        fetcher: Fetcher,
        metrics: Option<KeyMetrics>,
    ) -> Self {
        if let Some(metrics) = &metrics {
            metrics.prepare(location.url());
            metrics.age(location.url(), f64::INFINITY);
        }
        if is_plain_http_elsewhere(location.url()) {
            tracing::warn!(
                source = location.url(),
                "JWKS/OIDC source over plain http to another host: whoever can change the document in transit can sign tokens; use https"
            );
        }
        Self {
            location,
            refresh_interval,
            min_refetch_interval,
            fetcher,
            metrics,
            fetched: Mutex::new(Fetched {
                keys: Vec::new(),
                document: Vec::new(),
                jwks_uri: None,
                last_success: None,
                last_refetch: None,
                refetch_pending: false,
            }),
            version: AtomicU64::new(0),
            wake: Arc::new(Notify::new()),
            attempts: watch::Sender::new(0),
            started: AtomicBool::new(false),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The refresh and minimum refetch intervals it was made with.
    pub fn intervals(&self) -> (Duration, Duration) {
        (self.refresh_interval, self.min_refetch_interval)
    }

    fn fetched(&self) -> std::sync::MutexGuard<'_, Fetched> {
        self.fetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the fetch task on the current (actix) runtime, once. It ends
    /// on its own when the source is dropped (after a reload removed it).
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        actix_rt::spawn(fetch_loop(Arc::downgrade(self)));
    }

    /// Whether no fetch has worked yet: tokens that need these keys are
    /// answered 503 until then, and `/ready` is not ready.
    pub fn pending(&self) -> bool {
        self.fetched().last_success.is_none()
    }

    fn known_jwks_uri(&self) -> Option<String> {
        self.fetched().jwks_uri.clone()
    }

    /// Changes each time the keys change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// A token named a `kid` nobody knows: the identity provider may have
    /// rotated. Wakes the fetch task unless it already fetched for this
    /// reason within `min_refetch_interval`, and returns what to wait on
    /// for that fetch to finish: the new one, or the one still running;
    /// `None` when no fetch is due.
    pub fn request_refetch(&self) -> Option<watch::Receiver<u64>> {
        let mut fetched = self.fetched();
        let now = Instant::now();
        let due = fetched
            .last_refetch
            .is_none_or(|last| now.duration_since(last) >= self.min_refetch_interval);
        if !due && !fetched.refetch_pending {
            return None;
        }
        let mut receiver = self.attempts.subscribe();
        receiver.mark_unchanged();
        if due {
            fetched.last_refetch = Some(now);
            fetched.refetch_pending = true;
            self.wake.notify_one();
        }
        Some(receiver)
    }

    /// Updates the age gauge; called on every reload poll.
    pub fn observe_age(&self) {
        if let Some(metrics) = &self.metrics {
            let age = self
                .fetched()
                .last_success
                .map_or(f64::INFINITY, |at| at.elapsed().as_secs_f64());
            metrics.age(self.location.url(), age);
        }
    }

    /// One fetch: discovery first when needed, then the JWKS. Returns how
    /// long the document may be cached.
    async fn fetch(&self, client: &UpstreamClient<String>) -> Result<Option<Duration>, FetchError> {
        let jwks_uri = match &self.location {
            Location::Jwks(url) => url.clone(),
            Location::Oidc(issuer) => match self.known_jwks_uri() {
                Some(uri) => uri,
                None => {
                    let uri = self.discover(client, issuer).await?;
                    self.fetched().jwks_uri = Some(uri.clone());
                    uri
                }
            },
        };
        let fetched = self.fetcher.get(client, &jwks_uri).await;
        if fetched.is_err() && matches!(self.location, Location::Oidc(_)) {
            // The provider may have moved its keys: discover again next time.
            self.fetched().jwks_uri = None;
        }
        let (document, max_age) = fetched?;
        let issuer = match &self.location {
            Location::Oidc(issuer) => Some(Arc::<str>::from(issuer.as_str())),
            Location::Jwks(_) => None,
        };
        let unchanged = self.fetched().document == document;
        if !unchanged {
            let keys = parse_jwks(&document, &jwks_uri, issuer)?;
            let count = keys.len();
            {
                let mut fetched = self.fetched();
                fetched.keys = keys;
                fetched.document = document;
            }
            self.version.fetch_add(1, Ordering::AcqRel);
            if let Some(metrics) = &self.metrics {
                metrics.loaded(self.location.url(), count);
            }
            tracing::info!(source = self.location.url(), keys = count, "JWKS loaded");
        }
        let first = {
            let mut fetched = self.fetched();
            let first = fetched.last_success.is_none();
            fetched.last_success = Some(Instant::now());
            first
        };
        if first {
            // The first success changes what a token needing these keys
            // gets (503 → verified), even when the document is the same.
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        Ok(max_age)
    }

    /// Reads `<issuer>/.well-known/openid-configuration`, checks that it
    /// speaks for `issuer`, and returns its `jwks_uri`.
    async fn discover(
        &self,
        client: &UpstreamClient<String>,
        issuer: &str,
    ) -> Result<String, FetchError> {
        let url = format!("{issuer}/.well-known/openid-configuration");
        let (document, _) = self.fetcher.get(client, &url).await?;
        let document: Value =
            serde_json::from_slice(&document).map_err(|e| FetchError::Json(e.to_string()))?;
        let named = document.get("issuer").and_then(Value::as_str).unwrap_or("");
        if named.trim_end_matches('/') != issuer {
            return Err(FetchError::Discovery(format!(
                "names issuer `{named}`, not `{issuer}`"
            )));
        }
        document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| FetchError::Discovery("has no jwks_uri".to_owned()))
    }
}

impl KeySource for Arc<JwksSource> {
    fn describe(&self) -> String {
        self.location.url().to_owned()
    }

    fn keys(&self) -> Vec<Key> {
        self.fetched().keys.clone()
    }

    /// Keys change in the fetch task; a forced reload only wakes it.
    fn refresh(&self, force: bool) -> Result<bool, KeyError> {
        if force {
            self.wake.notify_one();
        }
        Ok(false)
    }

    fn remote(&self) -> Option<&Arc<JwksSource>> {
        Some(self)
    }
}

/// The fetch task of one source, for as long as the source exists.
async fn fetch_loop(source: Weak<JwksSource>) {
    let (client, wake, refresh) = match source.upgrade() {
        Some(source) => (
            UpstreamClient::new(
                Arc::clone(&source.fetcher.tls),
                &source.fetcher.proxy,
                unregistered_gauges(),
            ),
            Arc::clone(&source.wake),
            source.refresh_interval,
        ),
        None => return,
    };
    let mut failures: u32 = 0;
    loop {
        let Some(current) = source.upgrade() else {
            return;
        };
        let outcome = current.fetch(&client).await;
        let url = current.location.url().to_owned();
        if let Some(metrics) = &current.metrics {
            metrics.fetched(&url, outcome.is_ok());
        }
        current.observe_age();
        let wait = match outcome {
            Ok(max_age) => {
                failures = 0;
                max_age.map_or(refresh, |age| {
                    age.clamp(MIN_REFRESH, refresh.max(MIN_REFRESH))
                })
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let serving = current.fetched().keys.len();
                tracing::warn!(
                    source = url,
                    %error,
                    keys_in_use = serving,
                    failures,
                    "JWKS fetch failed; the keys in use stay"
                );
                backoff(failures).min(refresh.max(MIN_REFRESH))
            }
        };
        current.fetched().refetch_pending = false;
        current.attempts.send_modify(|n| *n += 1);
        // Not held while waiting: a source dropped by a reload ends the task.
        drop(current);
        let woken = wake.notified();
        let sleep = actix_rt::time::sleep(wait);
        futures_util::future::select(pin!(woken), pin!(sleep)).await;
    }
}

/// Whether `url` is plain http to anything but the loopback interface.
fn is_plain_http_elsewhere(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    !(loopback || host == "localhost")
}

/// 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// The key fetcher's connections are not the upstreams': counted nowhere.
fn unregistered_gauges() -> prometheus::IntGaugeVec {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new("jwks_connections", "unregistered"),
        &["upstream", "state"],
    )
    .expect("valid metric")
}

/// The signing keys of a JWKS document. Keys for encryption, of an
/// unsupported type or curve, or that do not parse, are skipped with a log
/// line: one odd key must not take the others down.
pub fn parse_jwks(
    document: &[u8],
    url: &str,
    issuer: Option<Arc<str>>,
) -> Result<Vec<Key>, FetchError> {
    let document: Value =
        serde_json::from_slice(document).map_err(|e| FetchError::Json(e.to_string()))?;
    let Some(entries) = document.get("keys").and_then(Value::as_array) else {
        return Err(FetchError::Json("no `keys` array".to_owned()));
    };
    let mut keys = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
        match signing_key(entry) {
            Ok((decoding, algorithm)) => keys.push(Key {
                decoding,
                kid: (!kid.is_empty()).then(|| Arc::from(kid)),
                algorithm,
                origin: Arc::from(format!("{url}#{kid}")),
                issuer: issuer.clone(),
            }),
            Err(why) => tracing::info!(source = url, index, kid, why, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoKeys);
    }
    Ok(keys)
}

/// One JWK as a verification key, or why it is skipped.
fn signing_key(entry: &Value) -> Result<(DecodingKey, Option<Algorithm>), &'static str> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|_| "unsupported key type")?;
    if matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature) {
        return Err("not a signing key (use is not sig)");
    }
    let algorithm = match entry.get("alg").and_then(Value::as_str) {
        None => None,
        Some(alg) => Some(alg.parse::<Algorithm>().map_err(|_| "unsupported alg")?),
    };
    let usable = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => true,
        AlgorithmParameters::EllipticCurve(ec) => {
            matches!(ec.curve, EllipticCurve::P256 | EllipticCurve::P384)
        }
        AlgorithmParameters::OctetKeyPair(okp) => okp.curve == EllipticCurve::Ed25519,
        // A shared secret published in a JWKS would let anyone who reads
        // the document sign tokens; other key types are not supported.
        _ => false,
    };
    if !usable {
        return Err("unsupported key type or curve");
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| "key does not parse")?;
    if algorithm.is_some_and(|alg| alg.family() != decoding.family()) {
        return Err("alg does not match the key type");
    }
    Ok((decoding, algorithm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn plain_http_is_flagged_unless_loopback() {
        assert!(is_plain_http_elsewhere("http://idp.example.com/keys"));
        assert!(!is_plain_http_elsewhere("https://idp.example.com/keys"));
        assert!(!is_plain_http_elsewhere("http://127.0.0.1:8080/keys"));
        assert!(!is_plain_http_elsewhere("http://localhost/keys"));
        assert!(!is_plain_http_elsewhere("http://[::1]:80/keys"));
        assert!(!is_plain_http_elsewhere("http://127.0.0.2/keys"));
        assert!(is_plain_http_elsewhere("http://127.evil.example/keys"));
        assert!(is_plain_http_elsewhere("http://[::2]/keys"));
    }

    #[test]
    fn backoff_grows_and_stops_growing() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn odd_keys_are_skipped_and_good_ones_kept() {
        let document = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AQAB", "y": "AQAB"},
            {"kty": "XYZ", "kid": "alien"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let keys = parse_jwks(
            document.to_string().as_bytes(),
            "http://idp/keys",
            Some(Arc::from("http://idp")),
        )
        .unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(key.kid.as_deref(), Some("ed"));
        assert_eq!(key.algorithm, Some(Algorithm::EdDSA));
        assert_eq!(&*key.origin, "http://idp/keys#ed");
        assert!(key.accepts(Algorithm::EdDSA) && !key.accepts(Algorithm::HS256));

        let only_odd = serde_json::json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(matches!(
            parse_jwks(only_odd.to_string().as_bytes(), "u", None),
            Err(FetchError::NoKeys)
        ));
        assert!(matches!(
            parse_jwks(b"<html>", "u", None),
            Err(FetchError::Json(_))
        ));
    }
}
