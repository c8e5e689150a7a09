//! The Jaeger `uber-trace-id` propagation format, which Cortex services
//! instrumented with jaeger-client still read and write.
//!
//! Format: `{trace-id}:{span-id}:{parent-span-id}:{flags}` in hex, flag bit 1
//! meaning sampled. Written by hand: the upstream crate is deprecated and
//! pins an old OpenTelemetry.

use opentelemetry::propagation::{
    text_map_propagator::FieldIter, Extractor, Injector, TextMapPropagator,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

const HEADER: &str = "uber-trace-id";

/// Extracts and injects `uber-trace-id`.
#[derive(Debug, Default)]
pub struct JaegerPropagator;

fn fields() -> &'static [String] {
    static FIELDS: std::sync::OnceLock<[String; 1]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| [HEADER.to_owned()])
}

/// Parses an `uber-trace-id` value; `None` for anything malformed.
pub fn parse(value: &str) -> Option<SpanContext> {
    // Some clients URL-encode the colons.
    let decoded = value.replace("%3A", ":").replace("%3a", ":");
    let mut parts = decoded.split(':');
    let (trace, span, _parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || trace.is_empty()
        || trace.len() > 32
        || span.is_empty()
        || span.len() > 16
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let trace_flags = if flags & 1 == 1 {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Some(SpanContext::new(
        trace_id,
        span_id,
        trace_flags,
        true,
        TraceState::default(),
    ))
}

impl TextMapPropagator for JaegerPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        let span = cx.span();
        let context = span.span_context();
        if context.is_valid() {
            let flags = if context.is_sampled() { 1 } else { 0 };
            injector.set(
                HEADER,
                format!(
                    "{:032x}:{:016x}:0:{flags}",
                    context.trace_id(),
                    context.span_id()
                ),
            );
        }
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        match extractor.get(HEADER).and_then(parse) {
            Some(remote) => cx.with_remote_span_context(remote),
            None => cx.clone(),
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(fields())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn round_trips_a_sampled_context() {
        let context = parse("4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1").unwrap();
        assert_eq!(
            format!("{:032x}", context.trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled());
        let cx = Context::new().with_remote_span_context(context);
        let mut headers = HashMap::new();
        JaegerPropagator.inject_context(&cx, &mut headers);
        assert_eq!(
            headers[HEADER],
            "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"
        );
    }

    #[test]
    fn short_ids_and_encoded_colons_are_accepted() {
        let context = parse("abc%3A1f%3A0%3A0").unwrap();
        assert_eq!(
            format!("{:032x}", context.trace_id()),
            "00000000000000000000000000000abc"
        );
        assert!(!context.is_sampled());
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "x:y:0:1",
            "0:1:0:1",
            "1:0:0:1",
            "1:2:3",
            "1:2:3:4:5",
            &"f".repeat(33),
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }
}
