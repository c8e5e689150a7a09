//! Minting tokens with the configured secret, for `cortex-gateway token`:
//! operators get a token the gateway will accept without a separate tool.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

use super::claims::validate_tenant_id;
use super::AuthSettings;

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub tenant: String,
    pub version: u64,
    pub audience: Option<String>,
    /// `None` mints a token without `exp`.
    pub expires_in: Option<Duration>,
    pub algorithm: Algorithm,
    /// The `scope` claim (space-separated words); `None` for full access.
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("--tenant: {0}")]
    Tenant(&'static str),
    #[error("--algorithm: {0:?} is not in auth.algorithms, so the gateway would refuse the token")]
    Algorithm(Algorithm),
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Signs a token for `request` that the gateway configured with `auth` accepts.
pub fn mint_token(auth: &AuthSettings, request: &TokenRequest) -> Result<String, MintError> {
    validate_tenant_id(&request.tenant).map_err(MintError::Tenant)?;
    if !auth.algorithms.contains(&request.algorithm) {
        return Err(MintError::Algorithm(request.algorithm));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = Map::new();
    claims.insert(auth.tenant_claim.clone(), json!(request.tenant));
    claims.insert("version".to_owned(), json!(request.version));
    claims.insert("iat".to_owned(), json!(now));
    if let Some(expires_in) = request.expires_in {
        claims.insert("exp".to_owned(), json!(now + expires_in.as_secs()));
    }
    if let Some(audience) = &request.audience {
        claims.insert("aud".to_owned(), json!(audience));
    }
    if let Some(scope) = &request.scope {
        claims.insert("scope".to_owned(), json!(scope));
    }
    let token = jsonwebtoken::encode(
        &Header::new(request.algorithm),
        &Value::Object(claims),
        &EncodingKey::from_secret(auth.signing_secret())?,
    )?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: None,
            secrets: vec![crate::settings::Secret::new(b"mint-test-secret".to_vec())],
            tenant_claim: "org".to_owned(),
            audience: vec!["cortex".to_owned()],
            algorithms: vec![Algorithm::HS256, Algorithm::HS512],
            leeway: Duration::from_secs(0),
            extra_headers: Vec::new(),
            require_scope: false,
            min_token_version: 0,
            tenants: Default::default(),
            jwt_secret_file: None,
        }
    }

    fn request() -> TokenRequest {
        TokenRequest {
            tenant: "team-a".to_owned(),
            version: 2,
            audience: Some("cortex".to_owned()),
            expires_in: Some(Duration::from_secs(3600)),
            algorithm: Algorithm::HS512,
            scope: Some("read rules".to_owned()),
        }
    }

    #[test]
    fn minted_tokens_verify() {
        let auth = settings();
        let token = mint_token(&auth, &request()).unwrap();
        let tenant = Authenticator::new(&auth).unwrap().verify(&token).unwrap();
        assert_eq!(tenant.as_str(), "team-a");
    }

    #[test]
    fn refuses_what_the_gateway_would_refuse() {
        let auth = settings();
        let mut bad_tenant = request();
        bad_tenant.tenant = "a/b".to_owned();
        assert!(matches!(
            mint_token(&auth, &bad_tenant),
            Err(MintError::Tenant(_))
        ));
        let mut bad_alg = request();
        bad_alg.algorithm = Algorithm::HS384;
        assert!(matches!(
            mint_token(&auth, &bad_alg),
            Err(MintError::Algorithm(_))
        ));
    }
}
