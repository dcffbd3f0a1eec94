//! Safe human output: the one escaper for outside text (claims, certificate subjects,
//! licence fields, file names from a user) on its way to a terminal or a text report.
//!
//! A terminal obeys escape sequences: an ESC, CSI or OSC byte in a site name or a subject can
//! clear the screen, move the cursor or rewrite a line (a crafted claim made a terminal show
//! "COMPLIANT" above an exit code of 1). Bidirectional overrides reorder what is shown. Every
//! such character is written as a visible `\u{..}` escape; the common `\n`, `\r`, `\t` and
//! the backslash are written as `\n`, `\r`, `\t`, `\\` so the escaped text stays one line and
//! reads back unambiguously. Printable text passes through unchanged, borrowed.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must not reach a terminal as is: C0 and C1 controls, DEL, the backslash (so
/// escapes are unambiguous), bidirectional embedding, override and isolate controls, and the
/// line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}' | '\u{061c}'
        )
}

/// `text` with every character that could steer a terminal written as a visible escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().saturating_add(8));
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A `Display` wrapper that escapes as it writes: `format!("{}", Escaped(site))`. Width and
/// alignment apply to the escaped text.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_text_is_borrowed() {
        assert!(matches!(
            escape("fra-1 CN=gpu-node-01 ü 東京"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn terminal_controls_are_visible() {
        assert_eq!(escape("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape("x\ny\rz\t"), "x\\ny\\rz\\t");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("\u{7f}"), "\\u{7f}");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("\u{0}"), "\\u{0}");
    }

    #[test]
    fn escaped_output_has_no_control_characters() {
        let hostile: String = (0u32..0x250)
            .chain(0x2000..0x2070)
            .filter_map(char::from_u32)
            .collect();
        let shown = escape(&hostile);
        assert!(
            !shown
                .chars()
                .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c))
        );
    }

    #[test]
    fn display_pads_the_escaped_text() {
        assert_eq!(format!("[{:<6}]", Escaped("a\u{7}")), "[a\\u{7}]");
        assert_eq!(format!("[{:<4}]", Escaped("ab")), "[ab  ]");
    }
}
