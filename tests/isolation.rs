//! Tenant isolation against an attacker: admin endpoints of every Cortex and
//! Mimir component, an upstream that misbehaves so that one tenant's bytes
//! could reach another's request, look-alike tenant headers, and methods
//! that must never be forwarded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{raw_http, read_sized_response, tenant_token, Gateway, GatewayBuilder, Upstream};

/// A request with team-a's token, closing the connection after the answer.
fn request(method: &str, path: &str, token: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

/// Admin and cross-tenant pages of every Cortex and Mimir component
/// (their HTTP API references): each lists or changes more than one
/// tenant, or the cluster itself, and has no tenant check of its own.
const ADMIN_PATHS: &[&str] = &[
    "/multitenant_alertmanager/status",
    "/multitenant_alertmanager/configs",
    "/multitenant_alertmanager/ring",
    "/multitenant_alertmanager",
    "/ruler/rule_groups",
    "/ruler/ring",
    "/ruler",
    "/ring",
    "/config",
    "/runtime_config",
    "/services",
    "/memberlist",
    "/all_user_stats",
    "/distributor/all_user_stats",
    "/distributor/ha_tracker",
    "/distributor/ring",
    "/ha-tracker",
    "/ingester/ring",
    "/ingester/flush",
    "/ingester/shutdown",
    "/ingester/tenants",
    "/ingester/tsdb/team-b",
    "/ingester/prepare-shutdown",
    "/flush",
    "/shutdown",
    "/compactor/ring",
    "/compactor/tenants",
    "/store-gateway/ring",
    "/store-gateway/tenants",
    "/store-gateway/tenant/team-b/blocks",
    "/purger/delete_tenant",
    "/purger/delete_tenant_status",
    "/debug/pprof/heap",
    "/debug/fgprof",
    "/api/v1/../../multitenant_alertmanager/configs",
    "/alertmanager/../multitenant_alertmanager/configs",
];

#[test]
fn admin_endpoints_of_every_component_are_unreachable_with_a_valid_token() {
    let distributor = Upstream::start("distributor");
    let query_frontend = Upstream::start("query-frontend");
    let ruler = Upstream::start("ruler");
    let alertmanager = Upstream::start("alertmanager");
    let gateway = GatewayBuilder::new(&distributor.url(), &query_frontend.url())
        .arg(&format!("-gateway.ruler.address={}", ruler.url()))
        .arg(&format!(
            "-gateway.alertmanager.address={}",
            alertmanager.url()
        ))
        .start();
    let token = tenant_token("team-a");
    for path in ADMIN_PATHS {
        for method in ["GET", "POST", "DELETE"] {
            let response =
                raw_http(gateway.addr(), request(method, path, &token, "").as_bytes()).unwrap();
            assert!(
                matches!(response.status, 400 | 404),
                "{method} {path}: {}",
                response.status
            );
        }
    }
    for upstream in [&distributor, &query_frontend, &ruler, &alertmanager] {
        assert!(
            upstream.requests().is_empty(),
            "an admin page reached an upstream: {:?}",
            upstream.requests()
        );
    }
    // The two tenant-scoped endpoints under those prefixes are routed.
    for (path, upstream) in [
        (
            "/multitenant_alertmanager/delete_tenant_config",
            &alertmanager,
        ),
        ("/ruler/delete_tenant_config", &ruler),
    ] {
        let response =
            raw_http(gateway.addr(), request("POST", path, &token, "").as_bytes()).unwrap();
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-a"));
    }
}

/// What a misbehaving upstream writes for the first request it gets (from
/// team-a), and whether it then closes that connection.
struct Misbehaviour {
    what: &'static str,
    /// Written one after the other, 200 ms apart: "the real response is
    /// still coming" while the gateway decides about the connection.
    answer: &'static [&'static [u8]],
    closes: bool,
    /// The status team-a must get.
    status: u16,
}

const SECRET: &str = "SECRET-team-a";

const MISBEHAVIOURS: &[Misbehaviour] = &[
    Misbehaviour {
        what: "103 Early Hints before the final response",
        answer: &[
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nSECRET-team-a",
        ],
        closes: false,
        status: 200,
    },
    Misbehaviour {
        what: "100 Continue and 102 Processing before the final response",
        answer: &[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nSECRET-team-a",
        ],
        closes: false,
        status: 200,
    },
    Misbehaviour {
        what: "bytes after the declared Content-Length",
        answer: &[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nSECRET-team-a"],
        closes: false,
        status: 200,
    },
    Misbehaviour {
        what: "Content-Length and Transfer-Encoding together",
        answer: &[b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\nd\r\nSECRET-team-a\r\n0\r\n\r\n"],
        closes: false,
        status: 502,
    },
    Misbehaviour {
        what: "Content-Length: 0 and a chunked body that follows later",
        answer: &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"d\r\nSECRET-team-a\r\n0\r\n\r\n",
        ],
        closes: false,
        status: 502,
    },
    Misbehaviour {
        what: "Transfer-Encoding: identity",
        answer: &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nSECRET-team-a"],
        closes: true,
        status: 200,
    },
    Misbehaviour {
        what: "a body delimited by the connection's close",
        answer: &[b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nSECRET-team-a"],
        closes: true,
        status: 200,
    },
    Misbehaviour {
        what: "an unsolicited 101 Switching Protocols",
        answer: &[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nSECRET-team-a"],
        closes: false,
        status: 502,
    },
];

/// Reads one request head (the gateway sends no body here) and returns the
/// `X-Scope-OrgID` it carried, or `None` when the connection ended.
fn read_request_tenant(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut tenant = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            return Some(tenant);
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("x-scope-orgid") {
                tenant = value.trim().to_owned();
            }
        }
    }
}

/// A keep-alive upstream that answers every request `for-<tenant>`, except
/// the very first, which gets `answer` (and then, unless it closes, the
/// connection goes on serving: if the gateway reused it, the next tenant
/// would read the leftovers).
fn misbehaving_upstream(answer: &'static [&'static [u8]], closes: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let first = Arc::new(AtomicBool::new(true));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500).flatten() {
            let first = Arc::clone(&first);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                while let Some(tenant) = read_request_tenant(&mut reader) {
                    if first.swap(false, Ordering::SeqCst) {
                        for (index, part) in answer.iter().enumerate() {
                            if index > 0 {
                                std::thread::sleep(Duration::from_millis(200));
                            }
                            let _ = writer.write_all(part);
                        }
                        if closes {
                            return;
                        }
                        continue;
                    }
                    let body = format!("for-{tenant}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// One GET on a new connection to the gateway, as `tenant`.
fn get_as(gateway: &Gateway, tenant: &str) -> common::RawResponse {
    raw_http(
        gateway.addr(),
        request("GET", "/api/v1/query", &tenant_token(tenant), "").as_bytes(),
    )
    .unwrap()
}

#[test]
fn a_misbehaving_upstream_never_hands_one_tenants_bytes_to_another() {
    for misbehaviour in MISBEHAVIOURS {
        let upstream = misbehaving_upstream(misbehaviour.answer, misbehaviour.closes);
        let gateway = GatewayBuilder::new(&upstream, &upstream).start();
        let first = get_as(&gateway, "team-a");
        assert_eq!(
            first.status, misbehaviour.status,
            "{}: team-a got {}",
            misbehaviour.what, first.head
        );
        if first.status == 200 {
            // Close-delimited bodies come back chunked: compare the payload.
            assert!(
                first.text().contains(SECRET) || first.text() == "ok",
                "{}: team-a got {:?}",
                misbehaviour.what,
                first.text()
            );
        }
        // Enough requests, each on a new client connection, to go through
        // every worker and every pooled upstream connection several times.
        for round in 0..24 {
            let next = get_as(&gateway, "team-b");
            assert!(
                !next.text().contains(SECRET) && !next.head.contains("SECRET"),
                "{}: team-b (request {round}) received team-a's bytes: {} {:?}",
                misbehaviour.what,
                next.head,
                next.text()
            );
            assert_eq!(
                (next.status, next.text().as_str()),
                (200, "for-team-b"),
                "{}: request {round}",
                misbehaviour.what
            );
        }
    }
}

#[test]
fn look_alike_tenant_and_token_headers_are_dropped() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__AUTH__EXTRA_HEADERS", "X-Auth-Token")
        .start();
    let look_alikes = "X-Scope-OrgID: evil1\r\nx_scope_orgid: evil2\r\nX_Scope_OrgID: evil3\r\nX-SCOPE_ORGID: evil4\r\nx-scope-orgid: evil5\r\nX_Auth_Token: leaked\r\nX-Scope-OrgIDs: kept\r\n";
    let response = raw_http(
        gateway.addr(),
        request("GET", "/api/v1/query", &tenant_token("team-a"), look_alikes).as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.head);
    let recorded = upstream.last();
    let tenant_like: Vec<_> = recorded
        .headers
        .iter()
        .filter(|(name, _)| name.replace('_', "-").eq_ignore_ascii_case("x-scope-orgid"))
        .collect();
    assert_eq!(
        tenant_like,
        [&("x-scope-orgid".to_owned(), "team-a".to_owned())]
    );
    assert!(
        recorded.headers.iter().all(|(name, value)| !name
            .replace('_', "-")
            .eq_ignore_ascii_case("x-auth-token")
            && value != "leaked"),
        "{:?}",
        recorded.headers
    );
    assert_eq!(recorded.header("x-scope-orgids"), Some("kept"));
}

#[test]
fn connect_and_trace_are_405_and_never_forwarded() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let token = tenant_token("team-a");
    for (method, target) in [
        ("TRACE", "/api/v1/query"),
        ("TRACE", "/"),
        ("CONNECT", "/api/v1/push"),
        ("CONNECT", "cortex.internal:443"),
    ] {
        for token in [token.as_str(), "not-a-token"] {
            let response = raw_http(
                gateway.addr(),
                request(method, target, token, "").as_bytes(),
            )
            .unwrap();
            assert_eq!(response.status, 405, "{method} {target}: {}", response.head);
            let allow = response.header("allow").unwrap_or_default();
            assert!(
                allow.contains("GET") && !allow.contains("TRACE") && !allow.contains("CONNECT"),
                "{method} {target}: Allow: {allow}"
            );
        }
    }
    assert!(upstream.requests().is_empty());
}

#[test]
fn request_lines_over_the_head_limit_are_414() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__SERVER__MAX_REQUEST_HEADER_SIZE", "8192")
        .start();
    let token = tenant_token("team-a");
    let long = format!("/api/v1/query?query={}", "a".repeat(10_000));
    let response = raw_http(gateway.addr(), request("GET", &long, &token, "").as_bytes()).unwrap();
    assert_eq!(response.status, 414, "{}", response.head);
    assert!(response.text().contains("server.max_request_header_size"));
    // Headers over the limit with a short request line stay 431.
    let fat = format!("X-Fat: {}\r\n", "b".repeat(10_000));
    let response = raw_http(
        gateway.addr(),
        request("GET", "/api/v1/query", &token, &fat).as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 431, "{}", response.head);
    assert!(upstream.requests().is_empty());
}

#[test]
fn request_targets_longer_than_a_uri_can_hold_are_414_and_counted() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    // 70 KB: under actix-http's 128 KiB head ceiling, over the 64 KiB a
    // `Uri` holds; before the patch this was a bare 400.
    let long = format!("/api/v1/query?query={}", "a".repeat(70_000));
    let response = raw_http(
        gateway.addr(),
        request("GET", &long, &tenant_token("team-a"), "").as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 414, "{}", response.head);
    assert!(upstream.requests().is_empty());
    assert_eq!(
        gateway.metric(r#"cortex_gateway_rejected_requests_total{limit="header_too_large"}"#),
        1.0
    );
}

#[test]
fn one_client_connection_keeps_its_tenant_across_requests() {
    // Two tenants' requests alternate on one kept-alive client connection;
    // each must carry its own token's tenant upstream, never the previous.
    let upstream = misbehaving_upstream(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"],
        false,
    );
    let gateway = GatewayBuilder::new(&upstream, &upstream).start();
    let stream = TcpStream::connect(gateway.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for round in 0..10 {
        let tenant = if round % 2 == 0 { "team-a" } else { "team-b" };
        let request = format!(
            "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
            tenant_token(tenant)
        );
        writer.write_all(request.as_bytes()).unwrap();
        let (head, body) = read_sized_response(&mut reader).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        if round > 0 {
            assert_eq!(String::from_utf8_lossy(&body), format!("for-{tenant}"));
        }
    }
}
