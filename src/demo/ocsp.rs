//! OCSP responses (RFC 6960) for the demo server to staple to its handshakes (RFC 6066 §8), so
//! that the prober's reading of a staple can be seen and tested: good, revoked or unknown, for
//! any serial number, produced at any time.
//!
//! The response is well-formed but its signature is filler: the prober reads staples, it does
//! not verify them (see `crate::tls::OcspStaple`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::Encode;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus,
    ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse, Version,
};

pub use crate::tls::OcspCertStatus;

/// How long a response is valid: its nextUpdate is a day after it was produced.
pub const VALIDITY: Duration = Duration::from_secs(86_400);

/// How long before the response a revoked certificate was revoked.
pub const REVOKED_BEFORE: Duration = Duration::from_secs(60);

/// A response for the certificate with serial number `serial` (the DER INTEGER's content
/// bytes) saying `status`, produced at `at` and valid for [`VALIDITY`].
pub fn response(serial: &[u8], status: OcspCertStatus, at: SystemTime) -> Vec<u8> {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let cert_status = match status {
        OcspCertStatus::Good => CertStatus::Good(Null),
        OcspCertStatus::Revoked => CertStatus::Revoked(RevokedInfo {
            revocation_time: time(secs.saturating_sub(REVOKED_BEFORE.as_secs())),
            revocation_reason: None,
        }),
        OcspCertStatus::Unknown => CertStatus::Unknown(Null),
    };
    encode(serial, cert_status, secs).unwrap_or_default()
}

/// A response for `leaf` (a DER certificate) saying `status`, produced at `at`: what a server
/// that keeps its staple fresh sends. Empty when the certificate does not parse.
pub fn for_certificate(leaf: &[u8], status: OcspCertStatus, at: SystemTime) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    match X509Certificate::from_der(leaf) {
        Ok((_, cert)) => response(cert.raw_serial(), status, at),
        Err(_) => Vec::new(),
    }
}

/// `time` as an OCSP timestamp (whole seconds).
fn time(secs: u64) -> OcspGeneralizedTime {
    OcspGeneralizedTime(
        GeneralizedTime::from_unix_duration(Duration::from_secs(secs))
            .unwrap_or(GeneralizedTime::from_unix_duration(Duration::ZERO).expect("1970")),
    )
}

fn encode(serial: &[u8], cert_status: CertStatus, t: u64) -> der::Result<Vec<u8>> {
    let sha1 = AlgorithmIdentifierOwned {
        oid: ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
        parameters: None,
    };
    let single = SingleResponse {
        cert_id: CertId {
            hash_algorithm: sha1.clone(),
            issuer_name_hash: OctetString::new(vec![1; 20])?,
            issuer_key_hash: OctetString::new(vec![2; 20])?,
            serial_number: SerialNumber::new(serial)?,
        },
        cert_status,
        this_update: time(t),
        next_update: Some(time(t + VALIDITY.as_secs())),
        single_extensions: None,
    };
    let basic = BasicOcspResponse {
        tbs_response_data: ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(vec![3; 20])?),
            produced_at: time(t),
            responses: vec![single],
            response_extensions: None,
        },
        signature_algorithm: sha1,
        signature: BitString::from_bytes(&[0; 64])?,
        certs: None,
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            // id-pkix-ocsp-basic
            response_type: ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1"),
            response: OctetString::new(basic.to_der()?)?,
        }),
    }
    .to_der()
}
