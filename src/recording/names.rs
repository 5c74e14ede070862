//! What a recording is filed as: `<display name>-<UTC start>.flv`, and
//! back (for the recordings of earlier runs).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime};

/// Longest file-name stem taken from a display name, in bytes (the whole
/// name stays well below the 255 bytes of common file systems).
pub(crate) const MAX_NAME_BYTES: usize = 100;

/// A display name made safe as a file name: no `/` or `\`, no control
/// characters (they become `_`), no bidirectional overrides (a name that
/// displays as "bob.flv" but is not), no leading dot or dash (hidden files,
/// command-line options), at most [`MAX_NAME_BYTES`]; letters of every
/// script are kept. Never empty.
pub(crate) fn safe_name(display: &str) -> String {
    let mut out = String::new();
    for c in display.chars() {
        let c = match c {
            '/' | '\\' => '_',
            c if c.is_control() => '_',
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => continue,
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out
        .trim_start_matches(|c: char| c == '.' || c == '-' || c.is_whitespace())
        .trim_end();
    if trimmed.is_empty() {
        "streamer".into()
    } else {
        trimmed.to_string()
    }
}

/// Unix seconds → `2026-12-01T220802Z` (ISO 8601, UTC, no colons: they
/// trouble file systems other than Linux's when recordings are copied).
/// Past the year 9999 (no clock gets there) the stamp stays at its end.
pub(crate) fn utc_stamp(unix_s: u64) -> String {
    let t = i64::try_from(unix_s)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc());
    format!(
        "{:04}-{:02}-{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2026-12-01T220802Z` → unix seconds; None for anything else, a date
/// that does not exist (February 30th) included.
fn parse_stamp(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 18 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[17] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u16> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let small = |r| num(r).and_then(|n| u8::try_from(n).ok());
    let month = Month::try_from(small(5..7)?).ok()?;
    let date = Date::from_calendar_date(i32::from(num(0..4)?), month, small(8..10)?).ok()?;
    let at = date
        .with_hms(small(11..13)?, small(13..15)?, small(15..17)?)
        .ok()?;
    u64::try_from(at.assume_utc().unix_timestamp()).ok()
}

/// The file a recording of `display` that started at `start_unix_s` is
/// filed as; `n` > 1 when that name is taken (`…Z-2.flv`).
pub(crate) fn file_name(display: &str, start_unix_s: u64, n: u32) -> String {
    let stem = format!("{}-{}", safe_name(display), utc_stamp(start_unix_s));
    if n > 1 {
        format!("{stem}-{n}.flv")
    } else {
        format!("{stem}.flv")
    }
}

/// A name made by [`file_name`] → (streamer, start in unix seconds).
pub fn parse_file_name(file: &str) -> Option<(String, u64)> {
    let stem = file.strip_suffix(".flv")?;
    // An optional "-N" after the stamp.
    let candidates = [
        Some(stem),
        stem.rsplit_once('-')
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
            .map(|(s, _)| s),
    ];
    candidates.into_iter().flatten().find_map(|s| {
        let cut = s.len().checked_sub(18)?;
        let (head, stamp) = (s.get(..cut)?, s.get(cut..)?);
        let name = head.strip_suffix('-')?;
        Some((name.to_string(), parse_stamp(stamp)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_for_a_file_system() {
        assert_eq!(safe_name("DJ Ünïcødé 東京"), "DJ Ünïcødé 東京");
        assert_eq!(safe_name("a/b\\c"), "a_b_c");
        assert_eq!(safe_name("tab\there\nnl\u{7f}"), "tab_here_nl_");
        assert_eq!(safe_name("..hidden"), "hidden");
        assert_eq!(safe_name("-rf"), "rf");
        assert_eq!(safe_name(" . - x "), "x");
        assert_eq!(safe_name(".."), "streamer");
        assert_eq!(safe_name(""), "streamer");
        assert_eq!(safe_name("/"), "_");
        assert_eq!(safe_name("evil\u{202e}vlf.exe"), "evilvlf.exe");
        let long = "é".repeat(200);
        let s = safe_name(&long);
        assert!(
            s.len() <= MAX_NAME_BYTES && s.len() >= MAX_NAME_BYTES - 1,
            "{}",
            s.len()
        );
        assert!(s.chars().all(|c| c == 'é'));
        // Whatever comes in, the result is one path component.
        for bad in ["a\0b", "\u{1}", "x/../../etc", "\u{85}next"] {
            let s = safe_name(bad);
            assert!(!s.contains(['/', '\0']) && !s.starts_with('.'), "{s:?}");
            assert!(!s.chars().any(char::is_control), "{s:?}");
        }
    }

    #[test]
    fn utc_stamps_round_trip() {
        assert_eq!(utc_stamp(0), "1970-01-01T000000Z");
        assert_eq!(utc_stamp(951_782_400), "2000-02-29T000000Z");
        assert_eq!(utc_stamp(1_795_496_924), "2026-11-24T050844Z");
        assert_eq!(utc_stamp(4_102_444_799), "2099-12-31T235959Z");
        for t in [0, 59, 86_399, 951_782_400, 1_795_496_924, 4_102_444_799] {
            assert_eq!(parse_stamp(&utc_stamp(t)), Some(t), "{t}");
        }
        assert_eq!(parse_stamp("2026-13-01T000000Z"), None);
        assert_eq!(parse_stamp("2026-1a-01T000000Z"), None);
        assert_eq!(parse_stamp("2026-01-01T000000"), None);
        assert_eq!(parse_stamp("2026-02-30T000000Z"), None, "no such day");
        assert_eq!(parse_stamp("2026-01-01T240000Z"), None);
        assert_eq!(utc_stamp(u64::MAX), "9999-12-31T235959Z");
    }

    #[test]
    fn file_names_and_back() {
        let t = 1_795_496_924;
        assert_eq!(file_name("DJ A", t, 1), "DJ A-2026-11-24T050844Z.flv");
        assert_eq!(file_name("../x", t, 3), "_x-2026-11-24T050844Z-3.flv");
        assert_eq!(
            parse_file_name("DJ A-2026-11-24T050844Z.flv"),
            Some(("DJ A".into(), t))
        );
        assert_eq!(
            parse_file_name("a-b-2026-11-24T050844Z-12.flv"),
            Some(("a-b".into(), t))
        );
        // A name that itself ends in digits.
        assert_eq!(
            parse_file_name(&file_name("dj-2", t, 1)),
            Some(("dj-2".into(), t))
        );
        assert_eq!(
            parse_file_name(&file_name("東京", t, 2)),
            Some(("東京".into(), t))
        );
        assert_eq!(parse_file_name("random.flv"), None);
        assert_eq!(parse_file_name("2026-11-24T050844Z.flv"), None);
        assert_eq!(parse_file_name("x-2026-11-24T050844Z.mp4"), None);
    }
}
