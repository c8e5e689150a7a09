//! Upstream connections: hyper's HTTP/1.1 client under a small pool of our
//! own, one per worker.
//!
//! The pool exists for one rule: a response only ever reaches the request it
//! answers. A connection goes back to the pool only after a cleanly framed
//! response (`Content-Length` or chunked, not both) was read to its end;
//! hyper then refuses to keep a connection whose read buffer holds anything
//! more (`Conn::require_empty_read`), and skips interim `1xx` responses
//! itself. Anything else (a body framed by close, `Transfer-Encoding`
//! without `chunked`, `Content-Length` beside `Transfer-Encoding`, a `101`,
//! a body the client stopped reading) closes the connection. awc could not
//! promise this: it took a `103` for the final response and pooled the
//! connection with the real one still coming (README, "Upstream
//! connections").

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::Uri;
use futures_util::Stream;
use hyper::body::{Body, Bytes, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{IntGauge, IntGaugeVec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::settings::{parse_duration, serialize_duration, ConfigError, ENV_PREFIX};

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    #[error("cannot connect to the upstream: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake with the upstream failed: {0}")]
    Tls(std::io::Error),
    #[error("the upstream sent no response head in time")]
    Timeout,
    /// The request body (the caller's stream) failed; the caller finds its
    /// own error as the source.
    #[error("request body failed")]
    RequestBody(hyper::Error),
    #[error("the upstream connection failed: {0}")]
    Failed(hyper::Error),
    /// A response the gateway must not pass on: its framing is ambiguous or
    /// it switches protocols nobody asked for.
    #[error("the upstream sent an unacceptable response: {0}")]
    Protocol(&'static str),
}

/// Where to connect for an upstream, derived once per connection.
struct Endpoint<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
}

impl<'a> Endpoint<'a> {
    fn of(upstream: &'a Upstream) -> Self {
        let tls = upstream.origin.starts_with("https://");
        let authority = upstream.authority();
        let default_port = if tls { 443 } else { 80 };
        // `[v6]:port`, `[v6]`, `host:port` or `host`.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => {
                (host, port.parse().unwrap_or(default_port))
            }
            _ => (authority, default_port),
        };
        Self {
            tls,
            host: host.trim_start_matches('[').trim_end_matches(']'),
            port,
        }
    }
}

/// Idle upstream connections the pools' reapers closed since the allocator
/// was last trimmed. The server's trim check reads and resets it: each
/// pooled connection held about 37 KiB of heap (hyper's buffers, its task),
/// which goes back to the worker's glibc arena when it closes and stays
/// there until trimmed (`BENCHMARKS.md`, Scale). Client connection closes
/// alone do not cover it: the pool shrinks `idle_connection_timeout` after
/// the burst that grew it, when the trim for the burst's clients has run.
pub static EVICTED_SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);

/// An idle connection and since when it has been idle.
struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// The connections of one upstream on one worker: the idle ones, and the
/// gauges of idle and active (lent to a request) connections.
struct Connections<B> {
    idle: VecDeque<Idle<B>>,
    idle_gauge: IntGauge,
    active_gauge: IntGauge,
}

/// The idle connections of one worker, by upstream origin, kept at most
/// `max_idle` per upstream and for `idle_timeout`.
struct Pool<B> {
    upstreams: RefCell<HashMap<String, Connections<B>>>,
    max_idle: usize,
    idle_timeout: Duration,
    gauges: IntGaugeVec,
    /// Whether the task that closes expired idle connections runs.
    reaping: std::cell::Cell<bool>,
}

impl<B> Pool<B> {
    /// Runs `f` on the connections of `origin`, created on first use.
    fn with<T>(&self, origin: &str, f: impl FnOnce(&mut Connections<B>) -> T) -> T {
        let mut upstreams = self.upstreams.borrow_mut();
        if !upstreams.contains_key(origin) {
            let connections = Connections {
                idle: VecDeque::new(),
                idle_gauge: self.gauges.with_label_values(&[origin, "idle"]),
                active_gauge: self.gauges.with_label_values(&[origin, "active"]),
            };
            upstreams.insert(origin.to_owned(), connections);
        }
        f(upstreams.get_mut(origin).expect("inserted above"))
    }

    /// Lends the most recently used live connection, closing expired ones.
    fn take(&self, origin: &str) -> Option<SendRequest<B>> {
        self.with(origin, |connections| {
            while let Some(connection) = connections.idle.pop_back() {
                connections.idle_gauge.dec();
                if connection.since.elapsed() < self.idle_timeout && !connection.sender.is_closed()
                {
                    connections.active_gauge.inc();
                    return Some(connection.sender);
                }
            }
            None
        })
    }

    /// Closes every idle connection older than `idle_timeout` (or closed
    /// by the upstream), so that a burst's connections and their buffers
    /// are given back even when no request comes to find them expired.
    /// Counts them in [`EVICTED_SINCE_TRIM`]; returns how many.
    fn evict_expired(&self) -> usize {
        let mut total = 0;
        for connections in self.upstreams.borrow_mut().values_mut() {
            let before = connections.idle.len();
            connections.idle.retain(|connection| {
                connection.since.elapsed() < self.idle_timeout && !connection.sender.is_closed()
            });
            let evicted = before - connections.idle.len();
            connections
                .idle_gauge
                .sub(i64::try_from(evicted).unwrap_or(i64::MAX));
            total += evicted;
        }
        if total > 0 {
            EVICTED_SINCE_TRIM.fetch_add(total, Ordering::Relaxed);
        }
        total
    }

    /// Counts a new connection lent to a request.
    fn opened(&self, origin: &str) {
        self.with(origin, |connections| connections.active_gauge.inc());
    }

    /// A lent connection is done with: dropped, or (`Some`) back to the pool
    /// because its last response was read cleanly to its end.
    fn release(&self, origin: &str, reusable: Option<SendRequest<B>>) {
        self.with(origin, |connections| {
            connections.active_gauge.dec();
            let Some(sender) = reusable.filter(|sender| !sender.is_closed()) else {
                return;
            };
            while connections
                .idle
                .front()
                .is_some_and(|oldest| oldest.since.elapsed() >= self.idle_timeout)
                || connections.idle.len() >= self.max_idle.max(1)
            {
                connections.idle.pop_front();
                connections.idle_gauge.dec();
            }
            if self.max_idle > 0 {
                connections.idle.push_back(Idle {
                    sender,
                    since: Instant::now(),
                });
                connections.idle_gauge.inc();
            }
        });
    }
}

/// A connection lent to one request; counted active until released.
struct Lease<B> {
    sender: Option<SendRequest<B>>,
    pool: Rc<Pool<B>>,
    origin: String,
}

impl<B> Lease<B> {
    fn sender(&mut self) -> &mut SendRequest<B> {
        self.sender
            .as_mut()
            .expect("a lease holds its sender until released")
    }

    /// Hands the connection back for reuse.
    fn give_back(mut self) {
        let sender = self.sender.take();
        self.pool.release(&self.origin, sender);
    }
}

impl<B> Drop for Lease<B> {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Not given back: the connection closes with its last handle.
            self.pool.release(&self.origin, None);
        }
    }
}

/// One worker's client for every upstream. Not `Send`: the connections
/// are driven on the worker's own runtime, beside the requests using them.
pub struct UpstreamClient<B> {
    pool: Rc<Pool<B>>,
    tls: TlsConnector,
    connect_timeout: Duration,
    timeout: Duration,
}

impl<B> UpstreamClient<B>
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// `settings.timeout` bounds the wait for a response head once the
    /// request is on its way, `settings.connect_timeout` the TCP and TLS
    /// set-up; connections are counted in `gauges` (labels: upstream origin,
    /// `idle` or `active`).
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        settings: &ProxySettings,
        gauges: IntGaugeVec,
    ) -> Self {
        Self {
            pool: Rc::new(Pool {
                upstreams: RefCell::default(),
                max_idle: settings.max_idle_connections_per_upstream,
                idle_timeout: settings.idle_connection_timeout,
                gauges,
                reaping: std::cell::Cell::new(false),
            }),
            tls: TlsConnector::from(tls),
            connect_timeout: settings.connect_timeout,
            timeout: settings.timeout,
        }
    }

    /// A lease of a pooled connection to `upstream`, or of a new one.
    async fn lease(&self, upstream: &Upstream) -> Result<(Lease<B>, bool), UpstreamError> {
        let (sender, fresh) = match self.pool.take(&upstream.origin) {
            Some(sender) => (sender, false),
            None => {
                let sender = self.connect(upstream).await?;
                self.pool.opened(&upstream.origin);
                if !self.pool.reaping.replace(true) {
                    actix_rt::spawn(reap(Rc::downgrade(&self.pool)));
                }
                (sender, true)
            }
        };
        let lease = Lease {
            sender: Some(sender),
            pool: Rc::clone(&self.pool),
            origin: upstream.origin.clone(),
        };
        Ok((lease, fresh))
    }

    /// Sends `request` (origin-form URI, `Host` already set) to `upstream`
    /// and returns the response head with its body, which hands the
    /// connection back to the pool when it was read cleanly to its end.
    pub async fn send(
        &self,
        upstream: &Upstream,
        request: Request<B>,
    ) -> Result<Response<ResponseBody<B>>, UpstreamError> {
        let head_request = request.method() == Method::HEAD;
        let mut request = request;
        // A pooled connection the upstream closed a moment ago fails before
        // anything is sent; hyper hands the request back for another try.
        let (lease, response) = loop {
            let (mut lease, fresh) = self.lease(upstream).await?;
            let outcome = match lease.sender().ready().await {
                Ok(()) => lease.sender().try_send_request(request),
                Err(_) if !fresh => continue,
                Err(error) => return Err(UpstreamError::Failed(error)),
            };
            match actix_rt::time::timeout(self.timeout, outcome).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Ok(response)) => break (lease, response),
                Ok(Err(mut error)) => match error.take_message() {
                    Some(unsent) if !fresh => request = unsent,
                    _ => return Err(request_error(error.into_error())),
                },
            }
        };
        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(UpstreamError::Protocol("101 Switching Protocols"));
        }
        let headers = response.headers();
        let chunked = headers.contains_key(TRANSFER_ENCODING);
        if chunked && headers.contains_key(CONTENT_LENGTH) {
            // RFC 9112 §6.3: a sign of response splitting; NGINX answers 502 too.
            return Err(UpstreamError::Protocol(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        // hyper closes a connection whose body ends with the connection or
        // whose Transfer-Encoding is not chunked; not pooling it is explicit.
        let framed = head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || headers.contains_key(CONTENT_LENGTH)
            || (chunked && transfer_encoding_ends_chunked(headers));
        let (parts, incoming) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            ResponseBody {
                incoming,
                checkout: framed.then_some(lease),
            },
        ))
    }

    /// Opens a connection (TCP, then TLS for `https://`) and starts hyper's
    /// connection task on this worker.
    async fn connect(&self, upstream: &Upstream) -> Result<SendRequest<B>, UpstreamError> {
        let endpoint = Endpoint::of(upstream);
        let connecting = async {
            let stream = TcpStream::connect((endpoint.host, endpoint.port))
                .await
                .map_err(UpstreamError::Connect)?;
            // Request heads and small bodies go out at once.
            let _ = stream.set_nodelay(true);
            if !endpoint.tls {
                return handshake(stream).await;
            }
            let server_name = rustls::pki_types::ServerName::try_from(endpoint.host.to_owned())
                .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?;
            let stream = self
                .tls
                .connect(server_name, stream)
                .await
                .map_err(UpstreamError::Tls)?;
            handshake(stream).await
        };
        actix_rt::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)?
    }
}

/// Closes expired idle connections of `pool` every half idle timeout (at
/// least every second), for as long as the pool exists.
async fn reap<B>(pool: std::rc::Weak<Pool<B>>) {
    loop {
        let Some(every) = pool
            .upgrade()
            .map(|pool| (pool.idle_timeout / 2).max(Duration::from_secs(1)))
        else {
            return;
        };
        actix_rt::time::sleep(every).await;
        match pool.upgrade() {
            Some(pool) => {
                pool.evict_expired();
            }
            None => return,
        }
    }
}

/// hyper's HTTP/1.1 handshake on `io`; the connection task runs on this
/// worker until the connection closes.
async fn handshake<B, T>(io: T) -> Result<SendRequest<B>, UpstreamError>
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Failed)?;
    actix_rt::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "upstream connection closed with an error");
        }
    });
    Ok(sender)
}

/// Separates a failure of the caller's request body from one of the
/// upstream connection.
fn request_error(error: hyper::Error) -> UpstreamError {
    // Of hyper's user errors only a body error carries a cause (the body's
    // own error); the others (a dispatch task gone, ...) are the
    // connection's, and must not become the client's 4xx.
    if error.is_user() && std::error::Error::source(&error).is_some() {
        UpstreamError::RequestBody(error)
    } else {
        UpstreamError::Failed(error)
    }
}

/// Whether the last transfer coding is `chunked`, the only way a
/// `Transfer-Encoding` response is delimited by anything but the close.
fn transfer_encoding_ends_chunked(headers: &hyper::HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// The upstream's response body, as a stream of chunks.
pub struct ResponseBody<B> {
    incoming: Incoming,
    /// The connection, while it may still go back to the pool.
    checkout: Option<Lease<B>>,
}

impl<B> Stream for ResponseBody<B> {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match Pin::new(&mut self.incoming).poll_frame(cx) {
                // Trailers are not passed on (a proxy may drop them, RFC
                // 9110 §6.5.1); they never carry a tenant's data here.
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
                Poll::Ready(Some(Err(error))) => {
                    self.checkout = None;
                    Poll::Ready(Some(Err(error)))
                }
                Poll::Ready(None) => {
                    if let Some(checkout) = self.checkout.take() {
                        checkout.give_back();
                    }
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl<B> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        // actix never polls a body it knows to be empty (HEAD, 204,
        // `Content-Length: 0`); hyper has seen its end all the same. A body
        // cut short by the client is not at its end: its connection closes.
        if let Some(checkout) = self.checkout.take() {
            if self.incoming.is_end_stream() {
                checkout.give_back();
            }
        }
    }
}

// ---- settings: `[upstreams]` and `[proxy]` ------------------------------------

/// The upstreams the gateway must know to start.
const REQUIRED_UPSTREAMS: [(&str, &str); 2] = [
    (crate::routes::DISTRIBUTOR, "-gateway.distributor.address"),
    (
        crate::routes::QUERY_FRONTEND,
        "-gateway.query-frontend.address",
    ),
];

/// An upstream base address, split once so forwarding only concatenates.
/// Serializes as the address it was given.
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

impl Serialize for Upstream {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.address())
    }
}

/// `[upstreams]`: every named address, checked; empty ones are unset.
pub fn validate_upstreams(
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
    for (name, flag) in REQUIRED_UPSTREAMS {
        if !upstreams.contains_key(name) {
            return Err(ConfigError::invalid(
                format!("upstreams.{name}"),
                format!(
                    "must be set (flag {flag}, env {}__UPSTREAMS__{})",
                    ENV_PREFIX,
                    name.to_ascii_uppercase()
                ),
            ));
        }
    }
    Ok(upstreams)
}

fn is_upstream_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// How the gateway talks to upstreams.
#[derive(Debug, Clone, Serialize)]
pub struct ProxySettings {
    /// Time an upstream may take to accept the request and send its response head.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    #[serde(serialize_with = "serialize_duration")]
    pub connect_timeout: Duration,
    /// Extra CA certificates (PEM) trusted for https upstreams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Accept any upstream certificate. Logged loudly; for testing only.
    pub tls_insecure_skip_verify: bool,
    /// Idle connections kept per upstream and worker; more are closed.
    pub max_idle_connections_per_upstream: usize,
    /// How long a connection may sit idle before it is closed rather than
    /// reused: below the idle timeout of common upstreams (Go's servers
    /// 90 s and more, Cortex's 2 min), so that the gateway closes first
    /// instead of racing them.
    #[serde(serialize_with = "serialize_duration")]
    pub idle_connection_timeout: Duration,
}

/// `[proxy]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProxy {
    timeout: String,
    connect_timeout: String,
    tls_ca_file: Option<PathBuf>,
    tls_insecure_skip_verify: bool,
    max_idle_connections_per_upstream: usize,
    idle_connection_timeout: String,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            timeout: "5m".to_owned(),
            connect_timeout: "5s".to_owned(),
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
            max_idle_connections_per_upstream: 1000,
            idle_connection_timeout: "30s".to_owned(),
        }
    }
}

impl RawProxy {
    pub fn validate(self) -> Result<ProxySettings, ConfigError> {
        let proxy = ProxySettings {
            timeout: parse_duration("proxy.timeout", &self.timeout)?,
            connect_timeout: parse_duration("proxy.connect_timeout", &self.connect_timeout)?,
            tls_ca_file: self.tls_ca_file,
            tls_insecure_skip_verify: self.tls_insecure_skip_verify,
            max_idle_connections_per_upstream: self.max_idle_connections_per_upstream,
            idle_connection_timeout: parse_duration(
                "proxy.idle_connection_timeout",
                &self.idle_connection_timeout,
            )?,
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
        Ok(proxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(address: &str) -> (bool, String, u16) {
        let upstream = Upstream::parse(address).unwrap();
        let endpoint = Endpoint::of(&upstream);
        (endpoint.tls, endpoint.host.to_owned(), endpoint.port)
    }

    #[test]
    fn endpoints_default_their_port_by_scheme() {
        assert_eq!(endpoint("http://cortex"), (false, "cortex".into(), 80));
        assert_eq!(endpoint("https://cortex/x"), (true, "cortex".into(), 443));
        assert_eq!(
            endpoint("http://127.0.0.1:9009"),
            (false, "127.0.0.1".into(), 9009)
        );
        assert_eq!(endpoint("http://[::1]:8080"), (false, "::1".into(), 8080));
        assert_eq!(endpoint("https://[::1]"), (true, "::1".into(), 443));
    }

    /// The reaper's evictions are counted for the allocator trim.
    #[actix_rt::test]
    async fn evicted_idle_connections_are_counted_for_the_trim() {
        let pool: Pool<String> = Pool {
            upstreams: RefCell::default(),
            max_idle: 4,
            idle_timeout: Duration::from_secs(1),
            gauges: IntGaugeVec::new(prometheus::Opts::new("c", "c"), &["upstream", "state"])
                .unwrap(),
            reaping: std::cell::Cell::new(false),
        };
        let (client, _server) = tokio::io::duplex(1024);
        let sender = handshake::<String, _>(client).await.unwrap();
        pool.opened("http://a");
        pool.release("http://a", Some(sender));
        assert_eq!(pool.evict_expired(), 0, "not expired yet");
        actix_rt::time::sleep(Duration::from_millis(1100)).await;
        let counted = EVICTED_SINCE_TRIM.load(Ordering::Relaxed);
        assert_eq!(pool.evict_expired(), 1);
        // `>`, not `+ 1`: another test's pool may evict meanwhile.
        assert!(EVICTED_SINCE_TRIM.load(Ordering::Relaxed) > counted);
        assert_eq!(pool.evict_expired(), 0);
    }

    #[test]
    fn only_a_final_chunked_coding_delimits_a_body() {
        let mut headers = hyper::HeaderMap::new();
        for (value, chunked) in [
            ("chunked", true),
            ("gzip, chunked", true),
            ("Chunked", true),
            ("identity", false),
            ("chunked, gzip", false),
        ] {
            headers.insert(TRANSFER_ENCODING, value.parse().unwrap());
            assert_eq!(transfer_encoding_ends_chunked(&headers), chunked, "{value}");
        }
    }
}
