//! The Redis backend with a real `redis-server` (Debian's, installed by
//! `.ci/run`) and two gateway processes: together they enforce one limit;
//! with Redis stopped every request is still served (from each replica's
//! local buckets) and neither gateway exits; with Redis back, so is the
//! shared limit. Redis is started on a free port and stopped by its PID.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    free_port, sample, send_signal, tenant_request, wait_until, Gateway, GatewayBuilder, Upstream,
};

/// A `redis-server` of this test, without persistence.
struct RedisServer {
    child: Child,
}

impl RedisServer {
    fn start(port: u16) -> Self {
        Self::start_with(port, &[])
    }

    /// With more `redis-server` options (`--requirepass`, say).
    fn start_with(port: u16, options: &[&str]) -> Self {
        let dir = std::env::temp_dir();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(options)
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs Debian's redis-server)");
        // Without the password it answers, refusing: it is up.
        wait_until("redis-server answers PING", || {
            command(port, &["PING"])
                .is_some_and(|answer| answer == "+PONG" || answer.starts_with("-NOAUTH"))
        });
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it by its PID, and waits until it is gone.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Inline commands to the Redis on `port`, on one connection: the first
/// line of the last answer.
fn command(port: u16, lines: &[&str]) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    for line in lines {
        stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    }
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    for _ in lines {
        answer.clear();
        reader.read_line(&mut answer).ok()?;
    }
    Some(answer.trim_end().to_owned())
}

/// How many times `gateway` has logged connecting to Redis.
fn connections(gateway: &Gateway) -> usize {
    gateway
        .logs()
        .matches("limits backend connected to Redis")
        .count()
}

/// Sends `count` queries of `tenant`, alternating between the gateways;
/// returns how many passed. Every answer is a 200 or a 429, never a 5xx,
/// and a 429 says when the next cell comes (one every 100 s).
fn passed(gateways: &[Gateway], tenant: &str, count: usize) -> usize {
    (0..count)
        .filter(|i| {
            let gateway = &gateways[i % gateways.len()];
            let response = tenant_request(gateway.addr(), "GET", "/api/v1/query", tenant, b"");
            if response.status == 429 {
                let retry_after: u64 = response
                    .header("retry-after")
                    .and_then(|value| value.parse().ok())
                    .expect("a 429 carries Retry-After in whole seconds");
                assert!((1..=100).contains(&retry_after), "{retry_after}");
            } else {
                assert_eq!(response.status, 200, "{}", response.text());
            }
            response.status == 200
        })
        .count()
}

/// `cortex_gateway_limits_backend_errors_total` of `gateway`.
fn backend_errors(gateway: &Gateway) -> f64 {
    gateway.metric("cortex_gateway_limits_backend_errors_total")
}

/// `count` gateways in front of `upstream` with `config`, each connected
/// to Redis.
fn connected_gateways(count: usize, upstream: &Upstream, config: &str) -> Vec<Gateway> {
    let gateways: Vec<Gateway> = (0..count)
        .map(|_| {
            GatewayBuilder::new(&upstream.url(), &upstream.url())
                .config(config)
                .start()
        })
        .collect();
    for gateway in &gateways {
        wait_until("the gateway connects to Redis", || {
            connections(gateway) == 1
        });
    }
    gateways
}

/// The `[limits]` of a gateway on the Redis at `port`.
fn redis_limits(port: u16, burst: u32, timeout: &str) -> String {
    format!(
        "[limits]\nrequests_per_second = 0.01\nburst = {burst}\nbackend = \"redis\"\n\
         redis_url = \"redis://127.0.0.1:{port}\"\nredis_timeout = \"{timeout}\"\n"
    )
}

#[test]
fn two_gateways_share_one_limit_and_serve_through_a_redis_outage() {
    let port = free_port();
    let mut redis = RedisServer::start(port);
    let upstream = Upstream::start("query-frontend");
    // A generous timeout: on a loaded machine a slow answer would fall back
    // to the local buckets and blur the shared count.
    let config = redis_limits(port, 6, "5s");
    let gateways = connected_gateways(2, &upstream, &config);

    // One bucket for both: 6 pass in all, not 6 each.
    assert_eq!(passed(&gateways, "team-a", 20), 6);
    assert_eq!(upstream.requests().len(), 6);
    for gateway in &gateways {
        let limited = sample(
            &gateway.samples(),
            "cortex_gateway_limited_requests_total",
            &[("tenant", "team-a"), ("limit", "requests")],
        );
        assert_eq!(limited, Some(7.0), "each gateway refused its half");
    }

    // Redis stops: every request is served from each gateway's own bucket,
    // still full (4 requests each, under a burst of 6), and counted.
    redis.stop();
    assert_eq!(passed(&gateways, "team-a", 8), 8);
    for gateway in &gateways {
        assert_eq!(backend_errors(gateway), 4.0, "each request that fell back");
        let health = common::raw_http(
            gateway.addr(),
            b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(health.status, 200, "the gateway keeps running");
        // Logged once, not once per request.
        let logs = gateway.logs();
        assert_eq!(logs.matches("limits backend lost Redis").count(), 1);
        assert_eq!(logs.matches("limits backend unavailable").count(), 1);
    }

    // Redis is back (empty): the gateways reconnect, and one shared bucket
    // is enforced again.
    let _redis = RedisServer::start(port);
    for gateway in &gateways {
        wait_until("the gateway reconnects to Redis", || {
            connections(gateway) == 2
        });
    }
    assert_eq!(passed(&gateways, "team-b", 20), 6);

    // Redis forgets the script (as after a restart the gateway did not
    // notice): the calls go again with the whole script, no error.
    assert_eq!(command(port, &["SCRIPT FLUSH"]).as_deref(), Some("+OK"));
    let errors: Vec<f64> = gateways.iter().map(backend_errors).collect();
    assert_eq!(passed(&gateways, "team-c", 20), 6);
    assert_eq!(
        gateways.iter().map(backend_errors).collect::<Vec<_>>(),
        errors
    );
}

#[test]
fn a_redis_slower_than_the_timeout_is_skipped_while_it_is() {
    let port = free_port();
    let redis = RedisServer::start(port);
    let upstream = Upstream::start("query-frontend");
    let gateways = connected_gateways(1, &upstream, &redis_limits(port, 3, "100ms"));

    // Redis stops answering: each request waits at most the timeout, then
    // the local bucket (burst 3) decides; nothing fails.
    send_signal(redis.pid(), "STOP");
    assert_eq!(passed(&gateways, "team-a", 5), 3);
    assert!(backend_errors(&gateways[0]) >= 1.0);

    // Redis answers again (on the same connection, or a new one once the
    // old one was given up): the gateway uses it again.
    send_signal(redis.pid(), "CONT");
    let errors = || backend_errors(&gateways[0]);
    wait_until("Redis decides again", || {
        let before = errors();
        passed(&gateways, "team-b", 1);
        errors() == before
    });
    assert_eq!(passed(&gateways, "team-c", 5), 3);
    let before = errors();
    assert_eq!(passed(&gateways, "team-c", 2), 0);
    assert_eq!(errors(), before, "Redis decided");
}

/// A Redis that wants a password, in database 3: the gateway logs in with
/// the password from `limits.redis_password_file`, and neither its log nor
/// `check-config` shows it.
#[test]
fn the_redis_password_comes_from_its_file_and_is_never_shown() {
    let port = free_port();
    let password = "pw-7f3a9c1e5b2d";
    let _redis = RedisServer::start_with(port, &["--requirepass", password]);
    let upstream = Upstream::start("query-frontend");
    let dir = std::env::temp_dir().join(format!("cortex-gateway-redis-pw-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("redis-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let config = format!(
        "[limits]\nrequests_per_second = 0.01\nburst = 2\nbackend = \"redis\"\n\
         redis_url = \"redis://127.0.0.1:{port}/3\"\nredis_password_file = \"{}\"\n",
        password_file.display()
    );
    let gateways = connected_gateways(1, &upstream, &config);
    assert_eq!(passed(&gateways, "team-a", 4), 2);
    assert_eq!(backend_errors(&gateways[0]), 0.0, "Redis decided");
    let auth = format!("AUTH {password}");
    assert_eq!(
        command(port, &[&auth, "SELECT 3", "DBSIZE"]).as_deref(),
        Some(":1")
    );
    assert_eq!(command(port, &[&auth, "DBSIZE"]).as_deref(), Some(":0"));

    let logs = gateways[0].logs();
    assert!(
        logs.contains(&format!("redis://<redacted>@127.0.0.1:{port}/3")),
        "{logs}"
    );
    let output = common::command()
        .arg("check-config")
        .arg("--config")
        .arg(gateways[0].config_path())
        .env("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", upstream.url())
        .env("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND", upstream.url())
        .env(
            "CORTEX_GATEWAY__AUTH__JWT_SECRET",
            "check-config-secret-0123456789abcdef",
        )
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{shown}");
    // The URL has no secret to hide here; the password's file is named.
    assert!(
        shown.contains(&format!("redis_url = \"redis://127.0.0.1:{port}/3\"")),
        "{shown}"
    );
    assert!(shown.contains("redis_password_file = "), "{shown}");
    for text in [&logs, &shown.to_string()] {
        assert!(!text.contains(password), "the password is shown:\n{text}");
    }
}

/// Ingest bytes are one shared bucket in Redis too, and every key expires
/// once its bucket would be full again: idle tenants leave nothing behind.
#[test]
fn ingest_bytes_are_shared_and_every_key_expires_when_its_bucket_is_full() {
    let port = free_port();
    let _redis = RedisServer::start(port);
    let upstream = Upstream::start("distributor");
    let config = format!(
        "{}ingest_bytes_per_second = 1\ningest_burst_bytes = 1000\n",
        redis_limits(port, 5, "5s")
    );
    let gateways = connected_gateways(2, &upstream, &config);
    let statuses: Vec<u16> = (0..3)
        .map(|i| {
            let gateway = &gateways[i % 2];
            tenant_request(gateway.addr(), "POST", "/api/v1/push", "team-a", &[7; 400]).status
        })
        .collect();
    assert_eq!(
        statuses,
        [200, 200, 429],
        "1000 bytes in all, not 1000 each"
    );
    assert_eq!(upstream.requests().len(), 2);
    for gateway in &gateways {
        assert_eq!(backend_errors(gateway), 0.0, "Redis decided");
    }

    // Two requests at one per 100 s, 800 bytes at 1 per second: the keys
    // live until the buckets are full again, and no longer.
    let pttl = |key: &str| -> u64 {
        let answer = command(
            port,
            &[&format!("PTTL cortex-gateway:limit:{{team-a}}:{key}")],
        );
        answer
            .as_deref()
            .and_then(|a| a.strip_prefix(':'))
            .and_then(|ms| ms.parse().ok())
            .unwrap_or_else(|| panic!("PTTL of {key}: {answer:?}"))
    };
    let requests = pttl("requests");
    assert!((150_000..=200_001).contains(&requests), "{requests} ms");
    let bytes = pttl("ingest_bytes");
    assert!((750_000..=800_001).contains(&bytes), "{bytes} ms");
}
