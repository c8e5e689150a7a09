//! Counts actix-http's own refusals, which happen before a request exists
//! and never reach the app: heads over its fixed ceilings (431) and clients
//! that did not send a head within `server.http_read_timeout` (408).

use std::fmt::{self, Write as _};
use std::sync::{Arc, RwLock};

use prometheus::IntCounter;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::Layer;

use crate::metrics::Metrics;

/// The diagnostic events actix-http emits when it refuses a connection's
/// request before the app sees it. They are `trace` events with fixed
/// messages; `tests/hostile.rs` fails if an actix-http upgrade changes them.
const ACTIX_DISPATCHER: &str = "actix_http::h1::dispatcher";
const HEAD_TOO_LARGE_EVENT: &str = "request head was too big; returning 431 response";
/// From our patch of actix-http (`patches/`): a target `Uri` cannot hold.
const URI_TOO_LONG_EVENT: &str = "request target was too long; returning 414 response";
const READ_TIMEOUT_EVENT: &str =
    "timed out on slow request; replying with 408 and closing connection";

/// A `tracing` layer that counts actix-http's own refusals: heads over its
/// fixed ceilings (431) and targets over 64 KiB (414), as
/// `header_too_large`, and clients that did not send
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
            Some(HEAD_TOO_LARGE_EVENT | URI_TOO_LONG_EVENT) => self.head_too_large.inc(),
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
    [HEAD_TOO_LARGE_EVENT, URI_TOO_LONG_EVENT, READ_TIMEOUT_EVENT]
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
