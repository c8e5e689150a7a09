//! The `[auth]` section.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::header::HeaderName;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use super::keys::{read_secret_file, HMAC_ALGORITHMS};
use crate::settings::{
    parse_duration, serialize_display_list, serialize_duration, ConfigError, Secret, StringList,
    ENV_PREFIX,
};

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
    /// Every key the configuration gives, never empty; the first signs
    /// (`token` mints with it), the others are still accepted, for
    /// rotation: `jwt_secret`, or the lines of `jwt_secret_file`.
    #[serde(skip)]
    pub secrets: Vec<Secret>,
    pub tenant_claim: String,
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
}

/// `[auth]` as written.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    jwt_secret: Option<String>,
    jwt_secret_file: Option<PathBuf>,
    tenant_claim: String,
    audience: StringList,
    algorithms: StringList,
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
            jwt_secret_file: None,
            tenant_claim: "tenant_id".to_owned(),
            audience: StringList::default(),
            algorithms: StringList(HMAC_ALGORITHMS.iter().map(|a| format!("{a:?}")).collect()),
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
        let secrets: Vec<Secret> = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(secret), None) => vec![Secret::new(secret.as_str())],
            (None, Some(path)) => read_secret_file(path)
                .map_err(|e| ConfigError::invalid("auth.jwt_secret_file", e.to_string()))?
                .into_iter()
                .map(Secret::new)
                .collect(),
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "auth.jwt_secret",
                    "set either auth.jwt_secret or auth.jwt_secret_file, not both",
                ))
            }
            (None, None) => Vec::new(),
        };
        if secrets.iter().all(|secret| secret.expose().is_empty()) {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                format!(
                    "must be set (flag -gateway.auth.jwt-secret, env {}__AUTH__JWT_SECRET, or auth.jwt_secret_file)",
                    ENV_PREFIX
                ),
            ));
        }
        let tenant_claim = self.tenant_claim.trim().to_owned();
        if tenant_claim.is_empty() {
            return Err(ConfigError::invalid(
                "auth.tenant_claim",
                "must name a claim",
            ));
        }
        let mut algorithms = Vec::new();
        for name in self.algorithms.0 {
            let upper = name.to_ascii_uppercase();
            let Some(&algorithm) = HMAC_ALGORITHMS
                .iter()
                .find(|known| format!("{known:?}") == upper)
            else {
                return Err(ConfigError::invalid(
                    "auth.algorithms",
                    format!("`{name}` is not supported (HS256, HS384, HS512)"),
                ));
            };
            if !algorithms.contains(&algorithm) {
                algorithms.push(algorithm);
            }
        }
        if algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "auth.algorithms",
                "must list at least one of HS256, HS384, HS512",
            ));
        }
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
            jwt_secret_file: self.jwt_secret_file,
            jwt_secret: self.jwt_secret.map(Secret::new),
            tenant_claim,
            audience: self.audience.0,
            algorithms,
            leeway: parse_duration("auth.leeway", &self.leeway)?,
            require_scope: self.require_scope,
            min_token_version: self.min_token_version,
            tenants: self.tenants,
        })
    }
}
