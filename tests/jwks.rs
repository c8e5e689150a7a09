//! Tokens from an identity provider, through the real binary: the gateway
//! fetches the provider's keys from a JWKS URL (or finds it by OIDC
//! discovery) and verifies tokens by their `kid`, with no HMAC secret at
//! all. Proves that keys rotate at the provider without a restart (a new
//! `kid` is fetched while its first request waits; a withdrawn key stops
//! verifying after the next refresh), that an outage of the provider keeps
//! the last good keys serving, that the gateway is not ready (and answers
//! 503 with `Retry-After`, not 401) until its first fetch succeeded, that a
//! flood of forged `kid`s cannot make it hammer the provider, that OIDC
//! binds tokens to their issuer, that keys it cannot use are skipped, and
//! that every fetch shows on `/metrics`.
//!
//! The provider is a [`JwksServer`] whose keys are made at test time; the
//! tests wait for states (polling with generous deadlines), never for time.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use serde_json::{json, Value};

const QUERY: &str = "/api/v1/query?query=up";
const FETCHES: &str = "cortex_gateway_jwks_fetches_total";
const KEYS: &str = "cortex_gateway_jwks_keys";
const SINCE_SUCCESS: &str = "cortex_gateway_jwks_seconds_since_last_success";
/// Refresh every second, and refetch for an unknown `kid` as often.
const FAST: &str = "jwks_refresh_interval = \"1s\"\njwks_min_refetch_interval = \"1s\"\n";

/// An upstream, a provider serving `keys`, and a gateway whose only key
/// source is the provider's JWKS URL, with more `[auth]` lines from
/// `extra`.
struct Setup {
    upstream: Upstream,
    provider: JwksServer,
    gateway: Gateway,
}

impl Setup {
    /// Started (healthy) while the provider answers in `mode`; not
    /// necessarily ready.
    fn start(keys: Value, mode: JwksMode, extra: &str) -> Self {
        let upstream = Upstream::start("q");
        let provider = JwksServer::start(keys);
        provider.set_mode(mode);
        let auth = format!("jwks_url = [\"{}\"]\n{extra}", provider.jwks_url());
        let gateway = start_with(&upstream, &auth);
        Self {
            upstream,
            provider,
            gateway,
        }
    }

    /// Started, and ready: the first fetch succeeded.
    fn ready(keys: Value, extra: &str) -> Self {
        let setup = Self::start(keys, JwksMode::Serve, extra);
        setup.gateway.wait_until_ready();
        setup
    }
}

/// A gateway with no test secret and these `[auth]` lines.
fn start_with(upstream: &Upstream, auth: &str) -> Gateway {
    GatewayBuilder::new(&upstream.url(), &upstream.url())
        .without_secret()
        .config(&format!("[auth]\n{auth}"))
        .start()
}

/// Claims for `tenant` that no earlier token had: a token made of them is
/// verified afresh, never answered from the gateway's cache of verified
/// tokens.
fn fresh(tenant: &str) -> Value {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    json!({"tenant_id": tenant, "serial": SERIAL.fetch_add(1, Ordering::Relaxed)})
}

fn status(gateway: &Gateway, token: &str) -> u16 {
    gateway.get(QUERY, token).status
}

/// The status of a fresh token of `key` for team-a with this `iss` (or
/// none).
fn status_with_issuer(gateway: &Gateway, key: &SigningKey, iss: Option<&str>) -> u16 {
    let mut claims = fresh("team-a");
    if let Some(iss) = iss {
        claims["iss"] = iss.into();
    }
    status(gateway, &key.sign(&claims))
}

/// Polls until `token` gets `want`.
fn eventually_status(gateway: &Gateway, token: &str, want: u16, what: &str) {
    eventually(what, || (status(gateway, token) == want).then_some(()));
}

/// A series of the JWKS metrics for `source`, with more labels.
fn jwks_metric(
    gateway: &Gateway,
    name: &str,
    source: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let mut all = vec![("source", source)];
    all.extend_from_slice(labels);
    gateway.sample(name, &all)
}

fn fetch_count(gateway: &Gateway, source: &str, outcome: &str) -> f64 {
    jwks_metric(gateway, FETCHES, source, &[("outcome", outcome)]).unwrap_or(0.0)
}

/// Waits until the gateway has counted `more` failed fetches of `source`
/// beyond what it counted on the call.
fn wait_for_failed_fetches(gateway: &Gateway, source: &str, more: f64) {
    let start = fetch_count(gateway, source, "error");
    eventually(&format!("{more} more failed fetches of {source}"), || {
        (fetch_count(gateway, source, "error") >= start + more).then_some(())
    });
}

#[test]
fn keys_rotate_at_the_provider_without_a_restart() {
    let (k1, k2) = (SigningKey::es256("k1"), SigningKey::ed25519("k2"));
    // No periodic refresh within the test: k2 can only be found by the
    // refetch its first token causes.
    let Setup {
        upstream,
        provider,
        gateway,
    } = Setup::ready(
        jwks(&[&k1]),
        "jwks_refresh_interval = \"5m\"\njwks_min_refetch_interval = \"1s\"\n",
    );
    let old = k1.sign(&json!({"tenant_id": "team-a"}));
    for _ in 0..3 {
        // The first is verified, the others may come from the cache.
        assert_eq!(status(&gateway, &old), 200);
    }
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-a"));

    // The provider adds k2; from now on its answers say to come back soon.
    provider.set_jwks(jwks(&[&k1, &k2]));
    provider.set_max_age(Some(1));
    // Past the refetch allowance that the start-up fetch used.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let before = provider.fetches(JWKS_PATH);
    let new = k2.sign(&json!({"tenant_id": "team-b"}));
    assert_eq!(
        status(&gateway, &new),
        200,
        "the first token of a new kid waits for the refetch and is accepted"
    );
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-b"));
    assert!(provider.fetches(JWKS_PATH) > before);
    assert_eq!(status(&gateway, &old), 200, "k1 is still published");

    // The provider withdraws k1: after the next refresh (max-age=1) its
    // tokens are refused, though this very token was accepted and cached.
    provider.set_jwks(jwks(&[&k2]));
    eventually_status(
        &gateway,
        &old,
        401,
        "k1's token refused once k1 is withdrawn",
    );
    assert_eq!(status(&gateway, &k1.sign(&fresh("team-a"))), 401);
    assert_eq!(status(&gateway, &new), 200, "k2 stays");
    assert_eq!(status(&gateway, &k2.sign(&fresh("team-b"))), 200);
}

#[test]
fn an_outage_of_the_provider_keeps_the_last_good_keys() {
    let (k1, k3) = (SigningKey::es256("k1"), SigningKey::es256("k3"));
    let Setup {
        upstream,
        provider,
        gateway,
    } = Setup::ready(jwks(&[&k1]), FAST);
    let source = provider.jwks_url();
    assert_eq!(status(&gateway, &k1.sign(&fresh("team-a"))), 200);

    for mode in [JwksMode::Status(500), JwksMode::Garbage, JwksMode::HangUp] {
        provider.set_mode(mode);
        // Several refresh intervals, each of them a failed fetch.
        wait_for_failed_fetches(&gateway, &source, 3.0);
        assert_eq!(
            status(&gateway, &k1.sign(&fresh("team-a"))),
            200,
            "{mode:?}: the cached keys still verify"
        );
        assert_eq!(gateway.ready_status(), 200, "{mode:?}: still ready");
    }
    assert_eq!(
        upstream.requests().len(),
        4,
        "every accepted request was forwarded"
    );

    // The provider comes back with a new key beside the old one.
    let successes = fetch_count(&gateway, &source, "success");
    provider.set_jwks(jwks(&[&k1, &k3]));
    provider.set_mode(JwksMode::Serve);
    eventually_status(
        &gateway,
        &k3.sign(&fresh("team-c")),
        200,
        "the recovered provider's new key is picked up",
    );
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-c"));
    assert!(fetch_count(&gateway, &source, "success") > successes);
    assert_eq!(status(&gateway, &k1.sign(&fresh("team-a"))), 200);
}

#[test]
fn until_the_first_fetch_succeeds_the_gateway_is_not_ready_and_answers_503() {
    let k1 = SigningKey::es256("k1");
    let Setup {
        upstream,
        provider,
        gateway,
    } = Setup::start(jwks(&[&k1]), JwksMode::Status(500), FAST);
    let source = provider.jwks_url();
    wait_for_failed_fetches(&gateway, &source, 1.0);
    assert_eq!(gateway.ready_status(), 503, "no keys yet: not ready");

    let token = k1.sign(&json!({"tenant_id": "team-a"}));
    for _ in 0..3 {
        let response = gateway.get(QUERY, &token);
        assert_eq!(
            response.status, 503,
            "a token that may be good is not refused while the keys are unknown: {}",
            response.head
        );
        let retry_after = response
            .header("retry-after")
            .unwrap_or_else(|| panic!("a 503 says when to retry: {}", response.head));
        let seconds: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After in whole seconds: {retry_after:?}"));
        assert!(seconds >= 1, "Retry-After: {seconds}");
        assert!(
            !response.text().contains(&token),
            "the body does not echo the token"
        );
    }
    assert!(
        upstream.requests().is_empty(),
        "nothing reaches the upstream"
    );

    provider.set_mode(JwksMode::Serve);
    gateway.wait_until_ready();
    assert_eq!(
        status(&gateway, &token),
        200,
        "the same token, now verified"
    );
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(upstream.last().header_values("x-scope-orgid"), ["team-a"]);
}

#[test]
fn a_flood_of_forged_kids_causes_at_most_one_refetch_per_interval() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let k1 = SigningKey::es256("k1");
    let forger = SigningKey::es256("forger");
    let Setup {
        upstream,
        provider,
        gateway,
    } = Setup::ready(jwks(&[&k1]), "jwks_min_refetch_interval = \"30s\"\n");
    let before = provider.fetches(JWKS_PATH);

    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (gateway, forger) = (&gateway, &forger);
                scope.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let kid = format!("forged-{thread}-{i}");
                            status(gateway, &forger.sign_as(Some(&kid), &fresh("team-a")))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    assert_eq!(statuses.len(), THREADS * PER_THREAD);
    assert!(
        statuses.iter().all(|&status| status == 401),
        "every forged kid is refused: {statuses:?}"
    );
    let extra = provider.fetches(JWKS_PATH) - before;
    assert!(
        extra <= 1,
        "{extra} fetches for {} unknown kids within one jwks_min_refetch_interval",
        statuses.len()
    );
    assert!(upstream.requests().is_empty());

    // Still responsive, and the real key still works.
    assert_eq!(
        raw_http(
            gateway.addr(),
            b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap()
        .status,
        200
    );
    assert_eq!(status(&gateway, &k1.sign(&fresh("team-a"))), 200);
}

#[test]
fn oidc_discovery_finds_the_keys_and_binds_tokens_to_the_issuer() {
    let upstream = Upstream::start("q");
    let k1 = SigningKey::es256("k1");
    let provider = JwksServer::start(jwks(&[&k1]));
    let issuer = provider.issuer();
    let gateway = start_with(&upstream, &format!("oidc_issuer_url = \"{issuer}\"\n"));
    gateway.wait_until_ready();
    assert!(provider.fetches(&format!("{OIDC_REALM}/.well-known/openid-configuration")) >= 1);
    let jwks_uri = provider.oidc_jwks_url();
    let jwks_path = jwks_uri.strip_prefix(&provider.url("")).unwrap();
    assert!(
        provider.fetches(jwks_path) >= 1,
        "the keys come from the discovered jwks_uri"
    );

    let with_issuer = |iss: Option<&str>| status_with_issuer(&gateway, &k1, iss);
    assert_eq!(with_issuer(Some(&issuer)), 200);
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-a"));
    for wrong in [
        Some("http://evil.example/realms/cortex"),
        Some(&format!("{issuer}/")),
        Some(&provider.url("/realms/other")),
        Some(""),
        None,
    ] {
        assert_eq!(with_issuer(wrong), 401, "iss {wrong:?}");
    }
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn configured_issuers_are_checked_for_jwks_tokens() {
    let k1 = SigningKey::es256("k1");
    // The upstream is bound so that it lives as long as the test.
    let Setup {
        gateway,
        upstream: _upstream,
        ..
    } = Setup::ready(
        jwks(&[&k1]),
        "issuer = [\"https://idp-a.example\", \"https://idp-b.example\"]\n",
    );
    let with_issuer = |iss: Option<&str>| status_with_issuer(&gateway, &k1, iss);
    assert_eq!(with_issuer(Some("https://idp-a.example")), 200);
    assert_eq!(with_issuer(Some("https://idp-b.example")), 200);
    assert_eq!(with_issuer(Some("https://idp-c.example")), 401);
    assert_eq!(with_issuer(None), 401);
}

#[test]
fn keys_for_encryption_or_of_unknown_types_are_skipped() {
    let good = SigningKey::es256("good-key");
    let encryption = SigningKey::es256("encryption-key");
    let mut encryption_jwk = encryption.jwk();
    encryption_jwk["use"] = "enc".into();
    let unknown = json!({"kty": "XYZ", "kid": "unknown-kty-key", "use": "sig", "x": "AAAA"});
    let Setup {
        provider,
        gateway,
        upstream: _upstream,
    } = Setup::ready(json!({"keys": [encryption_jwk, unknown, good.jwk()]}), "");

    assert_eq!(status(&gateway, &good.sign(&fresh("team-a"))), 200);
    assert_eq!(
        status(&gateway, &encryption.sign(&fresh("team-a"))),
        401,
        "a key published for encryption never verifies a signature"
    );
    assert_eq!(
        jwks_metric(&gateway, KEYS, &provider.jwks_url(), &[]),
        Some(1.0),
        "only the usable key is loaded"
    );
    let logs = gateway.logs();
    for kid in ["encryption-key", "unknown-kty-key"] {
        assert!(
            logs.lines()
                .any(|line| line.to_lowercase().contains("skip") && line.contains(kid)),
            "no log line says {kid} is skipped:\n{logs}"
        );
    }
}

#[test]
fn fetches_keys_and_freshness_show_on_metrics() {
    let (k1, k2, k3) = (
        SigningKey::es256("k1"),
        SigningKey::ed25519("k2"),
        SigningKey::es256("k3"),
    );
    let Setup {
        provider,
        gateway,
        upstream: _upstream,
    } = Setup::ready(jwks(&[&k1, &k2]), "jwks_refresh_interval = \"1s\"\n");
    let source = provider.jwks_url();
    assert!(fetch_count(&gateway, &source, "success") >= 1.0);
    assert_eq!(
        jwks_metric(&gateway, FETCHES, &source, &[("outcome", "error")]),
        Some(0.0),
        "the error series exists from the start"
    );
    assert_eq!(jwks_metric(&gateway, KEYS, &source, &[]), Some(2.0));
    let since = jwks_metric(&gateway, SINCE_SUCCESS, &source, &[]).expect("freshness gauge");
    assert!(
        (0.0..300.0).contains(&since),
        "just fetched, yet {since} s since the last success"
    );

    // Failing fetches: counted, the keys stay, the last success ages.
    provider.set_mode(JwksMode::Status(500));
    wait_for_failed_fetches(&gateway, &source, 2.0);
    eventually("the last success ages while fetches fail", || {
        (jwks_metric(&gateway, SINCE_SUCCESS, &source, &[])? >= 2.0).then_some(())
    });
    assert_eq!(jwks_metric(&gateway, KEYS, &source, &[]), Some(2.0));

    // Back, with a third key.
    let successes = fetch_count(&gateway, &source, "success");
    provider.set_jwks(jwks(&[&k1, &k2, &k3]));
    provider.set_mode(JwksMode::Serve);
    eventually("the third key is loaded", || {
        (jwks_metric(&gateway, KEYS, &source, &[])? == 3.0).then_some(())
    });
    assert!(fetch_count(&gateway, &source, "success") > successes);
    let exposition = gateway.exposition();
    for name in [FETCHES, KEYS, SINCE_SUCCESS] {
        assert!(
            exposition.contains(&format!("# TYPE {name} ")),
            "{name} has a TYPE line"
        );
    }
}

/// A provider too slow to answer the refetch a new `kid` causes: the token
/// gets 503 with `Retry-After` (the key may well exist; Prometheus must
/// retry, not drop the batch), and once the provider answered, it passes.
#[test]
fn a_refetch_that_does_not_finish_in_time_is_answered_503() {
    let (k1, k2) = (SigningKey::es256("k1"), SigningKey::ed25519("k2"));
    let Setup {
        upstream: _upstream,
        provider,
        gateway,
    } = Setup::ready(
        jwks(&[&k1]),
        "jwks_refresh_interval = \"5m\"\njwks_min_refetch_interval = \"1s\"\n",
    );
    provider.set_jwks(jwks(&[&k1, &k2]));
    provider.set_mode(JwksMode::Stall(std::time::Duration::from_secs(8)));
    // Past the refetch allowance that the start-up fetch used.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let new = k2.sign(&fresh("team-b"));
    let response = gateway.get(QUERY, &new);
    assert_eq!(response.status, 503, "{}", response.text());
    let retry_after: u64 = response
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .expect("a 503 carries Retry-After in whole seconds");
    assert!(retry_after >= 1);
    provider.set_mode(JwksMode::Serve);
    eventually_status(
        &gateway,
        &new,
        200,
        "k2 accepted once the provider answered",
    );
}
