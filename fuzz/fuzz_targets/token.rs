//! Token verification on arbitrary input: never panics, never accepts.
#![no_main]

use std::time::Duration;

use cortex_gateway::auth::Authenticator;
use cortex_gateway::config::AuthSettings;
use cortex_gateway::auth::HMAC_ALGORITHMS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let settings = AuthSettings {
        jwt_secret: b"fuzz-secret-0123456789abcdef012345".to_vec(),
        tenant_claim: "tenant_id".to_owned(),
        audience: Vec::new(),
        algorithms: HMAC_ALGORITHMS.to_vec(),
        leeway: Duration::from_secs(60),
        extra_headers: Vec::new(),
        additional_secrets: Vec::new(),
        jwt_secret_file: None,
    };
    let authenticator = Authenticator::new(&settings).unwrap();
    assert!(authenticator.verify(token).is_err(), "an unsigned input was accepted");
});
