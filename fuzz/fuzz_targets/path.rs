//! The canonical path check: whatever it accepts has no traversal.
#![no_main]

use cortex_gateway::routes::check_canonical;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if check_canonical(path).is_ok() {
        let lower = path.to_ascii_lowercase();
        assert!(!lower.contains("%2e") && !lower.contains("%2f") && !lower.contains("%00"));
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if trimmed.len() > 1 {
            assert!(trimmed[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        }
    }
});
