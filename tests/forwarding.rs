//! Forwarding through HTTP: header policy, bytes unchanged both ways, the
//! route table, and what upstream failures turn into.

mod common;

use std::time::Duration;

use actix_web::web::Bytes;
use common::*;

fn auth() -> (&'static str, String) {
    (
        "Authorization",
        format!("Bearer {}", tenant_token("team-a")),
    )
}

#[actix_rt::test]
async fn request_headers_and_body_arrive_unchanged_with_exactly_one_tenant() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 256) as u8).collect();
    let response = client()
        .post(gateway.url("/api/v1/push?x=1&y=%20z"))
        .insert_header(auth())
        .insert_header(("Content-Type", "application/x-protobuf"))
        .insert_header(("Content-Encoding", "snappy"))
        .insert_header(("X-Prometheus-Remote-Write-Version", "0.1.0"))
        .insert_header(("User-Agent", "Prometheus/2.42.0"))
        .insert_header(("X-Scope-OrgID", "someone-else"))
        .insert_header(("X-Forwarded-For", "203.0.113.9"))
        .insert_header(("X-Custom", "kept"))
        .send_body(body.clone())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let recorded = upstream.last();
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.uri, "/api/v1/push?x=1&y=%20z");
    assert_eq!(recorded.body, body, "body bytes unchanged");
    assert_eq!(recorded.header("content-length"), Some("65536"));
    assert_eq!(recorded.header("content-encoding"), Some("snappy"));
    assert_eq!(
        recorded.header("content-type"),
        Some("application/x-protobuf")
    );
    assert_eq!(
        recorded.header("x-prometheus-remote-write-version"),
        Some("0.1.0")
    );
    assert_eq!(recorded.header("user-agent"), Some("Prometheus/2.42.0"));
    assert_eq!(recorded.header("x-custom"), Some("kept"));
    assert_eq!(recorded.header_values("x-scope-orgid"), ["team-a"]);
    assert_eq!(
        recorded.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert!(
        recorded.header("authorization").is_none(),
        "Authorization is not forwarded"
    );
    assert_eq!(
        gateway.metric(r#"cortex_gateway_proxy_requests_total{targetname="distributor"}"#),
        1.0
    );
}

#[actix_rt::test]
async fn client_tenant_headers_in_any_case_and_hop_by_hop_headers_are_dropped() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let request = format!(
        "GET /api/v1/labels HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
         X-Scope-OrgID: evil1\r\nx-scope-orgid: evil2\r\nX-SCOPE-ORGID: evil3|evil4\r\n\
         Connection: close, X-Hop\r\nX-Hop: secret-hop\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic eDp5\r\nTE: trailers\r\n\r\n",
        tenant_token("team-a")
    );
    let response = raw_http(gateway.addr(), request.as_bytes()).unwrap();
    assert_eq!(response.status, 200);
    let recorded = upstream.last();
    assert_eq!(recorded.header_values("x-scope-orgid"), ["team-a"]);
    for dropped in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "authorization",
    ] {
        assert!(
            recorded.header(dropped).is_none(),
            "{dropped} was forwarded"
        );
    }
    assert_ne!(
        recorded.header("host"),
        Some("gw"),
        "Host names the upstream"
    );
    assert_eq!(
        recorded.header("host"),
        Some(upstream.addr.to_string().as_str()),
        "Host names the upstream"
    );
}

#[actix_rt::test]
async fn responses_come_back_unchanged_including_compressed_bodies() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let gzip_bytes: Vec<u8> = [0x1f, 0x8b, 0x08, 0x00]
        .into_iter()
        .chain((0..5000).map(|i| (i % 253) as u8))
        .collect();
    upstream.set_reply(Reply {
        status: 203,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("content-encoding".into(), "gzip".into()),
            ("x-upstream-header".into(), "value".into()),
            ("set-cookie".into(), "a=1".into()),
            ("set-cookie".into(), "b=2".into()),
        ],
        body: gzip_bytes.clone(),
        ..Reply::default()
    });
    let mut response = client()
        .get(gateway.url("/prometheus/api/v1/query_range?query=up"))
        .insert_header(auth())
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 203);
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        response.headers().get("x-upstream-header").unwrap(),
        "value"
    );
    assert_eq!(response.headers().get_all("set-cookie").count(), 2);
    assert_eq!(response.headers().get("content-length").unwrap(), "5004");
    let body: Bytes = response.body().await.unwrap();
    assert_eq!(
        body.as_ref(),
        gzip_bytes.as_slice(),
        "still compressed, byte for byte"
    );
    assert_eq!(upstream.last().header("accept-encoding"), Some("gzip"));

    for status in [400u16, 404, 429, 500, 503] {
        upstream.set_reply(Reply {
            status,
            body: format!("upstream {status}").into_bytes(),
            ..Reply::default()
        });
        let mut response = client()
            .get(gateway.url("/api/v1/query"))
            .insert_header(auth())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.body().await.unwrap(), format!("upstream {status}"));
    }

    upstream.set_reply(Reply {
        status: 204,
        body: Vec::new(),
        headers: vec![],
        ..Reply::default()
    });
    let response = client()
        .post(gateway.url("/api/v1/push"))
        .insert_header(auth())
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

#[actix_rt::test]
async fn upstream_path_prefix_is_prepended_and_query_kept_raw() {
    let upstream = Upstream::start("d");
    let gateway =
        GatewayBuilder::new(&format!("{}/prefix/", upstream.url()), &upstream.url()).start();
    let response = client()
        .post(gateway.url("/api/prom/push?a=%2F&b=c+d"))
        .insert_header(auth())
        .send_body("x")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().uri, "/prefix/api/prom/push?a=%2F&b=c+d");
}

#[actix_rt::test]
async fn chunked_request_bodies_stream_through() {
    let upstream = Upstream::start("d");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let chunks: Vec<Bytes> = (0..50)
        .map(|i| Bytes::from(pattern_chunk(i * 1000, 1000)))
        .collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let response = client()
        .post(gateway.url("/otlp/v1/metrics"))
        .insert_header(auth())
        .send_stream(stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let recorded = upstream.last();
    assert_eq!(recorded.body, expected);
    assert_eq!(recorded.header("transfer-encoding"), Some("chunked"));
}

#[actix_rt::test]
async fn ruler_and_alertmanager_routes_fall_back_to_the_query_frontend() {
    let distributor = Upstream::start("distributor");
    let query_frontend = Upstream::start("query-frontend");
    let gateway = GatewayBuilder::new(&distributor.url(), &query_frontend.url()).start();
    for path in [
        "/prometheus/api/v1/rules",
        "/api/prom/rules/ns",
        "/alertmanager/api/v2/status",
        "/api/v1/alerts",
        "/multitenant_alertmanager/delete_tenant_config",
        "/ruler/delete_tenant_config",
    ] {
        let response = client()
            .get(gateway.url(path))
            .insert_header(auth())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers().get("x-upstream-name").unwrap(),
            "query-frontend",
            "{path}"
        );
    }
    assert!(distributor.requests().is_empty());
}

#[actix_rt::test]
async fn routes_send_each_path_to_its_upstream() {
    let distributor = Upstream::start("distributor");
    let query_frontend = Upstream::start("query-frontend");
    let ruler = Upstream::start("ruler");
    let alertmanager = Upstream::start("alertmanager");
    let loki = Upstream::start("loki");
    let gateway = GatewayBuilder::new(&distributor.url(), &query_frontend.url())
        .arg(&format!("-gateway.ruler.address={}", ruler.url()))
        .arg(&format!("-gateway.alertmanager.address={}", alertmanager.url()))
        .config(&format!(
            "[upstreams]\nloki_distributor = \"{}\"\n\n[[routes]]\nprefix = \"/loki/api/v1/push\"\nupstream = \"loki_distributor\"\n",
            loki.url()
        ))
        .start();
    let cases = [
        ("POST", "/api/v1/push", "distributor"),
        ("POST", "/api/prom/push", "distributor"),
        ("POST", "/otlp/v1/metrics", "distributor"),
        ("POST", "/api/v1/otlp/v1/metrics", "distributor"),
        ("GET", "/api/v1/query", "query-frontend"),
        ("POST", "/api/v1/query_range", "query-frontend"),
        ("GET", "/prometheus/api/v1/series", "query-frontend"),
        ("GET", "/api/v1/pushx", "query-frontend"),
        ("GET", "/prometheus/api/v1/rules", "ruler"),
        ("POST", "/prometheus/config/v1/rules/ns", "ruler"),
        ("GET", "/api/prom/api/v1/alerts", "ruler"),
        ("GET", "/api/v1/rules", "ruler"),
        ("GET", "/alertmanager/api/v2/status", "alertmanager"),
        ("GET", "/alertmanager/", "alertmanager"),
        ("POST", "/api/v1/alerts", "alertmanager"),
        (
            "POST",
            "/multitenant_alertmanager/delete_tenant_config",
            "alertmanager",
        ),
        ("POST", "/ruler/delete_tenant_config", "ruler"),
        ("POST", "/loki/api/v1/push", "loki"),
    ];
    for (method, path, expected) in cases {
        let response = client()
            .request(method.parse().unwrap(), gateway.url(path))
            .insert_header(auth())
            .send_body("x")
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
        assert_eq!(
            response.headers().get("x-upstream-name").unwrap(),
            expected,
            "{method} {path}"
        );
    }
}

#[actix_rt::test]
async fn unrouted_and_non_canonical_paths_are_never_forwarded() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let token = tenant_token("team-a");
    let cases = [
        ("/ring", 404),
        ("/shutdown", 404),
        ("/all_user_stats", 404),
        ("/config", 404),
        ("/flush", 404),
        ("/distributor/all_user_stats", 404),
        ("/apifoo", 404),
        ("/", 404),
        ("/api/../ring", 400),
        ("/api/v1/../../ring", 400),
        ("/api//v1/query", 400),
        ("/api/./v1/query", 400),
        ("/api/%2e%2e/ring", 400),
        ("/api%2Fv1/query", 400),
        ("/api/v1/query%00", 400),
        ("/api/v1/q%zz", 400),
    ];
    for (path, status) in cases {
        for authorization in [format!("Authorization: Bearer {token}\r\n"), String::new()] {
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\n{authorization}Connection: close\r\n\r\n"
            );
            let response = raw_http(gateway.addr(), request.as_bytes()).unwrap();
            let expected = if authorization.is_empty() && status == 400 && path.starts_with("/api/")
            {
                401
            } else {
                status
            };
            assert_eq!(
                response.status,
                expected,
                "{path} (authenticated: {})",
                !authorization.is_empty()
            );
        }
    }
    assert!(
        upstream.requests().is_empty(),
        "nothing reached the upstream: {:?}",
        upstream.requests()
    );
}

#[actix_rt::test]
async fn unreachable_upstream_is_502_and_the_next_request_works() {
    let live = Upstream::start("q");
    let dead = format!("http://127.0.0.1:{}", free_port());
    let gateway = GatewayBuilder::new(&dead, &live.url()).start();
    for _ in 0..3 {
        let mut response = client()
            .post(gateway.url("/api/v1/push"))
            .insert_header(auth())
            .send_body(vec![1u8; 4096])
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        let body = response.body().await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("distributor"));
        let response = client()
            .get(gateway.url("/api/v1/query"))
            .insert_header(auth())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        gateway.metric(r#"cortex_gateway_proxy_requests_total{targetname="distributor"}"#),
        3.0
    );
}

#[actix_rt::test]
async fn slow_upstream_is_504_after_the_proxy_timeout_and_the_next_request_works() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__PROXY__TIMEOUT", "300ms")
        .start();
    upstream.set_reply(Reply {
        delay: Duration::from_secs(2),
        ..Reply::default()
    });
    let response = client()
        .get(gateway.url("/api/v1/query"))
        .insert_header(auth())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    upstream.set_reply(Reply::default());
    let mut response = client()
        .get(gateway.url("/api/v1/query"))
        .insert_header(auth())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().await.unwrap(), "upstream says hi");
}

#[actix_rt::test]
async fn head_requests_keep_the_upstream_content_length() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let request = format!(
        "HEAD /api/v1/labels HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tenant_token("team-a")
    );
    let response = raw_http(gateway.addr(), request.as_bytes()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length").as_deref(), Some("16"));
    assert!(response.body.is_empty());
    assert_eq!(upstream.last().method, "HEAD");
}
