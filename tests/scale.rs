//! Many connections: the open-files limit, ten thousand idle clients, and
//! upstream connections reused under a burst instead of churned.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    raw_http, read_sized_response, tenant_token, wait_until, Gateway, GatewayBuilder, Upstream,
};

/// `Max open files` of a process: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// Raises this test process's own soft limit, so that it can hold the
/// client side of many connections.
fn raise_own_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: the calls only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    limit.rlim_cur
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit_and_logged() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .soft_open_files(256)
        .start();
    let (soft, hard) = open_files_limit(gateway.pid());
    assert!(hard > 256, "the machine's hard limit is {hard}");
    assert_eq!(soft, hard, "the soft limit was raised");
    common::wait_for_log(&gateway, &format!("open_files={hard}"));
}

#[test]
fn ten_thousand_idle_clients_are_held_and_a_new_request_is_answered() {
    const IDLE: usize = 10_000;
    let own_limit = raise_own_open_files_limit();
    assert!(
        own_limit as usize > IDLE + 100,
        "this machine's hard open-files limit ({own_limit}) cannot hold the test's side"
    );
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .soft_open_files(1024)
        .start();
    // Connected and silent: each waits for its first request head, within
    // `server.http_read_timeout` (30 s).
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(gateway.addr()).unwrap())
        .collect();
    let series = "cortex_gateway_open_connections";
    let deadline = Instant::now() + Duration::from_secs(20);
    while gateway.metric(series) < IDLE as f64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {IDLE} connections were accepted",
            gateway.metric(series)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let response = raw_http(
        gateway.addr(),
        format!(
            "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            tenant_token("team-a")
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(response.status, 200);
    drop(idle);
    // Counted by the dispatchers as they are dropped; the scrape's own
    // connection is the one left.
    wait_until("the gauge falls as the clients leave", || {
        gateway.metric(series) <= 1.0
    });
}

/// A keep-alive upstream that answers `ok` to every request and counts the
/// connections it accepted.
fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(5_000).flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line != "\r\n" => continue,
                        Ok(_) => {}
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if writer.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

/// `clients` keep-alive clients each send `requests` GETs in turn; every
/// answer must be the upstream's `ok`.
fn burst(gateway: &Gateway, clients: usize, requests: usize) {
    let addr = gateway.addr();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                for _ in 0..requests {
                    assert_eq!(get_ok(&mut writer, &mut reader).unwrap(), b"ok");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// A gateway keeping at most `max_idle` idle connections per upstream and
/// worker (the default without), in front of a counting upstream.
fn pooled_gateway(max_idle: Option<&str>) -> (Gateway, String, Arc<AtomicUsize>) {
    let (upstream, accepted) = counting_upstream();
    let mut builder = GatewayBuilder::new(&upstream, &upstream);
    if let Some(max_idle) = max_idle {
        builder = builder.env(
            "CORTEX_GATEWAY__PROXY__MAX_IDLE_CONNECTIONS_PER_UPSTREAM",
            max_idle,
        );
    }
    (builder.start(), upstream, accepted)
}

/// `cortex_gateway_upstream_connections` for `upstream` in `state`.
fn upstream_connections(gateway: &Gateway, upstream: &str, state: &str) -> f64 {
    gateway.metric(&format!(
        r#"cortex_gateway_upstream_connections{{state="{state}",upstream="{upstream}"}}"#
    ))
}

#[test]
fn a_burst_reuses_upstream_connections_instead_of_churning() {
    // More concurrent clients than a pool of 100 per worker keeps: with
    // the defaults, a burst's connections are kept for the next one.
    const CLIENTS: usize = 300;
    const REQUESTS: usize = 20;
    raise_own_open_files_limit();
    let (gateway, upstream, accepted) = pooled_gateway(None);
    burst(&gateway, CLIENTS, REQUESTS);
    let first = accepted.load(Ordering::SeqCst);
    // At most one upstream connection per request in flight, however the
    // two workers share them: 2,000 requests, not 2,000 connections.
    assert!(
        first <= CLIENTS + 2,
        "{first} upstream connections for {CLIENTS} concurrent clients"
    );
    burst(&gateway, CLIENTS, REQUESTS);
    let second = accepted.load(Ordering::SeqCst) - first;
    assert!(
        second <= CLIENTS / 10,
        "the second burst opened {second} new upstream connections instead of reusing the pool"
    );
    let idle = upstream_connections(&gateway, &upstream, "idle");
    let active = upstream_connections(&gateway, &upstream, "active");
    assert_eq!(active, 0.0, "nothing is in flight after the bursts");
    assert!(
        (1.0..=(first + second) as f64).contains(&idle),
        "idle connections: {idle}"
    );
}

#[test]
fn the_pool_keeps_no_more_idle_connections_than_configured() {
    let (gateway, upstream, accepted) = pooled_gateway(Some("3"));
    burst(&gateway, 40, 5);
    let idle = upstream_connections(&gateway, &upstream, "idle");
    // Three per worker, two workers.
    assert!(idle <= 6.0, "{idle} idle connections kept");
    assert!(accepted.load(Ordering::SeqCst) > 6, "the burst needed more");
}

/// Idle upstream connections are closed once `proxy.idle_connection_timeout`
/// passed, even when no request comes to find them expired: a burst's
/// connections (and their buffers) are given back.
#[test]
fn idle_upstream_connections_close_after_the_timeout_without_a_request() {
    let (upstream, _) = counting_upstream();
    let gateway = GatewayBuilder::new(&upstream, &upstream)
        .env("CORTEX_GATEWAY__PROXY__IDLE_CONNECTION_TIMEOUT", "3s")
        .start();
    burst(&gateway, 20, 5);
    assert!(upstream_connections(&gateway, &upstream, "idle") >= 1.0);
    wait_until("the idle upstream connections are closed", || {
        upstream_connections(&gateway, &upstream, "idle") == 0.0
    });
    assert_eq!(upstream_connections(&gateway, &upstream, "active"), 0.0);
    // And the gateway still forwards, on new connections.
    burst(&gateway, 2, 2);
}

/// Sends one authenticated GET on a kept-alive connection and returns the
/// body of its answer.
fn get_ok(writer: &mut TcpStream, reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let request = format!(
        "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\r\n",
        tenant_token("team-a")
    );
    writer.write_all(request.as_bytes())?;
    read_sized_response(reader).map(|(_, body)| body)
}

#[test]
fn kept_alive_clients_may_idle_for_server_http_idle_timeout() {
    let (upstream, _) = counting_upstream();
    let patient = GatewayBuilder::new(&upstream, &upstream).start();
    let brief = GatewayBuilder::new(&upstream, &upstream)
        .arg("-server.http-idle-timeout=1s")
        .start();
    let connect = |gateway: &Gateway| {
        let stream = TcpStream::connect(gateway.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (stream.try_clone().unwrap(), BufReader::new(stream))
    };
    let (mut patient_writer, mut patient_reader) = connect(&patient);
    let (mut brief_writer, mut brief_reader) = connect(&brief);
    get_ok(&mut patient_writer, &mut patient_reader).unwrap();
    get_ok(&mut brief_writer, &mut brief_reader).unwrap();
    // Longer than actix's own default (5 s), shorter than the default 2 min.
    std::thread::sleep(Duration::from_secs(6));
    get_ok(&mut patient_writer, &mut patient_reader)
        .expect("a connection idle for 6 s is still open by default");
    let mut rest = Vec::new();
    let closed = brief_reader.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)),
        "with -server.http-idle-timeout=1s the gateway closed the connection: {closed:?}"
    );
}
