//! The limits a request is admitted under: the size of its head and of
//! its body.
//!
//! The gateway enforces `server.max_request_header_size` and
//! `server.max_request_headers` itself, before authentication, so that both
//! are configurable, answered with a reason and counted. Below the app,
//! actix-http has fixed ceilings (a 128 KiB head, 96 header fields) and the
//! read timeout; those refusals are counted by
//! [`crate::telemetry::EarlyRejections`]. The body limit is checked here when
//! the client declares a length, and as the body streams in the proxy.
//! Per-tenant rate limits (issue 15) belong beside these.

use actix_web::dev::RequestHead;
use actix_web::http::header::{self, HeaderMap};

/// Why a request was not admitted: 414 for the request line, 431 for the
/// header fields, 413 for the body.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("request body exceeds server.max_request_body_size ({limit} bytes)")]
    BodyTooLarge { limit: u64 },
    #[error("request line is larger than server.max_request_header_size ({limit} bytes)")]
    UriTooLong { limit: usize },
    #[error("request head is larger than server.max_request_header_size ({limit} bytes)")]
    HeaderTooLarge { limit: usize },
    #[error("request has more header fields than server.max_request_headers ({limit})")]
    TooManyHeaders { limit: usize },
}

/// The configured limits.
#[derive(Clone)]
pub struct Limits {
    max_size: usize,
    max_headers: usize,
    max_body: u64,
}

impl Limits {
    /// `server.max_request_header_size`, `server.max_request_headers`,
    /// `server.max_request_body_size`.
    pub fn new(max_size: usize, max_headers: usize, max_body: u64) -> Self {
        Self {
            max_size,
            max_headers,
            max_body,
        }
    }

    /// The largest body forwarded; the proxy cuts a streamed body there.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Refuses a body whose declared `Content-Length` is over the limit,
    /// before anything is forwarded. A chunked body is counted as it
    /// streams.
    pub fn admit_body(&self, headers: &HeaderMap) -> Result<(), LimitError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        match declared {
            Some(length)
                if length > self.max_body && !headers.contains_key(header::TRANSFER_ENCODING) =>
            {
                Err(LimitError::BodyTooLarge {
                    limit: self.max_body,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks the head as a client sent it: the request line plus every
    /// header field, each counted as `name: value` and its line end, the
    /// way Go's `MaxHeaderBytes` counts.
    pub fn check(&self, head: &RequestHead) -> Result<(), LimitError> {
        if head.headers().len() > self.max_headers {
            return Err(LimitError::TooManyHeaders {
                limit: self.max_headers,
            });
        }
        let uri = &head.uri;
        // "METHOD SP target SP HTTP/1.1 CRLF" and the blank line at the end.
        let mut size = head.method.as_str().len()
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len())
            + " HTTP/1.1\r\n\r\n".len()
            + 1;
        if size > self.max_size {
            return Err(LimitError::UriTooLong {
                limit: self.max_size,
            });
        }
        for (name, value) in head.headers().iter() {
            size += name.as_str().len() + value.len() + ": \r\n".len();
        }
        if size > self.max_size {
            return Err(LimitError::HeaderTooLarge {
                limit: self.max_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn limits(max_size: usize, max_headers: usize) -> Limits {
        Limits {
            max_size,
            max_headers,
            max_body: 1024,
        }
    }

    #[test]
    fn the_head_size_counts_the_request_line_and_every_field() {
        let request = TestRequest::get()
            .uri("/api/v1/query?query=up")
            .insert_header(("x-one", "12345"))
            .to_srv_request();
        // "GET /api/v1/query?query=up HTTP/1.1\r\n", "x-one: 12345\r\n", "\r\n"
        let exact = 37 + 14 + 2;
        assert!(limits(exact, 8).check(request.head()).is_ok());
        assert!(matches!(
            limits(exact - 1, 8).check(request.head()),
            Err(LimitError::HeaderTooLarge { limit }) if limit == exact - 1
        ));
    }

    #[test]
    fn repeated_fields_count_one_each() {
        let mut request = TestRequest::get();
        for value in ["a", "b", "c"] {
            request = request.append_header(("x-same", value));
        }
        let request = request.to_srv_request();
        assert!(limits(1024, 3).check(request.head()).is_ok());
        assert!(matches!(
            limits(1024, 2).check(request.head()),
            Err(LimitError::TooManyHeaders { limit: 2 })
        ));
    }

    #[test]
    fn a_declared_body_over_the_limit_is_refused_before_forwarding() {
        let limits = limits(1024, 8);
        let declared = |length: &str| {
            TestRequest::post()
                .insert_header(("content-length", length))
                .to_srv_request()
        };
        assert!(limits.admit_body(declared("1024").headers()).is_ok());
        assert!(matches!(
            limits.admit_body(declared("1025").headers()),
            Err(LimitError::BodyTooLarge { limit: 1024 })
        ));
        assert!(limits
            .admit_body(TestRequest::post().to_srv_request().headers())
            .is_ok());
    }
}
