//! `Request` bodies as the acceptor decodes them (`wire::decode_request`), then the checks a
//! supernode runs on them before touching its index: `check_query` on search words, the
//! tokeniser on every name and word, and the content-id parse a lone search word gets.
//! Checks: no panic; a decoded request round-trips; an unknown kind is ≥ the variant
//! count; tokens are non-empty, distinct and at most `MAX_TOKEN_LEN` bytes; a query that
//! passes `check_query` is within `MAX_QUERY_WORDS` / `MAX_QUERY_LEN`.
#![no_main]

use kazoo_common::wire::{self, FrameError, Request, MAX_QUERY_LEN, MAX_QUERY_WORDS};
use kazoo_common::ContentId;
use kazoo_fuzz::check_round_trip;
use kazoo_supernode::check_query;
use kazoo_supernode::tokenize::{tokens, MAX_TOKEN_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let request = match wire::decode_request(data) {
        Ok(request) => request,
        Err(FrameError::UnknownMessage(kind)) => {
            assert!(kind >= 7, "known kind {kind} called unknown");
            return;
        }
        Err(FrameError::Malformed(_)) => return,
        Err(other) => panic!("decode_request: {other}"),
    };
    check_round_trip(&request);
    match &request {
        Request::Register { entries } => {
            for entry in entries.iter().take(64) {
                check_tokens(&entry.name);
            }
        }
        Request::Search { words, .. } => {
            for word in words.iter().take(64) {
                check_tokens(word);
                if let Ok(id) = word.parse::<ContentId>() {
                    assert_eq!(id.to_hex(), word.trim().to_ascii_lowercase());
                }
            }
            if check_query(words).is_ok() {
                let bytes: usize = words.iter().map(String::len).sum();
                assert!(words.len() <= MAX_QUERY_WORDS && bytes <= MAX_QUERY_LEN);
                assert!(words.iter().any(|w| !tokens(w).is_empty()));
            }
        }
        _ => {}
    }
});

fn check_tokens(text: &str) {
    let list = tokens(text);
    for (i, token) in list.iter().enumerate() {
        assert!(!token.is_empty(), "empty token from {text:?}");
        assert!(
            token.len() <= MAX_TOKEN_LEN,
            "token of {} bytes",
            token.len()
        );
        assert!(!list[..i].contains(token), "token {token:?} twice");
    }
}
