//! Timestamps as JavaScript's `Date.prototype.toISOString()` writes them.
//!
//! The seeds' payloads (`authenticated`, `unauthenticated`, `ping`) carry
//! `time: new Date().toISOString()`, e.g. `2026-11-22T09:30:00.123Z`: UTC, millisecond
//! precision, a `Z` suffix. Clients parse it with `new Date(time)`, so the exact shape matters.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time formatted as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_now() -> String {
    iso_string(SystemTime::now())
}

/// Milliseconds since the Unix epoch (JavaScript's `Date.now()`), 0 before the epoch.
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Formats `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn iso_string(at: SystemTime) -> String {
    iso_of_millis(i64::try_from(unix_millis(at)).unwrap_or(i64::MAX))
}

/// Milliseconds since the Unix epoch, before it too, as `toISOString()` writes them: a year
/// outside 0 to 9999 takes a sign and six digits (`+275760-09-13T00:00:00.000Z`,
/// `-000001-12-31T00:00:00.000Z`), as ECMAScript's extended years do.
pub(crate) fn iso_of_millis(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hours, minutes) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (seconds, ms) = (in_day / 1000 % 60, in_day % 1000);
    if (0..=9999).contains(&year) {
        // Every `authenticated`, `ping` and handshake takes one: written digit by digit, as
        // `format!` cost about forty times as much.
        let mut out = *b"0000-00-00T00:00:00.000Z";
        for (at, width, n) in [
            (0, 4, year),
            (5, 2, i64::from(month)),
            (8, 2, i64::from(day)),
            (11, 2, hours),
            (14, 2, minutes),
            (17, 2, seconds),
            (20, 3, ms),
        ] {
            put_digits(&mut out[at..at + width], n as u32);
        }
        return out.iter().map(|&b| char::from(b)).collect();
    }
    let sign = if year < 0 { '-' } else { '+' };
    format!(
        "{sign}{:06}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{ms:03}Z",
        year.unsigned_abs()
    )
}

/// Writes `n` into `out` in decimal, zero-padded to its width (higher digits dropped).
fn put_digits(out: &mut [u8], mut n: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, valid for every date a JavaScript `Date` can hold (and far beyond).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(millis: u64) -> String {
        iso_string(UNIX_EPOCH + Duration::from_millis(millis))
    }

    #[test]
    fn formats_like_to_iso_string() {
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        // new Date(1795340096789).toISOString()
        assert_eq!(at(1_795_340_096_789), "2026-11-22T09:34:56.789Z");
        // A leap day: new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 999)).toISOString()
        assert_eq!(at(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn formats_every_epoch_like_to_iso_string() {
        // Each from `new Date(ms).toISOString()` in Node.
        let cases = [
            (-14_182_940_000, "1969-07-20T20:17:40.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-62_167_219_200_000, "0000-01-01T00:00:00.000Z"),
            (-62_167_219_200_001, "-000001-12-31T23:59:59.999Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
            (253_402_300_800_000, "+010000-01-01T00:00:00.000Z"),
            (8_640_000_000_000_000, "+275760-09-13T00:00:00.000Z"),
            (-8_640_000_000_000_000, "-271821-04-20T00:00:00.000Z"),
        ];
        for (ms, iso) in cases {
            assert_eq!(iso_of_millis(ms), iso, "{ms}");
        }
    }

    #[test]
    fn now_has_the_javascript_shape() {
        let now = iso_now();
        assert_eq!(now.len(), 24);
        assert!(now.ends_with('Z'));
        assert_eq!(&now[10..11], "T");
    }
}
