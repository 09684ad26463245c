//! Private networks (`network.secret`): each side of a connection proves it knows the shared
//! secret without sending it. The proof is a keyed BLAKE3 hash of the connection's TLS
//! exporter keying material (RFC 5705/8446: unique to this TLS session, known only to its two
//! ends) under a key derived from the secret, with the dialler's and the acceptor's proofs
//! taken over different contexts. A proof seen on the wire is therefore worthless on any
//! other connection (no replay) and cannot be reflected back to its sender; the secret is
//! never on the wire. Both sides require a valid proof from the other when they have a
//! secret, and refuse a proof when they have none, so a private node and an open node never
//! connect by mistake.

use quinn::Connection;

/// Context the secret's key is derived under (BLAKE3 `derive_key`).
const KEY_CONTEXT: &str = "kazoo 2026 network secret v1";
/// Exporter label of the keying material proofs are made over.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-kazoo-network-proof";

/// Which end of a connection a proof is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The node that dialled.
    Dialler,
    /// The node that accepted.
    Acceptor,
}

impl Side {
    /// The other end of the connection.
    fn other(self) -> Side {
        match self {
            Side::Dialler => Side::Acceptor,
            Side::Acceptor => Side::Dialler,
        }
    }

    /// How messages name it.
    fn name(self) -> &'static str {
        match self {
            Side::Dialler => "dialling node",
            Side::Acceptor => "accepting node",
        }
    }

    fn context(self) -> &'static [u8] {
        match self {
            Side::Dialler => b"dialler",
            Side::Acceptor => b"acceptor",
        }
    }
}

/// The key of a private network, derived from `network.secret`.
#[derive(Clone)]
pub struct NetworkKey([u8; 32]);

impl std::fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkKey(…)")
    }
}

impl NetworkKey {
    /// The key of the network whose secret is `secret`.
    pub fn from_secret(secret: &str) -> Self {
        NetworkKey(blake3::derive_key(KEY_CONTEXT, secret.as_bytes()))
    }

    /// `side`'s proof on `conn` (`None` if TLS cannot export keying material, which a
    /// completed QUIC handshake always can).
    pub fn proof(&self, conn: &Connection, side: Side) -> Option<[u8; 32]> {
        let mut material = [0u8; 32];
        conn.export_keying_material(&mut material, EXPORTER_LABEL, side.context())
            .ok()?;
        Some(*blake3::keyed_hash(&self.0, &material).as_bytes())
    }
}

/// Our proof for `side` on `conn`, if we are in a private network.
pub fn proof(key: Option<&NetworkKey>, conn: &Connection, side: Side) -> Option<[u8; 32]> {
    key.and_then(|key| key.proof(conn, side))
}

/// Checks the proof the peer (at `side`) sent on `conn`; `Err` says what is wrong, for
/// both the log and the peer.
pub fn check(
    key: Option<&NetworkKey>,
    conn: &Connection,
    side: Side,
    theirs: Option<[u8; 32]>,
) -> Result<(), String> {
    match (key, theirs) {
        (None, None) => Ok(()),
        // Worded the same from both ends: the message goes to the peer too.
        (None, Some(_)) => Err(format!("network.secret is set on the {} only", side.name())),
        (Some(_), None) => Err(format!(
            "network.secret is set on the {} only",
            side.other().name()
        )),
        (Some(key), Some(theirs)) => {
            let expected = key.proof(conn, side).ok_or("no TLS keying material")?;
            // `blake3::Hash` compares in constant time.
            if blake3::Hash::from_bytes(expected) == blake3::Hash::from_bytes(theirs) {
                Ok(())
            } else {
                Err("the two nodes have different network.secret values".into())
            }
        }
    }
}
