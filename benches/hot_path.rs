//! Micro-benchmarks of the per-request work that is ours (not actix's or
//! hyper's): finding the token, verifying it, routing and checking the path.
//!
//! Run with `cargo bench --bench hot_path`. Compare results as ratios within
//! one run; absolute numbers depend on the (shared) machine.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use base64::Engine as _;
use cortex_gateway::auth::extract::token_from_value;
use cortex_gateway::auth::{mint_token, Authenticator, TokenRequest};
use cortex_gateway::config::AuthSettings;
use cortex_gateway::metrics::route_label;
use cortex_gateway::routes::{check_canonical, routes, RouteTable};
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use std::hint::black_box;

fn settings() -> AuthSettings {
    AuthSettings::with_secret("benchmark-secret-0123456789abcdef0123")
}

fn token() -> String {
    mint_token(
        &settings(),
        &TokenRequest {
            tenant: "team-a".to_owned(),
            version: 1,
            audience: None,
            expires_in: Some(Duration::from_secs(86_400)),
            algorithm: Algorithm::HS256,
            scope: None,
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
        b.iter(|| authenticator.authenticate(black_box(&headers)).unwrap())
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

criterion_group!(benches, auth, paths);
criterion_main!(benches);
