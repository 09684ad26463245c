//! A node's identity: an ed25519 key pair kept in `data_dir/node.key` (PKCS#8 DER, mode 0600),
//! created on first run and reused after. The node id is the public key; the TLS certificate
//! is a self-signed certificate for that key, made anew at every start.

use std::io::Write;
use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::NodeId;

/// File name of the key inside `data_dir`.
pub const KEY_FILE: &str = "node.key";

/// The mark file every node writes into its `data_dir` (like `CACHEDIR.TAG`): a folder that
/// holds it, or a [`KEY_FILE`], is a kazoo data dir, and no node shares anything in it.
pub const DATA_DIR_MARK: &str = "KAZOO-DATA-DIR.TAG";

/// What the mark file says to whoever opens it.
const DATA_DIR_MARK_TEXT: &str = "This folder is a kazoo node's data dir (node key, hash cache, \
partial downloads, control socket).\nkazoo never shares a folder holding this file.\n";

/// Whether `dir` is a kazoo data dir: it holds the [`DATA_DIR_MARK`] or a [`KEY_FILE`].
pub fn is_data_dir(dir: &Path) -> bool {
    dir.join(DATA_DIR_MARK).exists() || dir.join(KEY_FILE).exists()
}

/// Writes the [`DATA_DIR_MARK`] into `data_dir` unless it is there.
pub fn mark_data_dir(data_dir: &Path) -> std::io::Result<()> {
    let mark = data_dir.join(DATA_DIR_MARK);
    if mark.exists() {
        return Ok(());
    }
    std::fs::write(mark, DATA_DIR_MARK_TEXT)
}

/// Longest key file [`looks_like_key`] recognises (an ed25519 PKCS#8 v2 key is 83–85 bytes).
pub const MAX_KEY_FILE_LEN: u64 = 128;

/// Whether `bytes` (a whole file) look like an ed25519 PKCS#8 private key — a node key under
/// any name: a DER sequence holding version 0 or 1 and the id-Ed25519 algorithm.
pub fn looks_like_key(bytes: &[u8]) -> bool {
    const ALGORITHM: [u8; 7] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
    bytes.len() as u64 <= MAX_KEY_FILE_LEN
        && bytes.first() == Some(&0x30)
        && bytes.get(2..4) == Some(&[0x02, 0x01])
        && bytes.get(5..12) == Some(&ALGORITHM)
}

/// Errors loading or creating an identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file is not an ed25519 PKCS#8 key.
    #[error("key file {path} is not a valid ed25519 key: {reason}")]
    BadKey {
        /// The key file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Making the certificate failed.
    #[error("creating certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

/// The node's key pair and the certificate that presents it.
#[derive(Debug)]
pub struct Identity {
    node_id: NodeId,
    key_der: Vec<u8>,
    cert: CertificateDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            node_id: self.node_id,
            key_der: self.key_der.clone(),
            cert: self.cert.clone(),
        }
    }
}

impl Identity {
    /// A fresh identity that lives only in memory (tests, throw-away nodes).
    pub fn generate() -> Result<Self, IdentityError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        Self::from_key_pair(key)
    }

    /// Loads `data_dir/node.key`, or creates it (mode 0600) if missing; marks `data_dir`
    /// as a data dir ([`DATA_DIR_MARK`]) either way.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = data_dir.join(KEY_FILE);
        let shown = path.display().to_string();
        let io = |source| IdentityError::Io {
            path: shown.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        mark_data_dir(data_dir).map_err(|source| IdentityError::Io {
            path: data_dir.join(DATA_DIR_MARK).display().to_string(),
            source,
        })?;
        match std::fs::read(&path) {
            Ok(der) => {
                let key = rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| {
                    IdentityError::BadKey {
                        path: shown.clone(),
                        reason: e.to_string(),
                    }
                })?;
                if key.algorithm() != &rcgen::PKCS_ED25519 {
                    return Err(IdentityError::BadKey {
                        path: shown,
                        reason: "not an ed25519 key".into(),
                    });
                }
                Self::from_key_pair(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path).map_err(io)?;
                file.write_all(&key.serialize_der()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Self::from_key_pair(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn from_key_pair(key: rcgen::KeyPair) -> Result<Self, IdentityError> {
        let raw = key.public_key_raw();
        let mut id = [0u8; 32];
        if raw.len() != 32 {
            return Err(IdentityError::BadKey {
                path: "<memory>".into(),
                reason: "public key is not 32 bytes".into(),
            });
        }
        id.copy_from_slice(raw);
        let params = rcgen::CertificateParams::new(vec!["kazoo".to_string()])?;
        let cert = params.self_signed(&key)?;
        Ok(Identity {
            node_id: NodeId(id),
            key_der: key.serialize_der(),
            cert: cert.der().clone(),
        })
    }

    /// This node's id (its public key).
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The self-signed certificate carrying the key.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The private key, for rustls.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.node_id(), b.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            crate::tls::node_id_from_cert(&a.cert()).unwrap(),
            a.node_id()
        );
    }

    #[test]
    fn a_data_dir_is_marked_and_its_key_is_recognised_under_any_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("state");
        assert!(!is_data_dir(&data));
        Identity::load_or_create(&data).unwrap();
        assert!(data.join(DATA_DIR_MARK).is_file());
        assert!(is_data_dir(&data));
        std::fs::remove_file(data.join(DATA_DIR_MARK)).unwrap();
        assert!(
            is_data_dir(&data),
            "an older data dir: its node.key marks it"
        );
        let key = std::fs::read(data.join(KEY_FILE)).unwrap();
        assert!(looks_like_key(&key), "{key:02x?}");
        assert!(!looks_like_key(b"hello world"));
        assert!(!looks_like_key(&[0x30; 200]));
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), b"not a key").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a valid ed25519 key"), "{err}");
    }
}
