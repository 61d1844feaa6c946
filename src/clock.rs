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
    let millis = unix_millis(at);
    let secs = millis / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's
/// `civil_from_days`, valid for every date a `SystemTime` after the epoch can hold.
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
    fn now_has_the_javascript_shape() {
        let now = iso_now();
        assert_eq!(now.len(), 24);
        assert!(now.ends_with('Z'));
        assert_eq!(&now[10..11], "T");
    }
}
