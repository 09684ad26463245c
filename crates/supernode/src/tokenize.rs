//! Tokens: what a search word matches.
//!
//! Text is *folded* ([`fold`]): Unicode-normalised (NFKC, so full-width `ＡＢＣ` is `abc`
//! and `ﬁ` is `fi`), lowercased, with Latin, Greek and Cyrillic diacritics dropped
//! (`résumé` → `resume`, `ё` → `е`; the Japanese voicing marks stay) and a few letters
//! that do not decompose spelled out (`ß` → `ss`, `ø` → `o`, `æ` → `ae`, `ł` → `l`, …).
//! It is then split on every character that is not a word character (letters, digits,
//! combining marks, and symbols such as emoji); empty pieces are dropped. Runs of CJK
//! characters (Han, kana, Hangul) have no spaces between words, so a run becomes its
//! overlapping bigrams and its last character (`渋谷の夜` → `渋谷`, `谷の`, `の夜`, `夜`):
//! every CJK word of two or more characters is a bigram, and every single character is a
//! prefix of some token. `"Björk - Jóga (Live).MP3"` gives `bjork`, `joga`, `live`, `mp3`.
//! Query words go through the same function, so `"live-mp3"` is two words.
//!
//! A shared name may be a path below the share root (`Music/Rock/Kashmir.flac`, see the
//! wire spec); [`path_tokens`] splits it into the file name's tokens and the folders'.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Longest token kept, in bytes; longer runs are cut (bounds index keys).
pub const MAX_TOKEN_LEN: usize = 64;
/// Most tokens of a file name that are indexed (the first ones).
pub const MAX_NAME_TOKENS: usize = 32;
/// Most tokens of a path's folders that are indexed (the nearest folders' first).
pub const MAX_FOLDER_TOKENS: usize = 24;

/// `text` folded for matching: NFKC, lowercase, diacritics dropped (see the module doc).
pub fn fold(text: &str) -> String {
    let stripped: String = text
        .nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .collect();
    let mut out = String::with_capacity(stripped.len());
    for c in stripped.nfkc().flat_map(char::to_lowercase) {
        match c {
            'ß' => out.push_str("ss"),
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            'þ' => out.push_str("th"),
            'ø' => out.push('o'),
            'ł' => out.push('l'),
            'đ' | 'ð' => out.push('d'),
            'ı' => out.push('i'),
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul): its runs are
/// split into bigrams.
pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30ff}'       // hiragana, katakana
        | '\u{3400}'..='\u{4dbf}'     // CJK extension A
        | '\u{4e00}'..='\u{9fff}'     // CJK unified ideographs
        | '\u{f900}'..='\u{faff}'     // compatibility ideographs
        | '\u{ac00}'..='\u{d7af}'     // Hangul syllables
        | '\u{1100}'..='\u{11ff}'     // Hangul jamo
        | '\u{3130}'..='\u{318f}'     // Hangul compatibility jamo
        | '\u{31f0}'..='\u{31ff}'     // katakana phonetic extensions
        | '\u{20000}'..='\u{3134f}' // CJK extensions B–G
    )
}

/// Whether `c` is a symbol kept as a word character (arrows, technical and miscellaneous
/// symbols, dingbats, emoji), so a query of emoji alone has words.
pub fn is_symbol(c: char) -> bool {
    matches!(c, '\u{2190}'..='\u{2bff}' | '\u{1f000}'..='\u{1faff}')
}

/// Whether a token is matched as a prefix from its first character on (CJK and symbols),
/// rather than from [`crate::query::MIN_PREFIX_CHARS`].
pub fn is_short_script(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| is_cjk(c) || is_symbol(c))
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c) || is_symbol(c)
}

/// `piece` cut to at most [`MAX_TOKEN_LEN`] bytes on a character boundary.
fn cut(piece: &str) -> &str {
    let mut end = piece.len().min(MAX_TOKEN_LEN);
    while !piece.is_char_boundary(end) {
        end -= 1;
    }
    &piece[..end]
}

/// Splits `text` into its distinct tokens, in order of first appearance.
pub fn tokens(text: &str) -> Vec<String> {
    let folded = fold(text);
    let mut out: Vec<String> = Vec::new();
    let mut push = |token: &str| {
        if !token.is_empty() && !out.iter().any(|t| t == token) {
            out.push(token.to_owned());
        }
    };
    for piece in folded.split(|c: char| !is_word_char(c)) {
        // Split the piece into runs of CJK and of other word characters.
        let mut start = 0;
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        while start < chars.len() {
            let cjk = is_cjk(chars[start].1);
            let mut end = start;
            while end < chars.len() && is_cjk(chars[end].1) == cjk {
                end += 1;
            }
            let at = |i: usize| chars.get(i).map_or(piece.len(), |(b, _)| *b);
            if cjk {
                for i in start..end.saturating_sub(1) {
                    push(&piece[at(i)..at(i + 2)]);
                }
                push(&piece[at(end - 1)..at(end)]);
            } else {
                push(cut(&piece[at(start)..at(end)]));
            }
            start = end;
        }
    }
    out
}

/// Splits a shared path (`/`-separated, the file name last) into the file name and the
/// folder (`""` for a file at the share root).
pub fn split_path(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((folder, name)) => (name, folder),
        None => (path, ""),
    }
}

/// The indexed tokens of a shared path: the file name's (at most [`MAX_NAME_TOKENS`]) and
/// the folders' (at most [`MAX_FOLDER_TOKENS`] distinct ones, the nearest folder's first).
pub fn path_tokens(path: &str) -> (Vec<String>, Vec<String>) {
    let (name, folder) = split_path(path);
    let mut in_name = tokens(name);
    in_name.truncate(MAX_NAME_TOKENS);
    let mut in_folder: Vec<String> = Vec::new();
    for component in folder.rsplit('/') {
        for token in tokens(component) {
            if in_folder.len() == MAX_FOLDER_TOKENS {
                return (in_name, in_folder);
            }
            if !in_folder.contains(&token) {
                in_folder.push(token);
            }
        }
    }
    (in_name, in_folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_normalises_and_lowercases() {
        assert_eq!(
            tokens("Björk - Jóga (Live).MP3"),
            vec!["bjork", "joga", "live", "mp3"]
        );
        assert_eq!(tokens("a_b/c\\d..e"), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(tokens("ﬁle ＡＢＣ"), vec!["file", "abc"]);
        assert_eq!(tokens("x x X"), vec!["x"]);
        assert!(tokens(" -- ").is_empty());
        assert_eq!(tokens(&"ж".repeat(100))[0].len(), MAX_TOKEN_LEN);
    }

    #[test]
    fn accents_and_width_fold() {
        assert_eq!(tokens("Résumé"), tokens("resume"));
        // NFD input (e + combining acute) folds the same as NFC.
        assert_eq!(tokens("Re\u{301}sume\u{301}"), vec!["resume"]);
        assert_eq!(
            tokens("Straße Øresund Łódź"),
            vec!["strasse", "oresund", "lodz"]
        );
        assert_eq!(tokens("Ёлка"), vec!["елка"]);
        assert_eq!(tokens("Ｍｕｓｉｃ２０２４"), vec!["music2024"]);
        // Kana voicing marks are not diacritics: が stays が.
        assert_eq!(tokens("が"), vec!["が"]);
        assert_eq!(tokens("ｶﾞｯｺｳ"), tokens("ガッコウ"));
        // Hangul survives decomposition.
        assert_eq!(tokens("한국"), vec!["한국", "국"]);
    }

    #[test]
    fn cjk_runs_become_bigrams() {
        assert_eq!(
            tokens("渋谷の夜.png"),
            vec!["渋谷", "谷の", "の夜", "夜", "png"]
        );
        assert_eq!(tokens("東京"), vec!["東京", "京"]);
        assert_eq!(tokens("夜"), vec!["夜"]);
        assert_eq!(tokens("abc東京def"), vec!["abc", "東京", "京", "def"]);
    }

    #[test]
    fn emoji_are_words() {
        assert_eq!(tokens("🎵 party"), vec!["🎵", "party"]);
        assert!(is_short_script("🎵"));
    }

    #[test]
    fn paths_split_into_name_and_folder_tokens() {
        let (name, folder) = path_tokens("Music/Rock/Led Zeppelin/Kashmir.flac");
        assert_eq!(name, vec!["kashmir", "flac"]);
        assert_eq!(folder, vec!["led", "zeppelin", "rock", "music"]);
        assert_eq!(split_path("a.txt"), ("a.txt", ""));
        let deep = (0..100)
            .map(|i| format!("d{i}"))
            .collect::<Vec<_>>()
            .join("/");
        let (_, folder) = path_tokens(&format!("{deep}/x.txt"));
        assert_eq!(folder.len(), MAX_FOLDER_TOKENS);
        assert_eq!(folder[0], "d99");
        let (_, folder) = path_tokens("Kashmir/Kashmir live.mp3");
        assert_eq!(folder, vec!["kashmir"]);
    }
}
