//! UTCTimestamp (`YYYYMMDD-HH:MM:SS[.fff…]`) to and from nanoseconds since the Unix epoch, without
//! a calendar library: the civil-date algorithms of Howard Hinnant's `chrono` paper.

use std::time::{SystemTime, UNIX_EPOCH};

const NS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYYMMDD-HH:MM:SS.sss` (milliseconds, as FIX 4.4 allows).
pub fn format_timestamp(ns: u64) -> String {
    let secs = ns / NS_PER_SEC;
    let millis = (ns % NS_PER_SEC) / 1_000_000;
    let (year, month, day) = civil_from_days((secs / SECS_PER_DAY) as i64);
    let in_day = secs % SECS_PER_DAY;
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{millis:03}",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

/// Parses `YYYYMMDD-HH:MM:SS` with an optional fraction of up to nine digits.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 17 || bytes[8] != b'-' || bytes[11] != b':' || bytes[14] != b':' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(12..14)?, number(15..17)?);
    let fraction_ns = match &text[17..] {
        "" => 0,
        rest => {
            let digits = rest.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
        }
    };
    // 60 is a leap second, which FIX allows.
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    if civil_from_days(days) != (i64::from(year), month, day) {
        return None;
    }
    let secs = days as u64 * SECS_PER_DAY
        + u64::from(hour) * 3_600
        + u64::from(minute) * 60
        + u64::from(second);
    // Past 2554 nanoseconds since 1970 overflow u64: not a time anyone sends in earnest.
    secs.checked_mul(NS_PER_SEC)?.checked_add(fraction_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_instants() {
        assert_eq!(parse_timestamp("19700101-00:00:00"), Some(0));
        assert_eq!(
            parse_timestamp("20180126-00:02:00.5"),
            Some(1_516_924_920_500_000_000)
        );
        assert_eq!(
            format_timestamp(1_516_924_920_500_000_000),
            "20180126-00:02:00.500"
        );
        for ns in [0, 951_782_400_123_000_000, 4_102_444_799_999_000_000] {
            assert_eq!(parse_timestamp(&format_timestamp(ns)), Some(ns));
        }
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for text in [
            "",
            "20240101",
            "20240101 00:00:00",
            "20240230-00:00:00",
            "20241301-00:00:00",
            "20240101-24:00:00",
            "20240101-00:00:00.",
            "20240101-00:00:00.1234567890",
            "2024010a-00:00:00",
            "20240101-00:00:00Z",
            "99991231-23:59:59",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
    }
}
