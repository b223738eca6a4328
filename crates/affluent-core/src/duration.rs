//! Human durations in the project file: `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"1d"`, `"2w"`.

use std::time::Duration;

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h`, `d` or `w` (several may follow each
/// other: `"1h30m"`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: expected e.g. \"30s\", \"15m\", \"1h\", \"1d\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number then a unit (ms, s, m, h, d, w), e.g. \"15m\""
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit after {number} (ms, s, m, h, d, w)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (expected ms, s, m, h, d or w)"
                ));
            }
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        total += Duration::from_millis(millis);
    }
    Ok(total)
}

/// Formats a duration compactly for summaries: `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A period in the project file's own notation, largest units first: `"1d"`, `"1h30m"`,
/// `"2w"`, `"500ms"`; [`parse_duration`] reads it back to the same duration.
pub fn format_period(d: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_back() {
        for text in ["1d", "1h30m", "2w", "500ms", "15m", "1w1d", "90s"] {
            let d = parse_duration(text).expect("valid");
            assert_eq!(parse_duration(&format_period(d)), Ok(d), "{text}");
        }
        assert_eq!(format_period(Duration::from_secs(3600)), "1h");
        assert_eq!(format_period(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn rejects_bad_input_with_a_hint() {
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5y").unwrap_err().contains("unknown unit"));
        assert!(
            parse_duration("h")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(parse_duration("").is_err());
    }
}
