//! The rustls server certificate verifier of the probe (RFC 8446 §4.4.2-§4.4.3, RFC 5246 §7.4.8):
//! it accepts any certificate chain, so that the handshake completes and the chain can be
//! examined and reported afterwards, but it does verify the handshake signatures. Those prove
//! that the peer holds the private key of the leaf it presented; without them the chain report
//! would describe certificates anyone can copy.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts every chain; checks the handshake signatures with the provider's algorithms.
#[derive(Debug)]
pub(crate) struct ChainDeferringVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ChainDeferringVerifier {
    /// A verifier using `algorithms` (the crypto provider's signature verification algorithms).
    pub(crate) fn new(algorithms: WebPkiSupportedAlgorithms) -> Self {
        ChainDeferringVerifier { algorithms }
    }
}

impl ServerCertVerifier for ChainDeferringVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Deliberately deferred: `chain::analyze` verifies the chain after the handshake and
        // reports the verdict instead of aborting (see the contract in `tls/mod.rs`).
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
