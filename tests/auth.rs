//! Authentication through HTTP: every way a token is accepted, every way it
//! is refused, and that a refused request never reaches an upstream.

mod common;

use base64::Engine as _;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[actix_rt::test]
async fn accepted_forms_reach_the_upstream_with_the_tenant() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let token = tenant_token("team-a");
    for authorization in [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("BEARER  {token}"),
        token.clone(),
        basic("prometheus", &token),
        basic("", &token),
    ] {
        let response = client()
            .get(gateway.url("/api/v1/query?query=up"))
            .insert_header(("Authorization", authorization.as_str()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{authorization:.12}…");
        assert_eq!(upstream.last().header_values("x-scope-orgid"), ["team-a"]);
    }
    assert_eq!(upstream.requests().len(), 6);
    assert_eq!(
        gateway.metric(r#"cortex_gateway_succeeded_authentications_total{tenant="team-a"}"#),
        6.0
    );
}

#[actix_rt::test]
async fn missing_token_is_401_with_the_go_gateway_body() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    for authorization in [None, Some("Bearer "), Some(""), Some("Basic Og==")] {
        let mut request = client().post(gateway.url("/api/v1/push"));
        if let Some(value) = authorization {
            request = request.insert_header(("Authorization", value));
        }
        let mut response = request.send_body("data").await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer"
        );
        assert_eq!(response.body().await.unwrap(), "No bearer token provided");
    }
    assert!(upstream.requests().is_empty());
    assert_eq!(
        gateway.metric(r#"cortex_gateway_failed_authentications_total{reason="no_token"}"#),
        4.0
    );
}

#[actix_rt::test]
async fn every_bad_token_is_401_counted_by_reason_and_never_forwarded() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__AUTH__AUDIENCE", "cortex")
        .env("CORTEX_GATEWAY__AUTH__ALGORITHMS", "HS256,HS512")
        .start();
    let good = |extra: serde_json::Value| {
        let mut claims = json!({"tenant_id": "t", "version": 1, "aud": "cortex"});
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "bad_signature",
            token_with(Algorithm::HS256, good(json!({})), b"not-the-secret"),
        ),
        (
            "algorithm",
            token_with(Algorithm::HS384, good(json!({})), SECRET.as_bytes()),
        ),
        // {"alg":"none"} with an empty signature
        (
            "algorithm",
            format!(
                "eyJhbGciOiJub25lIn0.{}.",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(good(json!({})).to_string())
            ),
        ),
        ("expired", token(good(json!({"exp": now() - 3600})))),
        ("not_yet_valid", token(good(json!({"nbf": now() + 3600})))),
        ("audience", token(good(json!({"aud": "loki"})))),
        ("audience", token(json!({"tenant_id": "t"}))),
        ("tenant", token(good(json!({"tenant_id": "a/b"})))),
        ("tenant", token(good(json!({"tenant_id": ".."})))),
        ("tenant", token(good(json!({"tenant_id": "."})))),
        ("tenant", token(good(json!({"tenant_id": ""})))),
        // Cortex reads `a|b` as two tenants: a query across both.
        ("tenant", token(good(json!({"tenant_id": "team-a|team-b"})))),
        ("tenant", token(good(json!({"tenant_id": "x".repeat(151)})))),
        ("tenant", token(good(json!({"tenant_id": 7})))),
        ("tenant", token(json!({"version": 1, "aud": "cortex"}))),
        ("version", token(good(json!({"version": "1"})))),
        ("version", token(good(json!({"version": 1.5})))),
        ("version", token(good(json!({"version": -1})))),
        ("malformed", "not-a-jwt".to_owned()),
        ("malformed", "a.b.c.d".to_owned()),
        ("malformed", "!!!.@@@.###".to_owned()),
    ];
    for (reason, bad) in &cases {
        let series = format!(r#"cortex_gateway_failed_authentications_total{{reason="{reason}"}}"#);
        let before = gateway.metric(&series);
        let mut response = client()
            .get(gateway.url("/prometheus/api/v1/query?query=up"))
            .insert_header(("Authorization", format!("Bearer {bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{reason}");
        assert_eq!(
            response.headers().get("www-authenticate").unwrap(),
            "Bearer"
        );
        let body = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        assert!(body.starts_with("Invalid bearer token"), "{reason}: {body}");
        assert!(
            !body.contains(bad.as_str()),
            "the body must not echo the token"
        );
        assert_eq!(gateway.metric(&series), before + 1.0, "{reason} counted");
    }
    assert!(
        upstream.requests().is_empty(),
        "nothing unauthenticated is forwarded"
    );

    let logs = gateway.logs();
    assert!(logs.contains("authentication failed"), "{logs}");
    assert!(logs.contains("reason=\"expired\""), "{logs}");
    for (_, bad) in &cases {
        for part in bad.split('.').filter(|p| p.len() > 8) {
            assert!(!logs.contains(part), "a token fragment leaked into the log");
        }
    }
    assert!(!logs.contains(SECRET));
}

#[actix_rt::test]
async fn a_valid_token_with_audience_and_expiry_passes() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .env("CORTEX_GATEWAY__AUTH__AUDIENCE", "mimir,cortex")
        .start();
    let token = token(
        json!({"tenant_id": "team-b", "version": 0, "aud": ["x", "cortex"], "exp": now() + 600, "nbf": now() - 10}),
    );
    let response = client()
        .get(gateway.url("/api/v1/labels"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().header("x-scope-orgid"), Some("team-b"));
}

#[actix_rt::test]
async fn custom_tenant_claim_and_extra_headers() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .arg("-gateway.auth.tenant-id-claim=org")
        .arg("-gateway.auth.jwt-extra-headers=X-Grafana-Token")
        .start();
    let token = token(json!({"org": "grafana-team", "tenant_id": "ignored"}));
    let response = client()
        .get(gateway.url("/api/v1/labels"))
        .insert_header(("X-Grafana-Token", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let recorded = upstream.last();
    assert_eq!(recorded.header("x-scope-orgid"), Some("grafana-team"));
    assert!(
        recorded.header("x-grafana-token").is_none(),
        "credential headers are not forwarded"
    );
}

#[actix_rt::test]
async fn two_authorization_headers_are_refused() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url()).start();
    let request = format!(
        "GET /api/v1/labels HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        tenant_token("a"),
        tenant_token("b")
    );
    let response = raw_http(gateway.addr(), request.as_bytes()).unwrap();
    assert_eq!(response.status, 401);
    assert!(upstream.requests().is_empty());
}

#[actix_rt::test]
async fn keys_rotate_from_the_secret_file_without_a_restart() {
    let upstream = Upstream::start("q");
    let path = std::env::temp_dir().join(format!("cortex-gateway-keys-{}", std::process::id()));
    let write = |contents: &str| {
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, contents).unwrap();
        std::fs::rename(&temporary, &path).unwrap();
    };
    write("key-a-0123456789abcdef0123456789\n");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .secret_file(&path)
        .start();
    let claims = json!({"tenant_id": "rotating"});
    let token_a = token_with(
        Algorithm::HS256,
        claims.clone(),
        b"key-a-0123456789abcdef0123456789",
    );
    let token_b = token_with(
        Algorithm::HS256,
        claims,
        b"key-b-0123456789abcdef0123456789",
    );
    let status = |token: String| {
        let url = gateway.url("/api/v1/labels");
        async move {
            client()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let eventually = |token: String, want: u16| {
        let status = &status;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                let got = status(token.clone()).await;
                if got == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "still {got}, want {want}"
                );
                actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(status(token_a.clone()).await, 200);
    assert_eq!(status(token_b.clone()).await, 401);

    // Add the new key first: both are accepted during the rollout.
    write("key-b-0123456789abcdef0123456789\nkey-a-0123456789abcdef0123456789\n");
    gateway.signal("HUP");
    eventually(token_b.clone(), 200).await;
    assert_eq!(status(token_a.clone()).await, 200);

    // Drop the old key: its tokens stop working at once, cache or not.
    write("key-b-0123456789abcdef0123456789\n");
    gateway.signal("HUP");
    eventually(token_a.clone(), 401).await;
    assert_eq!(status(token_b.clone()).await, 200);
    // Both rotations came from the signal, not from the poll that would have
    // noticed the file a few seconds later anyway.
    assert_eq!(
        reload_lines(&gateway, "JWT keys reloaded", "SIGHUP"),
        2,
        "{}",
        gateway.logs()
    );

    // A broken file is refused and the keys in use stay.
    write("\n");
    gateway.signal("HUP");
    wait_for_log(&gateway, "JWT key reload failed");
    assert_eq!(status(token_b).await, 200);
    assert!(gateway.logs().contains("JWT key reload failed"));
    assert!(
        !gateway.logs().contains("key-b-0123456789"),
        "keys never reach the log"
    );
    let _ = std::fs::remove_file(&path);
}

/// `[auth] min_token_version = 2`, and 5 for team-b.
const REVOCATION: &str =
    "[auth]\nmin_token_version = 2\n\n[auth.tenants.team-b]\nmin_token_version = 5\n";

#[test]
fn tokens_below_the_tenants_minimum_version_are_revoked() {
    let upstream = Upstream::start("q");
    let gateway = GatewayBuilder::new(&upstream.url(), &upstream.url())
        .config(REVOCATION)
        .start();
    let status = |claims: serde_json::Value| {
        let request = format!(
            "GET /api/v1/query HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token(claims)
        );
        let response = raw_http(gateway.addr(), request.as_bytes()).unwrap();
        (response.status, response.text())
    };
    let revoked = (401, "Invalid bearer token: revoked".to_owned());
    assert_eq!(
        status(json!({"tenant_id": "team-a", "version": 1})),
        revoked
    );
    assert_eq!(
        status(json!({"tenant_id": "team-a"})),
        revoked,
        "no version counts as 0"
    );
    assert_eq!(status(json!({"tenant_id": "team-a", "version": 2})).0, 200);
    assert_eq!(
        status(json!({"tenant_id": "team-b", "version": 4})),
        revoked
    );
    assert_eq!(status(json!({"tenant_id": "team-b", "version": 5})).0, 200);
    assert_eq!(status(json!({"tenant_id": "team-c", "version": 2})).0, 200);
    assert_eq!(
        upstream.requests().len(),
        3,
        "revoked tokens never reach the upstream"
    );
    assert_eq!(
        gateway.metric(r#"cortex_gateway_failed_authentications_total{reason="revoked"}"#),
        3.0
    );
}

#[test]
fn token_mints_at_the_tenants_minimum_version() {
    let dir =
        std::env::temp_dir().join(format!("cortex-gateway-revocation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, REVOCATION).unwrap();
    for (tenant, version) in [("team-b", 5), ("team-a", 2)] {
        let output = command()
            .args(["token", "--tenant", tenant, "--config"])
            .arg(&config)
            .env("CORTEX_GATEWAY__AUTH__JWT_SECRET", SECRET)
            .env("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", "http://d")
            .env("CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND", "http://q")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let token = String::from_utf8(output.stdout).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            token.trim_end(),
            &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["version"], version, "{tenant}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
