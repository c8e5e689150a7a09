//! Credential header parsing (Bearer, Basic, bare token) on arbitrary input.
#![no_main]

use cortex_gateway::auth::extract::token_from_value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = std::str::from_utf8(data) {
        let _ = token_from_value(value);
    }
});
