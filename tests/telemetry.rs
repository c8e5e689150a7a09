//! Traces reach an OTLP receiver with the client's trace continued and the
//! upstream joined; `/metrics` carries every series with the right labels;
//! JSON logs are JSON.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;

/// An OTLP/HTTP protobuf receiver on 127.0.0.1 that keeps every span.
struct OtlpReceiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl OtlpReceiver {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let store = spans.clone();
        serve_on_thread(listener, move |cfg| {
            let store = store.clone();
            cfg.route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let store = store.clone();
                    async move {
                        let request = ExportTraceServiceRequest::decode(body).unwrap();
                        for resource in request.resource_spans {
                            for scope in resource.scope_spans {
                                store.lock().unwrap().extend(scope.spans);
                            }
                        }
                        HttpResponse::Ok()
                            .content_type("application/x-protobuf")
                            .finish()
                    }
                }),
            );
        });
        Self { url, spans }
    }

    fn wait_for(&self, count: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if spans.len() >= count || Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            _ => None,
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traced_gateway(upstream: &Upstream, receiver: &OtlpReceiver) -> Gateway {
    GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__TRACING__OTLP_ENDPOINT", &receiver.url)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .start()
}

#[actix_rt::test]
async fn a_proxied_request_exports_a_server_and_a_client_span_in_the_clients_trace() {
    let receiver = OtlpReceiver::start();
    let upstream = Upstream::start("d");
    let gateway = traced_gateway(&upstream, &receiver);
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("team-a"))
        .insert_header(("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")))
        .send_body("sample")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let spans = receiver.wait_for(2);
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    let client_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("a client span");
    assert_eq!(
        hex(&server.trace_id),
        TRACE_ID,
        "the client's trace is continued"
    );
    assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN);
    assert_eq!(client_span.trace_id, server.trace_id);
    assert_eq!(
        client_span.parent_span_id, server.span_id,
        "the upstream call is a child"
    );
    assert!(client_span.end_time_unix_nano > client_span.start_time_unix_nano);
    assert_eq!(attribute(server, "tenant").as_deref(), Some("team-a"));
    assert_eq!(
        attribute(server, "upstream").as_deref(),
        Some("distributor")
    );
    assert_eq!(
        attribute(server, "http.route").as_deref(),
        Some("/api/v1/push")
    );
    assert_eq!(
        attribute(server, "http.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(client_span, "upstream").as_deref(),
        Some("distributor")
    );
    assert_eq!(
        attribute(client_span, "http.response.status_code").as_deref(),
        Some("200")
    );

    let recorded = upstream.last();
    let traceparent = recorded
        .header("traceparent")
        .expect("traceparent injected");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID);
    assert_eq!(
        parts[2],
        hex(&client_span.span_id),
        "the upstream hangs below our client span"
    );
    let jaeger = recorded
        .header("uber-trace-id")
        .expect("uber-trace-id injected");
    assert!(
        jaeger.starts_with(&format!("{TRACE_ID}:{}:", hex(&client_span.span_id))),
        "{jaeger}"
    );
}

#[actix_rt::test]
async fn a_jaeger_trace_id_from_the_client_is_continued() {
    let receiver = OtlpReceiver::start();
    let upstream = Upstream::start("q");
    let gateway = traced_gateway(&upstream, &receiver);
    let response = client()
        .get(gateway.url("/api/v1/query?query=up"))
        .bearer_auth(tenant_token("team-a"))
        .insert_header(("uber-trace-id", format!("{TRACE_ID}:{CLIENT_SPAN}:0:1")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = receiver.wait_for(2);
    assert!(spans.len() >= 2, "a server and a client span: {spans:?}");
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == TRACE_ID),
        "all spans in the client's trace"
    );
    assert!(upstream
        .last()
        .header("traceparent")
        .unwrap()
        .contains(TRACE_ID));
}

#[actix_rt::test]
async fn an_unreachable_collector_never_fails_a_request() {
    let upstream = Upstream::start("q");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__TRACING__OTLP_ENDPOINT", &dead)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .start();
    for _ in 0..20 {
        let response = client()
            .get(gateway.url("/api/v1/labels"))
            .bearer_auth(tenant_token("t"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[actix_rt::test]
async fn metrics_carry_every_series_with_its_labels() {
    let distributor = Upstream::start("d");
    let query_frontend = Upstream::start("q");
    let gateway = GatewayBuilder::new(&distributor.url(), &query_frontend.url()).start();
    let token = tenant_token("team-a");
    for body in ["12345", "1234567890"] {
        let response = client()
            .post(gateway.url("/api/v1/push"))
            .bearer_auth(&token)
            .send_body(body)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = client()
        .get(gateway.url("/prometheus/api/v1/query"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = client()
        .get(gateway.url("/api/v1/query"))
        .bearer_auth("bad.token.here")
        .send()
        .await
        .unwrap();
    let _ = client()
        .get(gateway.url("/api/v1/query"))
        .send()
        .await
        .unwrap();
    let _ = client().get(gateway.url("/ring")).send().await.unwrap();

    let samples = gateway.samples();
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&samples, name, labels).unwrap_or_else(|| panic!("missing {name}{labels:?}"))
    };
    type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let expected: [Expected; 6] = [
        (
            "cortex_gateway_proxy_requests_total",
            &[("targetname", "distributor")],
            2.0,
        ),
        (
            "cortex_gateway_proxy_requests_total",
            &[("targetname", "query_frontend")],
            1.0,
        ),
        (
            "cortex_gateway_succeeded_authentications_total",
            &[("tenant", "team-a")],
            3.0,
        ),
        (
            "cortex_gateway_failed_authentications_total",
            &[("reason", "malformed")],
            1.0,
        ),
        (
            "cortex_gateway_failed_authentications_total",
            &[("reason", "no_token")],
            1.0,
        ),
        (
            "cortex_gateway_failed_authentications_total",
            &[("reason", "expired")],
            0.0,
        ),
    ];
    for (name, labels, want) in expected {
        assert_eq!(value(name, labels), want, "{name}{labels:?}");
    }
    let go_histogram = [
        ("method", "POST"),
        ("route", "api_v1_push"),
        ("status_code", "200"),
        ("ws", "false"),
    ];
    assert_eq!(
        value(
            "cortex_gateway_request_duration_seconds_count",
            &go_histogram
        ),
        2.0
    );
    let mut le_100 = go_histogram.to_vec();
    le_100.push(("le", "100"));
    assert_eq!(
        value("cortex_gateway_request_duration_seconds_bucket", &le_100),
        2.0
    );
    assert_eq!(
        value(
            "cortex_gateway_request_duration_seconds_count",
            &[("route", "other"), ("status_code", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "cortex_gateway_request_duration_seconds_count",
            &[("route", "api"), ("status_code", "401")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "cortex_gateway_request_duration_seconds_count",
            &[("route", "health"), ("status_code", "200")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "cortex_gateway_upstream_request_duration_seconds_count",
            &[("targetname", "distributor"), ("status_code", "200")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "cortex_gateway_request_body_bytes_total",
            &[("targetname", "distributor")]
        ),
        15.0
    );
    assert_eq!(
        value(
            "cortex_gateway_response_body_bytes_total",
            &[("targetname", "query_frontend")]
        ),
        "upstream says hi".len() as f64
    );
    assert_eq!(
        value(
            "cortex_gateway_inflight_requests",
            &[("targetname", "distributor")]
        ),
        0.0
    );
    for kind in ["connect", "timeout", "reset", "protocol"] {
        assert_eq!(
            value(
                "cortex_gateway_upstream_errors_total",
                &[("targetname", "distributor"), ("kind", kind)]
            ),
            0.0
        );
    }
    assert_eq!(
        value(
            "cortex_gateway_http_requests_total",
            &[
                ("endpoint", "/api/v1/push"),
                ("method", "POST"),
                ("status", "200")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            "cortex_gateway_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(value("process_open_fds", &[]) > 3.0);
    assert!(value("process_cpu_seconds_total", &[]) >= 0.0);
    assert!(
        samples
            .iter()
            .all(|s| !s.labels.values().any(|v| v.contains("ring"))),
        "no raw paths as labels"
    );
}

#[actix_rt::test]
async fn upstream_errors_are_counted_by_kind() {
    let live = Upstream::start("q");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = GatewayBuilder::new(&dead, &live.url())
        .env("CORTEX_GATEWAY__PROXY__TIMEOUT", "300ms")
        .start();
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("t"))
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    live.set_reply(Reply {
        delay: Duration::from_secs(2),
        ..Reply::default()
    });
    let response = client()
        .get(gateway.url("/api/v1/query"))
        .bearer_auth(tenant_token("t"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let samples = gateway.samples();
    assert_eq!(
        sample(
            &samples,
            "cortex_gateway_upstream_errors_total",
            &[("targetname", "distributor"), ("kind", "connect")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "cortex_gateway_upstream_errors_total",
            &[("targetname", "query_frontend"), ("kind", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &samples,
            "cortex_gateway_upstream_request_duration_seconds_count",
            &[("targetname", "query_frontend"), ("status_code", "error")]
        ),
        Some(1.0)
    );
}

#[actix_rt::test]
async fn per_tenant_labels_can_be_turned_off() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__METRICS__PER_TENANT", "false")
        .start();
    for tenant in ["a", "b", "c"] {
        let _ = client()
            .get(gateway.url("/api/v1/labels"))
            .bearer_auth(tenant_token(tenant))
            .send()
            .await
            .unwrap();
    }
    let samples = gateway.samples();
    let successes: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "cortex_gateway_succeeded_authentications_total")
        .collect();
    assert_eq!(successes.len(), 1, "{successes:?}");
    assert_eq!(successes[0].value, 3.0);
    // An empty label value is the same as no label to Prometheus.
    assert_eq!(
        successes[0].labels.get("tenant").map(String::as_str),
        Some("")
    );
}

#[actix_rt::test]
async fn json_logs_are_json_lines_with_access_and_auth_fields_and_no_secrets() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .arg("-log.format=json")
        .arg("-log.level=debug")
        .start();
    let token = tenant_token("team-a");
    let response = client()
        .get(gateway.url("/api/v1/query?query=up"))
        .bearer_auth(&token)
        .insert_header(("traceparent", format!("00-{TRACE_ID}-{CLIENT_SPAN}-01")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = client()
        .get(gateway.url("/api/v1/query"))
        .bearer_auth("forged.token.value")
        .send()
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let logs = gateway.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines
        .iter()
        .all(|l| l.is_object() && l["level"].is_string()));
    let access = lines
        .iter()
        .find(|l| l["message"] == "request")
        .expect("an access log line");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 200);
    assert_eq!(access["tenant"], "team-a");
    assert_eq!(access["upstream"], "query_frontend");
    assert_eq!(access["bytes"], 16);
    assert_eq!(access["trace_id"], TRACE_ID);
    assert!(access["duration_ms"].as_f64().unwrap() > 0.0);
    let failure = lines
        .iter()
        .find(|l| l["message"] == "authentication failed")
        .expect("an auth failure line");
    assert_eq!(failure["reason"], "malformed");
    assert!(failure["client"].as_str().unwrap().contains("127.0.0.1"));
    assert!(!logs.contains(SECRET));
    for part in token.split('.') {
        assert!(!logs.contains(part));
    }
}
