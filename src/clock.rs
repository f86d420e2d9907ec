//! Time as the gateway writes it: wall-clock stamps for records and events, and the
//! operator's duration spellings (`30d`, `12h`, `90m`).

/// Now as RFC 3339 (UTC), the stamp of every record, event and log line we write.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Now in milliseconds since the Unix epoch (hold deadlines, liveness).
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Parse `30d`, `12h`, `90m`, `45s` (or a bare number of seconds) into seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30d, 12h or 90m"))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("{s:?}: unit must be d, h, m or s")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (input, want) in [("30d", Ok(2_592_000)), ("12h", Ok(43_200)), ("90m", Ok(5_400)), ("7", Ok(7))] {
            assert_eq!(parse_duration(input), want, "{input}");
        }
        for input in ["", "d", "3w", "99999999999999999999d"] {
            assert!(parse_duration(input).is_err(), "{input} was accepted");
        }
    }

    #[test]
    fn stamps() {
        assert!(now_rfc3339().ends_with('Z'));
        assert!(now_ms() > 1_600_000_000_000);
    }
}
