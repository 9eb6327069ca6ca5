//! Timestamps as the store keeps them: milliseconds since the Unix epoch (UTC), shown and read
//! as RFC 3339 (`2024-05-01T12:00:00.000Z`).
//!
//! Integers sort and compare the same way in SQLite and PostgreSQL, so every time filter and
//! page cursor is one integer comparison on both.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in whole milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time (the system clock; a clock before 1970 reads as the epoch).
    pub fn now() -> Self {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The timestamp `ms` milliseconds after the epoch.
    pub fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// This time moved back by `d` (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// This time moved forward by `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }
}

/// Days since the epoch → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since the epoch; Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, mo, d) = civil_from_days(days);
        write!(f, "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
    }
}

/// Why a text is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a timestamp: use RFC 3339 (`2024-05-01T12:00:00Z`), a date (`2024-05-01`) or milliseconds since 1970")]
pub struct BadTimestamp(pub String);

impl FromStr for Timestamp {
    type Err = BadTimestamp;

    /// Reads RFC 3339 (`2024-05-01T12:00:00Z`, `…T12:00:00.250+02:00`), a bare date
    /// (`2024-05-01`, midnight UTC) or an integer of milliseconds since the epoch.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadTimestamp(s.to_string());
        let t = s.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().map(Timestamp).map_err(|_| bad());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, BadTimestamp> {
            let part = t.get(range).ok_or_else(bad)?;
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        if t.len() < 10 || t.as_bytes()[4] != b'-' || t.as_bytes()[7] != b'-' {
            return Err(bad());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        let days = days_from_civil(y, mo as u32, d as u32);
        if civil_from_days(days) != (y, mo as u32, d as u32) {
            return Err(bad());
        }
        let mut ms = days * 86_400_000;
        if t.len() == 10 {
            return Ok(Timestamp(ms));
        }
        let b = t.as_bytes();
        if !matches!(b[10], b'T' | b't' | b' ') || t.len() < 20 || b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        ms += (h * 3600 + mi * 60 + sec) * 1000;
        let mut rest = &t[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return Err(bad());
            }
            let digits = format!("{:0<3}", &frac[..n.min(3)]);
            ms += digits.parse::<i64>().map_err(|_| bad())?;
            rest = &frac[n..];
        }
        let offset_min = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let oh: i64 = rest.get(1..3).and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                let om: i64 = rest.get(4..6).and_then(|x| x.parse().ok()).ok_or_else(bad)?;
                sign * (oh * 60 + om)
            }
            _ => return Err(bad()),
        };
        Ok(Timestamp(ms - offset_min * 60_000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_and_read_back() {
        for ms in [0, 1_714_564_800_123, 951_782_400_000, -1, 4_102_444_799_999] {
            let t = Timestamp::from_millis(ms);
            assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t), "{t}");
        }
        assert_eq!(Timestamp::from_millis(1_714_564_800_123).to_string(), "2024-05-01T12:00:00.123Z");
        assert_eq!(Timestamp::from_millis(951_782_400_000).to_string(), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn dates_offsets_fractions_and_milliseconds_are_read() {
        let t = |s: &str| s.parse::<Timestamp>().map(Timestamp::millis);
        assert_eq!(t("2024-05-01"), Ok(1_714_521_600_000));
        assert_eq!(t("2024-05-01T14:00:00+02:00"), Ok(1_714_564_800_000));
        assert_eq!(t("2024-05-01T12:00:00.5Z"), Ok(1_714_564_800_500));
        assert_eq!(t("2024-05-01 12:00:00.123456Z"), Ok(1_714_564_800_123));
        assert_eq!(t("1714564800000"), Ok(1_714_564_800_000));
    }

    #[test]
    fn malformed_timestamps_are_refused() {
        for s in [
            "",
            "yesterday",
            "2024-13-01",
            "2023-02-29",
            "2024-05-01T25:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+é:00",
        ] {
            assert!(s.parse::<Timestamp>().is_err(), "{s:?} was accepted");
        }
    }
}
