//! The typed fast path for common, valid events (the Rust twin of `events.fast_decode`).
//!
//! It accepts a strict subset of what `stream_features.events.decode_event` accepts and gives
//! the same event for it; anything it is not sure about returns `None` and goes to Python,
//! which is the one place that judges invalid events and names the reason.

use std::borrow::Cow;
use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::timestamp::parse_rfc3339;

pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_CUSTOMER_ID_BYTES: usize = 256;
pub const MAX_EVENT_ID_CHARS: usize = 128;
pub const MAX_DEVICE_CHARS: usize = 64;
pub const MAX_NUMERIC_VALUE: f64 = 1e15;
pub const MIN_UNIX_SECONDS: f64 = 0.0;
pub const MAX_UNIX_SECONDS: f64 = 253_402_300_799.0;
pub const UNKNOWN_DEVICE: &str = "unknown";

pub const PURCHASE: u8 = 0;
pub const SESSION: u8 = 1;
pub const CART: u8 = 2;
pub const SUPPORT: u8 = 3;
pub const PROFILE: u8 = 4;
pub const KIND_NAMES: [&str; 5] = ["purchase", "session", "cart", "support", "profile"];

/// One valid event, whatever decoded it. `amount` is the purchase amount, session duration,
/// cart value or support response time; `flag` is converted (cart) or escalated (support).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: u8,
    pub customer_id: CompactString,
    pub timestamp: f64,
    pub event_id: Option<CompactString>,
    pub amount: Option<f64>,
    pub flag: bool,
    pub device: Option<CompactString>,
    /// Profile attributes: key and stored value bytes (`<event time> <JSON>`, made by Python).
    pub attributes: Vec<(String, Vec<u8>)>,
}

/// A JSON value as far as the fast path cares: scalars, or "something else".
pub(crate) enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Every field any event type declares; JSON null and a missing field both read as `None`
/// (the wire types treat them alike). A repeated field fails the parse: Python decides.
#[derive(Deserialize, Default)]
pub(crate) struct Raw<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) kind: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) customer_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) event_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) amount: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) value: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) order_id: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) duration_seconds: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) device: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) status: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) response_time_hours: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    pub(crate) escalated: Option<Scalar<'a>>,
}

/// A `float` field constrained to [0, 1e15]: `Some(None)` absent, `None` not for the fast path.
fn number(field: &Option<Scalar>) -> Option<Option<f64>> {
    let value = match field {
        None => return Some(None),
        Some(Scalar::Int(v)) => *v as f64,
        Some(Scalar::UInt(v)) => *v as f64,
        Some(Scalar::Float(v)) => *v,
        Some(_) => return None,
    };
    if (0.0..=MAX_NUMERIC_VALUE).contains(&value) {
        Some(Some(value + 0.0)) // folds -0.0 into 0.0, as Python does
    } else {
        None
    }
}

/// Python's `str.isspace`, which is Rust's `char::is_whitespace` plus U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python reads a string of digits with an optional fraction as Unix seconds (`float(text)`,
/// correctly rounded, as Rust's parse is); only the plain ASCII shape is taken here.
fn unix_text(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "1"));
    let digits = |part: &str| (1..=20).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse::<f64>().ok().map(|seconds| seconds + 0.0)
}

fn timestamp(field: &Option<Scalar>) -> Option<f64> {
    match field {
        Some(Scalar::Str(text)) => parse_rfc3339(text.as_bytes()).or_else(|| unix_text(text)),
        Some(Scalar::Int(v)) => Some(*v as f64),
        Some(Scalar::UInt(v)) => Some(*v as f64),
        Some(Scalar::Float(v)) => Some(*v + 0.0), // folds -0.0 into 0.0, as Python does
        _ => None,
    }
}

fn device(field: &Option<Scalar>) -> Option<Option<CompactString>> {
    match field {
        None => Some(Some(CompactString::const_new(UNKNOWN_DEVICE))),
        // Printable ASCII only: there strip/lower mean the same in Python and here.
        Some(Scalar::Str(text))
            if text.len() <= MAX_DEVICE_CHARS && text.bytes().all(|b| (0x20..0x7f).contains(&b)) =>
        {
            let name = CompactString::from(text.trim_matches(' ')).to_ascii_lowercase();
            Some(Some(if name.is_empty() { CompactString::const_new(UNKNOWN_DEVICE) } else { name }))
        }
        Some(_) => None,
    }
}

/// Deeper JSON is Python's to judge: serde skips unknown fields at any depth, while Python's
/// decoder refuses very deep input (too_large), and the two must give one answer.
const MAX_NESTING: usize = 64;

/// Whether `[`/`{` nest deeper than `limit` outside strings. Counting the brackets first keeps
/// the common case (one object, a few brackets) to one vectorised pass.
fn nesting_deeper_than(data: &[u8], limit: usize) -> bool {
    if data.iter().filter(|&&b| b == b'[' || b == b'{').count() <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in data {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a string escapes a UTF-16 surrogate (`\uD800`..`\uDFFF`). serde skips an unknown
/// field holding a lone one, Python's decoder refuses the message: Python decides those (an
/// escaped pair, e.g. an emoji, is accepted by both, only more slowly).
fn has_surrogate_escape(data: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = data.get(at..).and_then(|rest| rest.iter().position(|&b| b == b'\\')) {
        let slash = at + found;
        if data.get(slash + 1) == Some(&b'u')
            && matches!(data.get(slash + 2), Some(b'd' | b'D'))
            && matches!(data.get(slash + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'))
        {
            return true;
        }
        at = slash + 2; // past the escaped character, so "\\ud800" (a backslash, then text) is no escape
    }
    false
}

/// Decode one Kafka message value, or `None` to let Python decide.
pub fn decode(data: &[u8], now: f64, max_future_skew_seconds: f64) -> Option<Event> {
    if data.len() > MAX_MESSAGE_BYTES || nesting_deeper_than(data, MAX_NESTING) || has_surrogate_escape(data) {
        return None;
    }
    // serde skips an unknown field's string without checking its UTF-8; Python refuses the
    // whole message (malformed_json): Python decides those.
    if std::str::from_utf8(data).is_err() {
        return None;
    }
    let raw: Raw = serde_json::from_slice(data).ok()?;
    validate(raw, now, max_future_skew_seconds)
}

/// The fast path's checks on already parsed fields (from JSON, or from a typed row of a
/// history file): the event, or `None` to let Python decide.
pub(crate) fn validate(raw: Raw, now: f64, max_future_skew_seconds: f64) -> Option<Event> {
    let kind = match &raw.kind {
        Some(Scalar::Str(name)) => match name.as_ref() {
            "purchase" => PURCHASE,
            "session" => SESSION,
            "cart" => CART,
            "support" => SUPPORT,
            _ => return None, // profiles too: their attributes are Python's business
        },
        _ => return None,
    };
    let customer_id = match raw.customer_id {
        Some(Scalar::Str(id)) if id.len() <= MAX_CUSTOMER_ID_BYTES && id.chars().any(|c| !is_python_space(c)) => {
            CompactString::from(id.as_ref())
        }
        _ => return None,
    };
    let ts = timestamp(&raw.timestamp)?;
    if !(MIN_UNIX_SECONDS..=MAX_UNIX_SECONDS).contains(&ts) || ts > now + max_future_skew_seconds {
        return None;
    }
    let event_id = match raw.event_id {
        None => None,
        Some(Scalar::Str(id)) if id.chars().count() <= MAX_EVENT_ID_CHARS => {
            (!id.is_empty()).then(|| CompactString::from(id.as_ref()))
        }
        Some(_) => return None,
    };
    let mut event = Event {
        kind,
        customer_id,
        timestamp: ts,
        event_id,
        amount: None,
        flag: false,
        device: None,
        attributes: Vec::new(),
    };
    match kind {
        PURCHASE => {
            let amount = number(&raw.amount)?;
            let value = number(&raw.value)?;
            match raw.order_id {
                None | Some(Scalar::Str(_)) | Some(Scalar::Int(_)) | Some(Scalar::UInt(_)) => {}
                Some(_) => return None,
            }
            event.amount = Some(amount.or(value)?);
        }
        SESSION => {
            event.amount = Some(number(&raw.duration_seconds)??);
            event.device = device(&raw.device)?;
        }
        CART => {
            event.flag = match &raw.status {
                Some(Scalar::Str(status)) if status == "converted" => true,
                Some(Scalar::Str(status)) if status == "abandoned" => false,
                _ => return None,
            };
            event.amount = number(&raw.value)?;
        }
        _ => {
            event.amount = number(&raw.response_time_hours)?;
            event.flag = match raw.escalated {
                None => false,
                Some(Scalar::Bool(escalated)) => escalated,
                Some(_) => return None,
            };
        }
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_purchase() {
        let event = decode(
            br#"{"type":"purchase","customer_id":"c1","timestamp":"1970-01-01T00:00:10Z","amount":5}"#,
            1e10,
            0.0,
        )
        .unwrap();
        assert_eq!(
            (event.kind, event.customer_id.as_str(), event.timestamp, event.amount),
            (PURCHASE, "c1", 10.0, Some(5.0))
        );
    }

    #[test]
    fn deep_json_is_left_to_python() {
        let deep = format!(
            r#"{{"type":"support","customer_id":"c","timestamp":1,"x":{}1{}}}"#,
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        assert_eq!(decode(deep.as_bytes(), 1e9, 0.0), None);
        let quoted = format!(r#"{{"type":"support","customer_id":"c","timestamp":1,"x":"{}"}}"#, "[".repeat(200));
        assert!(decode(quoted.as_bytes(), 1e9, 0.0).is_some());
        assert!(!nesting_deeper_than(br#"{"a":"\"[[[["}"#, 2));
    }

    #[test]
    fn surrogate_escapes_are_left_to_python() {
        let lone = br#"{"type":"support","customer_id":"c","timestamp":1,"x":"\ud800"}"#;
        assert_eq!(decode(lone, 1e9, 0.0), None);
        let text = br#"{"type":"support","customer_id":"c","timestamp":1,"x":"\\ud800"}"#;
        assert!(decode(text, 1e9, 0.0).is_some());
        for tail in [&b"\\"[..], b"\\u", b"\\ud", b"x\\"] {
            assert!(!has_surrogate_escape(tail));
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_left_to_python() {
        let bad = b"{\"type\":\"support\",\"customer_id\":\"c\",\"timestamp\":\"20260\",\"x\":\" \xb0\x90 \"}";
        assert_eq!(decode(bad, 1e10, 0.0), None);
    }

    #[test]
    fn digit_strings_are_unix_seconds() {
        assert_eq!(unix_text("1787649165.115"), Some(1_787_649_165.115));
        assert_eq!(unix_text("12"), Some(12.0));
        for doubtful in ["", ".5", "5.", "1e9", " 12", "-1", "1.2.3", "١٢", "123456789012345678901"] {
            assert_eq!(unix_text(doubtful), None, "{doubtful}");
        }
    }

    #[test]
    fn negative_zero_timestamp_is_zero() {
        let event = decode(br#"{"type":"support","customer_id":"c","timestamp":-0}"#, 1e9, 0.0).unwrap();
        assert!(event.timestamp.is_sign_positive());
        let event = decode(br#"{"type":"support","customer_id":"c","timestamp":-0.0}"#, 1e9, 0.0).unwrap();
        assert!(event.timestamp.is_sign_positive());
    }

    #[test]
    fn leaves_doubtful_input_to_python() {
        for text in [
            r#"{"type":"profile","customer_id":"c","timestamp":1,"attributes":{}}"#,
            r#"{"type":"purchase","customer_id":" ","timestamp":1,"amount":1}"#,
            r#"{"type":"purchase","customer_id":"c","timestamp":1,"amount":-1}"#,
            r#"{"type":"purchase","customer_id":"c","timestamp":1,"amount":true}"#,
            r#"{"type":"purchase","customer_id":"c","timestamp":1,"amount":1,"amount":2}"#,
            r#"{"type":"purchase","customer_id":"c","timestamp":1,"amount":1,"order_id":1.5}"#,
            r#"{"type":"session","customer_id":"c","timestamp":1,"duration_seconds":1,"device":"Télé"}"#,
            r#"{"type":"cart","customer_id":"c","timestamp":1,"status":"open"}"#,
            r#"{"type":"support","customer_id":"c","timestamp":1,"escalated":1}"#,
            r#"{"type":"support","customer_id":"c","timestamp":99999999999,"escalated":true}"#,
            r#"[1]"#,
        ] {
            assert_eq!(decode(text.as_bytes(), 1e9, 86400.0), None, "{text}");
        }
    }
}
