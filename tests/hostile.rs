//! Limits, hostile input and misbehaving upstreams, with real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use actix_web::web::Bytes;
use common::*;

fn authorized(method_path: &str, extra: &str) -> String {
    format!(
        "{method_path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n{extra}Connection: close\r\n\r\n",
        tenant_token("team-a")
    )
}

#[actix_rt::test]
async fn bodies_over_the_limit_are_413_and_not_forwarded() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_BODY_SIZE", "100000")
        .start();

    // Known length: refused before any upstream connection.
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("team-a"))
        .send_body(vec![0u8; 100_001])
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Chunked: refused once it grows past the limit.
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 8192])));
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("team-a"))
        .send_stream(futures_util::stream::iter(chunks))
        .await;
    match response {
        Ok(response) => assert_eq!(response.status(), 413),
        // The gateway may close the connection while the client still sends.
        Err(error) => eprintln!("client saw the connection close: {error}"),
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        upstream.requests().is_empty(),
        "no complete request reached the upstream"
    );
    // Both refusals, the sized and the chunked one, are counted.
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="body_too_large"}"#),
        2.0
    );

    // At the limit is fine.
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .bearer_auth(tenant_token("team-a"))
        .send_body(vec![0u8; 100_000])
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().body_len, 100_000);
}

#[test]
fn heads_over_actix_ceilings_are_431_and_counted() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_HEADER_SIZE", "131072")
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_HEADERS", "96")
        .start();
    // A head far over the limit: actix answers 431 and closes while the
    // client may still be writing, so the client sees 431 or a reset.
    let huge = format!("X-Big: {}\r\n", "a".repeat(200 * 1024));
    if let Ok(response) = raw_http(
        gateway.addr(),
        authorized("GET /api/v1/query", &huge).as_bytes(),
    ) {
        assert_eq!(response.status, 431);
    }
    let big = format!("X-Big: {}\r\n", "a".repeat(140 * 1024));
    let mut stream = std::net::TcpStream::connect(gateway.addr()).unwrap();
    let _ = stream.write_all(authorized("GET /api/v1/query", &big).as_bytes());
    let mut answer = [0u8; 12];
    if stream.read_exact(&mut answer).is_ok() {
        assert_eq!(&answer, b"HTTP/1.1 431");
    }
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = raw_http(
        gateway.addr(),
        authorized("GET /api/v1/query", &many).as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 431);
    assert!(upstream.requests().is_empty());
    assert_eq!(get_health(&gateway), 200, "the gateway still serves");
    // actix-http refused all three before the app; each is still counted.
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="header_too_large"}"#),
        3.0
    );
}

#[test]
fn configured_head_limits_are_431_with_a_reason_and_counted() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_HEADER_SIZE", "4096")
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_HEADERS", "20")
        .start();
    let send = |extra: &str| {
        raw_http(
            gateway.addr(),
            authorized("GET /api/v1/query?query=up", extra).as_bytes(),
        )
        .unwrap()
    };
    // Well under both limits: forwarded.
    assert_eq!(send("X-Fill: small\r\n").status, 200);
    assert_eq!(upstream.requests().len(), 1);

    let large = send(&format!("X-Fill: {}\r\n", "a".repeat(4096)));
    assert_eq!(large.status, 431);
    let reason = String::from_utf8_lossy(&large.body);
    assert!(
        reason.contains("server.max_request_header_size (4096 bytes)"),
        "{reason}"
    );

    let fields: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = send(&fields);
    assert_eq!(many.status, 431);
    let reason = String::from_utf8_lossy(&many.body);
    assert!(
        reason.contains("server.max_request_headers (20)"),
        "{reason}"
    );
    // A request line longer than the whole head may be is 414 URI Too Long.
    let query = "a".repeat(5000);
    let response = raw_http(
        gateway.addr(),
        authorized(&format!("GET /api/v1/query?query={query}"), "").as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 414);

    // Refused before authentication: no token needed to be refused.
    let unauthenticated = raw_http(
        gateway.addr(),
        format!(
            "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nX-Fill: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(4096)
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(unauthenticated.status, 431);

    assert_eq!(
        upstream.requests().len(),
        1,
        "nothing refused was forwarded"
    );
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="header_too_large"}"#),
        3.0
    );
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="too_many_headers"}"#),
        1.0
    );
    let timed = |status: &str| -> f64 {
        gateway
            .samples()
            .iter()
            .filter(|s| {
                s.name == "cortex_gateway_request_duration_seconds_count"
                    && s.labels.get("status_code").map(String::as_str) == Some(status)
            })
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(
        (timed("431"), timed("414")),
        (3.0, 1.0),
        "refusals show in the Go request histogram"
    );
}

fn get_health(gateway: &Gateway) -> u16 {
    raw_http(
        gateway.addr(),
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap()
    .status
}

#[test]
fn hostile_credentials_are_refused_without_reaching_the_upstream() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let cases: Vec<Vec<u8>> = vec![
        b"Authorization: Bearer \xff\xfe.\x80.x\r\n".to_vec(),
        format!(
            "Authorization: Bearer {}.{}.sig\r\n",
            b64(r#"{"alg":"HS256"}"#),
            b64(&nested)
        )
        .into_bytes(),
        format!(
            "Authorization: Bearer {}.{}.sig\r\n",
            b64(r#"{"alg":"HS256","crit":["exp"]}"#),
            b64(r#"{"tenant_id":"t"}"#)
        )
        .into_bytes(),
        format!("Authorization: Bearer {}\r\n", "a.".repeat(20_000)).into_bytes(),
        format!(
            "Authorization: Bearer {}\r\n",
            token(serde_json::json!({"tenant_id": "a\u{0}b"}))
        )
        .into_bytes(),
        format!(
            "Authorization: Bearer {}\r\n",
            token(serde_json::json!({"tenant_id": "a b"}))
        )
        .into_bytes(),
        format!("Authorization: Basic {}\r\n", "%%%").into_bytes(),
    ];
    for header in cases {
        let mut request = b"GET /api/v1/query HTTP/1.1\r\nHost: t\r\n".to_vec();
        request.extend_from_slice(&header);
        request.extend_from_slice(b"Connection: close\r\n\r\n");
        let response = raw_http(gateway.addr(), &request).unwrap();
        assert!(
            response.status == 401 || response.status == 400,
            "{} for {:?}",
            response.status,
            String::from_utf8_lossy(&header[..header.len().min(60)])
        );
    }
    assert!(upstream.requests().is_empty());
    assert_eq!(get_health(&gateway), 200);
}

/// How a raw upstream handles one connection.
type Serve = fn(std::net::TcpStream);

/// A raw TCP upstream: `serve` handles each connection, on its own thread.
fn raw_upstream(serve: Serve) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50).flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    format!("http://{addr}")
}

/// Reads what the gateway sent (at most 64 KiB, 300 ms), then writes `answer`
/// and closes.
fn answer_once(mut stream: std::net::TcpStream, answer: &[u8]) {
    let mut buffer = [0u8; 65536];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
    let _ = stream.read(&mut buffer);
    let _ = stream.write_all(answer);
}

#[actix_rt::test]
async fn broken_upstreams_give_502_and_the_next_request_works() {
    let healthy = Upstream::start("q");
    let upstreams: [(&str, Serve); 3] = [
        ("garbage", |s| answer_once(s, b"this is not HTTP\r\n\r\n")),
        ("closes without answering", |s| answer_once(s, b"")),
        ("bad status line", |s| {
            answer_once(s, b"HTTP/1.1 abc OK\r\n\r\n")
        }),
    ];
    for (what, serve) in upstreams {
        let broken = raw_upstream(serve);
        let gateway = GatewayBuilder::new(&broken, &healthy.url()).start();
        for _ in 0..2 {
            let response = client()
                .post(gateway.url("/api/v1/push"))
                .bearer_auth(tenant_token("team-a"))
                .send_body("x")
                .await
                .unwrap();
            assert_eq!(response.status(), 502, "{what}");
            let response = client()
                .get(gateway.url("/api/v1/query"))
                .bearer_auth(tenant_token("team-a"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{what}: the next request works");
        }
    }
}

#[test]
fn a_response_cut_mid_body_is_cut_for_the_client_not_padded() {
    // The head and the first bytes leave, then the upstream dies: the
    // pause makes sure the gateway has sent the head on before the cut.
    let broken = raw_upstream(|s| {
        answer_once(
            s.try_clone().unwrap(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-twenty-bytes...",
        );
        std::thread::sleep(Duration::from_millis(300));
    });
    let healthy = Upstream::start("d");
    let gateway = GatewayBuilder::new(&healthy.url(), &broken).start();
    // The client must see the connection end before 1000 body bytes.
    let response = raw_http(
        gateway.addr(),
        authorized("GET /api/v1/query", "").as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length").as_deref(), Some("1000"));
    assert!(
        response.body.len() < 1000,
        "short body, {} bytes",
        response.body.len()
    );
    assert_eq!(
        response.text(),
        "only-twenty-bytes...",
        "the bytes that came, unchanged"
    );
    assert_eq!(get_health(&gateway), 200);
    assert_eq!(
        gateway.metric(
            r#"cortex_gateway_upstream_errors_total{kind="reset",targetname="query_frontend"}"#
        ),
        1.0,
        "the cut is counted"
    );
}

#[test]
fn a_client_that_never_finishes_its_head_is_cut_off_after_the_read_timeout() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .arg("-server.http-read-timeout=1s")
        .start();
    let mut slow = std::net::TcpStream::connect(gateway.addr()).unwrap();
    slow.write_all(b"GET /api/v1/query HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(8),
        "the connection was held for {waited:?}"
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(upstream.requests().is_empty());
    assert_eq!(get_health(&gateway), 200);
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="read_timeout"}"#),
        1.0
    );
}

#[test]
fn the_connection_limit_holds_extra_clients_back() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__WORKERS", "1")
        .arg("-server.http-conn-limit=2")
        .start();
    // Two idle keep-alive connections take the whole budget…
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(gateway.addr()).unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut buffer = [0u8; 64];
            let _ = stream.read(&mut buffer).unwrap();
            stream
        })
        .collect();
    assert_eq!(metric_over(&held, "cortex_gateway_open_connections"), 2.0);
    assert_eq!(
        metric_over(&held, "cortex_gateway_connection_limit_reached_total"),
        1.0
    );
    // …so a third is accepted by the kernel but not served…
    let mut third = std::net::TcpStream::connect(gateway.addr()).unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    let mut buffer = [0u8; 64];
    assert!(third.read(&mut buffer).is_err(), "served beyond the limit");
    // …until one of the first two goes away.
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let read = third.read(&mut buffer).unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));
}

/// Reads a metric over one of the held connections, since a new connection
/// would not be served.
fn metric_over(held: &[std::net::TcpStream], series: &str) -> f64 {
    let mut stream = held[0].try_clone().unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut text = String::new();
    let mut buffer = [0u8; 65536];
    while !text.contains(&format!("{series} ")) || !text.ends_with('\n') {
        let read = stream.read(&mut buffer).unwrap();
        assert!(read > 0);
        text.push_str(&String::from_utf8_lossy(&buffer[..read]));
    }
    metric_value(&text, series)
}

#[actix_rt::test]
async fn a_client_leaving_mid_download_releases_the_upstream_request() {
    use futures_util::StreamExt;
    let upstream = Upstream::start("q");
    upstream.set_reply(Reply {
        generated_len: 512 * 1024 * 1024,
        ..Reply::default()
    });
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let mut response = client()
        .get(gateway.url("/api/v1/query"))
        .bearer_auth(tenant_token("team-a"))
        .send()
        .await
        .unwrap();
    let first = response.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let inflight = r#"cortex_gateway_inflight_requests{targetname="query_frontend"}"#;
    assert_eq!(gateway.metric(inflight), 1.0);
    drop(response);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gateway.metric(inflight) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream request was never released"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let bytes =
        gateway.metric(r#"cortex_gateway_response_body_bytes_total{targetname="query_frontend"}"#);
    assert!(
        bytes < 256.0 * 1024.0 * 1024.0,
        "the gateway stopped reading early ({bytes} bytes)"
    );
}

/// Answers one request with 200 and closes the (then idle, pooled)
/// connection a little later, as upstreams with short idle timeouts do.
fn answer_then_close_when_idle(mut stream: std::net::TcpStream) {
    let mut buffer = [0u8; 65536];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if matches!(stream.read(&mut buffer), Ok(n) if n > 0) {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[actix_rt::test]
async fn an_upstream_closing_idle_pooled_connections_does_not_fail_the_next_request() {
    let upstream = raw_upstream(answer_then_close_when_idle);
    let gateway = GatewayBuilder::new(&upstream, &upstream).start();
    for round in 0..3 {
        let mut response = client()
            .get(gateway.url("/api/v1/labels"))
            .bearer_auth(tenant_token("team-a"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        assert_eq!(response.body().await.unwrap(), "ok");
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn a_client_leaving_mid_upload_is_not_forwarded_as_complete() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let mut stream = std::net::TcpStream::connect(gateway.addr()).unwrap();
    let head = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Length: 1000000\r\n\r\n",
        tenant_token("team-a")
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&[7u8; 10_000]).unwrap();
    let inflight = r#"cortex_gateway_inflight_requests{targetname="distributor"}"#;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gateway.metric(inflight) != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gateway.metric(inflight) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream request was never released"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        upstream.requests().iter().all(|r| r.body_len == 1_000_000),
        "a truncated body must never reach the upstream as a complete request"
    );
    assert!(
        upstream.requests().is_empty(),
        "nor padded to its announced length"
    );
    assert_eq!(get_health(&gateway), 200);
}

#[test]
fn oversized_request_lines_are_refused() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let query = "a".repeat(200 * 1024);
    match raw_http(
        gateway.addr(),
        authorized(&format!("GET /api/v1/query?query={query}"), "").as_bytes(),
    ) {
        Ok(response) => assert!(matches!(response.status, 414 | 431), "{}", response.status),
        Err(error) => eprintln!("connection closed on an oversized request line: {error}"),
    }
    assert!(upstream.requests().is_empty());
    assert_eq!(get_health(&gateway), 200);
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="header_too_large"}"#),
        1.0,
        "refused whichever way the connection ended"
    );
}
