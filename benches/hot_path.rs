//! Micro-benchmarks of the per-request work that is ours (not actix's or
//! hyper's): finding the token, verifying it, routing and checking the path.
//!
//! Run with `cargo bench --bench hot_path`. Compare results as ratios within
//! one run; absolute numbers depend on the (shared) machine.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use base64::Engine as _;
use cortex_gateway::auth::extract::token_from_value;
use cortex_gateway::auth::{mint_token, Authenticator, SigningKey, TokenRequest};
use cortex_gateway::config::AuthSettings;
use cortex_gateway::metrics::route_label;
use cortex_gateway::routes::{check_canonical, routes, RouteTable};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn settings() -> AuthSettings {
    AuthSettings::with_secret("benchmark-secret-0123456789abcdef0123")
}

fn token() -> String {
    mint_token(
        &settings(),
        &TokenRequest {
            expires_in: Some(Duration::from_secs(86_400)),
            ..TokenRequest::new("team-a")
        },
    )
    .unwrap()
}

fn auth(c: &mut Criterion) {
    let authenticator = Authenticator::new(&settings()).unwrap();
    let token = token();
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{token}"))
    );

    c.bench_function("authenticate bearer header (HS256)", |b| {
        b.iter(|| {
            authenticator
                .authenticate_with_known_keys(black_box(&headers))
                .unwrap()
        })
    });
    c.bench_function("verify token (HS256)", |b| {
        b.iter(|| authenticator.verify(black_box(&token)).unwrap())
    });
    c.bench_function("extract bearer", |b| {
        let value = format!("Bearer {token}");
        b.iter(|| token_from_value(black_box(&value)).map(|t| t.as_str().len()))
    });
    c.bench_function("extract basic", |b| {
        b.iter(|| token_from_value(black_box(&basic)).map(|t| t.as_str().len()))
    });
    c.bench_function("reject forged token", |b| {
        let forged = format!("{}x", &token[..token.len() - 1]);
        b.iter(|| authenticator.verify(black_box(&forged)).is_err())
    });
}

/// Verification with each kind of key, cold (every signature checked, as
/// for a token seen the first time) and cached (the same token again, as
/// for every later remote-write batch): a public-key check costs far more
/// than an HMAC, so the cache matters most for IdP tokens.
fn key_types(c: &mut Criterion) {
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");
    for (name, public, private) in [
        ("HS256", None, None),
        ("RS256", Some("rsa.pub.pem"), Some("rsa.key.pem")),
        ("ES256", Some("ec256.pub.pem"), Some("ec256.key.pem")),
        ("EdDSA", Some("ed25519.pub.pem"), Some("ed25519.key.pem")),
    ] {
        let mut auth = settings();
        let mut request = TokenRequest {
            expires_in: Some(Duration::from_secs(86_400)),
            ..TokenRequest::new("team-a")
        };
        if let (Some(public), Some(private)) = (public, private) {
            auth.public_keys = vec![format!("{vectors}/{public}").into()];
            auth.algorithms
                .extend(cortex_gateway::auth::keys::PUBLIC_KEY_ALGORITHMS);
            request.key = SigningKey::PrivateKeyFile(format!("{vectors}/{private}").into());
        }
        let token = mint_token(&auth, &request).unwrap();
        let authenticator = Authenticator::new(&auth).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        c.bench_function(&format!("verify cold ({name})"), |b| {
            b.iter(|| authenticator.verify(black_box(&token)).unwrap())
        });
        c.bench_function(&format!("authenticate cached ({name})"), |b| {
            b.iter(|| {
                authenticator
                    .authenticate_with_known_keys(black_box(&headers))
                    .unwrap()
            })
        });
    }
}

fn paths(c: &mut Criterion) {
    // The default table with every optional upstream configured.
    let table = RouteTable::new(routes(&[], |_| true), |route| route.prefix.len());
    for path in [
        "/api/v1/push",
        "/prometheus/api/v1/query_range",
        "/alertmanager/api/v2/alerts",
        "/not/routed",
    ] {
        c.bench_function(&format!("route {path}"), |b| {
            b.iter(|| table.resolve(black_box(path)).map(|(_, target)| *target))
        });
    }
    c.bench_function("check canonical path", |b| {
        b.iter(|| check_canonical(black_box("/prometheus/api/v1/query_range")))
    });
    c.bench_function("route label", |b| {
        b.iter(|| route_label(black_box("/prometheus/{tail}*")))
    });
}

criterion_group!(benches, auth, key_types, paths);
criterion_main!(benches);
