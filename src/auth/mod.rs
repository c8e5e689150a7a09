//! Who is calling: the token is found ([`extract`]), verified (signature,
//! algorithm, `exp`/`nbf`/`aud`), and its claims checked ([`claims`]) before
//! a request may reach any upstream.

mod cache;
pub mod claims;
pub mod extract;
mod mint;

use std::collections::HashSet;

use std::future::{ready, Ready};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};

use crate::config::{AuthSettings, ConfigError};
use crate::error::GatewayError;
use crate::metrics::AuthMetrics;
pub use mint::{mint_token, MintError, TokenRequest};

/// Why a request was refused. The variant decides the `reason` label of
/// `cortex_gateway_failed_authentications_total` and the short text after
/// `Invalid bearer token`; none of them ever carries the token itself.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token provided")]
    MissingToken,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("bad signature")]
    BadSignature,
    #[error("algorithm not allowed")]
    Algorithm,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("audience not accepted")]
    Audience,
    #[error("invalid tenant: {0}")]
    InvalidTenant(&'static str),
    #[error("version claim must be a non-negative integer")]
    InvalidVersion,
}

impl AuthError {
    /// The metric label: a small fixed set, so failures never create series
    /// from attacker-chosen text. `no_token` is the Go gateway's label.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "no_token",
            AuthError::Malformed(_) => "malformed",
            AuthError::BadSignature => "bad_signature",
            AuthError::Algorithm => "algorithm",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::Audience => "audience",
            AuthError::InvalidTenant(_) => "tenant",
            AuthError::InvalidVersion => "version",
        }
    }

    /// Every reason label, so each series exists (at 0) from start-up.
    pub const REASONS: [&'static str; 9] = [
        "no_token",
        "malformed",
        "bad_signature",
        "algorithm",
        "expired",
        "not_yet_valid",
        "audience",
        "tenant",
        "version",
    ];
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm => AuthError::Algorithm,
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::Audience,
            ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::Audience,
            ErrorKind::InvalidClaimFormat(_) => {
                AuthError::Malformed("registered claim has the wrong type")
            }
            ErrorKind::Base64(_) => AuthError::Malformed("not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed("not a JSON object"),
            _ => AuthError::Malformed("not a JWT"),
        }
    }
}

/// An authenticated tenant, ready to be sent as `X-Scope-OrgID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(HeaderValue);

impl Tenant {
    pub fn as_str(&self) -> &str {
        // Tenant ids are checked to be visible ASCII before construction.
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Key set ids start at 1: 0 is the id of the empty per-thread cache.
static NEXT_KEY_SET_ID: AtomicU64 = AtomicU64::new(1);

/// The auth extractor: a handler that takes a `Tenant` argument only runs for
/// requests with a valid token. Failures are logged (reason and client
/// address, never the token) and counted here, in one place.
impl FromRequest for Tenant {
    type Error = GatewayError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(authenticator) = req.app_data::<web::Data<Authenticator>>() else {
            // A wiring mistake, not the client's: never answer 401 for it.
            return ready(Err(GatewayError::Unavailable(
                "authenticator not configured",
            )));
        };
        let outcome = authenticator.authenticate(req.headers());
        if let Err(error) = &outcome {
            tracing::info!(
                reason = error.reason(),
                error = %error,
                client = ?req.peer_addr().map(|addr| addr.ip()),
                path = req.path(),
                "authentication failed"
            );
        }
        ready(outcome.map_err(GatewayError::from))
    }
}

/// Verifies tokens against the configured secret and claim rules. Built once
/// at start-up and shared read-only by every worker.
pub struct Authenticator {
    keys: RwLock<Arc<KeySet>>,
    /// The id of the key set in `keys`, readable without the lock: a cache
    /// hit (nearly every request) needs only the id, not the keys.
    key_set_id: AtomicU64,
    /// The secret file and the modification time of the keys in use.
    secret_file: Option<(PathBuf, Mutex<Option<SystemTime>>)>,
    validation: Validation,
    tenant_claim: String,
    extra_headers: Vec<HeaderName>,
    metrics: Option<AuthMetrics>,
}

/// The keys accepted at one time. A new set (after a reload) gets a new id,
/// so tokens verified with the old keys are not served from the cache.
struct KeySet {
    id: u64,
    keys: Vec<DecodingKey>,
}

impl KeySet {
    fn new(secrets: &[Vec<u8>]) -> Result<Self, ConfigError> {
        let keys = secrets
            .iter()
            .map(|secret| {
                DecodingKey::from_secret(secret).map_err(|_| ConfigError::Invalid {
                    key: "auth.jwt_secret".to_owned(),
                    message: "is not usable as an HMAC key".to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            id: NEXT_KEY_SET_ID.fetch_add(1, Ordering::Relaxed),
            keys,
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Authenticator {
    /// An authenticator that counts its outcomes in `metrics`.
    pub fn with_metrics(
        settings: &AuthSettings,
        metrics: AuthMetrics,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            metrics: Some(metrics),
            ..Self::new(settings)?
        })
    }

    /// An authenticator without metrics, for commands and tests.
    pub fn new(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let mut validation = Validation::new(settings.algorithms[0]);
        validation.algorithms = settings.algorithms.clone();
        validation.leeway = settings.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // `exp` is checked when present, not required: Cortex deployments
        // commonly run long-lived per-tenant tokens.
        validation.required_spec_claims = HashSet::new();
        validation.validate_aud = !settings.audience.is_empty();
        if validation.validate_aud {
            validation.set_audience(&settings.audience);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        let mut secrets = vec![settings.jwt_secret.clone()];
        secrets.extend(settings.additional_secrets.iter().cloned());
        let key_set = KeySet::new(&secrets)?;
        Ok(Self {
            key_set_id: AtomicU64::new(key_set.id),
            keys: RwLock::new(Arc::new(key_set)),
            secret_file: settings.jwt_secret_file.clone().map(|path| {
                let stamp = modified(&path);
                (path, Mutex::new(stamp))
            }),
            validation,
            tenant_claim: settings.tenant_claim.clone(),
            extra_headers: settings.extra_headers.clone(),
            metrics: None,
        })
    }

    /// Re-reads `auth.jwt_secret_file` when it changed (or always, with
    /// `force`), so keys rotate without a restart: add the new key as the
    /// first line, hand out new tokens, then drop the old line. A file that
    /// cannot be read or holds no key is logged and the keys in use stay.
    /// Returns whether new keys are now in use.
    pub fn reload_keys(&self, force: bool) -> bool {
        let Some((path, stamp)) = &self.secret_file else {
            return false;
        };
        let current = modified(path);
        let Ok(mut stamp) = stamp.lock() else {
            return false;
        };
        if *stamp == current && !force {
            return false;
        }
        let loaded = crate::config::read_secret_file(path).and_then(|secrets| {
            KeySet::new(&secrets)
                .map(|set| (set, secrets.len()))
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok((set, count)) => {
                let id = set.id;
                if let Ok(mut keys) = self.keys.write() {
                    *keys = Arc::new(set);
                }
                // After the swap: a request that still reads the old id is
                // one that started before the reload.
                self.key_set_id.store(id, Ordering::Release);
                *stamp = current;
                tracing::info!(
                    keys = count,
                    file = %path.display(),
                    trigger = crate::tls::reload_trigger(force),
                    "JWT keys reloaded"
                );
                true
            }
            Err(error) => {
                tracing::error!(%error, "JWT key reload failed; keeping the keys in use");
                false
            }
        }
    }

    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Finds and verifies the request's token.
    /// Counts the outcome in the authentication metrics when there are any.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Tenant, AuthError> {
        let outcome = extract::token_from_headers(headers, &self.extra_headers)
            .and_then(|token| self.verify_cached(token.as_str()));
        match outcome {
            Ok(verified) => {
                if let Some(counter) = &verified.success_counter {
                    counter.inc();
                }
                Ok(verified.tenant)
            }
            Err(error) => {
                if let Some(metrics) = &self.metrics {
                    metrics.failed(&error);
                }
                Err(error)
            }
        }
    }

    fn verify_cached(&self, token: &str) -> Result<cache::Verified, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = cache::get(self.key_set_id.load(Ordering::Acquire), token, now) {
            return Ok(hit);
        }
        let key_set = self.key_set();
        let (tenant, claims) = self.verify_with(&key_set, token)?;
        let leeway = self.validation.leeway;
        let claim = |name: &str| claims.0.get(name).and_then(serde_json::Value::as_u64);
        let verified = cache::Verified {
            success_counter: self
                .metrics
                .as_ref()
                .map(|metrics| metrics.succeeded_counter(tenant.as_str())),
            tenant,
            valid_from: claim("nbf").map_or(0, |nbf| nbf.saturating_sub(leeway)),
            valid_until: claim("exp").map_or(u64::MAX, |exp| exp.saturating_add(leeway)),
        };
        cache::insert(key_set.id, token, verified.clone());
        Ok(verified)
    }

    /// Verifies one token and applies the claim rules.
    pub fn verify(&self, token: &str) -> Result<Tenant, AuthError> {
        self.verify_with(&self.key_set(), token)
            .map(|(tenant, _)| tenant)
    }

    fn verify_with(
        &self,
        key_set: &KeySet,
        token: &str,
    ) -> Result<(Tenant, claims::Claims), AuthError> {
        if token.len() > extract::MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        }
        let mut outcome = None;
        for key in &key_set.keys {
            let attempt = jsonwebtoken::decode::<claims::Claims>(token, key, &self.validation);
            // Only a signature mismatch is worth trying the next key for.
            let next = matches!(&attempt, Err(e) if *e.kind() == ErrorKind::InvalidSignature);
            outcome = Some(attempt);
            if !next {
                break;
            }
        }
        let outcome = outcome.ok_or(AuthError::BadSignature)?;
        let data = outcome.map_err(|error| match error.kind() {
            // jsonwebtoken cannot even parse a header naming an algorithm
            // it does not know (`none`, `foo`): report that as what it is.
            ErrorKind::Json(_) if names_unknown_algorithm(token) => AuthError::Algorithm,
            _ => AuthError::from(error),
        })?;
        let tenant = data.claims.tenant(&self.tenant_claim)?;
        let tenant = HeaderValue::from_str(tenant)
            .map(Tenant)
            .map_err(|_| AuthError::InvalidTenant("not a valid header value"))?;
        Ok((tenant, data.claims))
    }
}

/// Whether the token's header is JSON with an `alg` outside HS256/384/512.
/// Only called on the error path.
fn names_unknown_algorithm(token: &str) -> bool {
    use base64::Engine as _;
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|header| header.get("alg")?.as_str().map(str::to_owned))
        .is_some_and(|alg| !matches!(alg.as_str(), "HS256" | "HS384" | "HS512"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthSettings;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &[u8] = b"unit-test-secret-of-decent-length!";

    fn settings(audience: &[&str]) -> AuthSettings {
        AuthSettings {
            jwt_secret: SECRET.to_vec(),
            tenant_claim: "tenant_id".to_owned(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            leeway: Duration::from_secs(5),
            extra_headers: Vec::new(),
            additional_secrets: Vec::new(),
            jwt_secret_file: None,
        }
    }

    fn sign(alg: Algorithm, claims: serde_json::Value, secret: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn check(auth: &Authenticator, claims: serde_json::Value) -> Result<Tenant, AuthError> {
        auth.verify(&sign(Algorithm::HS256, claims, SECRET))
    }

    #[test]
    fn accepts_a_good_token_with_each_hmac() {
        let auth = Authenticator::new(&settings(&[])).unwrap();
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = sign(alg, json!({"tenant_id": "team-a", "version": 1}), SECRET);
            assert_eq!(auth.verify(&token).unwrap().as_str(), "team-a");
        }
    }

    #[test]
    fn refuses_forged_or_unsafe_algorithms() {
        let auth = Authenticator::new(&settings(&[])).unwrap();
        let forged = sign(
            Algorithm::HS256,
            json!({"tenant_id": "t"}),
            b"another-secret",
        );
        assert!(matches!(auth.verify(&forged), Err(AuthError::BadSignature)));

        // alg=none: header {"alg":"none"} with an empty signature.
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ0ZW5hbnRfaWQiOiJ0In0.";
        assert!(matches!(auth.verify(unsigned), Err(AuthError::Algorithm)));

        let mut only_256 = settings(&[]);
        only_256.algorithms = vec![Algorithm::HS256];
        let auth = Authenticator::new(&only_256).unwrap();
        let hs512 = sign(Algorithm::HS512, json!({"tenant_id": "t"}), SECRET);
        assert!(matches!(auth.verify(&hs512), Err(AuthError::Algorithm)));
    }

    #[test]
    fn checks_time_claims_only_when_present() {
        let auth = Authenticator::new(&settings(&[])).unwrap();
        assert!(check(&auth, json!({"tenant_id": "t"})).is_ok());
        assert!(check(&auth, json!({"tenant_id": "t", "exp": now() + 60})).is_ok());
        assert!(matches!(
            check(&auth, json!({"tenant_id": "t", "exp": now() - 3600})),
            Err(AuthError::Expired)
        ));
        assert!(matches!(
            check(&auth, json!({"tenant_id": "t", "nbf": now() + 3600})),
            Err(AuthError::NotYetValid)
        ));
        assert!(matches!(
            check(&auth, json!({"tenant_id": "t", "exp": "tomorrow"})),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn audience_is_checked_only_when_configured() {
        let open = Authenticator::new(&settings(&[])).unwrap();
        assert!(check(&open, json!({"tenant_id": "t", "aud": "anything"})).is_ok());

        let strict = Authenticator::new(&settings(&["cortex", "mimir"])).unwrap();
        assert!(check(&strict, json!({"tenant_id": "t", "aud": "mimir"})).is_ok());
        assert!(check(&strict, json!({"tenant_id": "t", "aud": ["x", "cortex"]})).is_ok());
        for bad in [
            json!({"tenant_id": "t", "aud": "loki"}),
            json!({"tenant_id": "t"}),
        ] {
            assert!(matches!(check(&strict, bad), Err(AuthError::Audience)));
        }
    }

    #[test]
    fn refuses_malformed_shapes() {
        let auth = Authenticator::new(&settings(&[])).unwrap();
        for bad in ["", "a", "a.b", "a.b.c.d", "!!!.###.$$$", "a..b"] {
            assert!(
                matches!(auth.verify(bad), Err(AuthError::Malformed(_))),
                "{bad:?}"
            );
        }
        let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let payload =
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, nested);
        let header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            r#"{"alg":"HS256"}"#,
        );
        let token = format!("{header}.{payload}.sig");
        assert!(auth.verify(&token).is_err());
    }

    #[test]
    fn cached_tokens_still_expire_on_time() {
        let mut strict = settings(&[]);
        strict.leeway = Duration::from_secs(0);
        let auth = Authenticator::new(&strict).unwrap();
        let exp = now() + 30;
        let token = sign(
            Algorithm::HS256,
            json!({"tenant_id": "t", "exp": exp, "nbf": now() - 5}),
            SECRET,
        );
        let first = auth.verify_cached(&token).unwrap();
        assert_eq!((first.valid_until, first.tenant.as_str()), (exp, "t"));
        assert!(
            cache::get(auth.key_set().id, &token, now()).is_some(),
            "cached while valid"
        );
        assert!(
            cache::get(auth.key_set().id, &token, exp + 1).is_none(),
            "expired entries are not served"
        );
        assert!(
            cache::get(auth.key_set().id, &token, exp - 1).is_none(),
            "and were evicted"
        );

        let other = Authenticator::new(&settings(&[])).unwrap();
        assert!(
            cache::get(other.key_set().id, &token, now()).is_none(),
            "entries belong to one authenticator"
        );
        let forged = sign(Algorithm::HS256, json!({"tenant_id": "t"}), b"wrong");
        assert!(auth.verify_cached(&forged).is_err());
        assert!(
            cache::get(auth.key_set().id, &forged, now()).is_none(),
            "failures are never cached"
        );
    }

    #[test]
    fn every_configured_key_verifies_and_the_first_signs() {
        let mut rotating = settings(&[]);
        rotating.additional_secrets = vec![b"old-key-still-accepted".to_vec()];
        let auth = Authenticator::new(&rotating).unwrap();
        let old = sign(
            Algorithm::HS256,
            json!({"tenant_id": "old"}),
            b"old-key-still-accepted",
        );
        let new = sign(Algorithm::HS256, json!({"tenant_id": "new"}), SECRET);
        assert_eq!(auth.verify(&old).unwrap().as_str(), "old");
        assert_eq!(auth.verify(&new).unwrap().as_str(), "new");
        let stranger = sign(Algorithm::HS256, json!({"tenant_id": "x"}), b"unknown");
        assert!(matches!(
            auth.verify(&stranger),
            Err(AuthError::BadSignature)
        ));
        let expired = sign(
            Algorithm::HS256,
            json!({"tenant_id": "x", "exp": 1}),
            SECRET,
        );
        assert!(matches!(auth.verify(&expired), Err(AuthError::Expired)));
    }

    #[test]
    fn every_reason_is_listed() {
        let errors = [
            AuthError::MissingToken,
            AuthError::Malformed("x"),
            AuthError::BadSignature,
            AuthError::Algorithm,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::Audience,
            AuthError::InvalidTenant("x"),
            AuthError::InvalidVersion,
        ];
        let reasons: Vec<_> = errors.iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AuthError::REASONS);
    }
}
