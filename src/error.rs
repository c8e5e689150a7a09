//! The one place where refusals and failures become HTTP responses, and
//! where every refusal is counted and logged ([`observe_refusal`]).
//!
//! Status codes are chosen for what the client should do next: Prometheus
//! drops a batch on 4xx (other than 429) and retries on 5xx, so 401 means
//! "this credential is wrong" and anything the gateway cannot decide is 5xx.
//! The modules that refuse know nothing of HTTP responses: each returns its
//! own error, and this module maps it.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

use crate::auth::AuthError;
use crate::authz::AuthzError;
use crate::limits::LimitError;
use crate::metrics::Metrics;
use crate::proxy::ProxyError;
use crate::ratelimit::RateLimitError;
use crate::routes::{RouteError, ALLOWED_METHODS};

/// Any reason a request is not forwarded, or its forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            // Retry later, not "your token is bad": Prometheus drops a
            // batch on 401 and retries it on 503.
            GatewayError::Auth(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Auth(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Authz(_) => StatusCode::FORBIDDEN,
            GatewayError::Route(RouteError::NotCanonical(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Route(RouteError::NotFound) => StatusCode::NOT_FOUND,
            GatewayError::Route(RouteError::MethodNotAllowed(_)) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Proxy(ProxyError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Proxy(ProxyError::ClientBody) => StatusCode::BAD_REQUEST,
            GatewayError::Proxy(ProxyError::BodyTooLarge { .. })
            | GatewayError::Limit(LimitError::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Proxy(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Limit(LimitError::UriTooLong { .. }) => StatusCode::URI_TOO_LONG,
            GatewayError::Limit(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::RateLimit(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"));
        let body = match self {
            GatewayError::Auth(AuthError::MissingToken) => "No bearer token provided".to_owned(),
            GatewayError::Auth(error) => format!("Invalid bearer token: {error}"),
            GatewayError::Route(RouteError::NotFound) => "404 page not found".to_owned(),
            GatewayError::Authz(error) => format!("Forbidden: {error}"),
            GatewayError::RateLimit(error) => format!("Too Many Requests: {error}"),
            other => other.to_string(),
        };
        match self {
            GatewayError::Auth(AuthError::KeysUnavailable) => {
                response.insert_header((
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::auth::KEYS_RETRY_AFTER.as_secs()),
                ));
            }
            GatewayError::Auth(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            GatewayError::Route(RouteError::MethodNotAllowed(_)) => {
                response.insert_header((header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS)));
            }
            GatewayError::RateLimit(error) => {
                response.insert_header((header::RETRY_AFTER, error.retry_after_secs()));
            }
            _ => {}
        }
        response.body(body)
    }
}

/// Counts and logs a refusal, once, where it is answered. Refusals anyone
/// can trigger before authentication are worth a debug line at most (the
/// counter is the signal); a failed authentication is logged at info with
/// its reason and the client's address, never the token. Upstream
/// failures are counted and logged by the proxy, which knows the upstream.
pub fn observe_refusal(refusal: &GatewayError, req: &HttpRequest, metrics: &Metrics) {
    match refusal {
        GatewayError::Auth(error) => {
            metrics.auth.failed(error.reason());
            tracing::info!(
                reason = error.reason(),
                error = %error,
                client = req.peer_addr().map(|addr| addr.ip().to_string()).unwrap_or_default(),
                path = req.path(),
                "authentication failed"
            );
        }
        GatewayError::Limit(error) => {
            let limit = match error {
                LimitError::BodyTooLarge { .. } => Metrics::BODY_TOO_LARGE,
                LimitError::HeaderTooLarge { .. } | LimitError::UriTooLong { .. } => {
                    Metrics::HEADER_TOO_LARGE
                }
                LimitError::TooManyHeaders { .. } => Metrics::TOO_MANY_HEADERS,
            };
            metrics.rejected_counter(limit).inc();
            tracing::debug!(%error, path = req.path(), "request refused");
        }
        GatewayError::Proxy(error @ ProxyError::BodyTooLarge { .. }) => {
            metrics.rejected_counter(Metrics::BODY_TOO_LARGE).inc();
            tracing::info!(%error, path = req.path(), "request refused");
        }
        GatewayError::Authz(error) => {
            tracing::info!(%error, path = req.path(), "request forbidden");
        }
        GatewayError::RateLimit(error) => {
            metrics.rate_limits.limited(error.tenant(), error.limit());
            tracing::debug!(%error, path = req.path(), "request limited");
        }
        GatewayError::Route(_) | GatewayError::Proxy(_) => {}
    }
}
