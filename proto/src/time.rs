//! Calendar arithmetic for UTC timestamps, so formats and path templates
//! need no date library.

/// A UTC date and time from Unix seconds: (year, month 1-12, day 1-31,
/// hour, minute, second). Howard Hinnant's `civil_from_days`.
pub fn civil_from_unix_s(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    (year, month, day, h as u32, m as u32, s as u32)
}

/// `2025-06-05T23:28:21Z`.
pub fn format_rfc3339_s(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = civil_from_unix_s(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Days from 1970-01-01 to a civil date (Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `2025-06-05T23:28:21Z` back to Unix seconds.
pub fn parse_rfc3339_s(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(y), mo, d);
    Some(days * 86_400 + i64::from(h * 3_600 + mi * 60 + s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_inverts_format() {
        for secs in [0, 1_749_166_101, 4_902_939_201, 951_782_400, -86_400] {
            assert_eq!(parse_rfc3339_s(&format_rfc3339_s(secs)), Some(secs));
        }
        assert_eq!(parse_rfc3339_s("2025-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_s("2025-06-05 23:28:21Z"), None);
        assert_eq!(parse_rfc3339_s("garbage"), None);
    }

    #[test]
    fn known_dates() {
        assert_eq!(format_rfc3339_s(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_s(1_749_166_101), "2025-06-05T23:28:21Z");
        assert_eq!(format_rfc3339_s(4_902_939_201), "2125-05-14T23:33:21Z");
        assert_eq!(format_rfc3339_s(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_rfc3339_s(-1), "1969-12-31T23:59:59Z");
    }
}
