//! The `[auth]` section.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::keys::{read_secret_file, HMAC_ALGORITHMS, PUBLIC_KEY_ALGORITHMS};
use crate::settings::{
    parse_duration, serialize_display_list, serialize_duration, ConfigError, Secret, StringList,
    ENV_PREFIX,
};
use crate::upstream::Upstream;

/// How tokens are verified. Serializes to the keys of `[auth]` as they were
/// given, the secret redacted; with a secret file, the file is named.
#[derive(Debug, Clone, Serialize)]
pub struct AuthSettings {
    /// `auth.jwt_secret`, when the secret is given inline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<Secret>,
    /// Where the keys come from, when a file: re-read on change and SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret_file: Option<PathBuf>,
    /// `auth.jwt_secrets`, as given (redacted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwt_secrets: Vec<Secret>,
    /// Every HMAC key the configuration gives; the first signs (`token`
    /// mints with it), the others are still accepted, for rotation:
    /// `jwt_secret` then `jwt_secrets`, or the lines of `jwt_secret_file`.
    /// Empty when only public keys are configured.
    #[serde(skip)]
    pub secrets: Vec<Secret>,
    /// `auth.public_keys`: PEM files, one public key each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<PathBuf>,
    /// `auth.jwks_url`: JWKS documents, fetched and refreshed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub jwks_url: Vec<String>,
    /// How often a JWKS is fetched again (sooner when its `max-age` says so).
    #[serde(serialize_with = "serialize_duration")]
    pub jwks_refresh_interval: Duration,
    /// The least time between two fetches caused by unknown `kid`s, per
    /// URL, so that forged key ids cannot hammer the identity provider.
    #[serde(serialize_with = "serialize_duration")]
    pub jwks_min_refetch_interval: Duration,
    /// `auth.oidc_issuer_url`: its discovery document names the JWKS, and
    /// tokens its keys verify must carry it as `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc_issuer_url: Option<String>,
    /// Accepted `iss` values; every token must carry one when set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuer: Vec<String>,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// The claim naming the tenant: a top-level name (`tenant_id`, or a
    /// namespaced one such as `https://example.com/tenant`) or, starting
    /// with `/`, a JSON pointer into nested claims (`/org/id`).
    pub tenant_claim: String,
    /// Accept tokens for several tenants (`tenant_ids`), for reads only.
    pub allow_federation: bool,
    /// The list claim of a federated token.
    pub tenant_ids_claim: String,
    pub audience: Vec<String>,
    #[serde(serialize_with = "serialize_algorithms")]
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(serialize_with = "serialize_duration")]
    pub leeway: Duration,
    /// Headers searched for a token after `Authorization` (Go flag
    /// `-gateway.auth.jwt-extra-headers`); never forwarded upstream.
    #[serde(serialize_with = "serialize_display_list")]
    pub extra_headers: Vec<HeaderName>,
    /// Refuse (403) tokens without a `scope` claim.
    pub require_scope: bool,
    /// Tokens whose `version` is lower are refused as revoked (401); a
    /// token without `version` counts as 0.
    pub min_token_version: u64,
    /// `[auth.tenants.<id>]`: per-tenant settings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantSettings>,
}

/// `[auth.tenants.<id>]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    /// Replaces `auth.min_token_version` for this tenant: bump it to revoke
    /// every older token of the tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_token_version: Option<u64>,
    /// `[auth.tenants.<id>.limits]`: replaces `[limits]` key by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<crate::ratelimit::TenantLimits>,
}

/// The lowest `version` accepted for `tenant`.
pub fn min_token_version(
    global: u64,
    tenants: &BTreeMap<String, TenantSettings>,
    tenant: &str,
) -> u64 {
    tenants
        .get(tenant)
        .and_then(|settings| settings.min_token_version)
        .unwrap_or(global)
}

fn serialize_algorithms<S: serde::Serializer>(
    algorithms: &[Algorithm],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(algorithms.iter().map(|a| format!("{a:?}")))
}

impl AuthSettings {
    /// Every `auth.*` default around one HMAC key, from the same defaults a
    /// config file starts from: for benchmarks, fuzz targets and tests that
    /// need an authenticator without a configuration.
    pub fn with_secret(secret: &str) -> Self {
        RawAuth {
            jwt_secret: Some(secret.to_owned()),
            ..RawAuth::default()
        }
        .validate()
        .expect("the default auth settings are valid")
    }

    /// The key new tokens are signed with.
    pub fn signing_secret(&self) -> &[u8] {
        self.secrets.first().map_or(&[], Secret::expose)
    }

    /// Whether any source delivers public keys (PEM files, JWKS, OIDC).
    pub fn has_public_key_sources(&self) -> bool {
        !self.public_keys.is_empty() || !self.jwks_url.is_empty() || self.oidc_issuer_url.is_some()
    }
}

/// `[auth]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    jwt_secret: Option<String>,
    jwt_secrets: StringList,
    jwt_secret_file: Option<PathBuf>,
    public_keys: StringList,
    jwks_url: StringList,
    jwks_refresh_interval: String,
    jwks_min_refetch_interval: String,
    oidc_issuer_url: Option<String>,
    issuer: StringList,
    require_exp: bool,
    tenant_claim: String,
    allow_federation: bool,
    tenant_ids_claim: String,
    audience: StringList,
    /// Absent: every algorithm of the configured key sources.
    algorithms: Option<StringList>,
    leeway: String,
    extra_headers: StringList,
    require_scope: bool,
    min_token_version: u64,
    tenants: BTreeMap<String, TenantSettings>,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            jwt_secrets: StringList::default(),
            jwt_secret_file: None,
            public_keys: StringList::default(),
            jwks_url: StringList::default(),
            jwks_refresh_interval: "5m".to_owned(),
            jwks_min_refetch_interval: "30s".to_owned(),
            oidc_issuer_url: None,
            issuer: StringList::default(),
            require_exp: false,
            tenant_claim: "tenant_id".to_owned(),
            allow_federation: false,
            tenant_ids_claim: "tenant_ids".to_owned(),
            audience: StringList::default(),
            algorithms: None,
            leeway: "60s".to_owned(),
            extra_headers: StringList::default(),
            require_scope: false,
            min_token_version: 0,
            tenants: BTreeMap::new(),
        }
    }
}

impl RawAuth {
    pub fn validate(self) -> Result<AuthSettings, ConfigError> {
        let jwt_secrets: Vec<Secret> = self
            .jwt_secrets
            .0
            .iter()
            .map(|s| Secret::new(s.as_str()))
            .collect();
        let inline: Vec<Secret> = self
            .jwt_secret
            .iter()
            .filter(|secret| !secret.is_empty())
            .map(|secret| Secret::new(secret.as_str()))
            .chain(jwt_secrets.iter().cloned())
            .collect();
        let secrets: Vec<Secret> =
            match &self.jwt_secret_file {
                Some(_) if !inline.is_empty() => return Err(ConfigError::invalid(
                    "auth.jwt_secret_file",
                    "set either auth.jwt_secret_file or auth.jwt_secret/auth.jwt_secrets, not both",
                )),
                Some(path) => read_secret_file(path)
                    .map_err(|e| ConfigError::invalid("auth.jwt_secret_file", e.to_string()))?
                    .into_iter()
                    .map(Secret::new)
                    .collect(),
                None => inline,
            };
        if secrets
            .iter()
            .any(|s| s.expose().starts_with(b"-----BEGIN"))
        {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                "is a PEM document: an HMAC secret must not be a public key (list PEM files in auth.public_keys)",
            ));
        }
        let public_keys: Vec<PathBuf> = self.public_keys.0.iter().map(PathBuf::from).collect();
        // Fetched with the upstream client: the same URL rules (absolute
        // http(s), no credentials, no query string).
        for url in &self.jwks_url.0 {
            Upstream::parse(url).map_err(|why| ConfigError::invalid("auth.jwks_url", why))?;
        }
        if let Some(url) = &self.oidc_issuer_url {
            Upstream::parse(url)
                .map_err(|why| ConfigError::invalid("auth.oidc_issuer_url", why))?;
        }
        let has_public = !public_keys.is_empty()
            || !self.jwks_url.0.is_empty()
            || self.oidc_issuer_url.is_some();
        if secrets.is_empty() && !has_public {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                format!(
                    "must be set (flag -gateway.auth.jwt-secret, env {}__AUTH__JWT_SECRET), or another key source: auth.jwt_secrets, auth.jwt_secret_file, auth.public_keys, auth.jwks_url or auth.oidc_issuer_url",
                    ENV_PREFIX
                ),
            ));
        }
        let tenant_claim = self.tenant_claim.trim().to_owned();
        if tenant_claim.is_empty() || tenant_claim == "/" {
            return Err(ConfigError::invalid(
                "auth.tenant_claim",
                "must name a claim",
            ));
        }
        let algorithms = match self.algorithms {
            Some(names) => parse_algorithms(names.0)?,
            None => {
                let hmac = (!secrets.is_empty()).then_some(HMAC_ALGORITHMS.as_slice());
                let public = has_public.then_some(PUBLIC_KEY_ALGORITHMS.as_slice());
                hmac.into_iter().chain(public).flatten().copied().collect()
            }
        };
        let mut extra_headers = Vec::new();
        for name in self.extra_headers.0 {
            let header = HeaderName::try_from(name.as_str()).map_err(|_| {
                ConfigError::invalid(
                    "auth.extra_headers",
                    format!("`{name}` is not a header name"),
                )
            })?;
            extra_headers.push(header);
        }
        Ok(AuthSettings {
            extra_headers,
            secrets,
            jwt_secrets,
            jwt_secret_file: self.jwt_secret_file,
            jwt_secret: self.jwt_secret.map(Secret::new),
            public_keys,
            jwks_url: self.jwks_url.0,
            jwks_refresh_interval: parse_duration(
                "auth.jwks_refresh_interval",
                &self.jwks_refresh_interval,
            )?,
            jwks_min_refetch_interval: parse_duration(
                "auth.jwks_min_refetch_interval",
                &self.jwks_min_refetch_interval,
            )?,
            oidc_issuer_url: self
                .oidc_issuer_url
                .map(|url| url.trim_end_matches('/').to_owned()),
            issuer: self.issuer.0,
            require_exp: self.require_exp,
            tenant_claim,
            allow_federation: self.allow_federation,
            tenant_ids_claim: self.tenant_ids_claim.trim().to_owned(),
            audience: self.audience.0,
            algorithms,
            leeway: parse_duration("auth.leeway", &self.leeway)?,
            require_scope: self.require_scope,
            min_token_version: self.min_token_version,
            tenants: self.tenants,
        })
    }
}

/// The algorithms of `auth.algorithms`, each once.
fn parse_algorithms(names: Vec<String>) -> Result<Vec<Algorithm>, ConfigError> {
    let known = || HMAC_ALGORITHMS.iter().chain(&PUBLIC_KEY_ALGORITHMS);
    let mut algorithms = Vec::new();
    for name in names {
        let Some(&algorithm) =
            known().find(|known| format!("{known:?}").eq_ignore_ascii_case(&name))
        else {
            let all: Vec<String> = known().map(|a| format!("{a:?}")).collect();
            return Err(ConfigError::invalid(
                "auth.algorithms",
                format!("`{name}` is not supported ({})", all.join(", ")),
            ));
        };
        if !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err(ConfigError::invalid(
            "auth.algorithms",
            "must list at least one algorithm",
        ));
    }
    Ok(algorithms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(edit: impl FnOnce(&mut RawAuth)) -> Result<AuthSettings, String> {
        let mut auth = RawAuth::default();
        edit(&mut auth);
        auth.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn any_one_key_source_is_enough_and_none_is_an_error() {
        let none = raw(|_| {}).unwrap_err();
        assert!(none.starts_with("auth.jwt_secret: must be set"), "{none}");
        let jwks = raw(|a| a.jwks_url = StringList(vec!["https://idp/keys".into()])).unwrap();
        assert!(jwks.secrets.is_empty());
        assert_eq!(jwks.algorithms, PUBLIC_KEY_ALGORITHMS);
        let both = raw(|a| {
            a.jwt_secret = Some("s".into());
            a.public_keys = StringList(vec!["/k.pem".into()]);
        })
        .unwrap();
        assert_eq!(both.algorithms.len(), 12, "HMAC and public-key algorithms");
        let listed =
            raw(|a| a.jwt_secrets = StringList(vec!["first".into(), "second".into()])).unwrap();
        assert_eq!(listed.signing_secret(), b"first");
        assert_eq!(listed.algorithms, HMAC_ALGORITHMS);
    }

    #[test]
    fn mistakes_name_their_key() {
        for (edit, key) in [
            (
                Box::new(|a: &mut RawAuth| {
                    a.jwt_secret = Some("-----BEGIN PUBLIC KEY-----\nMFkw".into())
                }) as Box<dyn FnOnce(&mut RawAuth)>,
                "auth.jwt_secret: is a PEM document",
            ),
            (
                Box::new(|a: &mut RawAuth| {
                    a.jwks_url = StringList(vec!["https://idp/keys?x=1".into()])
                }),
                "auth.jwks_url: ",
            ),
            (
                Box::new(|a: &mut RawAuth| a.oidc_issuer_url = Some("idp.example.com".into())),
                "auth.oidc_issuer_url: ",
            ),
            (
                Box::new(|a: &mut RawAuth| {
                    a.jwt_secret = Some("s".into());
                    a.algorithms = Some(StringList(vec!["ES512".into()]));
                }),
                "auth.algorithms: `ES512` is not supported",
            ),
        ] {
            let error = raw(edit).unwrap_err();
            assert!(error.starts_with(key), "{error}");
        }
    }
}
