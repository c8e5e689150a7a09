//! Finding the token in a request.
//!
//! Clients put the JWT where their software lets them: Prometheus
//! `remote_write` sends `Authorization: Bearer …` or basic auth with the token
//! as password, old setups send the bare token, Grafana sends a custom header.

use actix_web::http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use base64::Engine as _;

use super::AuthError;

/// Longest token we look at; real ones are a few hundred bytes. Anything
/// larger is refused before any decoding work is spent on it.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The token as found in a header: borrowed when it stands verbatim in the
/// header, owned when it had to be decoded from basic auth.
pub enum RawToken<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl RawToken<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            RawToken::Borrowed(token) => token,
            RawToken::Owned(token) => token,
        }
    }
}

/// Takes the token from `Authorization`, then from each of `extra_headers`.
///
/// Two `Authorization` headers are refused rather than guessed between: a
/// front proxy and a client disagreeing about identity is an attack signal.
pub fn token_from_headers<'a>(
    headers: &'a HeaderMap,
    extra_headers: &[HeaderName],
) -> Result<RawToken<'a>, AuthError> {
    for name in std::iter::once(&AUTHORIZATION).chain(extra_headers) {
        let mut values = headers.get_all(name);
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(AuthError::Malformed("more than one credential header"));
        }
        let value = value
            .to_str()
            .map_err(|_| AuthError::Malformed("credential header is not ASCII"))?;
        if value.trim().is_empty() {
            continue;
        }
        return token_from_value(value);
    }
    Err(AuthError::MissingToken)
}

/// Reads `Bearer <jwt>`, `Basic base64(user:<jwt>)` or a bare `<jwt>`.
pub fn token_from_value(value: &str) -> Result<RawToken<'_>, AuthError> {
    let value = value.trim();
    if value.len() > MAX_TOKEN_LEN * 2 {
        return Err(AuthError::Malformed("credential too long"));
    }
    let (scheme, rest) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest.trim()),
        // A scheme with nothing after it: `Bearer ` once trimmed.
        None if value.eq_ignore_ascii_case("bearer") || value.eq_ignore_ascii_case("basic") => {
            return Err(AuthError::MissingToken)
        }
        None => ("", value),
    };
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        RawToken::Borrowed(rest)
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthError::Malformed("basic credentials are not base64"))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| AuthError::Malformed("basic credentials are not UTF-8"))?;
        let Some((_user, password)) = decoded.split_once(':') else {
            return Err(AuthError::Malformed("basic credentials lack a password"));
        };
        RawToken::Owned(password.to_owned())
    } else if scheme.is_empty() {
        RawToken::Borrowed(rest)
    } else {
        return Err(AuthError::Malformed("unsupported authorization scheme"));
    };
    match token.as_str().len() {
        0 => Err(AuthError::MissingToken),
        len if len > MAX_TOKEN_LEN => Err(AuthError::Malformed("token too long")),
        _ => Ok(token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn token(value: &str) -> Result<String, AuthError> {
        token_from_value(value).map(|t| t.as_str().to_owned())
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn reads_every_supported_form() {
        assert_eq!(token("Bearer a.b.c").unwrap(), "a.b.c");
        assert_eq!(token("bearer   a.b.c ").unwrap(), "a.b.c");
        assert_eq!(token("BEARER a.b.c").unwrap(), "a.b.c");
        assert_eq!(token("a.b.c").unwrap(), "a.b.c");
        assert_eq!(token(&basic("prometheus:a.b.c")).unwrap(), "a.b.c");
        assert_eq!(token(&basic(":a.b.c")).unwrap(), "a.b.c");
        assert_eq!(token(&basic("user:pa:ss")).unwrap(), "pa:ss");
    }

    #[test]
    fn refuses_what_is_not_a_token() {
        assert!(matches!(token("Bearer "), Err(AuthError::MissingToken)));
        assert!(matches!(
            token(&basic("user:")),
            Err(AuthError::MissingToken)
        ));
        assert!(matches!(token("Basic !!!"), Err(AuthError::Malformed(_))));
        assert!(matches!(
            token(&basic("no-colon")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(token("Digest abc"), Err(AuthError::Malformed(_))));
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(token(&huge), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn looks_in_extra_headers_after_authorization() {
        let extra = [HeaderName::from_static("x-auth-token")];
        let mut headers = HeaderMap::new();
        assert!(matches!(
            token_from_headers(&headers, &extra),
            Err(AuthError::MissingToken)
        ));
        headers.insert(
            HeaderName::from_static("x-auth-token"),
            HeaderValue::from_static("Bearer x.y.z"),
        );
        assert_eq!(
            token_from_headers(&headers, &extra).unwrap().as_str(),
            "x.y.z"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(
            token_from_headers(&headers, &extra).unwrap().as_str(),
            "a.b.c"
        );
        headers.append(AUTHORIZATION, HeaderValue::from_static("Bearer d.e.f"));
        assert!(matches!(
            token_from_headers(&headers, &extra),
            Err(AuthError::Malformed(_))
        ));
    }
}
