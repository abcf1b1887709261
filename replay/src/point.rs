//! Points in a journal: a sequence number or an instant. Auditors ask "at 12:09 on 26 January"
//! as often as "after seq 1042", so every `--at`, `--from` and `--to` takes either.
//!
//! RFC 3339 parsing and formatting use the `time` crate (parsing and formatting features only):
//! offsets are honoured (`2018-01-26T12:09:00+09:00`), fractions of a second down to the
//! nanosecond are kept, and every instant is printed back in UTC.

use std::fmt;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ReplayError;

/// A point in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// After the command with this sequence number (0: genesis, before any command).
    Seq(u64),
    /// After the last command stamped at or before this instant (ns since the Unix epoch).
    Time(u64),
}

impl Point {
    /// A plain integer is a sequence number; anything else must be an RFC 3339 instant.
    pub fn parse(text: &str) -> Result<Point, ReplayError> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(Point::Seq)
                .map_err(|_| ReplayError::BadPoint(text.into()));
        }
        parse_rfc3339_ns(text).map(Point::Time)
    }

    /// True when the command `(seq, ts_ns)` is at or before this point (`--at`, `--to`).
    pub fn admits_until(self, seq: u64, ts_ns: u64) -> bool {
        match self {
            Point::Seq(last) => seq <= last,
            Point::Time(last_ns) => ts_ns <= last_ns,
        }
    }

    /// True when the command `(seq, ts_ns)` is at or after this point (`--from`).
    pub fn admits_from(self, seq: u64, ts_ns: u64) -> bool {
        match self {
            Point::Seq(first) => seq >= first,
            Point::Time(first_ns) => ts_ns >= first_ns,
        }
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Point::Seq(seq) => write!(f, "seq {seq}"),
            Point::Time(ts_ns) => write!(f, "{}", format_ts(ts_ns)),
        }
    }
}

/// A window `[from, to]`, both ends inclusive; an open end is the journal's start or end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<Point>,
    pub to: Option<Point>,
}

impl Window {
    pub const ALL: Window = Window {
        from: None,
        to: None,
    };

    pub fn admits(&self, seq: u64, ts_ns: u64) -> bool {
        self.from.is_none_or(|p| p.admits_from(seq, ts_ns))
            && self.to.is_none_or(|p| p.admits_until(seq, ts_ns))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            Some(p) => write!(f, "{p}")?,
            None => write!(f, "start")?,
        }
        write!(f, " .. ")?;
        match self.to {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "end"),
        }
    }
}

/// Nanoseconds since the Unix epoch from an RFC 3339 instant.
pub fn parse_rfc3339_ns(text: &str) -> Result<u64, ReplayError> {
    let instant = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| ReplayError::BadPoint(format!("{text}: {e}")))?;
    u64::try_from(instant.unix_timestamp_nanos())
        .map_err(|_| ReplayError::BadPoint(format!("{text}: before 1970")))
}

/// An instant as RFC 3339 in UTC; fractions of a second only when there are any.
pub fn format_ts(ts_ns: u64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ts_ns}ns"))
}

/// Where a replay stopped: the last command applied (seq 0 and no time: genesis).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Reached {
    pub seq: u64,
    pub ts_ns: Option<u64>,
}

impl Reached {
    pub fn time(&self) -> Option<String> {
        self.ts_ns.map(format_ts)
    }
}

impl fmt::Display for Reached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}", self.seq)?;
        match self.ts_ns {
            Some(ts_ns) => write!(f, " ({})", format_ts(ts_ns)),
            None => write!(f, " (genesis)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_sequence_numbers_and_the_rest_rfc3339() {
        assert_eq!(Point::parse("42").unwrap(), Point::Seq(42));
        assert_eq!(
            Point::parse("1970-01-01T00:00:01Z").unwrap(),
            Point::Time(1_000_000_000)
        );
        assert_eq!(
            Point::parse("2018-01-26T12:09:00+09:00").unwrap(),
            Point::parse("2018-01-26T03:09:00Z").unwrap()
        );
        assert_eq!(
            Point::parse("1970-01-01T00:00:00.000000123Z").unwrap(),
            Point::Time(123)
        );
        assert!(Point::parse("yesterday").is_err());
        assert!(Point::parse("-5").is_err());
        assert!(Point::parse("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn instants_print_back_in_utc() {
        let ts_ns = parse_rfc3339_ns("2018-01-26T12:09:00+09:00").unwrap();
        assert_eq!(format_ts(ts_ns), "2018-01-26T03:09:00Z");
        assert_eq!(format_ts(1_500), "1970-01-01T00:00:00.0000015Z");
    }

    #[test]
    fn windows_are_inclusive_at_both_ends() {
        let w = Window {
            from: Some(Point::Seq(3)),
            to: Some(Point::Time(100)),
        };
        assert!(w.admits(3, 100));
        assert!(!w.admits(2, 50));
        assert!(!w.admits(4, 101));
    }
}
