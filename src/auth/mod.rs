//! Who is calling: the token is found ([`extract`]), verified (signature,
//! algorithm, `exp`/`nbf`/`aud`), and its claims checked ([`claims`]) before
//! a request may reach any upstream.

mod cache;
pub mod claims;
pub mod extract;
pub mod jwks;
pub mod keys;
mod mint;
pub mod settings;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use crate::metrics::{AuthMetrics, KeyMetrics};
use crate::reload::{Reload, Trigger};
use jwks::{Fetcher, JwksSource, Location};
use keys::{Key, KeyError, KeyFiles, KeySource, StaticSecrets};
pub use mint::{mint_token, MintError, SigningKey, TokenRequest};
pub use settings::AuthSettings;

/// How long a request whose token names an unknown `kid` waits for the
/// refetch it caused (or joined) before it is refused.
const REFETCH_WAIT: Duration = Duration::from_secs(5);

/// `Retry-After` while the keys a token needs are still being fetched.
pub const KEYS_RETRY_AFTER: Duration = Duration::from_secs(5);

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
    #[error("token has no exp, which auth.require_exp requires")]
    MissingExpiry,
    #[error("issuer not accepted")]
    Issuer,
    /// No configured key has the token's `kid` (after a refetch, for JWKS
    /// sources), or no key of its algorithm's family exists.
    #[error("unknown signing key")]
    UnknownKey,
    /// The keys the token needs are still being fetched: the first fetch
    /// of a source, or the refetch its unknown `kid` caused did not finish
    /// in time. The client should retry, not drop its data (503, not 401).
    #[error("signing keys not loaded yet")]
    KeysUnavailable,
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
            AuthError::MissingExpiry => "expired",
            AuthError::Issuer => "issuer",
            AuthError::UnknownKey => "unknown_key",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }

    /// Every reason label, so each series exists (at 0) from start-up.
    pub const REASONS: [&'static str; 13] = [
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
        "issuer",
        "unknown_key",
        "keys_unavailable",
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
            ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => AuthError::MissingExpiry,
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

    /// Several tenants as Cortex reads them for a federated query:
    /// sorted, each once, joined by `|`; one id is a plain tenant.
    pub fn federated(ids: &[&str]) -> Result<Self, AuthError> {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            claims::validate_tenant_id(id).map_err(AuthError::InvalidTenant)?;
        }
        HeaderValue::from_str(&ids.join("|"))
            .map(Tenant)
            .map_err(|_| AuthError::InvalidTenant("not a valid header value"))
    }

    /// How many tenants this is (more than one for a federated token).
    pub fn count(&self) -> usize {
        self.as_str().split('|').count()
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

/// Verifier ids start at 1: 0 is the id of the empty per-thread cache.
static NEXT_VERIFIER_ID: AtomicU64 = AtomicU64::new(1);

/// Verifies tokens against the configured key sources and claim rules.
/// Shared by every worker; what it verifies with is swapped whole on a
/// reload, so a request sees either the old settings or the new ones,
/// never a mix.
pub struct Authenticator {
    current: RwLock<Arc<Verifier>>,
    /// The id of the verifier in `current`, readable without the lock: a
    /// cache hit (nearly every request) needs only the id.
    current_id: AtomicU64,
    /// How JWKS and OIDC documents are fetched; `None` where no network is
    /// wanted (benchmarks, unit tests), which refuses such sources.
    fetcher: Option<Fetcher>,
    metrics: Option<AuthMetrics>,
    key_metrics: Option<KeyMetrics>,
    /// Set once every source of the start-up settings had its keys.
    had_first_keys: AtomicBool,
    /// `auth.require_scope` of the verifier in `current`, readable
    /// without the lock on every request.
    require_scope: AtomicBool,
    /// `auth.extra_headers`, fixed for the life of the process: the
    /// forwarder strips the same headers, and a list that changed under it
    /// could pass a token upstream.
    extra_headers: Vec<HeaderName>,
}

/// One generation of the auth settings: the rules, the sources, and the
/// keys gathered from them. A new generation (settings reloaded, a file or
/// a JWKS changed) gets a new id, so the token cache starts over and
/// nothing verified with a key that is gone is served again.
struct Verifier {
    id: u64,
    policy: Arc<Policy>,
    keys: Vec<Key>,
    /// The versions of the remote sources when `keys` were gathered.
    remote_versions: Vec<u64>,
}

/// The auth settings as the verifier applies them.
struct Policy {
    settings: AuthSettings,
    /// One validation per algorithm family that `auth.algorithms` allows
    /// (jsonwebtoken checks a key only against algorithms of its family).
    validations: Vec<Validation>,
    sources: Vec<Box<dyn KeySource>>,
}

impl Policy {
    /// The validation for tokens signed with `algorithm`, if it is allowed.
    fn validation(&self, algorithm: Algorithm) -> Option<&Validation> {
        self.validations
            .iter()
            .find(|validation| validation.algorithms.contains(&algorithm))
    }

    fn remotes(&self) -> impl Iterator<Item = &Arc<JwksSource>> {
        self.sources.iter().filter_map(|source| source.remote())
    }
}

impl Verifier {
    fn gather(policy: Arc<Policy>) -> Self {
        Self {
            id: NEXT_VERIFIER_ID.fetch_add(1, Ordering::Relaxed),
            remote_versions: policy.remotes().map(|remote| remote.version()).collect(),
            keys: policy
                .sources
                .iter()
                .flat_map(|source| source.keys())
                .collect(),
            policy,
        }
    }

    /// The keys a token signed with `algorithm` may be checked against:
    /// only of the algorithm's own family; with a `kid`, the keys of that
    /// id, or else those without any id (secrets and PEM files); without a
    /// `kid`, every key of the family. The flag says whether the `kid`
    /// matched no key by id.
    fn candidates(&self, algorithm: Algorithm, kid: Option<&str>) -> (Vec<&Key>, bool) {
        let family = self.keys.iter().filter(|key| key.accepts(algorithm));
        let Some(kid) = kid else {
            return (family.collect(), false);
        };
        let named: Vec<&Key> = family
            .clone()
            .filter(|key| key.kid.as_deref() == Some(kid))
            .collect();
        if named.is_empty() {
            (family.filter(|key| key.kid.is_none()).collect(), true)
        } else {
            (named, false)
        }
    }

    /// Whether a remote source that could hold a key for `algorithm` has
    /// not been fetched yet.
    fn waits_for_keys(&self, algorithm: Algorithm) -> bool {
        algorithm.family() != jsonwebtoken::AlgorithmFamily::Hmac
            && self.policy.remotes().any(|remote| remote.pending())
    }
}

/// What a successful verification found, for `verify`'s report.
pub struct Verification {
    pub principal: Principal,
    pub claims: claims::Claims,
    pub algorithm: Algorithm,
    /// Where the key that verified the token came from.
    pub key_origin: Arc<str>,
}

impl Authenticator {
    /// An authenticator that fetches remote keys with `fetcher` and counts
    /// into `metrics`: the gateway's.
    pub fn connected(
        settings: &AuthSettings,
        fetcher: Fetcher,
        metrics: Option<(AuthMetrics, KeyMetrics)>,
    ) -> Result<Self, KeyError> {
        let (metrics, key_metrics) = metrics.unzip();
        let policy = Policy::build(settings, &[], Some(&fetcher), key_metrics.as_ref())?;
        Ok(Self::around(policy, Some(fetcher), metrics, key_metrics))
    }

    /// An authenticator without network or metrics, for benchmarks and
    /// tests: JWKS and OIDC sources are refused.
    pub fn new(settings: &AuthSettings) -> Result<Self, KeyError> {
        let policy = Policy::build(settings, &[], None, None)?;
        Ok(Self::around(policy, None, None, None))
    }

    fn around(
        policy: Policy,
        fetcher: Option<Fetcher>,
        metrics: Option<AuthMetrics>,
        key_metrics: Option<KeyMetrics>,
    ) -> Self {
        let extra_headers = policy.settings.extra_headers.clone();
        let require_scope = AtomicBool::new(policy.settings.require_scope);
        let verifier = Verifier::gather(Arc::new(policy));
        Self {
            extra_headers,
            require_scope,
            had_first_keys: AtomicBool::new(false),
            current_id: AtomicU64::new(verifier.id),
            current: RwLock::new(Arc::new(verifier)),
            fetcher,
            metrics,
            key_metrics,
        }
    }

    fn current(&self) -> Arc<Verifier> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, verifier: Verifier) {
        let id = verifier.id;
        self.require_scope
            .store(verifier.policy.settings.require_scope, Ordering::Release);
        match self.current.write() {
            Ok(mut current) => *current = Arc::new(verifier),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(verifier),
        }
        // After the swap: a request that still reads the old id is one
        // that started before it.
        self.current_id.store(id, Ordering::Release);
    }

    /// Starts fetching remote keys, on the current actix runtime. Called
    /// once the server's runtime runs, and after each reload (a no-op for
    /// sources already fetching).
    pub fn start(&self) {
        for remote in self.current().policy.remotes() {
            remote.start();
        }
    }

    /// Whether some remote source has not been fetched yet.
    pub fn pending(&self) -> bool {
        self.current()
            .policy
            .remotes()
            .any(|remote| remote.pending())
    }

    /// Whether the gateway still waits for the first keys of the sources
    /// it started with (`/ready` is 503 until then). Once it had them, a
    /// source added by a reload that cannot be fetched does not take the
    /// pod out of service: a bad configuration pushed to every replica
    /// must not empty the load balancer; the tokens that need that source
    /// get their 503 one by one.
    pub fn awaiting_first_keys(&self) -> bool {
        if self.had_first_keys.load(Ordering::Acquire) {
            return false;
        }
        let pending = self.pending();
        if !pending {
            self.had_first_keys.store(true, Ordering::Release);
        }
        pending
    }

    /// `auth.require_scope` as in force now.
    pub fn require_scope(&self) -> bool {
        self.require_scope.load(Ordering::Acquire)
    }

    /// Takes `settings` in place of the current ones; on an error the
    /// current ones stay. `auth.extra_headers` stays as started (see the
    /// field).
    pub fn replace(&self, settings: &AuthSettings) -> Result<(), KeyError> {
        let current = self.current();
        if settings.extra_headers != self.extra_headers {
            tracing::warn!(
                "auth.extra_headers changed: it takes effect after a restart; the other auth settings are applied now"
            );
        }
        let policy = Policy::build(
            settings,
            &current.policy.sources,
            self.fetcher.as_ref(),
            self.key_metrics.as_ref(),
        )?;
        self.install(Verifier::gather(Arc::new(policy)));
        self.start();
        Ok(())
    }

    /// Gathers the keys again when a remote source's keys changed.
    fn regather_if_changed(&self) {
        let current = self.current();
        let versions: Vec<u64> = current.policy.remotes().map(|r| r.version()).collect();
        if versions != current.remote_versions {
            self.install(Verifier::gather(Arc::clone(&current.policy)));
        }
    }

    /// Finds and verifies the request's token. A token naming a `kid` no
    /// source knows waits for one refetch of the JWKS sources (shared by
    /// every request that needs it, at most one per
    /// `auth.jwks_min_refetch_interval`), so a key the provider just
    /// rotated in works on its first use.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        self.refetching(|| self.authenticate_with_known_keys(headers))
            .await
    }

    /// Runs `check`; when it found no key for the token's `kid`, refetches
    /// the JWKS sources and runs it once more.
    async fn refetching<T>(
        &self,
        check: impl Fn() -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        match check() {
            Err(AuthError::UnknownKey) => {
                self.refetch().await?;
                check()
            }
            outcome => outcome,
        }
    }

    /// Finds and verifies the request's token with the keys at hand.
    pub fn authenticate_with_known_keys(
        &self,
        headers: &HeaderMap,
    ) -> Result<Principal, AuthError> {
        let token = extract::token_from_headers(headers, &self.extra_headers)?;
        let verified = self.verify_cached(token.as_str())?;
        if let Some(counter) = &verified.success_counter {
            counter.inc();
        }
        Ok(verified.principal)
    }

    /// Asks every remote source for a refetch and waits for them. A fetch
    /// that did not finish in [`REFETCH_WAIT`] leaves the key unknown but
    /// possibly real: answered 503 (retry), not 401 (drop the batch).
    async fn refetch(&self) -> Result<(), AuthError> {
        let waits: Vec<_> = self
            .current()
            .policy
            .remotes()
            .filter_map(|remote| remote.request_refetch())
            .collect();
        if waits.is_empty() {
            return Err(AuthError::UnknownKey);
        }
        let mut finished = true;
        for mut fetched in waits {
            finished &= actix_rt::time::timeout(REFETCH_WAIT, fetched.changed())
                .await
                .is_ok();
        }
        self.regather_if_changed();
        if finished {
            Ok(())
        } else {
            Err(AuthError::KeysUnavailable)
        }
    }

    fn verify_cached(&self, token: &str) -> Result<cache::Verified, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = cache::get(self.current_id.load(Ordering::Acquire), token, now) {
            return Ok(hit);
        }
        let verifier = self.current();
        let verification = self.verify_with(&verifier, token)?;
        let leeway = verifier.policy.settings.leeway.as_secs();
        let principal = verification.principal;
        let verified = cache::Verified {
            success_counter: self
                .metrics
                .as_ref()
                .map(|metrics| metrics.succeeded_counter(principal.tenant.as_str())),
            valid_from: verification
                .claims
                .number("nbf")
                .map_or(0, |nbf| nbf.saturating_sub(leeway)),
            valid_until: principal
                .expires_at
                .map_or(u64::MAX, |exp| exp.saturating_add(leeway)),
            principal,
        };
        cache::insert(verifier.id, token, verified.clone());
        Ok(verified)
    }

    /// Verifies one token and applies the claim rules.
    pub fn verify(&self, token: &str) -> Result<Tenant, AuthError> {
        self.inspect(token).map(|found| found.principal.tenant)
    }

    /// Verifies one token and says what verified it: `verify`'s report.
    pub fn inspect(&self, token: &str) -> Result<Verification, AuthError> {
        self.verify_with(&self.current(), token)
    }

    /// Like [`Authenticator::inspect`], but a token naming an unknown `kid`
    /// first waits for a refetch, as a request would.
    pub async fn inspect_fetching(&self, token: &str) -> Result<Verification, AuthError> {
        self.refetching(|| self.inspect(token)).await
    }

    fn verify_with(&self, verifier: &Verifier, token: &str) -> Result<Verification, AuthError> {
        if token.len() > extract::MAX_TOKEN_LEN {
            return Err(AuthError::Malformed("token too long"));
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::Malformed("not three dot-separated parts"));
        }
        let policy = &verifier.policy;
        let header = jsonwebtoken::decode_header(token).map_err(|error| {
            // jsonwebtoken cannot even parse a header naming an algorithm
            // it does not know (`none`, `foo`): report that as what it is.
            if names_unknown_algorithm(token) {
                AuthError::Algorithm
            } else {
                AuthError::from(error)
            }
        })?;
        let validation = policy.validation(header.alg).ok_or(AuthError::Algorithm)?;
        let (candidates, unknown_kid) = verifier.candidates(header.alg, header.kid.as_deref());
        let mut outcome = None;
        for key in candidates {
            let attempt = jsonwebtoken::decode::<claims::Claims>(token, &key.decoding, validation);
            // Only a key that did not verify the signature (including one
            // of the right family but another curve) is worth trying the
            // next key for; a claim error means the signature was good.
            let next = matches!(&attempt, Err(e) if signature_failed(e.kind()));
            outcome = Some((attempt, key));
            if !next {
                break;
            }
        }
        let verified = match outcome {
            Some((Ok(data), key)) => Ok((data.claims, key)),
            Some((Err(error), _)) if !signature_failed(error.kind()) => Err(AuthError::from(error)),
            _ if verifier.waits_for_keys(header.alg) => Err(AuthError::KeysUnavailable),
            Some(_) if !unknown_kid => Err(AuthError::BadSignature),
            _ => Err(AuthError::UnknownKey),
        };
        let (claims, key) = verified?;
        let settings = &policy.settings;
        if key
            .issuer
            .as_deref()
            .is_some_and(|issuer| claims.issuer() != Some(issuer))
            || (!settings.issuer.is_empty()
                && !claims
                    .issuer()
                    .is_some_and(|iss| settings.issuer.iter().any(|known| known == iss)))
        {
            return Err(AuthError::Issuer);
        }
        // A list of tenants only where federation is allowed; otherwise a
        // token with only the list has no tenant and is refused.
        let federated = settings
            .allow_federation
            .then(|| claims.tenant_ids(&settings.tenant_ids_claim))
            .flatten();
        let tenant = match federated {
            Some(ids) => Tenant::federated(&ids?)?,
            None => Tenant::new(claims.tenant(&settings.tenant_claim)?)?,
        };
        // A token without `version` counts as version 0.
        let version = claims.number("version").unwrap_or(0);
        // A federated token is held to the strictest of its tenants.
        let minimum = tenant
            .as_str()
            .split('|')
            .map(|id| {
                settings::min_token_version(settings.min_token_version, &settings.tenants, id)
            })
            .max()
            .unwrap_or(settings.min_token_version);
        if version < minimum {
            return Err(AuthError::Revoked);
        }
        let principal = Principal {
            tenant,
            version,
            expires_at: claims.number("exp"),
            scopes: claims.scopes().map(Arc::from),
        };
        Ok(Verification {
            principal,
            claims,
            algorithm: header.alg,
            key_origin: Arc::clone(&key.origin),
        })
    }
}

impl Policy {
    /// The rules and sources of `settings`; a JWKS or OIDC source equal to
    /// one of `previous` is kept with its keys, so a reload neither
    /// refetches nor loses what it fetched.
    fn build(
        settings: &AuthSettings,
        previous: &[Box<dyn KeySource>],
        fetcher: Option<&Fetcher>,
        metrics: Option<&KeyMetrics>,
    ) -> Result<Self, KeyError> {
        let mut validations: Vec<Validation> = Vec::new();
        for &algorithm in &settings.algorithms {
            match validations
                .iter_mut()
                .find(|v| v.algorithms[0].family() == algorithm.family())
            {
                Some(validation) => validation.algorithms.push(algorithm),
                None => validations.push(validation_for(algorithm, settings)),
            }
        }
        let mut sources: Vec<Box<dyn KeySource>> = Vec::new();
        if !settings.secrets.is_empty() {
            sources.push(match &settings.jwt_secret_file {
                Some(path) => Box::new(KeyFiles::secrets(path)?),
                None => Box::new(StaticSecrets::new(&settings.secrets)?),
            });
        }
        if !settings.public_keys.is_empty() {
            sources.push(Box::new(KeyFiles::public_keys(&settings.public_keys)?));
        }
        let locations = settings
            .jwks_url
            .iter()
            .map(|url| Location::Jwks(url.clone()))
            .chain(settings.oidc_issuer_url.clone().map(Location::Oidc));
        for location in locations {
            let kept = previous
                .iter()
                .filter_map(|source| source.remote())
                .find(|remote| {
                    *remote.location() == location
                        && remote.intervals()
                            == (
                                settings.jwks_refresh_interval,
                                settings.jwks_min_refetch_interval,
                            )
                });
            let remote = match kept {
                Some(remote) => Arc::clone(remote),
                None => Arc::new(JwksSource::new(
                    location,
                    settings.jwks_refresh_interval,
                    settings.jwks_min_refetch_interval,
                    fetcher.cloned().ok_or(KeyError::Offline)?,
                    metrics.cloned(),
                )),
            };
            sources.push(Box::new(remote));
        }
        Ok(Self {
            settings: settings.clone(),
            validations,
            sources,
        })
    }
}

/// The claim checks jsonwebtoken makes, for the family of `algorithm`.
fn validation_for(algorithm: Algorithm, settings: &AuthSettings) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = settings.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // `exp` is checked when present, and required only with
    // `auth.require_exp`: Cortex deployments commonly run long-lived
    // per-tenant tokens.
    validation.required_spec_claims = HashSet::new();
    if settings.require_exp {
        validation.required_spec_claims.insert("exp".to_owned());
    }
    validation.validate_aud = !settings.audience.is_empty();
    if validation.validate_aud {
        validation.set_audience(&settings.audience);
        validation.required_spec_claims.insert("aud".to_owned());
    }
    validation
}

/// On every poll: file sources re-read what changed (all of them on
/// `SIGHUP`), remote sources report their age, and the keys are gathered
/// again when any source changed. A source that fails is logged and its
/// keys in use stay.
impl Reload for Authenticator {
    fn reload(&self, trigger: Trigger) {
        let current = self.current();
        let mut changed = false;
        for source in &current.policy.sources {
            match source.refresh(trigger.is_forced()) {
                Ok(refreshed) => changed |= refreshed,
                Err(error) => tracing::error!(
                    source = source.describe(),
                    %error,
                    "JWT key reload failed; keeping the keys in use"
                ),
            }
            if let Some(remote) = source.remote() {
                remote.observe_age();
            }
        }
        if !changed {
            self.regather_if_changed();
            return;
        }
        let verifier = Verifier::gather(Arc::clone(&current.policy));
        let count = verifier.keys.len();
        self.install(verifier);
        let sources: Vec<String> = current
            .policy
            .sources
            .iter()
            .map(|s| s.describe())
            .collect();
        tracing::info!(
            keys = count,
            file = sources.join(", "),
            trigger = trigger.name(),
            "JWT keys reloaded"
        );
    }
}

/// Whether `kind` says the key did not verify the signature.
fn signature_failed(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
    )
}

/// Whether the token's header is JSON with an `alg` jsonwebtoken does not know.
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
        .is_some_and(|alg| alg.parse::<Algorithm>().is_err())
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
        let mut settings = AuthSettings::with_secret(std::str::from_utf8(SECRET).unwrap());
        settings.audience = audience.iter().map(|a| a.to_string()).collect();
        settings.leeway = Duration::from_secs(5);
        settings
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
            cache::get(auth.current().id, &token, now()).is_some(),
            "cached while valid"
        );
        assert!(
            cache::get(auth.current().id, &token, exp + 1).is_none(),
            "expired entries are not served"
        );
        assert!(
            cache::get(auth.current().id, &token, exp - 1).is_none(),
            "and were evicted"
        );

        let other = Authenticator::new(&settings(&[])).unwrap();
        assert!(
            cache::get(other.current().id, &token, now()).is_none(),
            "entries belong to one authenticator"
        );
        let forged = sign(Algorithm::HS256, json!({"tenant_id": "t"}), b"wrong");
        assert!(auth.verify_cached(&forged).is_err());
        assert!(
            cache::get(auth.current().id, &forged, now()).is_none(),
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

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

    /// HMAC and public-key sources side by side, as a CI system's HS256
    /// tokens beside an identity provider's.
    fn mixed() -> AuthSettings {
        let mut auth = settings(&[]);
        auth.public_keys = ["rsa.pub.pem", "ec256.pub.pem", "ed25519.pub.pem"]
            .iter()
            .map(|name| format!("{VECTORS}/{name}").into())
            .collect();
        auth.algorithms.extend(keys::PUBLIC_KEY_ALGORITHMS);
        auth
    }

    fn signed_by(
        auth: &AuthSettings,
        key: &str,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> String {
        mint_token(
            auth,
            &TokenRequest {
                algorithm: Some(algorithm),
                kid: kid.map(str::to_owned),
                key: mint::SigningKey::PrivateKeyFile(format!("{VECTORS}/{key}").into()),
                ..TokenRequest::new("idp-team")
            },
        )
        .unwrap()
    }

    #[test]
    fn public_keys_verify_their_own_algorithms() {
        let auth = mixed();
        let authenticator = Authenticator::new(&auth).unwrap();
        for (key, algorithm, file) in [
            ("rsa.key.pem", Algorithm::RS256, "rsa.pub.pem"),
            ("rsa.key.pem", Algorithm::PS512, "rsa.pub.pem"),
            ("ec256.key.pem", Algorithm::ES256, "ec256.pub.pem"),
            ("ed25519.key.pem", Algorithm::EdDSA, "ed25519.pub.pem"),
        ] {
            let found = authenticator
                .inspect(&signed_by(&auth, key, algorithm, None))
                .unwrap();
            assert_eq!(found.principal.tenant.as_str(), "idp-team");
            assert_eq!(found.algorithm, algorithm);
            assert!(found.key_origin.ends_with(file), "{}", found.key_origin);
        }
        let hmac = sign(Algorithm::HS256, json!({"tenant_id": "ci"}), SECRET);
        assert_eq!(authenticator.verify(&hmac).unwrap().as_str(), "ci");
        // The public key's PEM as an HMAC secret: the RS/HS confusion.
        let pem = std::fs::read(format!("{VECTORS}/rsa.pub.pem")).unwrap();
        let confused = sign(Algorithm::HS256, json!({"tenant_id": "evil"}), &pem);
        assert!(matches!(
            authenticator.verify(&confused),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn kid_selects_a_key_or_falls_back_to_keys_without_ids() {
        let auth = mixed();
        let authenticator = Authenticator::new(&auth).unwrap();
        let named = signed_by(&auth, "rsa.key.pem", Algorithm::RS256, Some("any-id"));
        assert!(authenticator.verify(&named).is_ok());
        let stranger = signed_by(&auth, "rsa2.key.pem", Algorithm::RS256, Some("rsa-2"));
        assert!(matches!(
            authenticator.verify(&stranger),
            Err(AuthError::UnknownKey)
        ));
        let anonymous = signed_by(&auth, "rsa2.key.pem", Algorithm::RS256, None);
        assert!(matches!(
            authenticator.verify(&anonymous),
            Err(AuthError::BadSignature)
        ));
        let hmac_only = Authenticator::new(&settings(&[])).unwrap();
        assert!(matches!(
            hmac_only.verify(&named),
            Err(AuthError::Algorithm)
        ));
    }

    #[test]
    fn issuer_and_exp_are_required_when_configured() {
        let mut auth = settings(&[]);
        auth.issuer = vec!["https://idp.example.com".to_owned()];
        auth.require_exp = true;
        let authenticator = Authenticator::new(&auth).unwrap();
        let good = json!({"tenant_id": "t", "iss": "https://idp.example.com", "exp": now() + 60});
        assert!(check(&authenticator, good).is_ok());
        for (claims, reason) in [
            (json!({"tenant_id": "t", "exp": now() + 60}), "issuer"),
            (
                json!({"tenant_id": "t", "iss": "https://other", "exp": now() + 60}),
                "issuer",
            ),
            (
                json!({"tenant_id": "t", "iss": "https://idp.example.com"}),
                "expired",
            ),
        ] {
            let error = check(&authenticator, claims).unwrap_err();
            assert_eq!(error.reason(), reason, "{error}");
        }
    }

    #[test]
    fn replaced_settings_apply_at_once_and_empty_the_cache() {
        let authenticator = Authenticator::new(&settings(&[])).unwrap();
        let old = sign(
            Algorithm::HS256,
            json!({"tenant_id": "t", "version": 1}),
            SECRET,
        );
        assert!(authenticator.verify_cached(&old).is_ok());
        let before = authenticator.current().id;

        let mut next = settings(&[]);
        next.secrets
            .insert(0, crate::settings::Secret::new("a-new-signing-secret"));
        next.min_token_version = 2;
        authenticator.replace(&next).unwrap();
        assert_ne!(authenticator.current().id, before);
        assert!(matches!(
            authenticator.verify_cached(&old),
            Err(AuthError::Revoked)
        ));
        let new = sign(
            Algorithm::HS256,
            json!({"tenant_id": "t", "version": 2}),
            b"a-new-signing-secret",
        );
        assert!(authenticator.verify_cached(&new).is_ok());

        let mut broken = next.clone();
        broken.public_keys = vec!["/nonexistent/key.pem".into()];
        assert!(authenticator.replace(&broken).is_err());
        assert!(
            authenticator.verify_cached(&new).is_ok(),
            "the old settings stay"
        );
    }

    #[test]
    fn a_federated_token_is_revoked_by_any_of_its_tenants() {
        let mut auth = settings(&[]);
        auth.allow_federation = true;
        auth.tenants.insert(
            "team-b".to_owned(),
            settings::TenantSettings {
                min_token_version: Some(5),
                ..Default::default()
            },
        );
        let authenticator = Authenticator::new(&auth).unwrap();
        let old = json!({"tenant_ids": ["team-a", "team-b"], "version": 4});
        assert!(matches!(
            check(&authenticator, old),
            Err(AuthError::Revoked)
        ));
        let current = json!({"tenant_ids": ["team-a", "team-b"], "version": 5});
        assert_eq!(
            check(&authenticator, current).unwrap().as_str(),
            "team-a|team-b"
        );
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
            AuthError::Issuer,
            AuthError::UnknownKey,
            AuthError::KeysUnavailable,
        ];
        let reasons: Vec<_> = errors.iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AuthError::REASONS);
        assert_eq!(
            AuthError::MissingExpiry.reason(),
            AuthError::Expired.reason()
        );
    }
}
