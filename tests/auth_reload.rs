//! Live reload of the `[auth]` section, through the real binary started
//! from a config file: on `SIGHUP` and when the file changes, new secrets,
//! revocation minimums and the rest take effect without a restart and
//! without failing a single request of clients that keep their connections
//! open meanwhile; a broken file is refused as a whole (the settings in use
//! stay, the reload gauge says 0 and the log names the key); and a change
//! that needs a restart is said so in the log while the gateway keeps
//! serving as before. Operators rotate secrets and revoke tokens this way,
//! so a reload that dropped requests or half-applied a bad file would be an
//! outage or a security hole.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

const S1: &str = "reload-secret-one-0123456789abcdef";
const S2: &str = "reload-secret-two-0123456789abcdef";
const QUERY: &str = "/api/v1/query?query=up";
const RELOAD_OK: &str = "cortex_gateway_config_last_reload_successful";
const RELOAD_STAMP: &str = "cortex_gateway_config_last_reload_success_timestamp_seconds";

/// `[auth]` with these secrets (the first signs) and this minimum version.
fn auth_config(secrets: &[&str], min_token_version: u64) -> String {
    format!("[auth]\njwt_secrets = {secrets:?}\nmin_token_version = {min_token_version}\n")
}

/// A gateway whose keys and rules come from its config file alone.
fn start(upstream: &Upstream, config: &str) -> Gateway {
    GatewayBuilder::new(&upstream.url(), &upstream.url())
        .without_secret()
        .config(config)
        .start()
}

fn signed(secret: &str, tenant: &str, version: u64) -> String {
    token_with(
        Algorithm::HS256,
        json!({"tenant_id": tenant, "version": version}),
        secret.as_bytes(),
    )
}

/// Rewrites the config file and signals the gateway to read it.
fn reload(gateway: &Gateway, config: &str) {
    gateway.rewrite_config(config);
    gateway.signal("HUP");
}

/// Polls until `token` gets `want`; returns that response's body.
fn eventually_status(gateway: &Gateway, token: &str, want: u16, what: &str) -> String {
    eventually(what, || {
        let response = gateway.get(QUERY, token);
        (response.status == want).then(|| response.text())
    })
}

/// Polls until the reload gauge reads `want`.
fn eventually_reload_gauge(gateway: &Gateway, want: f64) {
    eventually(&format!("{RELOAD_OK} = {want}"), || {
        (gateway.sample(RELOAD_OK, &[])? == want).then_some(())
    });
}

/// One client on one kept-alive connection, sending `token` until `stop`;
/// any answer but 200, and any connection failure, ends it with an error.
fn keep_querying(
    addr: SocketAddr,
    token: &str,
    stop: &AtomicBool,
    answered: &AtomicUsize,
) -> Result<usize, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let request =
        format!("GET {QUERY} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n");
    let mut count = 0;
    while !stop.load(Ordering::SeqCst) {
        writer
            .write_all(request.as_bytes())
            .map_err(|e| format!("request {count}: write: {e}"))?;
        let (head, body) =
            read_sized_response(&mut reader).map_err(|e| format!("request {count}: read: {e}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!(
                "request {count}: {head}{}",
                String::from_utf8_lossy(&body)
            ));
        }
        count += 1;
        answered.fetch_add(1, Ordering::SeqCst);
    }
    Ok(count)
}

#[test]
fn secrets_and_revocation_reload_under_load_without_a_failed_request() {
    const CLIENTS: usize = 4;
    let upstream = Upstream::start("q");
    let gateway = start(&upstream, &auth_config(&[S1], 0));
    let t1 = signed(S1, "team-a", 1);
    let t2 = signed(S2, "team-b", 1);
    assert_eq!(gateway.get(QUERY, &t1).status, 200);
    assert_eq!(gateway.get(QUERY, &t2).status, 401, "S2 is not known yet");
    assert_eq!(gateway.metric(RELOAD_OK), 1.0);
    let first_stamp = gateway.metric(RELOAD_STAMP);

    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let wait_for_answers = |more: usize| {
        let target = answered.load(Ordering::SeqCst) + more;
        eventually(&format!("{more} more answers to the clients"), || {
            (answered.load(Ordering::SeqCst) >= target).then_some(())
        });
    };
    let outcomes: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(|| keep_querying(gateway.addr(), &t1, &stop, &answered)))
            .collect();
        wait_for_answers(100);
        // A reload's stamp is then a later second than the start-up's.
        eventually("a new second on the clock", || {
            (now() as f64 > first_stamp).then_some(())
        });
        // Add S2 to sign with, keep S1 verifying, and raise the minimum to
        // the version the clients' token has: none of them may fail.
        reload(&gateway, &auth_config(&[S2, S1], 1));
        eventually_status(&gateway, &t2, 200, "S2 accepted after SIGHUP");
        wait_for_answers(100);
        stop.store(true, Ordering::SeqCst);
        clients
            .into_iter()
            .map(|client| client.join().unwrap())
            .collect()
    });
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "requests failed during the reload: {failures:?}"
    );
    let served: usize = outcomes.iter().flatten().sum();
    assert!(served >= 200, "{served}");
    // With the clients stopped, the last request upstream is this one.
    assert_eq!(gateway.get(QUERY, &t2).status, 200);
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-b"));
    assert_eq!(gateway.metric(RELOAD_OK), 1.0);
    assert!(
        gateway.metric(RELOAD_STAMP) > first_stamp,
        "the success stamp moved with the reload"
    );

    // Revoke version 1: T1 and T2 are refused, a version-2 token of either
    // secret is accepted.
    reload(&gateway, &auth_config(&[S2, S1], 2));
    let body = eventually_status(&gateway, &t1, 401, "T1 revoked after SIGHUP");
    assert!(body.contains("revoked"), "{body}");
    assert!(gateway.get(QUERY, &t2).text().contains("revoked"));
    assert_eq!(gateway.get(QUERY, &signed(S1, "team-a", 2)).status, 200);
    assert_eq!(gateway.get(QUERY, &signed(S2, "team-b", 2)).status, 200);
    assert_eq!(gateway.metric(RELOAD_OK), 1.0);
}

#[test]
fn a_broken_config_is_refused_and_the_settings_in_use_stay() {
    let upstream = Upstream::start("q");
    let good = auth_config(&[S1], 0);
    let gateway = start(&upstream, &good);
    let t1 = signed(S1, "team-a", 1);
    assert_eq!(gateway.get(QUERY, &t1).status, 200);
    assert_eq!(gateway.metric(RELOAD_OK), 1.0);

    // An invalid value, beside a change that alone would revoke T1: the file
    // is refused as a whole, nothing of it applies.
    let bad_value = format!("{}algorithms = [\"XX999\"]\n", auth_config(&[S1], 5));
    let bad_toml = "[auth\njwt_secrets = [\"unfinished\"\n";
    for (broken, named) in [
        (bad_value.as_str(), Some("auth.algorithms")),
        (bad_toml, None),
    ] {
        reload(&gateway, broken);
        eventually_reload_gauge(&gateway, 0.0);
        assert_eq!(
            gateway.get(QUERY, &t1).status,
            200,
            "the old settings keep serving after {broken:?}"
        );
        assert_eq!(
            gateway.get(QUERY, &signed(S1, "team-c", 1)).status,
            200,
            "a token verified afresh too"
        );
        if let Some(key) = named {
            let logs = gateway.logs();
            assert!(logs.contains(key), "the log names {key}:\n{logs}");
        }
        // Fixed: the gauge is back to 1.
        reload(&gateway, &good);
        eventually_reload_gauge(&gateway, 1.0);
    }
    assert!(!gateway.logs().contains(S1), "secrets never reach the log");
}

#[test]
fn a_changed_file_is_applied_without_a_signal() {
    let upstream = Upstream::start("q");
    let gateway = start(&upstream, &auth_config(&[S1], 0));
    let t1 = signed(S1, "team-a", 1);
    assert_eq!(gateway.get(QUERY, &t1).status, 200);

    // No SIGHUP: the file poll notices the change.
    gateway.rewrite_config(&auth_config(&[S1], 2));
    let body = eventually_status(&gateway, &t1, 401, "the new minimum version in force");
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(gateway.get(QUERY, &signed(S1, "team-a", 2)).status, 200);
    assert_eq!(gateway.metric(RELOAD_OK), 1.0);
}

#[test]
fn a_change_that_needs_a_restart_is_logged_and_the_gateway_serves_on() {
    let first = Upstream::start("first");
    let second = Upstream::start("second");
    // The upstreams come from the file alone, so that the file's change is
    // the effective one.
    let config = |upstream: &Upstream| {
        format!(
            "[upstreams]\ndistributor = \"{0}\"\nquery_frontend = \"{0}\"\n\n{1}",
            upstream.url(),
            auth_config(&[S1], 0)
        )
    };
    let gateway = GatewayBuilder::new(&first.url(), &first.url())
        .unset_env("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR")
        .unset_env("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND")
        .without_secret()
        .config(&config(&first))
        .start();
    let t1 = signed(S1, "team-a", 1);
    assert_eq!(gateway.get(QUERY, &t1).status, 200);
    assert_eq!(first.requests().len(), 1);

    reload(&gateway, &config(&second));
    eventually("a log line saying a restart is needed", || {
        gateway
            .logs()
            .lines()
            .any(|line| line.to_lowercase().contains("restart"))
            .then_some(())
    });
    for _ in 0..3 {
        let response = gateway.get(QUERY, &t1);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-upstream-name").as_deref(), Some("first"));
    }
    assert_eq!(first.requests().len(), 4, "the running upstream stays");
    assert!(second.requests().is_empty());
}

/// A reload that adds a JWKS source nobody can reach: the pod stays ready
/// (a bad configuration pushed to every replica must not empty the load
/// balancer), HMAC tokens keep working, and an RS256 token, which could
/// need the new source, gets 503 with `Retry-After` rather than 401.
#[test]
fn an_unreachable_source_added_by_a_reload_does_not_make_the_pod_unready() {
    let upstream = Upstream::start("q");
    let gateway = start(&upstream, &auth_config(&[S1], 0));
    assert_eq!(gateway.ready_status(), 200);
    let dead = format!("http://127.0.0.1:{}/keys", free_port());
    reload(
        &gateway,
        &format!("{}jwks_url = [\"{dead}\"]\n", auth_config(&[S1], 0)),
    );
    eventually("the JWKS source is fetched (and fails)", || {
        let fetch_errors = sample(
            &gateway.samples(),
            "cortex_gateway_jwks_fetches_total",
            &[("source", &dead), ("outcome", "error")],
        );
        fetch_errors.filter(|errors| *errors >= 1.0)
    });
    assert_eq!(gateway.ready_status(), 200);
    assert_eq!(gateway.get(QUERY, &signed(S1, "team-a", 1)).status, 200);
    let header = base64_url(r#"{"alg":"RS256","kid":"new-key"}"#);
    let claims = base64_url(r#"{"tenant_id":"team-a"}"#);
    let unverifiable = format!("{header}.{claims}.c2lnbmF0dXJl");
    let response = gateway.get(QUERY, &unverifiable);
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.header("retry-after").is_some());
}

fn base64_url(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}
