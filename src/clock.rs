//! Wall-clock time as every output shows it: Unix seconds (metrics, certificate dates) and
//! RFC 3339 timestamps in UTC (transcripts, JSON, the status page, logs).

use std::time::SystemTime;

/// Whole Unix seconds of `t`; 0 for a time before 1970.
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds of `t` with their fraction; 0 for a time before 1970.
pub(crate) fn unix_seconds_f64(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An RFC 3339 UTC timestamp from Unix seconds (the number itself when out of range).
pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// An RFC 3339 UTC timestamp of `t` with milliseconds (`2026-05-09T13:00:00.123Z`), as the
/// JSON result dates a probe.
pub(crate) fn rfc3339_millis(t: SystemTime) -> String {
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let nanos = i128::try_from(millis).unwrap_or(0) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_else(|| rfc3339(unix_seconds(t)))
}

/// A span of time in days, the one wording of certificate lifetimes, validity left and
/// expectations in every output: whole days from ten days on ("365 days"), one decimal below
/// ("2.5 days", "0.1 days"). Negative spans are shown by their size.
pub(crate) fn days(secs: i64) -> String {
    let days = secs.unsigned_abs() as f64 / 86_400.0;
    if days >= 10.0 {
        format!("{} days", days.floor())
    } else {
        format!("{days:.1} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_seconds_and_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(unix_seconds(t), 1_700_000_000);
        assert_eq!(unix_seconds_f64(t), 1_700_000_000.5);
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(unix_seconds(before), 0);
        assert_eq!(rfc3339_millis(t), "2023-11-14T22:13:20.500Z");
    }

    #[test]
    fn days_are_one_wording() {
        assert_eq!(days(90 * 86_400), "90 days");
        assert_eq!(days(365 * 86_400 + 3_600), "365 days");
        assert_eq!(days(60 * 86_400 - 1), "59 days");
        assert_eq!(days(-3 * 86_400), "3.0 days");
        assert_eq!(days(86_400), "1.0 days");
        assert_eq!(days(36 * 3_600), "1.5 days");
    }
}
