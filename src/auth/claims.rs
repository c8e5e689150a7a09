//! The claim rules a verified token must also pass: a tenant id Cortex
//! accepts, an integer `version`, and no claim given twice.

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::AuthError;

/// Cortex's limit on tenant id length.
pub const MAX_TENANT_LEN: usize = 150;

/// A token's claims, as a JSON object whose keys are all distinct.
///
/// serde_json keeps the last of two equal keys; a signer and a verifier that
/// disagree on which one counts is a classic confusion attack, so duplicates
/// are refused instead.
#[derive(Debug)]
pub struct Claims(pub Map<String, Value>);

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ClaimsVisitor;

        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = Claims;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of claims")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
                let mut claims = Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if claims.contains_key(&key) {
                        return Err(de::Error::custom("duplicate claim"));
                    }
                    claims.insert(key, value);
                }
                Ok(Claims(claims))
            }
        }

        deserializer.deserialize_map(ClaimsVisitor)
    }
}

/// Checks a tenant id against Cortex's rules: 1 to 150 characters from
/// `A-Z a-z 0-9 ! - _ . * ' ( )`, and not `.` or `..`.
pub fn validate_tenant_id(tenant: &str) -> Result<(), &'static str> {
    if tenant.is_empty() {
        return Err("tenant id is empty");
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err("tenant id is longer than 150 characters");
    }
    if tenant == "." || tenant == ".." {
        return Err("tenant id must not be . or ..");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"!-_.*'()".contains(&b);
    if !tenant.bytes().all(allowed) {
        return Err("tenant id has characters outside A-Z a-z 0-9 ! - _ . * ' ( )");
    }
    Ok(())
}

impl Claims {
    /// A claim that is a non-negative integer (`exp`, `nbf`, `version`).
    pub fn number(&self, name: &str) -> Option<u64> {
        self.0.get(name).and_then(Value::as_u64)
    }

    /// The words of the `scope` claim: a space-separated string (RFC 8693)
    /// or a list of strings; `None` when the token has no such claim.
    pub fn scopes(&self) -> Option<Vec<String>> {
        match self.0.get("scope")? {
            Value::String(words) => Some(words.split_whitespace().map(str::to_owned).collect()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .flat_map(str::split_whitespace)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => Some(Vec::new()),
        }
    }

    /// A claim by name, or by JSON pointer (RFC 6901) when the name starts
    /// with `/`, so nested claims need no mapper at the identity provider.
    pub fn lookup(&self, name: &str) -> Option<&Value> {
        let Some(pointer) = name.strip_prefix('/') else {
            return self.0.get(name);
        };
        let mut tokens = pointer
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"));
        let mut value = self.0.get(&tokens.next()?)?;
        for token in tokens {
            value = match value {
                Value::Object(map) => map.get(&token)?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    /// The `iss` claim, when it is a string.
    pub fn issuer(&self) -> Option<&str> {
        self.0.get("iss").and_then(Value::as_str)
    }

    /// The ids of a federated token's list claim, not empty and all
    /// strings (each is checked by Cortex's rules in
    /// [`super::Tenant::federated`]); `None` when the token has no such claim.
    pub fn tenant_ids(&self, claim: &str) -> Option<Result<Vec<&str>, AuthError>> {
        const NOT_A_LIST: AuthError =
            AuthError::InvalidTenant("tenant list claim is not a list of tenant ids");
        let ids = match self.lookup(claim)? {
            Value::Array(items) if !items.is_empty() => items,
            _ => return Some(Err(NOT_A_LIST)),
        };
        Some(ids.iter().map(|id| id.as_str().ok_or(NOT_A_LIST)).collect())
    }

    /// Applies the gateway's own claim rules and returns the tenant id.
    pub fn tenant(&self, tenant_claim: &str) -> Result<&str, AuthError> {
        if let Some(version) = self.0.get("version") {
            // serde_json keeps integers as integers: 1.0, 1e2 and "1" are not.
            if version.as_u64().is_none() {
                return Err(AuthError::InvalidVersion);
            }
        }
        let tenant = match self.lookup(tenant_claim) {
            Some(Value::String(tenant)) => tenant,
            Some(_) => return Err(AuthError::InvalidTenant("tenant claim is not a string")),
            None => return Err(AuthError::InvalidTenant("tenant claim is missing")),
        };
        validate_tenant_id(tenant).map_err(AuthError::InvalidTenant)?;
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> Result<Claims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn tenant_ids_follow_cortex_rules() {
        for good in ["team-a", "A_b.c", "x", "*", "(t)'!", &"a".repeat(150)] {
            assert_eq!(validate_tenant_id(good), Ok(()), "{good:?}");
        }
        let too_long = "a".repeat(151);
        let refused = [
            "", ".", "..", "a/b", "a|b", "a b", "a\nb", "a\0b", "ä", "a:b", "a%2fb",
        ];
        for bad in refused.into_iter().chain([too_long.as_str()]) {
            assert!(validate_tenant_id(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn version_must_be_a_non_negative_integer() {
        let ok = claims(r#"{"tenant_id":"t","version":3}"#).unwrap();
        assert_eq!(ok.tenant("tenant_id").unwrap(), "t");
        let absent = claims(r#"{"tenant_id":"t"}"#).unwrap();
        assert_eq!(absent.tenant("tenant_id").unwrap(), "t");
        for bad in [r#""1""#, "1.0", "1.5", "-1", "1e2", "null", "true", "[1]"] {
            let json = format!(r#"{{"tenant_id":"t","version":{bad}}}"#);
            assert!(
                matches!(
                    claims(&json).unwrap().tenant("tenant_id"),
                    Err(AuthError::InvalidVersion)
                ),
                "version {bad} must be refused"
            );
        }
    }

    #[test]
    fn tenant_claim_is_configurable_and_must_be_a_string() {
        let c = claims(r#"{"org":"t1","tenant_id":"t2"}"#).unwrap();
        assert_eq!(c.tenant("org").unwrap(), "t1");
        let c = claims(r#"{"tenant_id":42}"#).unwrap();
        assert!(matches!(
            c.tenant("tenant_id"),
            Err(AuthError::InvalidTenant(_))
        ));
        let c = claims(r#"{"sub":"x"}"#).unwrap();
        assert!(matches!(
            c.tenant("tenant_id"),
            Err(AuthError::InvalidTenant(_))
        ));
    }

    #[test]
    fn tenant_claim_may_be_nested_or_namespaced() {
        let c = claims(
            r#"{"org":{"id":"nested","teams":["t0","t1"]},"https://example.com/tenant":"url","a/b":{"c~d":"escaped"}}"#,
        )
        .unwrap();
        assert_eq!(c.tenant("/org/id").unwrap(), "nested");
        assert_eq!(c.tenant("/org/teams/1").unwrap(), "t1");
        assert_eq!(c.tenant("https://example.com/tenant").unwrap(), "url");
        assert_eq!(c.tenant("/a~1b/c~0d").unwrap(), "escaped");
        for missing in ["/org/name", "/org/id/x", "/org/teams/9", "/nothing"] {
            assert!(
                matches!(c.tenant(missing), Err(AuthError::InvalidTenant(_))),
                "{missing}"
            );
        }
        assert!(matches!(
            c.tenant("/org"),
            Err(AuthError::InvalidTenant("tenant claim is not a string"))
        ));
    }

    #[test]
    fn duplicate_claims_are_refused() {
        assert!(claims(r#"{"tenant_id":"a","tenant_id":"b"}"#).is_err());
        assert!(claims(r#"{"tenant_id":"a","x":{"y":1}}"#).is_ok());
        assert!(claims(r#"["tenant_id"]"#).is_err());
    }
}
