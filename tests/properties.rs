//! Property tests over the parsers that face attackers: path canonical
//! checks, credential extraction and token verification. They stand in for
//! fuzzing where no nightly toolchain is available.

use std::time::Duration;

use cortex_gateway::auth::extract::token_from_value;
use cortex_gateway::auth::{mint_token, Authenticator, TokenRequest};
use cortex_gateway::config::AuthSettings;
use cortex_gateway::routes::check_canonical;
use jsonwebtoken::Algorithm;
use proptest::prelude::*;

fn settings() -> AuthSettings {
    AuthSettings {
        leeway: Duration::ZERO,
        ..AuthSettings::with_secret("property-test-secret-0123456789ab")
    }
}

fn valid_token(tenant: &str) -> String {
    mint_token(
        &settings(),
        &TokenRequest {
            tenant: tenant.to_owned(),
            version: 1,
            audience: None,
            expires_in: Some(Duration::from_secs(3600)),
            algorithm: Algorithm::HS256,
        },
    )
    .unwrap()
}

const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn canonical_paths_have_no_traversal(path in "(/|[a-z.%2eEfF/\\\\]{0,4}|%[0-9a-fA-F]{2}){0,12}") {
        if check_canonical(&path).is_ok() {
            prop_assert!(path.starts_with('/'));
            let trimmed = path.strip_suffix('/').unwrap_or(&path);
            if trimmed.len() > 1 {
                for segment in trimmed[1..].split('/') {
                    prop_assert!(!segment.is_empty() && segment != "." && segment != "..", "{path}");
                }
            }
            let lower = path.to_ascii_lowercase();
            for forbidden in ["%2e", "%2f", "%5c", "%00", "\\"] {
                prop_assert!(!lower.contains(forbidden), "{path}");
            }
        }
    }

    #[test]
    fn check_canonical_never_panics(path in any::<String>()) {
        let _ = check_canonical(&path);
    }

    #[test]
    fn credential_parsing_never_panics(value in any::<String>()) {
        let _ = token_from_value(&value);
    }

    #[test]
    fn arbitrary_tokens_are_refused_without_panicking(token in "[A-Za-z0-9_.=-]{0,400}") {
        let authenticator = Authenticator::new(&settings()).unwrap();
        prop_assert!(authenticator.verify(&token).is_err());
    }

    #[test]
    fn any_change_to_header_or_claims_breaks_the_signature(
        tenant in "[a-z0-9-]{1,20}",
        position in any::<prop::sample::Index>(),
        replacement in any::<prop::sample::Index>(),
    ) {
        let authenticator = Authenticator::new(&settings()).unwrap();
        let token = valid_token(&tenant);
        let verified = authenticator.verify(&token).unwrap();
        prop_assert_eq!(verified.as_str(), tenant.as_str());
        let signed_part = token.rfind('.').unwrap();
        let mut bytes = token.into_bytes();
        let at = position.index(signed_part);
        prop_assume!(bytes[at] != b'.');
        let new = BASE64URL[replacement.index(BASE64URL.len())];
        prop_assume!(new != bytes[at]);
        bytes[at] = new;
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(authenticator.verify(&tampered).is_err());
    }
}
