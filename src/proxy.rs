//! Forwarding: the header policy, the streaming of bodies both ways, and what
//! an upstream failure turns into.
//!
//! Bodies are never buffered or decoded: request chunks go to the upstream as
//! they arrive and response chunks go back the same way, so memory does not
//! grow with a body's size and `Content-Encoding: snappy` bytes arrive as sent.

use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodyStream, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::Stream;
use hyper::body::{Frame, SizeHint};
use opentelemetry::trace::TraceContextExt;
use prometheus::IntCounter;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::authz::Permit;
use crate::metrics::{InflightGuard, TargetMetrics, UpstreamErrorKind};
use crate::ratelimit::{Admission, BodyMeter, RateLimitError};
use crate::telemetry::HeaderInjector;
use crate::upstream::{ProxySettings, Upstream};
use crate::upstream::{ResponseBody, UpstreamClient, UpstreamError};

/// The header Cortex reads the tenant from.
pub const ORG_ID_HEADER: HeaderName = HeaderName::from_static("x-scope-orgid");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones that describe how the
/// gateway itself frames or authorises a message; never copied across.
const NOT_FORWARDED: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::HOST,
];

/// Why forwarding failed: the upstream (502, 504) or the request body (400,
/// 413, or 429 for a chunked body over the tenant's ingest rate).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream {upstream} is unreachable")]
    Unreachable { upstream: String },
    #[error("upstream {upstream} did not answer in time")]
    Timeout { upstream: String },
    #[error("upstream {upstream} failed")]
    Failed { upstream: String },
    #[error("request body could not be read from the client")]
    ClientBody,
    #[error("request body exceeds server.max_request_body_size ({limit} bytes)")]
    BodyTooLarge { limit: u64 },
    #[error(transparent)]
    RateLimited(RateLimitError),
}

impl ProxyError {
    /// Classifies an upstream failure; the kind is `None` when the client,
    /// not the upstream, is at fault.
    fn from_upstream(upstream: &str, error: UpstreamError) -> (Self, Option<UpstreamErrorKind>) {
        let upstream = upstream.to_owned();
        match error {
            UpstreamError::Timeout => (
                ProxyError::Timeout { upstream },
                Some(UpstreamErrorKind::Timeout),
            ),
            UpstreamError::ConnectTimeout => (
                ProxyError::Unreachable { upstream },
                Some(UpstreamErrorKind::Timeout),
            ),
            UpstreamError::Connect(_) | UpstreamError::Tls(_) => (
                ProxyError::Unreachable { upstream },
                Some(UpstreamErrorKind::Connect),
            ),
            // Only the client's own body failing is the client's fault
            // (400); anything else is the upstream exchange's (502, retried).
            UpstreamError::RequestBody(error)
                if std::error::Error::source(&error)
                    .is_some_and(|cause| cause.downcast_ref::<RequestBodyError>().is_some()) =>
            {
                (ProxyError::ClientBody, None)
            }
            UpstreamError::RequestBody(_) => (
                ProxyError::Failed { upstream },
                Some(UpstreamErrorKind::Reset),
            ),
            UpstreamError::Failed(error) if error.is_parse() => (
                ProxyError::Failed { upstream },
                Some(UpstreamErrorKind::Protocol),
            ),
            UpstreamError::Failed(_) => (
                ProxyError::Failed { upstream },
                Some(UpstreamErrorKind::Reset),
            ),
            UpstreamError::Protocol(_) => (
                ProxyError::Failed { upstream },
                Some(UpstreamErrorKind::Protocol),
            ),
        }
    }
}

/// A forwarding target as resolved by the route table.
pub struct Target {
    pub name: String,
    pub upstream: Upstream,
    pub metrics: TargetMetrics,
    /// The route's label in `cortex_gateway_request_duration_seconds`.
    pub route_label: String,
}

/// Forwards requests for one worker, with the worker's own connections to
/// the upstreams.
pub struct Forwarder {
    client: UpstreamClient<OutgoingBody>,
    credential_headers: Vec<HeaderName>,
    inject_trace_context: bool,
}

impl Forwarder {
    pub fn new(
        settings: &ProxySettings,
        credential_headers: Vec<HeaderName>,
        tls: Arc<rustls::ClientConfig>,
        inject_trace_context: bool,
        connection_gauges: prometheus::IntGaugeVec,
    ) -> Self {
        Self {
            client: UpstreamClient::new(tls, settings, connection_gauges),
            credential_headers,
            inject_trace_context,
        }
    }

    /// Streams `req` with `payload` to `target` with the permit's
    /// `X-Scope-OrgID`, and streams the answer back. A body that grows
    /// past `max_body` as it streams is cut off and answered 413, one over
    /// the tenant's ingest rate 429. The `admission` is held until the
    /// response body has been sent: the request is in flight until then.
    pub async fn forward(
        &self,
        target: &Arc<Target>,
        req: &HttpRequest,
        payload: web::Payload,
        permit: &Permit,
        max_body: u64,
        mut admission: Admission,
    ) -> Result<HttpResponse, ProxyError> {
        let span = self.upstream_span(req, target);
        let body = LimitedBody {
            inner: payload,
            remaining: max_body,
            forwarded: 0,
            counter: target.metrics.request_bytes_counter(),
            meter: admission.body_meter(),
        };
        let outgoing = upstream_request(
            req,
            &target.upstream,
            &self.upstream_headers(req, permit, &span),
            OutgoingBody::new(request_body_length(req.headers()), body),
        );
        target.metrics.forwarded();
        let inflight = target.metrics.inflight();
        let started = Instant::now();
        let response = self
            .send(target, outgoing, &span, max_body, started)
            .await?;
        let status = StatusCode::from_u16(response.status().as_u16())
            .expect("hyper only parses status codes from 100 to 999");
        target.metrics.observe(status.as_str(), started.elapsed());
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
        let completion = Completion {
            target: Arc::clone(target),
            bytes: 0,
            _inflight: inflight,
            _admission: admission,
            access_log: tracing::enabled!(tracing::Level::DEBUG)
                .then(|| AccessLog::new(req, target, status, permit, started)),
        };
        Ok(stream_back(
            status,
            response,
            completion,
            req.method() == actix_web::http::Method::HEAD,
        ))
    }

    /// The client span of the upstream call; none when traces are not
    /// exported, since nobody would see it.
    fn upstream_span(&self, req: &HttpRequest, target: &Target) -> tracing::Span {
        if !self.inject_trace_context {
            return tracing::Span::none();
        }
        tracing::info_span!(
            "upstream request",
            otel.name = %format_args!("{} {}", req.method(), target.name),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            upstream = %target.name,
            http.request.method = %req.method(),
            http.response.status_code = tracing::field::Empty,
        )
    }

    /// The header policy's result, the permit's tenant, and our trace
    /// context when traces are exported.
    fn upstream_headers(
        &self,
        req: &HttpRequest,
        permit: &Permit,
        span: &tracing::Span,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        copy_request_headers(req, &mut headers, &self.credential_headers);
        headers.insert(ORG_ID_HEADER, permit.org_id.clone());
        if self.inject_trace_context {
            let context = span.context();
            opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&context, &mut HeaderInjector(&mut headers))
            });
        }
        headers
    }

    /// Sends the request and waits for the response head; a failure is
    /// classified, counted and logged here, where the upstream is known.
    async fn send(
        &self,
        target: &Target,
        outgoing: hyper::Request<OutgoingBody>,
        span: &tracing::Span,
        max_body: u64,
        started: Instant,
    ) -> Result<hyper::Response<ResponseBody<OutgoingBody>>, ProxyError> {
        let sent = self
            .client
            .send(&target.upstream, outgoing)
            .instrument(span.clone())
            .await;
        let refused_body = match &sent {
            Err(UpstreamError::RequestBody(error)) => std::error::Error::source(error)
                .and_then(|cause| cause.downcast_ref::<RequestBodyError>()),
            _ => None,
        };
        match refused_body {
            Some(RequestBodyError::TooLarge) => {
                return Err(ProxyError::BodyTooLarge { limit: max_body })
            }
            Some(RequestBodyError::RateLimited(limited)) => {
                return Err(ProxyError::RateLimited(limited.clone()))
            }
            Some(RequestBodyError::Client(_)) | None => {}
        }
        match sent {
            Ok(response) => Ok(response),
            Err(error) => {
                let detail = error.to_string();
                let (error, kind) = ProxyError::from_upstream(&target.name, error);
                if let Some(kind) = kind {
                    target.metrics.error(kind);
                }
                target.metrics.observe("error", started.elapsed());
                span.record("otel.status_code", "ERROR");
                tracing::warn!(parent: span, upstream = %target.name, error = %error, %detail, "forwarding failed");
                Err(error)
            }
        }
    }
}

/// The request as the upstream gets it: same method, path (behind the
/// upstream's own prefix) and query; `headers` as the header policy left
/// them; `Host` naming the upstream.
fn upstream_request(
    req: &HttpRequest,
    upstream: &Upstream,
    headers: &HeaderMap,
    body: OutgoingBody,
) -> hyper::Request<OutgoingBody> {
    let path_and_query = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut target = String::with_capacity(upstream.path_prefix.len() + path_and_query.len());
    target.push_str(&upstream.path_prefix);
    target.push_str(path_and_query);
    let mut outgoing = hyper::Request::new(body);
    *outgoing.method_mut() = hyper::Method::from_bytes(req.method().as_str().as_bytes())
        .expect("actix parsed the same method token");
    *outgoing.uri_mut() = hyper::Uri::try_from(target).expect("actix parsed the same target");
    let out = outgoing.headers_mut();
    out.reserve(headers.len() + 1);
    if let Ok(host) = hyper::header::HeaderValue::from_str(upstream.authority()) {
        out.insert(hyper::header::HOST, host);
    }
    for (name, value) in headers {
        // Both sides validated the same bytes; a conversion cannot fail.
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            hyper::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(name, value);
        }
    }
    outgoing
}

/// The trace id for log lines: our span's when traces are exported,
/// otherwise the one the client sent in `traceparent`.
fn trace_id(req: &HttpRequest) -> String {
    let context = tracing::Span::current().context();
    let span = context.span();
    let exported = span.span_context();
    if exported.is_valid() {
        return format!("{:032x}", exported.trace_id());
    }
    req.headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_default()
        .to_owned()
}

/// One access log line, written when the response body is done.
struct AccessLog {
    method: actix_web::http::Method,
    path: String,
    upstream: String,
    status: u16,
    tenant: String,
    trace_id: String,
    started: Instant,
}

impl AccessLog {
    fn new(
        req: &HttpRequest,
        target: &Target,
        status: StatusCode,
        permit: &Permit,
        started: Instant,
    ) -> Self {
        Self {
            method: req.method().clone(),
            path: req.path().to_owned(),
            upstream: target.name.clone(),
            status: status.as_u16(),
            tenant: permit.org_id.to_str().unwrap_or_default().to_owned(),
            trace_id: trace_id(req),
            started,
        }
    }
}

/// Bookkeeping that ends with the response body: byte count, in-flight
/// gauge and the tenant's in-flight permit, access log line.
struct Completion {
    target: Arc<Target>,
    bytes: u64,
    _inflight: InflightGuard,
    _admission: Admission,
    access_log: Option<AccessLog>,
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.target.metrics.count_response_bytes(self.bytes);
        if let Some(log) = &self.access_log {
            tracing::debug!(
                method = %log.method,
                path = %log.path,
                upstream = %log.upstream,
                status = log.status,
                duration_ms = log.started.elapsed().as_secs_f64() * 1000.0,
                tenant = %log.tenant,
                bytes = self.bytes,
                trace_id = %log.trace_id,
                "request"
            );
        }
    }
}

/// The upstream's body, counted on its way to the client.
struct CountedBody<S> {
    inner: S,
    completion: Completion,
    /// The upstream's `Content-Length`, when the body must have it (not for HEAD).
    expected: Option<u64>,
}

impl<S, E> Stream for CountedBody<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        let cut = match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                self.completion.bytes += chunk.len() as u64;
                false
            }
            Poll::Ready(Some(Err(_))) => true,
            // A sized body that ends short of its Content-Length was cut.
            Poll::Ready(None) => self.expected.is_some_and(|n| self.completion.bytes < n),
            Poll::Pending => false,
        };
        if cut {
            // The upstream broke off after its head: the client's body is
            // cut short (never padded), and the failure counted.
            self.completion
                .target
                .metrics
                .error(UpstreamErrorKind::Reset);
        }
        polled
    }
}

/// The upstream's answer as the client's response: status, end-to-end
/// headers and the body stream, unchanged.
fn stream_back(
    status: StatusCode,
    upstream_response: hyper::Response<ResponseBody<OutgoingBody>>,
    completion: Completion,
    head_request: bool,
) -> HttpResponse {
    let (parts, body) = upstream_response.into_parts();
    let mut response = HttpResponse::build(status);
    let connection_named = connection_tokens(
        parts
            .headers
            .get_all(hyper::header::CONNECTION)
            .iter()
            .map(|value| value.as_bytes()),
    );
    let mut length = None;
    for (name, value) in &parts.headers {
        if name == hyper::header::CONTENT_LENGTH {
            length = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            if forwardable(&name, &connection_named) {
                response.append_header((name, value));
            }
        }
    }
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return response.body(());
    }
    // For HEAD the upstream's payload is empty while its Content-Length
    // describes the GET body; a sized body of that length keeps the header
    // and actix writes no body bytes for HEAD.
    let body = CountedBody {
        inner: body,
        completion,
        expected: length.filter(|_| !head_request),
    };
    match length {
        Some(length) => response.body(SizedStream::new(length, body)),
        None => response.body(BodyStream::new(body)),
    }
}

/// Why the client's body stopped; the upstream client hands it back as the
/// source of `UpstreamError::RequestBody`, where the too-large case is
/// recognised.
#[derive(Debug, thiserror::Error)]
enum RequestBodyError {
    #[error("request body too large")]
    TooLarge,
    #[error(transparent)]
    RateLimited(RateLimitError),
    #[error(transparent)]
    Client(#[from] PayloadError),
}

/// The client's body, cut off with an error once it grows past the limit
/// or, chunked, past the tenant's ingest rate. The error aborts the
/// upstream request, so the rest is never forwarded.
struct LimitedBody<S> {
    inner: S,
    remaining: u64,
    forwarded: u64,
    counter: IntCounter,
    meter: Option<BodyMeter>,
}

impl<S> Drop for LimitedBody<S> {
    fn drop(&mut self) {
        self.counter.inc_by(self.forwarded);
    }
}

impl<S> Stream for LimitedBody<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, RequestBodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let len = chunk.len() as u64;
                if len > self.remaining {
                    return Poll::Ready(Some(Err(RequestBodyError::TooLarge)));
                }
                if let Some(Err(limited)) = self.meter.as_ref().map(|meter| meter.charge(len)) {
                    return Poll::Ready(Some(Err(RequestBodyError::RateLimited(limited))));
                }
                self.remaining -= len;
                self.forwarded += len;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The client's body as hyper sends it: nothing, or the counted and
/// limited stream with the length the client declared (chunked without).
enum OutgoingBody {
    Empty,
    Stream {
        body: LimitedBody<web::Payload>,
        length: Option<u64>,
    },
}

impl OutgoingBody {
    fn new(framing: RequestBody, body: LimitedBody<web::Payload>) -> Self {
        match framing {
            RequestBody::Sized(length) => OutgoingBody::Stream {
                body,
                length: Some(length),
            },
            RequestBody::Chunked => OutgoingBody::Stream { body, length: None },
            RequestBody::None => OutgoingBody::Empty,
        }
    }
}

impl hyper::body::Body for OutgoingBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            OutgoingBody::Empty => Poll::Ready(None),
            OutgoingBody::Stream { body, .. } => Pin::new(body)
                .poll_next(cx)
                .map(|chunk| chunk.map(|chunk| chunk.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, OutgoingBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OutgoingBody::Empty => SizeHint::with_exact(0),
            OutgoingBody::Stream {
                length: Some(length),
                ..
            } => SizeHint::with_exact(*length),
            OutgoingBody::Stream { length: None, .. } => SizeHint::default(),
        }
    }
}

/// How the client framed its body.
enum RequestBody {
    Sized(u64),
    Chunked,
    None,
}

fn request_body_length(headers: &HeaderMap) -> RequestBody {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return RequestBody::Chunked;
    }
    match content_length(headers) {
        Some(length) => RequestBody::Sized(length),
        None => RequestBody::None,
    }
}

/// The client's declared `Content-Length`, when it is a number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Header names listed in `Connection`, which are hop-by-hop for this message.
fn connection_tokens<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<HeaderName> {
    values
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::try_from(token.trim()).ok())
        .collect()
}

/// Whether two header names are the same once `_` is read as `-`: CGI and
/// WSGI servers, NGINX with `underscores_in_headers` and some sidecars do,
/// so `X_Scope_OrgID` must be dropped like `X-Scope-OrgID` (names are
/// already lower case).
fn same_header(name: &HeaderName, other: &HeaderName) -> bool {
    let (name, other) = (name.as_str().as_bytes(), other.as_str().as_bytes());
    let dash = |byte: u8| if byte == b'_' { b'-' } else { byte };
    name.len() == other.len() && name.iter().zip(other).all(|(&a, &b)| dash(a) == dash(b))
}

fn forwardable(name: &HeaderName, connection_named: &[HeaderName]) -> bool {
    !NOT_FORWARDED.contains(name) && !connection_named.contains(name)
}

/// Copies the client's end-to-end headers. Credentials, the client's own
/// `X-Scope-OrgID` and `Expect` (actix answers `100-continue` itself) stay
/// behind; `X-Forwarded-For` gets the client's address appended.
fn copy_request_headers(req: &HttpRequest, out: &mut HeaderMap, credential_headers: &[HeaderName]) {
    let incoming = req.headers();
    let connection_named = connection_tokens(
        incoming
            .get_all(header::CONNECTION)
            .map(|value| value.as_bytes()),
    );
    for (name, value) in incoming {
        if !forwardable(name, &connection_named)
            || name == header::EXPECT
            || name == X_FORWARDED_FOR
            || same_header(name, &ORG_ID_HEADER)
            || same_header(name, &header::AUTHORIZATION)
            || credential_headers
                .iter()
                .any(|credential| same_header(name, credential))
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }

    let mut forwarded_for = String::new();
    for value in incoming.get_all(X_FORWARDED_FOR) {
        if let Ok(value) = value.to_str() {
            forwarded_for.push_str(value);
            forwarded_for.push_str(", ");
        }
    }
    if let Some(peer) = req.peer_addr() {
        // Written in place: no second allocation for the address.
        let _ = write!(forwarded_for, "{}", peer.ip());
    }
    let forwarded_for = forwarded_for.trim_end_matches(", ");
    if let Ok(value) = HeaderValue::from_str(forwarded_for) {
        if !value.is_empty() {
            out.insert(X_FORWARDED_FOR, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn header_policy_drops_credentials_hop_by_hop_and_foreign_tenants() {
        let req = TestRequest::post()
            .insert_header(("Authorization", "Bearer secret.token.here"))
            .insert_header(("X-Scope-OrgID", "evil"))
            .insert_header(("x-scope-orgid", "evil2"))
            .insert_header(("X_Scope_OrgID", "evil3"))
            .insert_header(("x-scope_orgid", "evil4"))
            .insert_header(("X_Auth_Token", "yet.another.token"))
            .insert_header(("X-Scope-OrgIDs", "kept"))
            .insert_header(("X-Auth-Token", "another.secret.token"))
            .insert_header(("Connection", "keep-alive, X-Private"))
            .insert_header(("X-Private", "hop"))
            .insert_header(("Keep-Alive", "timeout=5"))
            .insert_header(("Content-Encoding", "snappy"))
            .insert_header(("X-Prometheus-Remote-Write-Version", "0.1.0"))
            .insert_header(("User-Agent", "Prometheus/2.42.0"))
            .insert_header(("X-Forwarded-For", "10.0.0.1"))
            .peer_addr("192.0.2.7:5555".parse().unwrap())
            .to_http_request();
        let mut out = HeaderMap::new();
        copy_request_headers(&req, &mut out, &[HeaderName::from_static("x-auth-token")]);

        for dropped in [
            "authorization",
            "x-scope-orgid",
            "x_scope_orgid",
            "x-scope_orgid",
            "x-auth-token",
            "x_auth_token",
            "connection",
            "x-private",
            "keep-alive",
        ] {
            assert!(
                !out.contains_key(dropped),
                "{dropped} must not be forwarded"
            );
        }
        assert_eq!(out.get("x-scope-orgids").unwrap(), "kept");
        assert_eq!(out.get("content-encoding").unwrap(), "snappy");
        assert_eq!(
            out.get("x-prometheus-remote-write-version").unwrap(),
            "0.1.0"
        );
        assert_eq!(out.get("user-agent").unwrap(), "Prometheus/2.42.0");
        assert_eq!(out.get("x-forwarded-for").unwrap(), "10.0.0.1, 192.0.2.7");
    }

    #[test]
    fn body_framing_follows_the_client() {
        let mut headers = HeaderMap::new();
        assert!(matches!(request_body_length(&headers), RequestBody::None));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("65536"));
        assert!(matches!(
            request_body_length(&headers),
            RequestBody::Sized(65536)
        ));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(matches!(
            request_body_length(&headers),
            RequestBody::Chunked
        ));
    }
}
