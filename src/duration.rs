//! Go-style duration strings (`"500ms"`, `"30s"`, `"5m"`, `"1m30s"`).
//!
//! The Go gateway's flags take durations in Go's syntax, so existing
//! manifests carry values like `30s` or `1m30s`; we accept exactly that
//! shape rather than pulling in a crate with a different grammar.

use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` pairs with units
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`. A bare `0` is accepted as zero, as in Go.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` is missing a unit (ms, s, m, h)"))?;
        if digits == 0 {
            return Err(format!("`{text}` is not a duration like 500ms, 30s or 5m"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}` has a malformed number"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => return Err(format!("`{text}` has an unknown unit `{unit}`")),
        };
        rest = &rest[unit_len..];
        let nanos = number * nanos_per_unit;
        if !nanos.is_finite() || nanos > u64::MAX as f64 {
            return Err(format!("`{text}` is too large"));
        }
        total = total
            .checked_add(Duration::from_nanos(nanos as u64))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it back, for `check-config`.
pub fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        "0s".to_owned()
    } else if millis % 3_600_000 == 0 {
        format!("{}h", millis / 3_600_000)
    } else if millis % 60_000 == 0 {
        format!("{}m", millis / 60_000)
    } else if millis % 1000 == 0 {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "30", "s", "5 minutes", "1x", "-5s", "1e400h", "ms5"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "250ms", "30s", "5m", "24h", "90s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }
}
