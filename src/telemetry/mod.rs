//! Logs and traces.
//!
//! Logs: text or JSON lines on stderr, filtered by `log.level`. What is logged
//! is decided at the call sites, which never pass a token, a secret or an
//! `Authorization` value; this module only decides the shape.
//!
//! Traces: when an OTLP endpoint is configured, spans are exported over
//! OTLP/HTTP (which Jaeger ≥ 1.35 ingests natively) by a batch processor on
//! its own thread, so export never blocks or fails a request. Without an
//! endpoint no exporter and no OpenTelemetry layer exist at all. Trace
//! context is read from and written to both `traceparent` (W3C) and
//! `uber-trace-id` (Jaeger, still used by Cortex services).

mod early_rejections;
mod jaeger;
mod otlp_http;
pub mod settings;

use opentelemetry::propagation::{Injector, TextMapCompositePropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

pub use early_rejections::EarlyRejections;
pub use jaeger::JaegerPropagator;
use settings::{LogFormat, LogSettings, TracingSettings};

/// Keeps the trace pipeline alive; dropping it flushes pending spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported, i.e. whether trace context is worth injecting.
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Best effort: a collector that is down must not delay exit long.
            let _ = provider.shutdown();
        }
    }
}

/// Errors that stop the gateway from starting its trace pipeline.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(String),
}

/// Installs the global subscriber and, when configured, the OTLP pipeline.
/// `RUST_LOG`, when set, refines the log level for debugging one module.
/// `early_rejections` counts what actix-http refuses before the app runs.
pub fn init(
    log: &LogSettings,
    tracing: &TracingSettings,
    early_rejections: EarlyRejections,
) -> Result<Telemetry, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        // Later propagators win on extraction: W3C over Jaeger when both came.
        Box::new(JaegerPropagator),
        Box::new(TraceContextPropagator::new()),
    ]));

    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(&log.level));
    let fmt_layer = match log.format {
        LogFormat::Text => fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(false)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
    }
    .with_filter(filter);

    let provider = match &tracing.otlp_endpoint {
        Some(endpoint) => Some(provider(endpoint, tracing)?),
        None => None,
    };
    // Every layer has its own filter, and an absent one is left out rather
    // than passed as `None`: a `None` layer in the stack turns every
    // disabled callsite into "sometimes", which costs a filter evaluation
    // on each `trace!`/`debug!` in actix on every request.
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![fmt_layer.boxed(), early_rejections.layer().boxed()];
    if let Some(provider) = &provider {
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("cortex-gateway"))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
                .boxed(),
        );
    }
    // Fails only when a subscriber already exists (embedding, tests); the
    // existing one keeps working.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(Telemetry { provider })
}

fn provider(
    endpoint: &str,
    settings: &TracingSettings,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(otlp_http::BlockingHttpClient)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// Writes trace context into an outgoing request's headers, replacing any
/// the client sent: the upstream's spans must hang below ours.
pub struct HeaderInjector<'a>(pub &'a mut actix_web::http::header::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            actix_web::http::header::HeaderName::try_from(key),
            actix_web::http::header::HeaderValue::try_from(value),
        ) {
            self.0.insert(name, value);
        }
    }
}
