//! RFC 3339 timestamps as runledger writes them, read without chrono's general parser.
//!
//! Why: every event carries at least one timestamp and the projector's column encoder reads each
//! row's timestamps back from their text; chrono's parser handles every variant of the format
//! and was a few percent of a replay's CPU. [`parse`] reads the one fixed layout
//! (`YYYY-MM-DDTHH:MM:SS`, up to nine fraction digits, `Z` or `±HH:MM`) directly and hands
//! anything else to chrono, so it accepts exactly what chrono accepts and gives the same instant.

use chrono::{DateTime, NaiveDate, Utc};

/// Parses an RFC 3339 timestamp into UTC; `None` if chrono would reject it too.
pub fn parse(text: &str) -> Option<DateTime<Utc>> {
    fixed_layout(text.as_bytes()).or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// `#[serde(deserialize_with)]` for a `DateTime<Utc>` field: the fast path of [`parse`], and
/// otherwise exactly chrono's own deserialization (same relaxed format, same error text).
pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = DateTime<Utc>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            match fixed_layout(text.as_bytes()) {
                Some(t) => Ok(t),
                None => text
                    .parse::<DateTime<chrono::FixedOffset>>()
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(E::custom),
            }
        }
    }
    d.deserialize_str(Visitor)
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// The common layout, or `None` for anything else (including leap seconds and lowercase
/// separators, which chrono decides on).
fn fixed_layout(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let count = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 || count > 9 {
            return None;
        }
        nanos = digits(&rest[1..=count])? * 10u32.pow(9 - count as u32);
        rest = &rest[1 + count..];
    }
    let offset_seconds = match rest {
        [b'Z'] => 0i64,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let local = NaiveDate::from_ymd_opt(year as i32, month, day)?
        .and_hms_nano_opt(hour, minute, second, nanos)?;
    let utc = local.and_utc() - chrono::TimeDelta::seconds(offset_seconds);
    Some(utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn agrees_with_chrono() {
        let cases = [
            "2026-12-01T22:47:30Z",
            "2026-12-01T22:47:30.585104Z",
            "2026-12-01T22:47:30.5Z",
            "2026-12-01T22:47:30.123456789Z",
            "2026-12-01T22:47:30.1234567890Z",
            "2026-12-01T22:47:30.Z",
            "2026-12-01T22:47:30+02:00",
            "2026-12-01T00:00:00.000001-05:30",
            "2026-12-01T23:59:59+23:59",
            "2026-01-01T00:00:00-23:59",
            "2024-02-29T12:00:00Z",
            "2025-02-29T12:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-12-32T00:00:00Z",
            "2026-12-01T24:00:00Z",
            "2026-12-01T23:60:00Z",
            "2016-12-31T23:59:60Z",
            "2026-12-01t22:47:30z",
            "2026-12-01 22:47:30Z",
            "2026-12-01T22:47:30",
            "2026-12-01T22:47:30+0200",
            "2026-12-01T22:47:30+02",
            "2026-12-01T22:47:30+24:00",
            "2026-12-01T22:47:30Zjunk",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "２026-12-01T22:47:30Z",
            "2026-1a-01T22:47:30Z",
            "",
        ];
        for case in cases {
            assert_eq!(parse(case), chrono(case), "{case:?}");
        }
        // The layouts runledger writes take the direct path, not the fallback.
        let direct = [
            "2026-12-01T22:47:30Z",
            "2026-12-01T22:47:30.585104Z",
            "2026-12-01T22:47:30.123456789Z",
            "2026-12-01T00:00:00.000001-05:30",
            "2024-02-29T12:00:00+02:00",
        ];
        for case in direct {
            assert!(fixed_layout(case.as_bytes()).is_some(), "{case:?}");
        }
    }

    #[test]
    fn agrees_with_chrono_on_what_runledger_writes() {
        // Every microsecond offset of a spread of instants, written as events and rows write them.
        let mut t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for i in 0..20_000i64 {
            t += chrono::TimeDelta::microseconds(i * 7_919 + 13);
            let written = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            assert_eq!(parse(&written), Some(t), "{written}");
            assert_eq!(fixed_layout(written.as_bytes()), Some(t), "{written}");
            let offset = t
                .with_timezone(&chrono::FixedOffset::east_opt(-(i as i32 % 50_000)).unwrap())
                .to_rfc3339();
            assert_eq!(parse(&offset), chrono(&offset), "{offset}");
        }
    }

    #[test]
    fn deserializes_like_chrono() {
        #[derive(serde::Deserialize)]
        struct Ours {
            #[serde(deserialize_with = "super::deserialize")]
            at: DateTime<Utc>,
        }
        #[derive(serde::Deserialize)]
        struct Theirs {
            at: DateTime<Utc>,
        }
        for text in [
            "2026-12-01T22:47:30.585104Z",
            "2026-12-01 22:47:30+02:00",
            "2026-12-01t22:47:30z",
            "2016-12-31T23:59:60Z",
            "2026-12-01T22:47:30",
            "not a time",
        ] {
            let json = serde_json::json!({ "at": text });
            let ours = serde_json::from_value::<Ours>(json.clone()).map(|o| o.at);
            let theirs = serde_json::from_value::<Theirs>(json.clone()).map(|t| t.at);
            match (ours, theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
                (a, b) => panic!("{text}: {a:?} vs {b:?}"),
            }
            let escaped = format!("{{\"at\": \"{}\"}}", text.replace('T', "\\u0054"));
            let ours = serde_json::from_str::<Ours>(&escaped).map(|o| o.at).ok();
            let theirs = serde_json::from_str::<Theirs>(&escaped).map(|t| t.at).ok();
            assert_eq!(ours, theirs, "{escaped}");
        }
    }
}
