//! What text from the network may not do: hide, reorder or control what a terminal shows.
//! Names and messages from peers are claims; before a person sees one, its control
//! characters (ESC, CR, BEL, …), bidi overrides and isolates, and other invisible format
//! characters are made visible ([`escape_for_terminal`]) or replaced.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Unicode format characters (general category Cf) and the line and paragraph separators:
/// invisible, and some (bidi overrides) reorder what a terminal shows.
pub fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061c}'
        | '\u{06dd}'
        | '\u{070f}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08e2}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

/// Whether `c` is a control or format character (see [`is_format`]).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// `s` for a terminal: every control or format character written as a visible `\u{…}`
/// escape (a backslash is doubled so an escape cannot be forged); unchanged when clean.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_hidden_or_control(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_hidden_or_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_make_terminal_tricks_visible() {
        assert_eq!(escape_for_terminal("song.mp3"), "song.mp3");
        assert_eq!(
            escape_for_terminal("a\u{1b}]0;pwned\u{7}b\r\u{1b}[2J"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{d}\\u{1b}[2J"
        );
        assert_eq!(
            escape_for_terminal("evil\u{202e}gpj.exe"),
            "evil\\u{202e}gpj.exe"
        );
        assert_eq!(escape_for_terminal("back\\slash"), "back\\\\slash");
        assert!(!escape_for_terminal("x\u{2066}y\u{200b}")
            .chars()
            .any(is_hidden_or_control));
    }
}
