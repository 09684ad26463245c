//! Tokens: what a search word matches.
//!
//! A name is Unicode-normalised (NFKC), lowercased and split on every character that is not
//! alphanumeric; empty pieces are dropped. `"Björk - Jóga (Live).MP3"` gives `björk`, `jóga`,
//! `live`, `mp3`. Query words go through the same function, so `"live-mp3"` is two words.

use unicode_normalization::UnicodeNormalization;

/// Longest token kept, in bytes; longer runs are cut (bounds index keys).
pub const MAX_TOKEN_LEN: usize = 64;

/// Splits `text` into its distinct tokens, in order of first appearance.
pub fn tokens(text: &str) -> Vec<String> {
    let normalised: String = text.nfkc().flat_map(char::to_lowercase).collect();
    let mut out: Vec<String> = Vec::new();
    for piece in normalised.split(|c: char| !c.is_alphanumeric()) {
        if piece.is_empty() {
            continue;
        }
        let mut end = piece.len().min(MAX_TOKEN_LEN);
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        let token = &piece[..end];
        if !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_normalises_and_lowercases() {
        assert_eq!(
            tokens("Björk - Jóga (Live).MP3"),
            vec!["björk", "jóga", "live", "mp3"]
        );
        assert_eq!(tokens("a_b/c\\d..e"), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(tokens("ﬁle ＡＢＣ"), vec!["file", "abc"]);
        assert_eq!(tokens("x x X"), vec!["x"]);
        assert!(tokens(" -- ").is_empty());
        assert_eq!(tokens(&"é".repeat(100))[0].len(), MAX_TOKEN_LEN);
    }
}
