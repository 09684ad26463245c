//! Mutual TLS 1.3 bound to node keys.
//!
//! Each side presents a self-signed certificate for its ed25519 node key. There is no CA: a
//! certificate is accepted when it carries an ed25519 key and the peer proves possession of it
//! in the TLS 1.3 `CertificateVerify` signature. The node id *is* that key, so when the dialler
//! knows whom it is calling (`NODEID@ADDR`, or a pinned id) a different key fails the handshake.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::identity::Identity;
use crate::wire::ALPN;
use crate::NodeId;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a certificate could not be turned into a node id.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("certificate: {0}")]
pub struct CertError(&'static str);

/// Reads one DER element at the start of `input`: (tag, contents, rest).
fn der_element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), CertError> {
    let bad = CertError("truncated or malformed DER");
    let (&tag, rest) = input.split_first().ok_or(bad.clone())?;
    let (&first, rest) = rest.split_first().ok_or(bad.clone())?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad);
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Extracts the node id (the ed25519 public key) from an X.509 certificate.
pub fn node_id_from_cert(cert: &CertificateDer<'_>) -> Result<NodeId, CertError> {
    let (tag, certificate, _) = der_element(cert.as_ref())?;
    if tag != 0x30 {
        return Err(CertError("not a SEQUENCE"));
    }
    let (tag, mut tbs, _) = der_element(certificate)?;
    if tag != 0x30 {
        return Err(CertError("no TBSCertificate"));
    }
    // Optional [0] version, then serial, signature algorithm, issuer, validity, subject.
    let mut skipped = 0;
    while skipped < 5 || tbs.first() == Some(&0xa0) {
        let (tag, _, rest) = der_element(tbs)?;
        tbs = rest;
        if tag != 0xa0 {
            skipped += 1;
        }
    }
    let (_, _, rest) = der_element(tbs)?;
    let spki = &tbs[..tbs.len() - rest.len()];
    if spki.len() != 44 || spki[..12] != ED25519_SPKI_PREFIX {
        return Err(CertError("key is not ed25519"));
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&spki[12..]);
    Ok(NodeId(id))
}

/// Verifies peers by node key, optionally pinning the expected node id.
#[derive(Debug)]
struct NodeKeyVerifier {
    expected: Option<NodeId>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl NodeKeyVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let id = node_id_from_cert(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match self.expected {
            Some(expected) if expected != id => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// QUIC needs TLS 1.3; a TLS 1.2 signature is never accepted.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

impl ServerCertVerifier for NodeKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

impl ClientCertVerifier for NodeKeyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verifier(expected: Option<NodeId>) -> Arc<NodeKeyVerifier> {
    Arc::new(NodeKeyVerifier {
        expected,
        algorithms: provider().signature_verification_algorithms,
    })
}

/// TLS client config that authenticates with `identity` and accepts a server whose key is
/// `expected` (any node key when `None`).
pub fn client_config(
    identity: &Identity,
    expected: Option<NodeId>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier(expected))
        .with_client_auth_cert(vec![identity.cert()], identity.private_key())?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// TLS server config that presents `identity` and requires a client node key.
pub fn server_config(identity: &Identity) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier(None))
        .with_single_cert(vec![identity.cert()], identity.private_key())?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_certificates_are_rejected() {
        for bytes in [
            &b""[..],
            &[0x30],
            &[0x30, 0x82, 0xff],
            &[0x04, 0x00],
            &[0x30, 0x00],
        ] {
            assert!(node_id_from_cert(&CertificateDer::from(bytes.to_vec())).is_err());
        }
    }
}
