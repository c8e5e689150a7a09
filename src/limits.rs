//! Request-head limits, and a count of every request refused by one.
//!
//! The gateway enforces `server.max_request_header_size` and
//! `server.max_request_headers` itself, before authentication, so that both
//! are configurable, answered with a reason and counted. Below the app,
//! actix-http has fixed ceilings (a 128 KiB head, 96 header fields) and the
//! read timeout (`server.http_read_timeout`, answered 408): those refusals
//! happen before a request exists and never reach a middleware, so they are
//! counted from actix-http's own diagnostic events instead
//! ([`EarlyRejections`]).

use std::fmt::{self, Write as _};
use std::future::{ready, Ready};
use std::sync::{Arc, RwLock};

use actix_web::body::EitherBody;
use actix_web::dev::{RequestHead, Service, ServiceRequest, ServiceResponse};
use actix_web::ResponseError;
use futures_util::future::{Either, MapOk, TryFutureExt};
use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::Layer;

use crate::config::ServerSettings;
use crate::error::GatewayError;
use crate::metrics::Metrics;

/// Why a request head was refused; answered 414 for the request line,
/// 431 for the header fields.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("request line is larger than server.max_request_header_size ({limit} bytes)")]
    UriTooLong { limit: usize },
    #[error("request head is larger than server.max_request_header_size ({limit} bytes)")]
    HeaderTooLarge { limit: usize },
    #[error("request has more header fields than server.max_request_headers ({limit})")]
    TooManyHeaders { limit: usize },
}

/// The configured head limits, with the counters their refusals go to.
#[derive(Clone)]
pub struct HeadLimits {
    max_size: usize,
    max_headers: usize,
    header_too_large: IntCounter,
    too_many_headers: IntCounter,
}

/// What [`HeadLimits::enforce`] returns: the refusal at once, or the
/// wrapped service's own response future.
type Enforced<S, B> = Either<
    Ready<Result<ServiceResponse<EitherBody<B>>, <S as Service<ServiceRequest>>::Error>>,
    MapOk<<S as Service<ServiceRequest>>::Future, IntoLeftBody<B>>,
>;
type IntoLeftBody<B> = fn(ServiceResponse<B>) -> ServiceResponse<EitherBody<B>>;

impl HeadLimits {
    pub fn new(settings: &ServerSettings, metrics: &Metrics) -> Self {
        Self {
            max_size: settings.max_request_header_size,
            max_headers: settings.max_request_headers,
            header_too_large: metrics.rejected_counter(Metrics::HEADER_TOO_LARGE),
            too_many_headers: metrics.rejected_counter(Metrics::TOO_MANY_HEADERS),
        }
    }

    /// Checks the head as a client sent it: the request line plus every
    /// header field, each counted as `name: value` and its line end, the
    /// way Go's `MaxHeaderBytes` counts.
    pub fn check(&self, head: &RequestHead) -> Result<(), LimitError> {
        if head.headers().len() > self.max_headers {
            return Err(LimitError::TooManyHeaders {
                limit: self.max_headers,
            });
        }
        let uri = &head.uri;
        // "METHOD SP target SP HTTP/1.1 CRLF" and the blank line at the end.
        let mut size = head.method.as_str().len()
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len())
            + " HTTP/1.1\r\n\r\n".len()
            + 1;
        if size > self.max_size {
            return Err(LimitError::UriTooLong {
                limit: self.max_size,
            });
        }
        for (name, value) in head.headers().iter() {
            size += name.as_str().len() + value.len() + ": \r\n".len();
        }
        if size > self.max_size {
            return Err(LimitError::HeaderTooLarge {
                limit: self.max_size,
            });
        }
        Ok(())
    }

    /// Middleware body (for `wrap_fn`): refuses a head over a limit with 431
    /// before anything else looks at it, counted in
    /// `cortex_gateway_rejected_requests_total`.
    pub fn enforce<S, B>(&self, request: ServiceRequest, service: &S) -> Enforced<S, B>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>>,
    {
        match self.check(request.head()) {
            Ok(()) => Either::Right(
                service
                    .call(request)
                    .map_ok(ServiceResponse::map_into_left_body as IntoLeftBody<B>),
            ),
            Err(error) => {
                match error {
                    LimitError::HeaderTooLarge { .. } | LimitError::UriTooLong { .. } => {
                        self.header_too_large.inc()
                    }
                    LimitError::TooManyHeaders { .. } => self.too_many_headers.inc(),
                }
                // Before authentication: anyone can trigger this, so it is
                // not worth more than a debug line; the counter is the signal.
                tracing::debug!(%error, "request refused");
                let response = GatewayError::from(error).error_response();
                Either::Left(ready(Ok(request
                    .into_response(response)
                    .map_into_right_body())))
            }
        }
    }
}

/// The diagnostic events actix-http emits when it refuses a connection's
/// request before the app sees it. They are `trace` events with fixed
/// messages; `tests/hostile.rs` fails if an actix-http upgrade changes them.
const ACTIX_DISPATCHER: &str = "actix_http::h1::dispatcher";
const HEAD_TOO_LARGE_EVENT: &str = "request head was too big; returning 431 response";
const READ_TIMEOUT_EVENT: &str =
    "timed out on slow request; replying with 408 and closing connection";

/// A `tracing` layer that counts actix-http's own refusals: heads over its
/// fixed ceilings (431, as `header_too_large`) and clients that did not send
/// a head within `server.http_read_timeout` (408, as `read_timeout`).
pub struct EarlyRejections {
    head_too_large: IntCounter,
    read_timeout: IntCounter,
    callsites: DispatcherCallsites,
}

impl EarlyRejections {
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            head_too_large: metrics.rejected_counter(Metrics::HEADER_TOO_LARGE),
            read_timeout: metrics.rejected_counter(Metrics::READ_TIMEOUT),
            callsites: DispatcherCallsites::default(),
        }
    }

    /// The layer, listening to actix-http's dispatcher only, whatever the
    /// log level: the log filter applies to the log layer alone.
    pub fn layer<S>(self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let filter = self.callsites.clone();
        self.with_filter(filter)
    }
}

impl<S: Subscriber> Layer<S> for EarlyRejections {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut message = MessageIs::default();
        event.record(&mut message);
        match message.equals {
            Some(HEAD_TOO_LARGE_EVENT) => self.head_too_large.inc(),
            Some(READ_TIMEOUT_EVENT) => self.read_timeout.inc(),
            _ => self.callsites.never_again(event.metadata()),
        }
    }
}

/// Which of the dispatcher's trace callsites are worth hearing from. It
/// emits several trace events per request; each callsite is heard once, and
/// one whose message is not a refusal is switched off for good, so that on
/// the hot path a disabled `trace!` costs what it did without this layer.
#[derive(Clone, Default)]
struct DispatcherCallsites {
    silenced: Arc<RwLock<Vec<tracing::callsite::Identifier>>>,
}

impl DispatcherCallsites {
    fn listens_to(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() == Level::TRACE
            && metadata.target().starts_with(ACTIX_DISPATCHER)
            && !self
                .silenced
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(&metadata.callsite())
    }

    fn never_again(&self, metadata: &Metadata<'_>) {
        self.silenced
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(metadata.callsite());
        // Asks every callsite again, which now answers `never` for this one.
        // Not from inside the event being dispatched: that would disturb
        // this thread's per-layer filter state. Until the rebuild is done,
        // `enabled` already refuses the callsite.
        let _ = std::thread::Builder::new()
            .name("tracing-interest".to_owned())
            .spawn(tracing::callsite::rebuild_interest_cache);
    }
}

impl<S> Filter<S> for DispatcherCallsites {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.listens_to(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if self.listens_to(metadata) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
}

/// Which of the known messages an event carries. The dispatcher emits a few
/// trace events per request, so the comparison stops at the first byte that
/// differs and never allocates.
#[derive(Default)]
struct MessageIs {
    equals: Option<&'static str>,
}

impl Visit for MessageIs {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.equals = known_message(value);
        }
    }
}

/// Which refusal message `message` is, if any.
fn known_message(message: &dyn fmt::Debug) -> Option<&'static str> {
    [HEAD_TOO_LARGE_EVENT, READ_TIMEOUT_EVENT]
        .into_iter()
        .find(|known| {
            let mut prefix = MatchingPrefix {
                expected: known,
                matched: 0,
            };
            write!(prefix, "{message:?}").is_ok() && prefix.matched == known.len()
        })
}

/// A `fmt::Write` that fails as soon as the text written stops being a
/// prefix of `expected`.
struct MatchingPrefix {
    expected: &'static str,
    matched: usize,
}

impl fmt::Write for MatchingPrefix {
    fn write_str(&mut self, written: &str) -> fmt::Result {
        if self.expected[self.matched..].starts_with(written) {
            self.matched += written.len();
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limits(max_size: usize, max_headers: usize) -> HeadLimits {
        let metrics = Metrics::new(false);
        HeadLimits {
            max_size,
            max_headers,
            header_too_large: metrics.rejected_counter(Metrics::HEADER_TOO_LARGE),
            too_many_headers: metrics.rejected_counter(Metrics::TOO_MANY_HEADERS),
        }
    }

    #[test]
    fn the_head_size_counts_the_request_line_and_every_field() {
        let request = TestRequest::get()
            .uri("/api/v1/query?query=up")
            .insert_header(("x-one", "12345"))
            .to_srv_request();
        // "GET /api/v1/query?query=up HTTP/1.1\r\n", "x-one: 12345\r\n", "\r\n"
        let exact = 37 + 14 + 2;
        assert!(limits(exact, 8).check(request.head()).is_ok());
        assert!(matches!(
            limits(exact - 1, 8).check(request.head()),
            Err(LimitError::HeaderTooLarge { limit }) if limit == exact - 1
        ));
    }

    #[test]
    fn repeated_fields_count_one_each() {
        let mut request = TestRequest::get();
        for value in ["a", "b", "c"] {
            request = request.append_header(("x-same", value));
        }
        let request = request.to_srv_request();
        assert!(limits(1024, 3).check(request.head()).is_ok());
        assert!(matches!(
            limits(1024, 2).check(request.head()),
            Err(LimitError::TooManyHeaders { limit: 2 })
        ));
    }

    #[test]
    fn only_the_exact_refusal_messages_are_recognised() {
        assert_eq!(
            known_message(&format_args!(
                "request head was too big; returning 431 response"
            )),
            Some(HEAD_TOO_LARGE_EVENT)
        );
        assert_eq!(
            known_message(&format_args!("{}", READ_TIMEOUT_EVENT)),
            Some(READ_TIMEOUT_EVENT)
        );
        for near_miss in [
            format!("start flags: {:?}", 3),
            format!("{HEAD_TOO_LARGE_EVENT}!"),
            "request head was too big".to_owned(),
            String::new(),
        ] {
            assert_eq!(known_message(&format_args!("{near_miss}")), None);
        }
    }
}
