//! Service endpoints and the shutdown sequence, through the real binary.

mod common;

use std::time::Duration;

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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while upstream.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

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
    let mut gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT", "500ms")
        .start();
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
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while upstream.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "slow request never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let signalled = std::time::Instant::now();
    gateway.signal("TERM");
    let status = gateway
        .wait_exit(Duration::from_secs(10))
        .expect("the gateway gives up on the slow request and exits");
    assert!(status.success(), "exit status {status}");
    let waited = signalled.elapsed();
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
