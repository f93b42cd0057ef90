//! Dates of `Received:` and `Date:` fields: RFC 5322 §3.3 (`[day-of-week ","] day month year
//! hour ":" minute [":" second] zone`), with the obsolete syntax of §4.3 (two- and three-digit
//! years, named zones such as `GMT`, `EST`, `UT` and the military letters) and what real servers
//! write besides: comments such as `(UTC)` or `(PST)`, a missing comma or day of week, full day
//! and month names, any case, fractional seconds, `+hh:mm` offsets, no zone at all, the
//! `asctime` order (`Mon Nov 30 13:00:00 2026`) and RFC 3339.
//!
//! Resolution is one second (fractions are dropped): what the hop split can tell apart.

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use super::strip_comments;

/// Unix seconds of a date as mail servers write it; `None` when it is not one.
pub fn parse(text: &str) -> Option<i64> {
    let bare = strip_comments(text);
    if let Some(t) = rfc3339(bare.trim()) {
        return Some(t);
    }
    let cleaned = bare.replace(',', " ");
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    if words.first().is_some_and(|w| weekday(w)) {
        words.remove(0);
    }
    // Day month year time [zone], or asctime's month day time year [zone].
    let (day, month, year, clock, zone) = match words.as_slice() {
        [d, m, y, t, rest @ ..] if d.bytes().all(|b| b.is_ascii_digit()) => (*d, *m, *y, *t, rest),
        [m, d, t, y, rest @ ..] => (*d, *m, *y, *t, rest),
        _ => return None,
    };
    let day: u8 = small_number(day)?;
    let month = month_named(month)?;
    let year = full_year(year)?;
    let clock = time_of_day(clock)?;
    let offset = match zone {
        [] => UtcOffset::UTC,
        [z, ..] => offset(z)?,
    };
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(
        PrimitiveDateTime::new(date, clock)
            .assume_offset(offset)
            .unix_timestamp(),
    )
}

fn rfc3339(text: &str) -> Option<i64> {
    let looks = text.len() >= 20 && text.as_bytes().get(4) == Some(&b'-');
    if !looks {
        return None;
    }
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// `Mon`, `monday`, `Mon.`: a day of the week (ignored: the date says which day it is).
fn weekday(word: &str) -> bool {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    w.len() >= 3
        && DAYS.iter().any(|d| w.starts_with(d))
        && w.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A month by its English name or its first three letters, any case.
fn month_named(word: &str) -> Option<Month> {
    const MONTHS: [(&str, Month); 12] = [
        ("jan", Month::January),
        ("feb", Month::February),
        ("mar", Month::March),
        ("apr", Month::April),
        ("may", Month::May),
        ("jun", Month::June),
        ("jul", Month::July),
        ("aug", Month::August),
        ("sep", Month::September),
        ("oct", Month::October),
        ("nov", Month::November),
        ("dec", Month::December),
    ];
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    if w.len() < 3 || !w.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    MONTHS
        .iter()
        .find(|(name, _)| w.starts_with(name))
        .map(|&(_, m)| m)
}

/// Up to two digits.
fn small_number(word: &str) -> Option<u8> {
    (!word.is_empty() && word.len() <= 2 && word.bytes().all(|b| b.is_ascii_digit()))
        .then(|| word.parse().ok())
        .flatten()
}

/// RFC 5322 §4.3: a two-digit year below 50 is 20xx, otherwise 19xx; three digits add 1900.
fn full_year(word: &str) -> Option<i32> {
    if word.is_empty() || word.len() > 4 || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = word.parse().ok()?;
    Some(match word.len() {
        1 | 2 if n < 50 => 2000 + n,
        1..=3 => 1900 + n,
        _ => n,
    })
}

/// `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fff`; a leap second counts as the second before it.
fn time_of_day(word: &str) -> Option<Time> {
    let whole = word.split('.').next()?;
    let mut parts = whole.split(':');
    let hour = small_number(parts.next()?)?;
    let minute = small_number(parts.next()?)?;
    let second = match parts.next() {
        Some(s) => small_number(s)?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Time::from_hms(hour, minute, second.min(59)).ok()
}

/// `+hhmm`, `-hhmm`, `+hh:mm`, or a zone name of RFC 5322 §4.3. The military letters are taken
/// as `-0000` (unknown), as §4.3 advises: their sign was used both ways.
fn offset(word: &str) -> Option<UtcOffset> {
    let hours = |h: i8| UtcOffset::from_hms(h, 0, 0).ok();
    match word.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => return Some(UtcOffset::UTC),
        "EST" => return hours(-5),
        "EDT" => return hours(-4),
        "CST" => return hours(-6),
        "CDT" => return hours(-5),
        "MST" => return hours(-7),
        "MDT" => return hours(-6),
        "PST" => return hours(-8),
        "PDT" => return hours(-7),
        w if w.len() == 1 && w.bytes().all(|b| b.is_ascii_alphabetic()) => {
            return Some(UtcOffset::UTC)
        }
        _ => {}
    }
    let (sign, rest) = match word.as_bytes().first()? {
        b'+' => (1i32, &word[1..]),
        b'-' => (-1i32, &word[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|&c| c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    if m >= 60 {
        return None;
    }
    UtcOffset::from_whole_seconds(sign * (h * 3600 + m * 60)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T13:00:00Z.
    const T: i64 = 1_796_043_600;

    #[test]
    fn rfc5322_dates_and_real_world_variants() {
        let table: &[(&str, i64)] = &[
            ("Mon, 30 Nov 2026 13:00:00 +0000", T),
            ("Mon, 30 Nov 2026 13:00:00 -0000", T),
            ("Mon, 30 Nov 2026 13:00:00 +0000 (UTC)", T),
            ("Mon, 30 Nov 2026 05:00:00 -0800 (PST)", T),
            ("Mon, 30 Nov 2026 14:00:00 +0100 (CET)", T),
            ("Mon, 30 Nov 2026 18:30:00 +0530", T),
            ("30 Nov 2026 13:00:00 +0000", T),
            ("Mon 30 Nov 2026 13:00:00 +0000", T),
            ("Monday, 30 November 2026 13:00:00 +0000", T),
            ("mon, 30 nov 2026 13:00:00 gmt", T),
            ("Mon, 30 Nov 2026 13:00:00 GMT", T),
            ("Mon, 30 Nov 2026 13:00:00 UT", T),
            ("Mon, 30 Nov 2026 13:00:00 Z", T),
            ("Mon, 30 Nov 2026 08:00:00 EST", T),
            ("Mon, 30 Nov 2026 06:00:00 PDT", T),
            ("Mon, 30 Nov 2026 13:00:00 A", T),
            ("Mon, 30 Nov 2026 13:00 +0000", T),
            ("Mon, 30 Nov 2026 13:00:00.123 +0000", T),
            ("Mon, 30 Nov 2026 14:00:00 +01:00", T),
            ("Mon,  30 Nov 2026   13:00:00   +0000", T),
            ("Mon, 30 Nov 26 13:00:00 +0000", T),
            ("Mon, 30 Nov 126 13:00:00 +0000", T),
            ("Mon, 30 Nov 2026 13:00:00", T),
            (
                "Mon, 30 Nov 2026 13:00:00 +0000 (Coordinated (Universal) Time)",
                T,
            ),
            ("Mon Nov 30 13:00:00 2026", T),
            ("Mon Nov 30 14:00:00 2026 +0100", T),
            ("2026-11-30T13:00:00Z", T),
            ("2026-11-30T14:00:00.5+01:00", T),
            ("Mon, 2 Nov 2026 13:00:00 +0000", T - 28 * 86_400),
            ("Thu, 31 Dec 2026 23:59:60 +0000", 1_798_761_599),
        ];
        for (text, want) in table {
            assert_eq!(parse(text), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn not_dates() {
        for text in [
            "",
            "yesterday",
            "Mon, 31 Nov 2026 13:00:00 +0000",
            "Mon, 30 Foo 2026 13:00:00 +0000",
            "Mon, 30 Nov 2026 25:00:00 +0000",
            "Mon, 30 Nov 2026 13:61:00 +0000",
            "Mon, 30 Nov 2026 13:00:00 +0099",
            "Mon, 30 Nov 2026 13:00:00 +1",
            "Mon, 30 Nov 20266 13:00:00 +0000",
            "Mon, 300 Nov 2026 13:00:00 +0000",
            "Mon, 30 Nov 2026 13:00:00:00 +0000",
            "Mon, 30 Nov 2026 13 +0000",
            "Mon, 30 Nov 2026 13:00:00 Europe/Berlin",
            "(only a comment)",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn hostile_text_is_just_not_a_date() {
        let long = "(".repeat(10_000) + &"9".repeat(10_000);
        assert_eq!(parse(&long), None);
        assert_eq!(parse("\u{0}\u{ffff} 30 Nov 2026 13:00:00"), None);
        assert_eq!(parse("Mon, 30 Nov 2026 13:00:00 +9959"), None);
    }
}
