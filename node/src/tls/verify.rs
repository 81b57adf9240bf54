//! Certificate checks of the cluster's connections, on both ends.
//!
//! - [`ClusterClientVerifier`]: the internal listener's check of a caller's certificate: it must
//!   chain to the cluster CA (as the CA bundle is now, after any reload) and carry the client-auth
//!   usage. Which identity it names is decided per request (`rekor_raft::auth`).
//! - [`PeerServerVerifier`]: a node's (or the admin tool's) check of the listener it connects
//!   to: the certificate must chain to the cluster CA and name the node expected there. A peer's
//!   identity is its node id, so the host name in the URL is not what is checked: a membership
//!   entry that points node 2's id at node 3's address fails the handshake instead of reaching
//!   the wrong node.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::material::ReloadingRoots;
use super::metrics::TlsMetrics;
use rekor_raft::Caller;

/// The provider's signature algorithms, checking the handshake signatures of either end.
#[derive(Debug, Clone, Copy)]
struct HandshakeSignatures(WebPkiSupportedAlgorithms);

impl HandshakeSignatures {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }
}

/// The handshake-signature methods both verifier traits require, answered by the verifier's
/// `algorithms` field (a [`HandshakeSignatures`]).
macro_rules! handshake_signature_methods {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.algorithms.tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.algorithms.tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.0.supported_schemes()
        }
    };
}

/// The internal listener's verifier of client certificates.
#[derive(Debug)]
pub struct ClusterClientVerifier {
    roots: Arc<ReloadingRoots>,
    algorithms: HandshakeSignatures,
    metrics: Option<(TlsMetrics, &'static str)>,
}

impl ClusterClientVerifier {
    pub fn new(
        roots: Arc<ReloadingRoots>,
        provider: &CryptoProvider,
        metrics: Option<(TlsMetrics, &'static str)>,
    ) -> Self {
        Self {
            roots,
            algorithms: HandshakeSignatures(provider.signature_verification_algorithms),
            metrics,
        }
    }
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The CA bundle can be replaced while we run, and a borrowed list cannot follow it;
        // cluster clients send their one certificate without hints.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict =
            self.roots
                .client_verifier()
                .verify_client_cert(end_entity, intermediates, now);
        if let Err(error) = &verdict {
            tracing::warn!(%error, "client certificate refused");
            if let Some((metrics, listener)) = &self.metrics {
                metrics
                    .certificates_refused
                    .with_label_values(&[listener])
                    .inc();
            }
        }
        verdict
    }

    handshake_signature_methods!();
}

/// Which node a client expects at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedPeer {
    /// Exactly this node (Raft, forwarding, catch-up).
    Node(u64),
    /// Any node of the cluster (the admin tool, which may be sent on to the leader).
    AnyNode,
}

/// A client's verifier of a cluster listener's certificate.
#[derive(Debug)]
pub struct PeerServerVerifier {
    roots: Arc<ReloadingRoots>,
    expected: ExpectedPeer,
    algorithms: HandshakeSignatures,
}

impl PeerServerVerifier {
    pub fn new(
        roots: Arc<ReloadingRoots>,
        expected: ExpectedPeer,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            roots,
            expected,
            algorithms: HandshakeSignatures(provider.signature_verification_algorithms),
        }
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let certificate = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            &self.roots.roots(),
            intermediates,
            now,
            self.algorithms.0.all,
        )?;
        let caller = super::identity::caller_of(end_entity);
        let expected = match (self.expected, &caller) {
            (ExpectedPeer::Node(want), Caller::Node(got)) => want == *got,
            (ExpectedPeer::AnyNode, Caller::Node(_)) => true,
            _ => false,
        };
        if expected {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!(
                expected = ?self.expected,
                presented = ?caller,
                "a cluster listener presented a certificate of another identity"
            );
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    handshake_signature_methods!();
}
