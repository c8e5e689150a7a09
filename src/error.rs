//! The one place where failures become HTTP responses.
//!
//! Status codes are chosen for what the client should do next: Prometheus
//! drops a batch on 4xx (other than 429) and retries on 5xx, so 401 means
//! "this credential is wrong" and anything the gateway cannot decide is 5xx.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::auth::AuthError;
use crate::limits::LimitError;
use crate::proxy::ProxyError;
use crate::routes::RouteError;

/// Any reason a request is not forwarded, or its forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The gateway cannot decide right now; the client should retry.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::Auth(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Route(RouteError::NotCanonical(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Route(RouteError::NotFound) => StatusCode::NOT_FOUND,
            GatewayError::Route(RouteError::MethodNotAllowed(_)) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Proxy(error) => error.status_code(),
            GatewayError::Limit(LimitError::UriTooLong { .. }) => StatusCode::URI_TOO_LONG,
            GatewayError::Limit(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"));
        let body = match self {
            GatewayError::Auth(AuthError::MissingToken) => "No bearer token provided".to_owned(),
            GatewayError::Auth(error) => format!("Invalid bearer token: {error}"),
            GatewayError::Route(RouteError::NotFound) => "404 page not found".to_owned(),
            other => other.to_string(),
        };
        match self {
            GatewayError::Auth(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            GatewayError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("5")));
            }
            GatewayError::Route(RouteError::MethodNotAllowed(_)) => {
                response.insert_header((
                    header::ALLOW,
                    HeaderValue::from_static(crate::routes::ALLOWED_METHODS),
                ));
            }
            _ => {}
        }
        response.body(body)
    }
}
