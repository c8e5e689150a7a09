//! Service endpoints and the shutdown sequence, through the real binary.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn get(gateway: &Gateway, path: &str) -> RawResponse {
    raw_http(
        gateway.addr(),
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap()
}

#[test]
fn health_ready_and_metrics_need_no_token() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let health = get(&gateway, "/health");
    assert_eq!((health.status, health.text().as_str()), (200, "Ok"));
    assert_eq!(get(&gateway, "/ready").status, 200);

    let request = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        tenant_token("team-a")
    );
    assert_eq!(
        raw_http(gateway.addr(), request.as_bytes()).unwrap().status,
        200
    );
    assert_eq!(get(&gateway, "/ring").status, 404);

    let metrics = get(&gateway, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for series in [
        r#"cortex_gateway_proxy_requests_total{targetname="distributor"} 1"#,
        r#"cortex_gateway_succeeded_authentications_total{tenant="team-a"} 1"#,
        r#"cortex_gateway_failed_authentications_total{reason="no_token"} 0"#,
        r#"cortex_gateway_http_requests_total{endpoint="/api/v1/push",method="POST",status="200"} 1"#,
        r#"cortex_gateway_http_requests_total{endpoint="UNMATCHED",method="GET",status="404"} 1"#,
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    assert!(
        !text.contains("/ring"),
        "raw unmatched paths must not become label values"
    );
}

/// A gateway in front of `upstream` that drains for `timeout` once signalled.
fn draining_for(upstream: &Upstream, timeout: &str) -> Gateway {
    GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT", timeout)
        .start()
}

/// Waits for the gateway to exit with status 0 (`expectation` says why it
/// should); returns the time since it was `signalled`.
fn exits_cleanly(gateway: &mut Gateway, signalled: Instant, expectation: &str) -> Duration {
    let status = gateway
        .wait_exit(Duration::from_secs(30))
        .expect(expectation);
    assert!(status.success(), "exit status {status}");
    signalled.elapsed()
}

fn drains_on(signal: &str) {
    let upstream = Upstream::start("q");
    let mut gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__SHUTDOWN_DELAY", "1s")
        .env("CORTEX_GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT", "10s")
        .start();
    upstream.set_reply(Reply {
        delay: Duration::from_millis(2500),
        ..Reply::default()
    });
    let addr = gateway.addr();
    let request = format!(
        "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tenant_token("team-a")
    );
    let in_flight = std::thread::spawn(move || raw_http(addr, request.as_bytes()).unwrap());
    wait_until("the slow request reaches the upstream", || {
        !upstream.requests().is_empty()
    });

    gateway.signal(signal);
    std::thread::sleep(Duration::from_millis(200));
    let ready = get(&gateway, "/ready");
    assert_eq!(ready.status, 503, "/ready fails at once after {signal}");
    assert_eq!(
        get(&gateway, "/health").status,
        200,
        "still alive while draining"
    );

    let response = in_flight.join().unwrap();
    assert_eq!(response.status, 200, "the in-flight request finishes");
    assert_eq!(response.text(), "upstream says hi");
    let status = gateway
        .wait_exit(Duration::from_secs(10))
        .expect("gateway exits after draining");
    assert!(status.success(), "exit status {status}");
    assert!(
        raw_http(addr, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").is_err(),
        "listener is closed"
    );
}

#[test]
fn sigterm_fails_readiness_drains_in_flight_requests_and_exits_zero() {
    drains_on("TERM");
}

#[test]
fn sigint_does_the_same() {
    drains_on("INT");
}

/// Prometheus keeps its remote-write connections open between pushes. On SIGTERM the gateway
/// closes the idle ones at once and answers a busy one with `Connection: close`, instead of
/// holding its exit for the whole graceful-shutdown timeout. (The signal reaches connections
/// through one watcher per worker, an actix-http patch: `patches/README.md`.)
#[test]
fn sigterm_closes_idle_keep_alive_connections_without_waiting_for_the_timeout() {
    let upstream = Upstream::start("q");
    let mut gateway = draining_for(&upstream, "60s");
    let addr = gateway.addr();
    let request = format!(
        "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
        tenant_token("team-a")
    );
    let connect = move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        BufReader::new(stream)
    };
    let mut idle: Vec<BufReader<TcpStream>> = (0..3)
        .map(|_| {
            let mut connection = connect();
            connection.get_mut().write_all(request.as_bytes()).unwrap();
            let (head, _) = read_sized_response(&mut connection).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(!head.to_ascii_lowercase().contains("connection: close"));
            connection
        })
        .collect();

    upstream.set_reply(Reply {
        delay: Duration::from_millis(1500),
        ..Reply::default()
    });
    let busy_request = request.clone();
    let busy = std::thread::spawn(move || {
        let mut connection = connect();
        connection
            .get_mut()
            .write_all(busy_request.as_bytes())
            .unwrap();
        read_sized_response(&mut connection).unwrap().0
    });
    wait_until("the busy request reaches the upstream", || {
        upstream.requests().len() == 4
    });

    let signalled = Instant::now();
    gateway.signal("TERM");
    for connection in &mut idle {
        let mut rest = Vec::new();
        connection
            .read_to_end(&mut rest)
            .expect("the idle connection is closed, not left to time out");
        assert!(rest.is_empty(), "nothing but the close: {rest:?}");
    }
    let idle_closed = signalled.elapsed();
    assert!(
        idle_closed < Duration::from_secs(10),
        "idle connections closed {idle_closed:?} after the signal, not at once"
    );
    let busy_head = busy.join().unwrap();
    assert!(busy_head.starts_with("HTTP/1.1 200"), "{busy_head}");
    assert!(
        busy_head.to_ascii_lowercase().contains("connection: close"),
        "the request in flight is answered, and told the connection ends: {busy_head}"
    );
    let waited = exits_cleanly(
        &mut gateway,
        signalled,
        "the gateway exits once its connections are closed",
    );
    assert!(
        waited < Duration::from_secs(30),
        "the exit waited for the 60 s graceful-shutdown timeout: {waited:?}"
    );
}

#[test]
fn sighup_without_anything_to_reload_does_not_stop_the_gateway() {
    let upstream = Upstream::start("q");
    let mut gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    gateway.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        gateway.wait_exit(Duration::from_millis(100)).is_none(),
        "SIGHUP ended the process"
    );
    assert_eq!(get(&gateway, "/health").status, 200);
}

#[test]
fn the_drain_ends_at_the_graceful_shutdown_timeout() {
    let upstream = Upstream::start("q");
    let mut gateway = draining_for(&upstream, "500ms");
    upstream.set_reply(Reply {
        delay: Duration::from_secs(20),
        ..Reply::default()
    });
    let addr = gateway.addr();
    let request = format!(
        "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tenant_token("team-a")
    );
    let in_flight = std::thread::spawn(move || raw_http(addr, request.as_bytes()));
    wait_until("the slow request reaches the upstream", || {
        !upstream.requests().is_empty()
    });

    let signalled = Instant::now();
    gateway.signal("TERM");
    let waited = exits_cleanly(
        &mut gateway,
        signalled,
        "the gateway gives up on the slow request and exits",
    );
    // 500ms is rounded up to actix's whole second; far below the upstream's 20 s.
    assert!(
        waited >= Duration::from_millis(900),
        "in-flight requests get their drain time, exited after {waited:?}"
    );
    let cut = in_flight.join().unwrap();
    assert!(
        cut.as_ref().map_or(true, |response| response.status != 200),
        "the slow request is cut, not answered"
    );
}
