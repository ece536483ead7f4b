//! Go-style durations as the CRD accepts them (`30s`, `5m`, `1h30m`, `1.5h`, `500ms`), at most
//! [`MAX`].
//!
//! Every duration comes from an Application author (or a flag), so parsing must never panic:
//! the arithmetic is integer nanoseconds with checked operations, and anything longer than
//! [`MAX`] is refused. The bound is what keeps the values usable downstream, not only parsable:
//! `Instant::now() + d` panics on overflow, and tokio-util's `DelayQueue` (under kube-runtime's
//! requeue) refuses deadlines beyond about 2.2 years. One year is longer than any interval,
//! deadline or pause anyone means, and well inside both.

use std::time::Duration;

use crate::api::DURATION_PATTERN;

/// The longest duration ferry accepts anywhere; the CRD states the same bound
/// ([`crate::api::MAX_DURATION_TEXT`]).
pub const MAX: Duration = Duration::from_secs(8760 * 3600);

/// Parses a duration matching [`DURATION_PATTERN`] that is at most [`MAX`]; `None` for anything
/// else, never a panic.
pub fn parse(text: &str) -> Option<Duration> {
    let _ = DURATION_PATTERN; // the schema refuses anything else before it gets here
    if text.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        // `find` returns a char boundary and units are ASCII, so the slicing below is safe for
        // any input.
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, after) = rest.split_at(end);
        let (unit, len) = unit_nanos(after)?;
        total = total.checked_add(nanos(number, unit)?)?;
        if total > MAX.as_nanos() {
            return None;
        }
        rest = &after[len..];
    }
    Some(Duration::from_nanos(u64::try_from(total).ok()?))
}

/// The unit at the start of `text`: nanoseconds per unit and the unit's length in bytes.
fn unit_nanos(text: &str) -> Option<(u128, usize)> {
    const SECOND: u128 = 1_000_000_000;
    if text.starts_with("ms") {
        Some((SECOND / 1000, 2))
    } else if text.starts_with('s') {
        Some((SECOND, 1))
    } else if text.starts_with('m') {
        Some((60 * SECOND, 1))
    } else if text.starts_with('h') {
        Some((3600 * SECOND, 1))
    } else {
        None
    }
}

/// `number` (digits, optionally `.` and more digits) times `unit` nanoseconds; `None` when it
/// is malformed or overflows. Fraction digits below a nanosecond are dropped, as Go drops them.
fn nanos(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let has_dot = number.contains('.');
    if whole.is_empty() || (has_dot && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let mut total = whole.parse::<u128>().ok()?.checked_mul(unit)?;
    let mut scale = unit;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        total = total.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(total)
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
        assert_eq!(parse("1.5ms"), Some(Duration::from_micros(1500)));
        assert_eq!(parse("0.25s"), Some(Duration::from_millis(250)));
        assert_eq!(parse("3m"), Some(Duration::from_secs(180)));
        for bad in ["", "5", "-5m", "soon", "5d", ".5s", "5.s", "1.2.3s", "5mm", "h"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_bound_is_inclusive_and_nothing_past_it_parses() {
        assert_eq!(parse("8760h"), Some(MAX));
        assert_eq!(parse("525600m"), Some(MAX));
        assert_eq!(parse("8760h1ms"), None);
        assert_eq!(parse("8759h60m1s"), None);
        assert_eq!(parse("8760.000001h"), None);
    }

    /// The value that killed every replica (issue 19, defect 4), and its relatives: each one
    /// overflowed `Duration::from_secs_f64` or a later `Instant` addition.
    #[test]
    fn huge_and_hostile_values_are_refused_without_panicking() {
        let hostile = [
            "99999999999999999999h",
            "99999999999999999999999999999999999999999999999h",
            "340282366920938463463374607431768211456ms",
            "1000000000000h",
            "9999999h9999999h9999999h9999999h",
            "1.99999999999999999999999999999999999999999999999h",
            "0.000000000000000000000000000001ms",
            "1hé",
            "é1h",
            "1\u{0663}h",
        ];
        for text in hostile {
            let parsed = parse(text);
            assert!(parsed.is_none_or(|d| d <= MAX), "{text}: {parsed:?}");
        }
        assert_eq!(parse("99999999999999999999h"), None);
        assert_eq!(parse("0.000000000000000000000000000001ms"), Some(Duration::ZERO));
    }
}
