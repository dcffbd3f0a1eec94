//! Bounded JSON reading shared by [`crate::jws`] and [`crate::claims`]: a nesting-depth scan
//! that runs before any parser, and a parse that rejects duplicate object keys at every level
//! (RFC 7515 §5.2 lets a reader reject them; two readers taking different duplicates would see
//! different claims).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Longest duplicate key quoted in an error message, in characters.
const MAX_QUOTED_KEY_CHARS: usize = 64;

/// Whether `bytes`, read as JSON, never nests arrays and objects deeper than `max` (`{}` is
/// depth 1). Brackets inside strings, escaped quotes included, do not count. Any byte string
/// is accepted as input; it need not be valid JSON.
pub fn within_depth(bytes: &[u8], max: usize) -> bool {
    let mut depth: usize = 0;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            // Most of a claim set is string bytes: jump from one quote or backslash to the
            // next instead of stepping through them.
            b'"' => loop {
                let Some(rest) = bytes.get(at..) else {
                    return true;
                };
                match memchr::memchr2(b'"', b'\\', rest) {
                    None => return true,
                    Some(k) if rest.get(k) == Some(&b'\\') => at += k + 2,
                    Some(k) => {
                        at += k + 1;
                        break;
                    }
                }
            },
            b'{' | b'[' => {
                depth = depth.saturating_add(1);
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Parses one JSON value, rejecting a duplicate key in any object. Call [`within_depth`]
/// first: this recurses once per nesting level.
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<StrictValue>(bytes).map(|v| v.0)
}

/// A [`Value`] whose objects had no duplicate keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                let quoted: String = key.chars().take(MAX_QUOTED_KEY_CHARS).collect();
                return Err(de::Error::custom(format_args!("duplicate key {quoted:?}")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert!(within_depth(b"", 0));
        assert!(within_depth(b"1", 0));
        assert!(!within_depth(b"{}", 0));
        assert!(within_depth(b"{}", 1));
        assert!(within_depth(b"[[]]", 2));
        assert!(!within_depth(b"[[[]]]", 2));
        assert!(within_depth(b"[[],[],[]]", 2));
        assert!(within_depth(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(within_depth(br#"["\\",[]]"#, 2));
        assert!(!within_depth(br#"["\\",[[]]]"#, 2));
        assert!(within_depth(b"]]]]}}}}[", 1));
        // Unterminated strings and a trailing backslash end the scan, not the program.
        assert!(within_depth(br#"["abc"#, 1));
        assert!(within_depth(br#"["abc\"#, 1));
        assert!(!within_depth(br#"[["abc\"]"#, 1));
    }

    /// The byte-at-a-time scan the fast one replaced: the definition it must keep.
    fn within_depth_bytewise(bytes: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &byte in bytes {
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
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return false;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    #[test]
    fn the_fast_scan_matches_the_bytewise_definition() {
        // Every string of up to 7 bytes over the alphabet that matters.
        let alphabet = [b'"', b'\\', b'[', b']', b'{', b'}', b'a'];
        let mut input = Vec::new();
        let mut checked = 0;
        for len in 0..=7u32 {
            for mut n in 0..alphabet.len().pow(len) {
                input.clear();
                for _ in 0..len {
                    input.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                for max in 0..4 {
                    assert_eq!(
                        within_depth(&input, max),
                        within_depth_bytewise(&input, max),
                        "{:?} max {max}",
                        String::from_utf8_lossy(&input)
                    );
                }
                checked += 1;
            }
        }
        assert_eq!(checked, (0..=7).map(|l| 7usize.pow(l)).sum::<usize>());
    }

    #[test]
    fn strict_parse_rejects_duplicates_at_any_level() {
        assert!(parse_strict(br#"{"a":1,"b":{"c":[1,{"d":null}]}}"#).is_ok());
        assert!(parse_strict(br#"{"a":1,"a":1}"#).is_err());
        assert!(parse_strict(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(parse_strict(br#"[{"b":1,"b":2}]"#).is_err());
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
        assert_eq!(
            parse_strict(br#"{"a":-1.5,"b":true,"c":"x","d":18446744073709551615}"#).unwrap(),
            serde_json::json!({"a": -1.5, "b": true, "c": "x", "d": u64::MAX})
        );
    }
}
