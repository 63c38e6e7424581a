//! [`Timestamp`]: Terra's ISO-8601 timestamp with microseconds and the user's UTC offset.

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, TimeZone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An instant together with the UTC offset it is expressed in.
///
/// Serialises exactly as Terra does: `2026-07-01T07:02:00.000000+01:00` (always six
/// fractional digits, always a numeric offset; UTC is `+00:00`, never `Z`). Parsing is
/// lenient: any RFC 3339 timestamp (`Z`, no or any number of fractional digits).
/// Sub-microsecond precision is truncated when formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<FixedOffset>);

/// Error returned when a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timestamp `{input}`: expected RFC 3339 such as 2026-07-01T07:02:00+01:00 ({reason})"
)]
pub struct TimestampError {
    /// The rejected input.
    pub input: String,
    /// The parser's reason.
    pub reason: String,
}

impl Timestamp {
    /// Parses any RFC 3339 timestamp.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(Timestamp)
            .map_err(|e| TimestampError {
                input: s.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Local midnight of `day` in `offset` (the start of a Terra day payload);
    /// `None` only at the very ends of chrono's date range.
    pub fn midnight(day: NaiveDate, offset: FixedOffset) -> Option<Self> {
        let naive = day.and_hms_opt(0, 0, 0)?;
        offset.from_local_datetime(&naive).single().map(Timestamp)
    }

    /// The same instant expressed in another offset.
    pub fn with_offset(self, offset: FixedOffset) -> Self {
        Timestamp(self.0.with_timezone(&offset))
    }

    /// This instant shifted by `seconds` (keeps the offset); `None` on overflow.
    pub fn plus_seconds(self, seconds: i64) -> Option<Self> {
        let delta = chrono::TimeDelta::try_seconds(seconds)?;
        self.0.checked_add_signed(delta).map(Timestamp)
    }

    /// This instant shifted by fractional seconds, rounded to the microsecond;
    /// `None` on overflow or a non-finite shift.
    pub fn plus_seconds_f64(self, seconds: f64) -> Option<Self> {
        if !seconds.is_finite() || seconds.abs() > 1.0e12 {
            return None;
        }
        let micros = (seconds * 1_000_000.0).round() as i64;
        self.0
            .checked_add_signed(chrono::TimeDelta::microseconds(micros))
            .map(Timestamp)
    }

    /// The calendar date in this timestamp's own offset.
    pub fn date(self) -> NaiveDate {
        self.0.date_naive()
    }

    /// The offset.
    pub fn offset(self) -> FixedOffset {
        *self.0.offset()
    }

    /// Terra's wire format (`YYYY-MM-DDTHH:MM:SS.ffffff±HH:MM`).
    pub fn to_terra_string(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Micros, false)
    }
}

impl From<DateTime<FixedOffset>> for Timestamp {
    fn from(v: DateTime<FixedOffset>) -> Self {
        Timestamp(v)
    }
}

impl From<Timestamp> for DateTime<FixedOffset> {
    fn from(v: Timestamp) -> Self {
        v.0
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_terra_string())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_terra_string())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_micros_and_offset() {
        let t = Timestamp::parse("2026-07-01T07:02:00+01:00").unwrap();
        assert_eq!(t.to_terra_string(), "2026-07-01T07:02:00.000000+01:00");
        let z = Timestamp::parse("2021-01-01T01:02:03Z").unwrap();
        assert_eq!(z.to_terra_string(), "2021-01-01T01:02:03.000000+00:00");
        let frac = Timestamp::parse("2021-11-26T04:00:00.123-08:00").unwrap();
        assert_eq!(
            serde_json::to_string(&frac).unwrap(),
            "\"2021-11-26T04:00:00.123000-08:00\""
        );
    }

    #[test]
    fn rejects_garbage() {
        let e = Timestamp::parse("yesterday").unwrap_err();
        assert!(e.to_string().contains("yesterday"));
        assert!(serde_json::from_str::<Timestamp>("\"2021-13-01T00:00:00Z\"").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"2021-01-01T00:00:00\"").is_err());
    }

    #[test]
    fn midnight_in_offset() {
        let off = FixedOffset::east_opt(3600).unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(
            Timestamp::midnight(d, off).unwrap().to_terra_string(),
            "2026-07-01T00:00:00.000000+01:00"
        );
    }
}
