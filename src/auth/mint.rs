//! Minting tokens with the configured secret, for `cortex-gateway token`:
//! operators get a token the gateway will accept without a separate tool.

use std::path::{Path, PathBuf};
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
    /// `None`: HS256 with the configured secret, or the algorithm the
    /// private key's type implies.
    pub algorithm: Option<Algorithm>,
    /// The `scope` claim (space-separated words); `None` for full access.
    pub scope: Option<String>,
    /// The header's `kid`, naming the key an identity provider would
    /// publish it under.
    pub kid: Option<String>,
    pub key: SigningKey,
}

impl TokenRequest {
    /// A token for `tenant` at version 1, without `exp`, `aud`, scope or
    /// `kid`, signed HS256 with the configured secret.
    pub fn new(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            version: 1,
            audience: None,
            expires_in: None,
            algorithm: None,
            scope: None,
            kid: None,
            key: SigningKey::ConfiguredSecret,
        }
    }
}

/// What a new token is signed with.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// The first configured HMAC secret.
    ConfiguredSecret,
    /// A private key PEM file (RSA, EC or Ed25519, PKCS#8 or PKCS#1), to try
    /// the public-key path as an identity provider would sign.
    PrivateKeyFile(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("--tenant: {0}")]
    Tenant(&'static str),
    #[error("--algorithm: {0:?} is not in auth.algorithms, so the gateway would refuse the token")]
    Algorithm(Algorithm),
    #[error("no HMAC secret is configured: give --key-file to sign with a private key")]
    NoSecret,
    #[error("--key-file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// Signs a token for `request` that the gateway configured with `auth` accepts.
pub fn mint_token(auth: &AuthSettings, request: &TokenRequest) -> Result<String, MintError> {
    validate_tenant_id(&request.tenant).map_err(MintError::Tenant)?;
    let (key, algorithm) = match &request.key {
        SigningKey::ConfiguredSecret => {
            if auth.signing_secret().is_empty() {
                return Err(MintError::NoSecret);
            }
            (
                EncodingKey::from_secret(auth.signing_secret())?,
                request.algorithm.unwrap_or(Algorithm::HS256),
            )
        }
        SigningKey::PrivateKeyFile(path) => private_key(path, request.algorithm)?,
    };
    if !auth.algorithms.contains(&algorithm) {
        return Err(MintError::Algorithm(algorithm));
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
    let mut header = Header::new(algorithm);
    header.kid = request.kid.clone();
    let token = jsonwebtoken::encode(&header, &Value::Object(claims), &key)?;
    Ok(token)
}

/// The private key in `path` and the algorithm to sign with: `algorithm`
/// when given, else RS256, ES256 or EdDSA by the key's type.
fn private_key(
    path: &Path,
    algorithm: Option<Algorithm>,
) -> Result<(EncodingKey, Algorithm), MintError> {
    let failed = |message: String| MintError::KeyFile {
        path: path.to_owned(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let by_type = [
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
    ];
    let (implied, key) = by_type
        .into_iter()
        .find_map(|(implied, key)| key.ok().map(|key| (implied, key)))
        .ok_or_else(|| failed("not an RSA, EC or Ed25519 private key in PEM form".to_owned()))?;
    let algorithm = algorithm.unwrap_or(implied);
    if algorithm.family() != implied.family() {
        return Err(failed(format!(
            "a {implied:?}-family key cannot sign {algorithm:?}"
        )));
    }
    Ok((key, algorithm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;

    fn settings() -> AuthSettings {
        let mut auth = AuthSettings::with_secret("mint-test-secret");
        auth.tenant_claim = "org".to_owned();
        auth.audience = vec!["cortex".to_owned()];
        auth.algorithms = vec![Algorithm::HS256, Algorithm::HS512];
        auth.leeway = Duration::from_secs(0);
        auth
    }

    fn request() -> TokenRequest {
        TokenRequest {
            tenant: "team-a".to_owned(),
            version: 2,
            audience: Some("cortex".to_owned()),
            expires_in: Some(Duration::from_secs(3600)),
            algorithm: Some(Algorithm::HS512),
            scope: Some("read rules".to_owned()),
            kid: None,
            key: SigningKey::ConfiguredSecret,
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
        bad_alg.algorithm = Some(Algorithm::HS384);
        assert!(matches!(
            mint_token(&auth, &bad_alg),
            Err(MintError::Algorithm(_))
        ));
    }
}
