//! The rustls server certificate verifier of the probe (RFC 8446 §4.4.2-§4.4.3, RFC 5246 §7.4.8):
//! it accepts any certificate chain, so that the handshake completes and the chain can be
//! examined and reported afterwards, but it does verify the handshake signatures. Those prove
//! that the peer holds the private key of the leaf it presented; without them the chain report
//! would describe certificates anyone can copy.
//!
//! The verifier belongs to a module's shared client configuration, so it cannot keep per-handshake
//! state in itself. What it sees of one handshake (the stapled OCSP response, the signature
//! scheme of CertificateVerify or ServerKeyExchange) goes to the task running that handshake
//! through a task-local slot: rustls calls the verifier synchronously while the handshake future
//! is polled, inside [`observing`].

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::cell::RefCell;
use std::future::Future;

/// What the verifier saw of one handshake.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    /// The OCSP response the server stapled (empty: none).
    pub(crate) ocsp_response: Vec<u8>,
    /// The scheme of the server's handshake signature.
    pub(crate) signature_scheme: Option<SignatureScheme>,
}

tokio::task_local! {
    static OBSERVED: RefCell<Observed>;
}

/// Runs `handshake` and returns what the verifier observed while it ran.
pub(crate) async fn observing<F: Future>(handshake: F) -> (F::Output, Observed) {
    OBSERVED
        .scope(RefCell::new(Observed::default()), async {
            let output = handshake.await;
            (output, OBSERVED.with(RefCell::take))
        })
        .await
}

/// Notes a fact for the handshake being polled; outside [`observing`] there is nobody to tell.
fn observe(note: impl FnOnce(&mut Observed)) {
    let _ = OBSERVED.try_with(|o| note(&mut o.borrow_mut()));
}

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
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        observe(|o| o.ocsp_response = ocsp_response.to_vec());
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
        observe(|o| o.signature_scheme = Some(dss.scheme));
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        observe(|o| o.signature_scheme = Some(dss.scheme));
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
