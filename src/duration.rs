//! Go-style durations as the CRD accepts them (`30s`, `5m`, `1h30m`, `1.5h`, `500ms`).

use std::time::Duration;

use crate::api::DURATION_PATTERN;

/// Parses a duration matching [`DURATION_PATTERN`]; `None` for anything else.
pub fn parse(text: &str) -> Option<Duration> {
    let _ = DURATION_PATTERN; // the schema refuses anything else before it gets here
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return None;
        };
        total += value * unit;
        rest = &rest[len..];
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("3m"), Some(Duration::from_secs(180)));
        for bad in ["", "5", "-5m", "soon", "5d"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
