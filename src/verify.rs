//! `cortex-gateway verify TOKEN`: the first thing an operator runs when a
//! client gets 401. The token is checked against the configuration exactly
//! as a request's would be (JWKS and OIDC sources are fetched first), and
//! the report says what the gateway would do: the tenant, version, expiry,
//! scopes and claims, and the key that verified it; or the reason it is
//! refused, the same text the client got. The token itself is never printed.

use std::io::Read;
use std::time::Duration;

use crate::auth::jwks::Fetcher;
use crate::auth::{AuthError, Authenticator, Verification};
use crate::config::TokenSettings;

/// How long JWKS and OIDC sources get for their first fetch.
const FIRST_FETCH: Duration = Duration::from_secs(15);

/// Why `verify` could not give a verdict at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read the token from standard input: {0}")]
    Stdin(std::io::Error),
    #[error("{0}")]
    Setup(String),
    #[error("Invalid bearer token: {0} (reason {reason})", reason = .0.reason())]
    Refused(AuthError),
}

/// The token argument: the token, or `-` for standard input.
pub fn read_token(argument: &str) -> Result<String, VerifyError> {
    if argument != "-" {
        return Ok(argument.trim().to_owned());
    }
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .map_err(VerifyError::Stdin)?;
    Ok(token.trim().trim_start_matches("Bearer ").trim().to_owned())
}

/// Verifies `token` under `settings` and returns the report to print.
pub fn run(settings: &TokenSettings, token: &str) -> Result<String, VerifyError> {
    let fetcher = Fetcher::new(&settings.proxy)
        .map_err(|e| VerifyError::Setup(format!("{}: {}", e.key, e.message)))?;
    let authenticator = Authenticator::connected(&settings.auth, fetcher, None)
        .map_err(|e| VerifyError::Setup(e.to_string()))?;
    let verification = actix_rt::System::new().block_on(async {
        authenticator.start();
        let deadline = std::time::Instant::now() + FIRST_FETCH;
        while authenticator.pending() && std::time::Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        authenticator.inspect_fetching(token).await
    });
    verification.map(report).map_err(VerifyError::Refused)
}

/// What an operator wants to see of an accepted token.
fn report(found: Verification) -> String {
    let principal = &found.principal;
    let expires = match principal.expires_at {
        Some(exp) => {
            let now = jsonwebtoken::get_current_timestamp();
            format!("{exp} (in {}s)", exp.saturating_sub(now))
        }
        None => "never (no exp claim)".to_owned(),
    };
    let scopes = match &principal.scopes {
        Some(scopes) if scopes.is_empty() => "none (empty scope claim)".to_owned(),
        Some(scopes) => scopes.join(" "),
        None => "all routes (no scope claim)".to_owned(),
    };
    let claims = serde_json::to_string_pretty(&serde_json::Value::Object(found.claims.0))
        .unwrap_or_default();
    format!(
        "valid\ntenant: {}\nversion: {}\nexpires: {expires}\nscopes: {scopes}\nalgorithm: {:?}\nkey: {}\nclaims: {claims}\n",
        principal.tenant.as_str(),
        principal.version,
        found.algorithm,
        found.key_origin,
    )
}
