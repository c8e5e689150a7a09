//! `cortex-gateway demo`: the gateway in front of a built-in echo upstream,
//! so a newcomer without Cortex sees in one command what reaches the backend
//! (the tenant set from the token, the client's own tenant header dropped,
//! no `Authorization`).

use std::io::{self, Read};
use std::net::TcpListener;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures_util::StreamExt;

use crate::auth::{mint_token, TokenRequest};
use crate::config::{ConfigError, Overrides, Settings};
use crate::server::Gateway;

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Token(#[from] crate::auth::MintError),
}

/// The tenant of the token the demo prints.
pub const DEMO_TENANT: &str = "demo-tenant";

/// Answers with what the upstream received, as JSON.
async fn echo(req: HttpRequest, mut body: web::Payload) -> HttpResponse {
    let mut bytes = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        bytes += chunk.len();
    }
    let header = |name: &str| {
        req.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    HttpResponse::Ok().json(serde_json::json!({
        "upstream": "cortex-gateway demo echo",
        "method": req.method().as_str(),
        "path": req.uri().to_string(),
        "x_scope_orgid": header("x-scope-orgid"),
        "authorization_forwarded": req.headers().contains_key("authorization"),
        "x_forwarded_for": header("x-forwarded-for"),
        "body_bytes": bytes,
    }))
}

fn random_secret() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Starts the echo upstream and the gateway on `127.0.0.1:port`, prints a
/// token and a ready `curl` line, and serves until SIGINT/SIGTERM.
pub fn run(port: u16) -> Result<(), DemoError> {
    let upstream_listener = TcpListener::bind("127.0.0.1:0")?;
    let upstream = format!("http://{}", upstream_listener.local_addr()?);
    let env = [
        ("CORTEX_GATEWAY__UPSTREAMS__DISTRIBUTOR", upstream.clone()),
        (
            "CORTEX_GATEWAY__UPSTREAMS__QUERY_FRONTEND",
            upstream.clone(),
        ),
        ("CORTEX_GATEWAY__AUTH__JWT_SECRET", random_secret()?),
        (
            "CORTEX_GATEWAY__SERVER__HTTP_LISTEN_ADDRESS",
            "127.0.0.1".to_owned(),
        ),
        ("CORTEX_GATEWAY__SERVER__HTTP_LISTEN_PORT", port.to_string()),
        (
            "CORTEX_GATEWAY__SERVER__GRACEFUL_SHUTDOWN_TIMEOUT",
            "1s".to_owned(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let settings = Settings::load(None, env, &Overrides::default())?;
    let token = mint_token(
        &settings.auth,
        &TokenRequest {
            expires_in: Some(std::time::Duration::from_secs(3600)),
            ..TokenRequest::new(DEMO_TENANT)
        },
    )?;
    let metrics = crate::metrics::Metrics::new(settings.metrics.per_tenant);
    crate::telemetry::init(
        &settings.log,
        &settings.tracing,
        crate::telemetry::EarlyRejections::new(&metrics),
    )
    .map_err(io::Error::other)?;
    let gateway = Gateway::new(settings, metrics, false)?;

    println!(
        "cortex-gateway demo: gateway on http://127.0.0.1:{port}, echo upstream on {upstream}"
    );
    println!(
        "token for tenant {DEMO_TENANT} (valid 1 h, signed with a random secret for this run):"
    );
    println!("{token}");
    println!(
        "try it (the echo shows what the upstream received; the spoofed tenant header is dropped):"
    );
    println!(
        "curl -sS -H 'Authorization: Bearer {token}' -H 'X-Scope-OrgID: someone-else' http://127.0.0.1:{port}/api/v1/query?query=up"
    );
    println!(
        "without a token the gateway answers 401: curl -i http://127.0.0.1:{port}/api/v1/query"
    );
    println!("stop with Ctrl-C");

    actix_web::rt::System::new().block_on(async move {
        let echo_server = HttpServer::new(|| App::new().default_service(web::to(echo)))
            .workers(1)
            .disable_signals()
            .listen(upstream_listener)?
            .run();
        let echo_handle = echo_server.handle();
        actix_web::rt::spawn(echo_server);
        let served = gateway.serve().await;
        echo_handle.stop(true).await;
        served
    })?;
    Ok(())
}
