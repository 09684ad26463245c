//! A search query: its words, exclusions and filters, what each matches, and the routing
//! filter keys that make forwarding exact.
//!
//! Query words (each a [`crate::tokenize::tokens`] split; see the wire spec, `Search`):
//! * a plain word must match a token of the file name or of its folders (AND over words):
//!   a token of at least [`MIN_PREFIX_CHARS`] characters (or any CJK or symbol token)
//!   matches every indexed token it is a prefix of (`stair` → `stairway`); a shorter one
//!   matches that whole token only (`of` is not a prefix search);
//! * `-word` excludes files with a token equal to one of `word`'s tokens (whole tokens);
//! * `in:word` must match a token of the folders (prefix rules as above);
//! * `type:KIND` keeps files whose extension is of that kind ([`Kind`]);
//! * `size:A-B`, `size:>A`, `size:<B` keep files within a size range (`k`, `m`, `g`, `t`
//!   suffixes are powers of 1024; `size:10m-` is open-ended);
//! * a query that is one word of 8 to 63 hex digits also matches every content id that
//!   starts with it; one of exactly 64 is that content id only.
//!
//! A query must have at least one plain word, `in:` word or hash: exclusions and filters
//! only narrow (they cannot be routed).
//!
//! Routing keys ([`token_keys`], [`Query::alternatives`]): an index puts in its filter,
//! for each token, its prefixes from [`MIN_PREFIX_CHARS`] (1 for CJK and symbols) up to
//! [`MAX_KEY_CHARS`] characters (a shorter token: itself), and for each file the first 4
//! bytes of its content id. A prefix word is tested by its first [`MAX_KEY_CHARS`]
//! characters, a whole word by itself, a hash by its first 8 digits: whatever an index
//! token or id a word can match has that key among its keys, so no query is ever routed
//! away from an index that matches it.

use kazoo_common::ContentId;

use crate::filter::position;
use crate::tokenize::{is_short_script, path_tokens, tokens};

/// Shortest word (in characters) matched as a prefix; shorter words match whole tokens.
pub const MIN_PREFIX_CHARS: usize = 3;
/// Longest token prefix (in characters) put in a routing filter.
pub const MAX_KEY_CHARS: usize = 8;
/// Fewest hex digits of a hash-prefix search.
pub const MIN_HASH_PREFIX: usize = 8;

/// A file type, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Music and other sound.
    Audio,
    /// Films and clips.
    Video,
    /// Pictures.
    Image,
    /// Text, office documents, e-books.
    Document,
    /// Compressed archives and disc images.
    Archive,
    /// Programs and packages.
    Software,
}

/// Extensions of each [`Kind`] (lowercase, without the dot).
const KINDS: &[(Kind, &str, &[&str])] = &[
    (
        Kind::Audio,
        "audio",
        &[
            "mp3", "flac", "ogg", "oga", "opus", "wav", "m4a", "aac", "wma", "aiff", "aif", "ape",
            "alac", "mid", "midi", "wv",
        ],
    ),
    (
        Kind::Video,
        "video",
        &[
            "mp4", "mkv", "avi", "mov", "webm", "wmv", "flv", "m4v", "mpg", "mpeg", "ts", "3gp",
            "ogv",
        ],
    ),
    (
        Kind::Image,
        "image",
        &[
            "jpg", "jpeg", "png", "gif", "webp", "bmp", "tif", "tiff", "heic", "heif", "raw",
            "cr2", "nef", "arw", "dng", "svg", "avif",
        ],
    ),
    (
        Kind::Document,
        "document",
        &[
            "pdf", "doc", "docx", "odt", "rtf", "txt", "md", "epub", "mobi", "xls", "xlsx", "ods",
            "ppt", "pptx", "odp", "csv", "tex", "djvu", "html", "htm",
        ],
    ),
    (
        Kind::Archive,
        "archive",
        &[
            "zip", "rar", "7z", "tar", "gz", "tgz", "bz2", "xz", "zst", "iso", "img", "cab",
        ],
    ),
    (
        Kind::Software,
        "software",
        &[
            "exe", "msi", "dmg", "pkg", "deb", "rpm", "apk", "appimage", "flatpak", "snap", "jar",
            "bin", "run", "sh", "app",
        ],
    ),
];

impl Kind {
    /// The kind called `name` (`audio`, `video`, `image`, `document`, `archive`,
    /// `software`).
    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(k, _, _)| *k)
    }

    /// The kind of a file name, by its extension.
    pub fn of(name: &str) -> Option<Kind> {
        let (_, ext) = name.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        KINDS
            .iter()
            .find(|(_, _, exts)| exts.contains(&ext.as_str()))
            .map(|(k, _, _)| *k)
    }
}

/// Why a query was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Nothing to search for (only exclusions or filters, or no word at all).
    #[error("query has no words (exclusions and filters need at least one word to search for)")]
    NoWords,
    /// An unknown `type:`.
    #[error("unknown type {0:?}: one of audio, video, image, document, archive, software")]
    UnknownType(String),
    /// A `size:` that does not parse.
    #[error("bad size filter {0:?}: use size:10m-2g, size:>700m or size:<4k")]
    BadSize(String),
}

/// One word to match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// The folded token.
    pub text: String,
    /// Matches tokens it is a prefix of (else only an equal token).
    pub prefix: bool,
    /// Matches folder tokens only (`in:`).
    pub folder_only: bool,
}

impl Term {
    fn new(text: String, folder_only: bool) -> Self {
        let prefix = is_short_script(&text) || text.chars().count() >= MIN_PREFIX_CHARS;
        Term {
            text,
            prefix,
            folder_only,
        }
    }

    /// Whether this term matches the indexed token `token`.
    pub fn matches(&self, token: &str) -> bool {
        if self.prefix {
            token.starts_with(self.text.as_str())
        } else {
            token == self.text
        }
    }

    /// The routing key this term is tested by (see the module doc).
    pub fn key(&self) -> &str {
        if self.prefix {
            prefix_chars(&self.text, MAX_KEY_CHARS)
        } else {
            &self.text
        }
    }
}

/// A parsed query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Words that must all match (plain and `in:`).
    pub terms: Vec<Term>,
    /// Tokens no matching file may have.
    pub exclude: Vec<String>,
    /// Size range, inclusive.
    pub size: Option<(u64, u64)>,
    /// Type filter.
    pub kind: Option<Kind>,
    /// Hash prefix (lowercase hex, 8–64 digits); with 64, the query is that id only.
    pub hash: Option<String>,
}

impl Query {
    /// Parses query words (see the module doc).
    pub fn parse(words: &[String]) -> Result<Query, QueryError> {
        let mut q = Query::default();
        if let [word] = words {
            let hex = word.trim().to_ascii_lowercase();
            if hex.len() >= MIN_HASH_PREFIX
                && hex.len() <= 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
            {
                if hex.len() < 64 {
                    q.terms = tokens(&hex)
                        .into_iter()
                        .map(|t| Term::new(t, false))
                        .collect();
                }
                q.hash = Some(hex);
                return Ok(q);
            }
        }
        for word in words {
            if let Some(rest) = word.strip_prefix('-') {
                q.exclude.extend(tokens(rest));
            } else if let Some(rest) = word.strip_prefix("in:") {
                q.terms
                    .extend(tokens(rest).into_iter().map(|t| Term::new(t, true)));
            } else if let Some(rest) = word.strip_prefix("type:") {
                let name = rest.to_ascii_lowercase();
                q.kind = Some(Kind::from_name(&name).ok_or(QueryError::UnknownType(name))?);
            } else if let Some(rest) = word.strip_prefix("size:") {
                q.size =
                    Some(parse_size_range(rest).ok_or_else(|| QueryError::BadSize(rest.into()))?);
            } else {
                q.terms
                    .extend(tokens(word).into_iter().map(|t| Term::new(t, false)));
            }
        }
        q.terms.dedup();
        if q.terms.is_empty() {
            return Err(QueryError::NoWords);
        }
        Ok(q)
    }

    /// The exact content id, for a 64-digit hash query.
    pub fn exact_id(&self) -> Option<ContentId> {
        self.hash.as_ref().and_then(|h| h.parse().ok())
    }

    /// Whether a content id matches the hash prefix.
    pub fn id_matches(&self, id: &ContentId) -> bool {
        self.hash
            .as_ref()
            .is_some_and(|h| id.to_hex().starts_with(h.as_str()))
    }

    /// Whether a file of `size` named `name` (the file name, no folder) passes the filters.
    pub fn passes(&self, name: &str, size: u64) -> bool {
        self.size.is_none_or(|(lo, hi)| (lo..=hi).contains(&size))
            && self.kind.is_none_or(|k| Kind::of(name) == Some(k))
    }

    /// How well a file with id `id` shared under `path` matches, higher first (the rank the
    /// index and the merge of several supernodes' answers sort by before source counts):
    /// 3 its id starts with the hash, 2 every plain word matches a token of the file name
    /// (and every `in:` word one of the folders), 1 every word matches a token of the path,
    /// 0 neither (the name only matched under tokens past a bound, or a lying peer).
    pub fn rank(&self, id: &ContentId, path: &str) -> u8 {
        if self.id_matches(id) {
            return 3;
        }
        let (name, folder) = path_tokens(path);
        let any = |list: &[String], term: &Term| list.iter().any(|t| term.matches(t));
        let mut rank = 2;
        for term in &self.terms {
            let in_folder = any(&folder, term);
            if term.folder_only {
                if !in_folder {
                    return 0;
                }
            } else if !any(&name, term) {
                if !in_folder {
                    return 0;
                }
                rank = 1;
            }
        }
        rank
    }

    /// Routing positions: the query may match an index only if, for at least one of these
    /// lists, the index's filter has every position (a hash query: its id key, or its words).
    pub fn alternatives(&self) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        if let Some(hash) = &self.hash {
            if let Some(bytes) = hex_prefix_bytes(hash) {
                out.push(vec![position(&bytes)]);
            }
        }
        if !self.terms.is_empty() {
            out.push(
                self.terms
                    .iter()
                    .map(|t| position(t.key().as_bytes()))
                    .collect(),
            );
        }
        out
    }
}

/// The routing key of a content id: its first 4 bytes.
pub fn id_key(id: &ContentId) -> [u8; 4] {
    let b = id.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// The first 4 bytes a hex prefix of at least 8 digits names.
fn hex_prefix_bytes(hex: &str) -> Option<[u8; 4]> {
    let digits = hex.get(..MIN_HASH_PREFIX)?;
    let value = u32::from_str_radix(digits, 16).ok()?;
    Some(value.to_be_bytes())
}

/// The routing keys of an indexed token (see the module doc): at most [`MAX_KEY_CHARS`].
pub fn token_keys(token: &str) -> impl Iterator<Item = &str> {
    let len = token.chars().count();
    let from = if is_short_script(token) {
        1
    } else {
        MIN_PREFIX_CHARS.min(len)
    };
    (from..=len.min(MAX_KEY_CHARS)).map(move |k| prefix_chars(token, k))
}

/// The first `n` characters of `text`.
fn prefix_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Parses `A-B`, `>A`, `<B`, `A-`, `-B` or `A` (sizes with optional k/m/g/t, powers of 1024).
fn parse_size_range(text: &str) -> Option<(u64, u64)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('>') {
        return Some((parse_size(rest)?.saturating_add(1), u64::MAX));
    }
    if let Some(rest) = text.strip_prefix('<') {
        return Some((0, parse_size(rest)?.checked_sub(1)?));
    }
    match text.split_once('-') {
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { parse_size(lo)? };
            let hi = if hi.is_empty() {
                u64::MAX
            } else {
                parse_size(hi)?
            };
            (lo <= hi).then_some((lo, hi))
        }
        None => {
            let n = parse_size(text)?;
            Some((n, n))
        }
    }
}

/// Parses a size such as `700`, `4k`, `1.5g` (powers of 1024; a trailing `b`/`ib` is allowed).
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (number, shift) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 10),
        'm' => (&t[..t.len() - 1], 20),
        'g' => (&t[..t.len() - 1], 30),
        't' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let bytes = value * (1u64 << shift) as f64;
    (bytes < u64::MAX as f64).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_words_exclusions_and_filters() {
        let q = Query::parse(&words("Led zeppelin -live type:audio size:1m-1g in:rock")).unwrap();
        let texts: Vec<&str> = q.terms.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["led", "zeppelin", "rock"]);
        assert!(q.terms[2].folder_only && !q.terms[0].folder_only);
        assert_eq!(q.exclude, ["live"]);
        assert_eq!(q.kind, Some(Kind::Audio));
        assert_eq!(q.size, Some((1 << 20, 1 << 30)));
        assert_eq!(Query::parse(&words("-live")), Err(QueryError::NoWords));
        assert_eq!(Query::parse(&words("type:audio")), Err(QueryError::NoWords));
        assert!(matches!(
            Query::parse(&words("x type:film")),
            Err(QueryError::UnknownType(_))
        ));
        assert!(matches!(
            Query::parse(&words("x size:lots")),
            Err(QueryError::BadSize(_))
        ));
        assert_eq!(
            Query::parse(&words("x size:>700m")).unwrap().size,
            Some((700 * (1 << 20) + 1, u64::MAX))
        );
        assert_eq!(
            Query::parse(&words("x size:<4k")).unwrap().size,
            Some((0, 4095))
        );
        assert_eq!(
            Query::parse(&words("x size:1.5g-")).unwrap().size,
            Some((3 << 29, u64::MAX))
        );
        assert!(Query::parse(&words("🎵")).is_ok());
    }

    #[test]
    fn prefix_and_whole_word_terms() {
        let q = Query::parse(&words("stair of 渋")).unwrap();
        assert!(q.terms[0].matches("stairway") && q.terms[0].matches("stair"));
        assert!(!q.terms[0].matches("sta"));
        assert!(q.terms[1].matches("of") && !q.terms[1].matches("office"));
        assert!(q.terms[2].matches("渋谷"));
    }

    #[test]
    fn hash_prefixes() {
        let id = ContentId::from(blake3::hash(b"file"));
        let hex = id.to_hex();
        let q = Query::parse(&[hex[..10].to_owned()]).unwrap();
        assert!(q.id_matches(&id) && q.exact_id().is_none());
        assert_eq!(q.alternatives()[0], vec![position(&id_key(&id))]);
        let q = Query::parse(std::slice::from_ref(&hex)).unwrap();
        assert_eq!(q.exact_id(), Some(id));
        assert!(q.terms.is_empty());
        // Seven digits are a word, not a hash.
        assert!(Query::parse(&[hex[..7].to_owned()]).unwrap().hash.is_none());
    }

    #[test]
    fn every_token_a_term_matches_carries_the_terms_key() {
        let indexed = [
            "stairway", "of", "渋谷", "夜", "kashmir", "a", "🎵🎶", "zeppelin",
        ];
        let queries = [
            "stair", "stairway", "of", "渋", "渋谷", "夜", "kas", "kashmir", "a", "🎵", "zeppeli",
            "zeppelin",
        ];
        for token in indexed {
            let keys: Vec<&str> = token_keys(token).collect();
            assert!(keys.len() <= MAX_KEY_CHARS);
            for word in queries {
                for term in Query::parse(&[word.to_owned()]).unwrap().terms {
                    if term.matches(token) {
                        assert!(keys.contains(&term.key()), "{word} → {token}: {keys:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn kinds_by_extension() {
        assert_eq!(Kind::of("Kashmir.FLAC"), Some(Kind::Audio));
        assert_eq!(Kind::of("setup.exe"), Some(Kind::Software));
        assert_eq!(Kind::of("README"), None);
        let q = Query::parse(&words("x type:image size:<1m")).unwrap();
        assert!(q.passes("a.jpg", 10) && !q.passes("a.jpg", 2 << 20) && !q.passes("a.mp3", 10));
    }
}
