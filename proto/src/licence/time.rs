//! RFC 3339 UTC timestamps and short durations (`24h`), parsed strictly without a date
//! library: Unix seconds from a civil date with the days-from-civil algorithm (H. Hinnant).

/// Earliest accepted instant: 1970-01-01T00:00:00Z.
pub const MIN_UNIX_SECONDS: i64 = 0;
/// Latest accepted instant: 9999-12-31T23:59:59Z.
pub const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

const SECONDS_PER_DAY: i64 = 86_400;

/// Days from 1970-01-01 to the civil date `year-month-day` (proleptic Gregorian).
///
/// `year` is 0..=9999, `month` 1..=12 and `day` 1..=31 (checked by the caller), so nothing
/// overflows.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "inputs are bounded (4-digit year, month 1-12, day 1-31); no step can overflow i64"
)]
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count from 1970-01-01.
#[expect(
    clippy::arithmetic_side_effects,
    reason = "called with day counts of MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS; no step can \
              overflow i64"
)]
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The value of exactly `N` ASCII digits.
fn fixed_digits<const N: usize>(text: &str) -> Option<i64> {
    if text.len() != N || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Parses an RFC 3339 timestamp with an offset (`2026-01-01T00:00:00Z`,
/// `2026-01-01T01:00:00+01:00`) into Unix seconds. The reason, when rejected, is a phrase
/// that completes "`key` VALUE ...".
///
/// Accepted: `T`, `t` or a space between date and time; `Z`, `z` or `±HH:MM`; fractional
/// seconds only when all zero. Rejected: no time, no offset (a local time is ambiguous), leap
/// seconds, impossible dates, and instants outside 1970..=9999 UTC.
pub fn parse_rfc3339(text: &str) -> Result<i64, &'static str> {
    let (date, rest) = text
        .split_at_checked(10)
        .ok_or("is not an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")?;
    let mut date_parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) else {
        return Err("does not start with a date YYYY-MM-DD");
    };
    let (Some(year), Some(month), Some(day)) = (
        fixed_digits::<4>(y),
        fixed_digits::<2>(mo),
        fixed_digits::<2>(d),
    ) else {
        return Err("does not start with a date YYYY-MM-DD");
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("has a date that does not exist");
    }
    if rest.is_empty() {
        return Err("is a date without a time; write a timestamp such as 2026-01-01T00:00:00Z");
    }
    let rest = rest
        .strip_prefix(['T', 't', ' '])
        .ok_or("must separate date and time with `T`")?;
    let (time, offset) = rest
        .split_at_checked(8)
        .ok_or("does not have a time HH:MM:SS")?;
    let mut time_parts = time.split(':');
    let (Some(h), Some(mi), Some(s), None) = (
        time_parts.next(),
        time_parts.next(),
        time_parts.next(),
        time_parts.next(),
    ) else {
        return Err("does not have a time HH:MM:SS");
    };
    let (Some(hour), Some(minute), Some(second)) = (
        fixed_digits::<2>(h),
        fixed_digits::<2>(mi),
        fixed_digits::<2>(s),
    ) else {
        return Err("does not have a time HH:MM:SS");
    };
    if hour > 23 || minute > 59 || second > 59 {
        return Err("has a time that does not exist (leap seconds are not accepted)");
    }
    let offset = match offset.strip_prefix('.') {
        Some(frac) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            let (frac, offset) = frac.split_at_checked(digits).unwrap_or((frac, ""));
            if frac.is_empty() || frac.bytes().any(|b| b != b'0') {
                return Err("has fractional seconds; licences use whole seconds");
            }
            offset
        }
        None => offset,
    };
    let offset_seconds = match offset {
        "Z" | "z" => 0,
        "" => {
            return Err(
                "has no UTC offset, so it names no instant; add `Z` for UTC (2026-01-01T00:00:00Z)",
            );
        }
        _ => parse_offset(offset)?,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days
        .checked_mul(SECONDS_PER_DAY)
        .and_then(|s| s.checked_add(hour.checked_mul(3600)?))
        .and_then(|s| s.checked_add(minute.checked_mul(60)?))
        .and_then(|s| s.checked_add(second))
        .and_then(|s| s.checked_sub(offset_seconds))
        .ok_or("is out of range")?;
    if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&seconds) {
        return Err("is outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59Z");
    }
    Ok(seconds)
}

/// `+HH:MM` or `-HH:MM` as seconds east of UTC.
fn parse_offset(offset: &str) -> Result<i64, &'static str> {
    const BAD: &str = "has an offset that is not `Z` or ±HH:MM";
    let (sign, hhmm) = match offset.split_at_checked(1) {
        Some(("+", hhmm)) => (1, hhmm),
        Some(("-", hhmm)) => (-1, hhmm),
        _ => return Err(BAD),
    };
    let (h, m) = hhmm.split_once(':').ok_or(BAD)?;
    let (Some(h), Some(m)) = (fixed_digits::<2>(h), fixed_digits::<2>(m)) else {
        return Err(BAD);
    };
    if h > 23 || m > 59 {
        return Err(BAD);
    }
    h.checked_mul(3600)
        .and_then(|s| s.checked_add(m.checked_mul(60)?))
        .and_then(|s| s.checked_mul(sign))
        .ok_or(BAD)
}

/// Unix seconds as RFC 3339 UTC (`2026-01-01T00:00:00Z`); instants outside
/// [`MIN_UNIX_SECONDS`]..=[`MAX_UNIX_SECONDS`] are clamped to the range.
pub fn format_rfc3339(unix_seconds: i64) -> String {
    let t = unix_seconds.clamp(MIN_UNIX_SECONDS, MAX_UNIX_SECONDS);
    let (year, month, day) = civil_from_days(t.div_euclid(SECONDS_PER_DAY));
    let secs = t.rem_euclid(SECONDS_PER_DAY);
    let (hour, minute, second) = (
        secs.div_euclid(3600),
        secs.rem_euclid(3600).div_euclid(60),
        secs.rem_euclid(60),
    );
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Longest accepted `max_attestation_age`: 366 days.
pub const MAX_ATTESTATION_AGE_SECONDS: u64 = 366 * 86_400;

/// Parses a duration written as digits and one unit, `s`, `m`, `h` or `d` (`30m`, `24h`,
/// `7d`), into seconds from 1 to [`MAX_ATTESTATION_AGE_SECONDS`]. The reason, when rejected,
/// completes "`key` VALUE ...".
pub fn parse_duration(text: &str) -> Result<u64, &'static str> {
    let digits_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, unit) = text.split_at_checked(digits_len).unwrap_or((text, ""));
    if digits.is_empty() {
        return Err("is not a duration: write digits and a unit, such as 30m, 24h or 7d");
    }
    let per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "" => {
            return Err("has no unit; write 24h (or the TOML integer 86400 for seconds)");
        }
        _ => return Err("has an unknown unit; use s, m, h or d (no y, no combined 1h30m)"),
    };
    let seconds = digits
        .parse::<u64>()
        .ok()
        .and_then(|c| c.checked_mul(per_unit))
        .ok_or("is longer than the 366-day limit")?;
    check_duration_seconds(seconds)
}

/// A duration in seconds from 1 to [`MAX_ATTESTATION_AGE_SECONDS`].
pub fn check_duration_seconds(seconds: u64) -> Result<u64, &'static str> {
    if seconds == 0 {
        Err("is zero; every attestation would be stale")
    } else if seconds > MAX_ATTESTATION_AGE_SECONDS {
        Err("is longer than the 366-day limit")
    } else {
        Ok(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2000-03-01T00:00:00Z", 951_868_800),
            ("2026-01-01T00:00:00Z", 1_767_225_600),
            ("2026-01-01T01:00:00+01:00", 1_767_225_600),
            ("2025-12-31T19:00:00-05:00", 1_767_225_600),
            ("2026-01-01 00:00:00z", 1_767_225_600),
            ("2026-01-01t00:00:00.000Z", 1_767_225_600),
            ("2024-02-29T12:00:00Z", 1_709_208_000),
            ("9999-12-31T23:59:59Z", MAX_UNIX_SECONDS),
        ] {
            assert_eq!(parse_rfc3339(text), Ok(unix), "{text}");
        }
        assert_eq!(format_rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(format_rfc3339(MAX_UNIX_SECONDS), "9999-12-31T23:59:59Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn days_round_trip() {
        let last = MAX_UNIX_SECONDS / SECONDS_PER_DAY;
        let mut day = 0;
        while day <= last {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            day += 1;
        }
        let mut t = 0;
        while t <= MAX_UNIX_SECONDS {
            assert_eq!(parse_rfc3339(&format_rfc3339(t)), Ok(t));
            t += 86_399 * 37;
        }
    }

    #[test]
    fn rejected_timestamps() {
        for text in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-01-32T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-06-30T23:59:60Z",
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00Z ",
            "2026-01-01X00:00:00Z",
            "+2026-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-00:01",
            "2026-1-01T00:00:00Z",
            "２０２６-01-01T00:00:00Z",
        ] {
            assert!(parse_rfc3339(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("1s", 1),
            ("30m", 1800),
            ("24h", 86_400),
            ("7d", 604_800),
            ("366d", MAX_ATTESTATION_AGE_SECONDS),
            ("0030m", 1800),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for text in [
            "",
            "24",
            "h",
            "1y",
            "-1h",
            "+1h",
            "1.5h",
            "1h30m",
            " 1h",
            "1h ",
            "1H",
            "0h",
            "367d",
            "99999999999d",
            "99999999999999999999999999s",
            "１h",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} accepted");
        }
    }
}
