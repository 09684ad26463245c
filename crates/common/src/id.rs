//! Identifiers: [`ContentId`] (BLAKE3 of a file) and [`NodeId`] (a node's ed25519 public key).
//!
//! Both are 32 bytes and shown the same way everywhere: 64 lowercase hex digits, the format
//! `b3sum` prints.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Error parsing a 64-digit hex identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected 64 hex digits, got {0:?}")]
pub struct ParseIdError(pub String);

fn parse_hex32(s: &str) -> Result<[u8; 32], ParseIdError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseIdError(s.to_owned()))?;
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The 64-digit lowercase hex form.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 8 hex digits, for logs and tables.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32(s).map(Self)
            }
        }
    };
}

hex_id!(
    /// The id of a file's content: `blake3::hash` of all its bytes.
    ContentId
);
hex_id!(
    /// The id of a node: its ed25519 public key, proven in the TLS handshake.
    NodeId
);

impl From<blake3::Hash> for ContentId {
    fn from(h: blake3::Hash) -> Self {
        ContentId(*h.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = ContentId::from(blake3::hash(b"abc"));
        let text = id.to_string();
        assert_eq!(text, blake3::hash(b"abc").to_hex().as_str());
        assert_eq!(text.parse::<ContentId>(), Ok(id));
        assert!("xyz".parse::<NodeId>().is_err());
        assert!(text[..62].parse::<NodeId>().is_err());
    }
}
