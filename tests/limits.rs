//! Per-tenant limits (local buckets) through the real binary: exactly the
//! burst passes, the rest is answered 429 with a `Retry-After` and never
//! reaches an upstream; tenants do not share buckets; a tenant's override
//! beats the global value; ingest bytes and in-flight requests each have
//! their limit. Rates are slow enough (one request per 100 s) that no cell
//! comes back while a test runs, however slow the machine: the tests count,
//! they never time.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::{
    sample, tenant_request, tenant_token, wait_until, Gateway, GatewayBuilder, RawResponse, Reply,
    Upstream,
};

struct Setup {
    distributor: Upstream,
    query_frontend: Upstream,
    gateway: Gateway,
}

impl Setup {
    fn start(config: &str) -> Self {
        Self::start_with(GatewayBuilder::config, config)
    }

    fn start_with(configure: fn(GatewayBuilder, &str) -> GatewayBuilder, config: &str) -> Self {
        let distributor = Upstream::start("distributor");
        let query_frontend = Upstream::start("query-frontend");
        let gateway = configure(
            GatewayBuilder::new(&distributor.url(), &query_frontend.url()),
            config,
        )
        .start();
        Self {
            distributor,
            query_frontend,
            gateway,
        }
    }

    fn query(&self, tenant: &str) -> RawResponse {
        tenant_request(
            self.gateway.addr(),
            "GET",
            "/api/v1/query?query=up",
            tenant,
            b"",
        )
    }

    fn push(&self, tenant: &str, bytes: usize) -> RawResponse {
        tenant_request(
            self.gateway.addr(),
            "POST",
            "/api/v1/push",
            tenant,
            &vec![7; bytes],
        )
    }

    /// `cortex_gateway_limited_requests_total` of one tenant and limit.
    fn limited(&self, tenant: &str, limit: &str) -> f64 {
        sample(
            &self.gateway.samples(),
            "cortex_gateway_limited_requests_total",
            &[("tenant", tenant), ("limit", limit)],
        )
        .unwrap_or(0.0)
    }

    fn tenant_inflight(&self, tenant: &str) -> Option<f64> {
        sample(
            &self.gateway.samples(),
            "cortex_gateway_tenant_inflight_requests",
            &[("tenant", tenant)],
        )
    }
}

/// How many of `count` requests made by `send` passed (200); every other
/// answer must be a well-formed 429 naming `limit`.
fn passed(count: usize, limit: &str, send: impl Fn() -> RawResponse) -> usize {
    let mut passed = 0;
    for _ in 0..count {
        let response = send();
        if response.status == 200 {
            passed += 1;
            continue;
        }
        assert_eq!(response.status, 429, "{}", response.text());
        assert!(
            response.text().starts_with("Too Many Requests: tenant ")
                && response.text().ends_with(&format!("exceeded {limit}")),
            "{}",
            response.text()
        );
        let retry_after: u64 = response
            .header("retry-after")
            .and_then(|value| value.parse().ok())
            .expect("a 429 carries Retry-After in whole seconds");
        assert!((1..=1000).contains(&retry_after), "{retry_after}");
    }
    passed
}

#[test]
fn exactly_the_burst_passes_and_nothing_limited_reaches_the_upstream() {
    // From the environment, as a Kubernetes manifest would set it.
    let setup = Setup::start_with(
        |builder, _| {
            builder
                .env("CORTEX_GATEWAY__LIMITS__REQUESTS_PER_SECOND", "0.01")
                .env("CORTEX_GATEWAY__LIMITS__BURST", "5")
        },
        "",
    );
    assert_eq!(
        passed(12, "requests_per_second", || setup.query("team-a")),
        5
    );
    assert_eq!(setup.query_frontend.requests().len(), 5);
    assert_eq!(setup.limited("team-a", "requests"), 7.0);
    let refused = setup.query("team-a");
    assert_eq!(
        refused.text(),
        "Too Many Requests: tenant team-a exceeded requests_per_second"
    );
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (90..=100).contains(&retry_after),
        "one cell every 100 s: {retry_after}"
    );

    // Another tenant has its own bucket, full.
    assert_eq!(
        passed(6, "requests_per_second", || setup.query("team-b")),
        5
    );
    let forwarded = |tenant: &str| {
        let requests = setup.query_frontend.requests();
        requests
            .iter()
            .filter(|request| request.header("x-scope-orgid") == Some(tenant))
            .count()
    };
    assert_eq!((forwarded("team-a"), forwarded("team-b")), (5, 5));
}

#[test]
fn a_tenants_override_beats_the_global_value() {
    let setup = Setup::start(
        "[limits]\nrequests_per_second = 0.01\nburst = 2\n\n\
         [auth.tenants.team-big.limits]\nburst = 6\n\n\
         [auth.tenants.team-free.limits]\nrequests_per_second = 0\n",
    );
    let limit = "requests_per_second";
    assert_eq!(passed(8, limit, || setup.query("team-small")), 2);
    assert_eq!(passed(8, limit, || setup.query("team-big")), 6);
    assert_eq!(passed(8, limit, || setup.query("team-free")), 8);
    assert_eq!(setup.query_frontend.requests().len(), 16);
}

/// Limits follow a reload of the configuration: a tenant whose limits
/// changed gets its new bucket, one whose limits did not keeps its empty
/// bucket (a reload is no way to a fresh burst).
#[test]
fn limits_follow_a_reload_and_unchanged_tenants_keep_their_buckets() {
    let config = |big_burst: u32| {
        format!(
            "[limits]\nrequests_per_second = 0.01\nburst = 2\n\n\
             [auth.tenants.team-big.limits]\nburst = {big_burst}\n"
        )
    };
    let setup = Setup::start(&config(3));
    let limit = "requests_per_second";
    assert_eq!(passed(4, limit, || setup.query("team-small")), 2);
    assert_eq!(passed(4, limit, || setup.query("team-big")), 3);

    setup.gateway.rewrite_config(&config(7));
    setup.gateway.signal("HUP");
    wait_until("team-big's new burst is in force", || {
        setup.query("team-big").status == 200
    });
    assert_eq!(passed(10, limit, || setup.query("team-big")), 6, "7 in all");
    assert_eq!(
        passed(3, limit, || setup.query("team-small")),
        0,
        "team-small's limits did not change: its bucket stays empty"
    );
}

#[test]
fn ingest_bytes_are_charged_on_write_routes_only() {
    let setup = Setup::start("[limits]\ningest_bytes_per_second = 1\ningest_burst_bytes = 1000\n");
    let limit = "ingest_bytes_per_second";
    assert_eq!(passed(4, limit, || setup.push("team-a", 400)), 2);
    assert_eq!(setup.distributor.requests().len(), 2);
    assert_eq!(setup.limited("team-a", "ingest_bytes"), 2.0);
    // Reads carry no ingest, whatever their size: 200 bytes are left, and
    // each of these queries (a POST, as Grafana sends long ones) has 400.
    let long_query = || {
        tenant_request(
            setup.gateway.addr(),
            "POST",
            "/api/v1/query",
            "team-a",
            &[7; 400],
        )
    };
    assert_eq!(passed(3, limit, long_query), 3);

    // A chunked body is charged as it streams: 600 bytes are left after
    // this push, and the chunked body's 900 are refused once they run out.
    assert_eq!(setup.push("team-c", 400).status, 200);
    let mut request = format!(
        "POST /api/v1/push HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        tenant_token("team-c")
    )
    .into_bytes();
    for _ in 0..3 {
        request.extend_from_slice(b"12c\r\n");
        request.extend_from_slice(&[7; 300]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = common::raw_http(setup.gateway.addr(), &request).unwrap();
    assert_eq!(response.status, 429, "{}", response.text());
    assert!(response.header("retry-after").is_some());
    let complete = |r: &&common::Recorded| r.header("x-scope-orgid") == Some("team-c");
    assert_eq!(
        setup.distributor.requests().iter().filter(complete).count(),
        1
    );
}

/// Sends a query of `tenant` and reads its status line (200), leaving the
/// response body unread: the request stays in flight until the body is
/// read or the connection dropped.
fn start_query(addr: std::net::SocketAddr, tenant: &str) -> BufReader<TcpStream> {
    let mut client = TcpStream::connect(addr).unwrap();
    write!(
        client,
        "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tenant_token(tenant)
    )
    .unwrap();
    let mut reader = BufReader::new(client);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    assert!(status_line.contains(" 200 "), "{status_line}");
    reader
}

#[test]
fn in_flight_requests_are_limited_until_their_bodies_end() {
    let setup = Setup::start("[limits]\nmax_inflight = 2\n");
    // Bodies far larger than every socket buffer on the way: a request
    // whose body is not read stays in flight, however slow the machine.
    setup.query_frontend.set_reply(Reply {
        generated_len: 64 << 20,
        ..Reply::default()
    });
    let addr = setup.gateway.addr();
    let held: Vec<_> = (0..2).map(|_| start_query(addr, "team-a")).collect();
    assert_eq!(passed(2, "max_inflight", || setup.query("team-a")), 0);
    assert_eq!(setup.limited("team-a", "inflight"), 2.0);
    assert_eq!(setup.tenant_inflight("team-a"), Some(2.0));
    // A response body counts until it has been sent.
    for mut reader in held {
        let mut body = Vec::new();
        reader.read_to_end(&mut body).unwrap();
        assert!(body.len() > 64 << 20, "headers and the whole body");
    }
    wait_until("team-a's in-flight count falls to 0", || {
        setup.tenant_inflight("team-a") == Some(0.0)
    });

    // A client that goes away mid-body ends its request.
    let abandoned = start_query(addr, "team-a");
    assert_eq!(setup.tenant_inflight("team-a"), Some(1.0));
    drop(abandoned);
    wait_until("the abandoned request ends", || {
        setup.tenant_inflight("team-a") == Some(0.0)
    });
    setup.query_frontend.set_reply(Reply::default());
    assert_eq!(passed(2, "max_inflight", || setup.query("team-a")), 2);
}

/// A federated read counts against each of its tenants: a token for
/// several tenants is no way around one tenant's limit, and spends the
/// others' buckets as their own requests would.
#[test]
fn a_federated_read_counts_against_each_of_its_tenants() {
    let setup = Setup::start(
        "[auth]\nallow_federation = true\n\n[limits]\nrequests_per_second = 0.01\nburst = 2\n",
    );
    let federated = |tenants: &[&str]| {
        let request = format!(
            "GET /api/v1/query?query=up HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            common::token(serde_json::json!({ "tenant_ids": tenants }))
        );
        common::raw_http(setup.gateway.addr(), request.as_bytes()).unwrap()
    };
    let limit = "requests_per_second";
    assert_eq!(passed(2, limit, || setup.query("team-a")), 2);
    assert_eq!(
        passed(3, limit, || federated(&["team-a", "team-b"])),
        0,
        "team-a's bucket is empty, whatever tenants come with it"
    );
    assert_eq!(passed(3, limit, || federated(&["team-b", "team-c"])), 2);
    assert_eq!(
        passed(2, limit, || setup.query("team-c")),
        0,
        "the federated reads spent team-c's bucket"
    );
    assert_eq!(setup.query_frontend.requests().len(), 4);
}

/// With `metrics.per_tenant = false` the limits still hold, and their
/// series carry no tenant: nothing in `/metrics` grows with the tenants.
#[test]
fn without_per_tenant_metrics_refusals_are_counted_without_the_tenant() {
    let setup = Setup::start(
        "[metrics]\nper_tenant = false\n\n\
         [limits]\nrequests_per_second = 0.01\nburst = 1\nmax_inflight = 4\n",
    );
    for tenant in ["team-a", "team-b"] {
        assert_eq!(passed(3, "requests_per_second", || setup.query(tenant)), 1);
    }
    assert_eq!(setup.limited("", "requests"), 4.0);
    let samples = setup.gateway.samples();
    assert!(!samples
        .iter()
        .any(|s| s.name == "cortex_gateway_tenant_inflight_requests"));
    let with_a_tenant: Vec<_> = samples
        .iter()
        .filter(|s| s.labels.get("tenant").is_some_and(|t| !t.is_empty()))
        .collect();
    assert!(with_a_tenant.is_empty(), "{with_a_tenant:?}");
}
