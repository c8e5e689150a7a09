//! Who is calling: the token is found ([`extract`]), verified (signature,
//! algorithm, `exp`/`nbf`/`aud`), and its claims checked ([`claims`]) before
//! a request may reach any upstream.

mod cache;
pub mod claims;
pub mod extract;
pub mod keys;
mod mint;
pub mod settings;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;

use crate::metrics::AuthMetrics;
use crate::reload::{Reload, Trigger};
use keys::{Key, KeyError, KeySource, SecretFile, StaticSecrets};
pub use mint::{mint_token, MintError, TokenRequest};
pub use settings::AuthSettings;

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
    /// The token's `version` is below the tenant's `min_token_version`.
    #[error("revoked")]
    Revoked,
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
            AuthError::Revoked => "revoked",
        }
    }

    /// Every reason label, so each series exists (at 0) from start-up.
    pub const REASONS: [&'static str; 10] = [
        "no_token",
        "malformed",
        "bad_signature",
        "algorithm",
        "expired",
        "not_yet_valid",
        "audience",
        "tenant",
        "version",
        "revoked",
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
    /// A tenant id that passes Cortex's rules.
    pub fn new(id: &str) -> Result<Self, AuthError> {
        claims::validate_tenant_id(id).map_err(AuthError::InvalidTenant)?;
        HeaderValue::from_str(id)
            .map(Tenant)
            .map_err(|_| AuthError::InvalidTenant("not a valid header value"))
    }

    pub fn as_str(&self) -> &str {
        // Tenant ids are checked to be visible ASCII before construction.
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Who a verified token speaks for: what authentication yields, what the
/// verified-token cache keeps, and what authorization decides on.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: Tenant,
    /// The token's `version` claim, 0 when absent.
    pub version: u64,
    /// The token's `exp`, when it has one.
    pub expires_at: Option<u64>,
    /// The words of the token's `scope` claim; `None` when it has none,
    /// which grants every route.
    pub scopes: Option<Arc<[String]>>,
}

/// Key set ids start at 1: 0 is the id of the empty per-thread cache.
static NEXT_KEY_SET_ID: AtomicU64 = AtomicU64::new(1);

/// Verifies tokens against the configured key sources and claim rules.
/// Built once at start-up and shared read-only by every worker.
pub struct Authenticator {
    sources: Vec<Box<dyn KeySource>>,
    keys: RwLock<Arc<KeySet>>,
    /// The id of the key set in `keys`, readable without the lock: a cache
    /// hit (nearly every request) needs only the id, not the keys.
    key_set_id: AtomicU64,
    validation: Validation,
    tenant_claim: String,
    extra_headers: Vec<HeaderName>,
    /// Revocation: the lowest `version` accepted, overall and per tenant.
    min_token_version: u64,
    tenants: std::collections::BTreeMap<String, settings::TenantSettings>,
    metrics: Option<AuthMetrics>,
}

/// The keys of every source at one time. A new set (after a reload) gets a
/// new id, so tokens verified with the old keys are not served from the
/// cache.
struct KeySet {
    id: u64,
    keys: Vec<Key>,
}

impl KeySet {
    fn gather(sources: &[Box<dyn KeySource>]) -> Self {
        Self {
            id: NEXT_KEY_SET_ID.fetch_add(1, Ordering::Relaxed),
            keys: sources.iter().flat_map(|source| source.keys()).collect(),
        }
    }
}

impl Authenticator {
    /// An authenticator that counts successful authentications per tenant
    /// in `metrics` (refusals are counted where they are answered).
    pub fn with_metrics(settings: &AuthSettings, metrics: AuthMetrics) -> Result<Self, KeyError> {
        Ok(Self {
            metrics: Some(metrics),
            ..Self::new(settings)?
        })
    }

    /// An authenticator without metrics, for commands and tests.
    pub fn new(settings: &AuthSettings) -> Result<Self, KeyError> {
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
        let source: Box<dyn KeySource> = match &settings.jwt_secret_file {
            Some(path) => Box::new(SecretFile::open(path)?),
            None => Box::new(StaticSecrets::new(&settings.secrets)?),
        };
        let sources = vec![source];
        let key_set = KeySet::gather(&sources);
        Ok(Self {
            sources,
            key_set_id: AtomicU64::new(key_set.id),
            keys: RwLock::new(Arc::new(key_set)),
            validation,
            tenant_claim: settings.tenant_claim.clone(),
            extra_headers: settings.extra_headers.clone(),
            min_token_version: settings.min_token_version,
            tenants: settings.tenants.clone(),
            metrics: None,
        })
    }

    fn key_set(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Finds and verifies the request's token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let token = extract::token_from_headers(headers, &self.extra_headers)?;
        let verified = self.verify_cached(token.as_str())?;
        if let Some(counter) = &verified.success_counter {
            counter.inc();
        }
        Ok(verified.principal)
    }

    fn verify_cached(&self, token: &str) -> Result<cache::Verified, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = cache::get(self.key_set_id.load(Ordering::Acquire), token, now) {
            return Ok(hit);
        }
        let key_set = self.key_set();
        let (principal, claims) = self.verify_with(&key_set, token)?;
        let leeway = self.validation.leeway;
        let verified = cache::Verified {
            success_counter: self
                .metrics
                .as_ref()
                .map(|metrics| metrics.succeeded_counter(principal.tenant.as_str())),
            valid_from: claims
                .number("nbf")
                .map_or(0, |nbf| nbf.saturating_sub(leeway)),
            valid_until: principal
                .expires_at
                .map_or(u64::MAX, |exp| exp.saturating_add(leeway)),
            principal,
        };
        cache::insert(key_set.id, token, verified.clone());
        Ok(verified)
    }

    /// Verifies one token and applies the claim rules.
    pub fn verify(&self, token: &str) -> Result<Tenant, AuthError> {
        self.verify_with(&self.key_set(), token)
            .map(|(principal, _)| principal.tenant)
    }

    fn verify_with(
        &self,
        key_set: &KeySet,
        token: &str,
    ) -> Result<(Principal, claims::Claims), AuthError> {
        if token.len() > extract::MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        }
        let mut outcome = None;
        for key in &key_set.keys {
            let attempt =
                jsonwebtoken::decode::<claims::Claims>(token, &key.decoding, &self.validation);
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
        let claims = data.claims;
        let tenant = claims.tenant(&self.tenant_claim)?;
        let tenant = HeaderValue::from_str(tenant)
            .map(Tenant)
            .map_err(|_| AuthError::InvalidTenant("not a valid header value"))?;
        // A token without `version` counts as version 0.
        let version = claims.number("version").unwrap_or(0);
        if version
            < settings::min_token_version(self.min_token_version, &self.tenants, tenant.as_str())
        {
            return Err(AuthError::Revoked);
        }
        let principal = Principal {
            tenant,
            version,
            expires_at: claims.number("exp"),
            scopes: claims.scopes().map(Arc::from),
        };
        Ok((principal, claims))
    }
}

/// Refreshes every key source on a reload; when any changed, the keys of
/// all of them become the new key set. A source that fails is logged and
/// its keys in use stay.
impl Reload for Authenticator {
    fn reload(&self, trigger: Trigger) {
        let mut changed = false;
        for source in &self.sources {
            match source.refresh(trigger.is_forced()) {
                Ok(refreshed) => changed |= refreshed,
                Err(error) => tracing::error!(
                    source = source.describe(),
                    %error,
                    "JWT key reload failed; keeping the keys in use"
                ),
            }
        }
        if !changed {
            return;
        }
        let set = KeySet::gather(&self.sources);
        let (id, count) = (set.id, set.keys.len());
        if let Ok(mut keys) = self.keys.write() {
            *keys = Arc::new(set);
        }
        // After the swap: a request that still reads the old id is one
        // that started before the reload.
        self.key_set_id.store(id, Ordering::Release);
        let sources: Vec<String> = self.sources.iter().map(|s| s.describe()).collect();
        tracing::info!(
            keys = count,
            file = sources.join(", "),
            trigger = trigger.name(),
            "JWT keys reloaded"
        );
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
        .is_some_and(|alg| {
            !keys::HMAC_ALGORITHMS
                .iter()
                .any(|known| format!("{known:?}") == alg)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthSettings;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &[u8] = b"unit-test-secret-of-decent-length!";

    fn settings(audience: &[&str]) -> AuthSettings {
        AuthSettings {
            jwt_secret: None,
            secrets: vec![crate::settings::Secret::new(SECRET.to_vec())],
            tenant_claim: "tenant_id".to_owned(),
            audience: audience.iter().map(|a| a.to_string()).collect(),
            algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            leeway: Duration::from_secs(5),
            extra_headers: Vec::new(),
            require_scope: false,
            min_token_version: 0,
            tenants: Default::default(),
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
        assert_eq!(
            (first.valid_until, first.principal.tenant.as_str()),
            (exp, "t")
        );
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
        rotating
            .secrets
            .push(crate::settings::Secret::new("old-key-still-accepted"));
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
            AuthError::Revoked,
        ];
        let reasons: Vec<_> = errors.iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AuthError::REASONS);
    }
}
