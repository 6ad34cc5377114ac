//! Event timestamps: the strict RFC 3339 shape most producers send, to Unix seconds.
//!
//! Only a subset is accepted here (anything else returns `None` and Python's parser decides),
//! and the result is exactly what Python computes: whole microseconds divided by 10**6.

/// Largest microsecond count an f64 holds exactly; beyond it Python's int/int division and
/// ours could round differently, so Python decides (year 2255 and later).
const EXACT_MICROS: i64 = 1 << 53;

fn digits(text: &[u8], start: usize, count: usize) -> Option<i64> {
    let mut value = 0i64;
    for &byte in text.get(start..start + count)? {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(byte - b'0');
    }
    Some(value)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|±HH:MM]` (no offset = UTC) to Unix seconds.
pub fn parse_rfc3339(text: &[u8]) -> Option<f64> {
    if text.len() < 19 || text[4] != b'-' || text[7] != b'-' || text[10] != b'T' || text[13] != b':' || text[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(text, 0, 4)?, digits(text, 5, 2)?, digits(text, 8, 2)?);
    let (hour, minute, second) = (digits(text, 11, 2)?, digits(text, 14, 2)?, digits(text, 17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0i64;
    if text.get(at) == Some(&b'.') {
        let start = at + 1;
        at = start;
        while at < text.len() && text[at].is_ascii_digit() {
            at += 1;
        }
        let count = at - start;
        if count == 0 || count > 6 {
            return None; // more than µs: Python rounds, let it
        }
        micros = digits(text, start, count)? * 10i64.pow((6 - count) as u32);
    }
    let offset_seconds = match &text[at..] {
        [] | [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, minutes) = (digits(text, at + 1, 2)?, digits(text, at + 4, 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                seconds
            } else {
                -seconds
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let total = seconds.checked_mul(1_000_000)?.checked_add(micros)?;
    if !(0..=EXACT_MICROS).contains(&total) {
        return None;
    }
    Some(total as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::parse_rfc3339;

    #[test]
    fn parses_the_common_shapes() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339(b"1970-01-01T01:00:00+01:00"), Some(0.0));
        assert_eq!(parse_rfc3339(b"1970-01-02T00:00:00.5"), Some(86_400.5));
        assert_eq!(parse_rfc3339(b"2024-02-29T12:00:00-00:30"), Some(1_709_209_800.0));
    }

    #[test]
    fn leaves_everything_else_to_python() {
        for text in [
            "2024-02-30T00:00:00Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:60Z",
            "2024-01-01T00:00:00.1234567Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(text.as_bytes()), None, "{text}");
        }
    }
}
