//! Token verification on arbitrary input: never panics, never accepts.
#![no_main]

use cortex_gateway::auth::Authenticator;
use cortex_gateway::config::AuthSettings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let settings = AuthSettings::with_secret("fuzz-secret-0123456789abcdef012345");
    let authenticator = Authenticator::new(&settings).unwrap();
    assert!(authenticator.verify(token).is_err(), "an unsigned input was accepted");
});
