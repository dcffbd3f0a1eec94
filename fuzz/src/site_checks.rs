//! The invariants of the `site_and_text` fuzz target: any text as a site id
//! (`SiteId::parse`), as a SAN URI (`SiteId::from_uri`, bare and behind the site prefix), and
//! through the terminal escaper (`text::escape`), each held against an independent reading.
//!
//! Shared as source with `tests/integration/fuzz_corpus.rs` (through `#[path]`), which replays
//! `fuzz/corpus/site_and_text/` on stable. Each function panics when an invariant is broken.

use std::borrow::Cow;

use tppguard_proto::site::{MAX_ID_CHARS, SITE_URI_PREFIX, SiteId, is_valid_id};
use tppguard_proto::text::{Escaped, escape};

/// Every check, on `text`.
pub fn check_site_and_text(text: &str) {
    check_site_id(text);
    check_site_uri(text);
    check_site_uri(&format!("{SITE_URI_PREFIX}{text}"));
    check_escape(text);
}

/// The site id alphabet, read independently: 1 to 64 characters, each an ASCII letter, digit
/// or one of `-_.:/`.
fn in_alphabet(text: &str) -> bool {
    let count = text.chars().count();
    (1..=MAX_ID_CHARS).contains(&count)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/'))
}

/// Characters that steer a terminal, read independently of `text::escape`: Unicode's general
/// categories Cc (C0, DEL, C1), Zl and Zp (U+2028, U+2029), and its `Bidi_Control` property
/// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069).
fn steers_terminal(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00..=0x1f
            | 0x7f..=0x9f
            | 0x2028
            | 0x2029
            | 0x061c
            | 0x200e
            | 0x200f
            | 0x202a..=0x202e
            | 0x2066..=0x2069
    )
}

/// `SiteId::parse`: accepts exactly the alphabet, keeps the text as given, and its URI reads
/// back to the same id; a rejection shows at most 64 characters of the text.
fn check_site_id(text: &str) {
    assert_eq!(is_valid_id(text), in_alphabet(text), "{text:?}");
    match SiteId::parse(text) {
        Ok(id) => {
            assert!(in_alphabet(text), "{text:?} accepted");
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), text);
            let uri = id.to_uri();
            assert_eq!(uri.strip_prefix(SITE_URI_PREFIX), Some(text));
            assert_eq!(SiteId::from_uri(&uri), Some(Ok(id)));
        }
        Err(e) => {
            assert!(!in_alphabet(text), "{text:?} rejected");
            let shown: String = text.chars().take(MAX_ID_CHARS).collect();
            assert_eq!(e.shown, shown);
            // The message quotes the text with `{:?}`, which must leave nothing to steer a
            // terminal.
            let message = e.to_string();
            assert!(!message.is_empty());
            assert!(!message.chars().any(steers_terminal), "{message:?}");
        }
    }
}

/// `SiteId::from_uri`: `None` exactly when the URI lacks the site prefix; otherwise the id
/// after the prefix, accepted exactly when it is in the alphabet.
fn check_site_uri(uri: &str) {
    match (SiteId::from_uri(uri), uri.strip_prefix(SITE_URI_PREFIX)) {
        (None, None) => {}
        (Some(Ok(id)), Some(rest)) => {
            assert!(in_alphabet(rest), "{uri:?} accepted");
            assert_eq!(id.as_str(), rest);
            assert_eq!(id.to_uri(), uri);
        }
        (Some(Err(e)), Some(rest)) => {
            assert!(!in_alphabet(rest), "{uri:?} rejected");
            assert_eq!(e.shown, rest.chars().take(MAX_ID_CHARS).collect::<String>());
        }
        (found, rest) => panic!("{uri:?}: from_uri gave {found:?} with the id part {rest:?}"),
    }
}

/// `text::escape`: the output holds no character that steers a terminal; it is borrowed (and
/// equal) exactly when no character needed escaping (a steering one or a backslash); it reads
/// back to the input; `Escaped` shows the same.
fn check_escape(text: &str) {
    let out = escape(text);
    assert!(
        !out.chars().any(steers_terminal),
        "{text:?} escapes to {out:?}"
    );
    let needed = text.chars().any(|c| steers_terminal(c) || c == '\\');
    match &out {
        Cow::Borrowed(same) => {
            assert!(!needed, "{text:?} passes through unescaped");
            assert_eq!(*same, text);
        }
        Cow::Owned(escaped) => {
            assert!(needed, "{text:?} was copied with nothing to escape");
            assert_eq!(
                unescape(escaped).as_deref(),
                Some(text),
                "{escaped:?} does not read back"
            );
        }
    }
    assert_eq!(Escaped(text).to_string(), out);
}

/// The reading of an escaped text: `\\`, `\n`, `\r`, `\t` and `\u{hex}` (lower case, no leading
/// zeros); `None` for any other backslash sequence.
fn unescape(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let mut hex = String::new();
                loop {
                    match chars.next()? {
                        '}' => break,
                        h => hex.push(h),
                    }
                }
                let value = u32::from_str_radix(&hex, 16).ok()?;
                // Lower-case hex without leading zeros: one spelling per character.
                if format!("{value:x}") != hex {
                    return None;
                }
                char::from_u32(value)?
            }
            _ => return None,
        });
    }
    Some(out)
}
