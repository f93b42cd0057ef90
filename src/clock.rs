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
    }
}
