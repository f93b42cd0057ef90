//! Certificate facts kept for a long time (the latest result of every scheduled target), without
//! their DER and shared: every result that holds the same certificate at the same place of its
//! chain points to one copy.
//!
//! A chain's facts are about 2 KiB (names, SANs, fingerprints), the bulk of a kept result after
//! its transcript. Targets of one provider (the MX hosts of a hosted mail service, the
//! submission servers of one customer) present the same certificates, and within one result the
//! chain built from the server's certificates repeats them.

use super::CertFacts;
use crate::intern::Interner;
use rustls_pki_types::CertificateDer;
use std::sync::{Arc, LazyLock};

static KEPT: LazyLock<Interner<CertFacts>> = LazyLock::new(Interner::default);

/// `facts` without DER, shared with every other kept copy of the same certificate at the same
/// place.
pub(crate) fn kept(facts: &CertFacts) -> Arc<CertFacts> {
    KEPT.intern(CertFacts {
        der: CertificateDer::from(Vec::new()),
        ..facts.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::CertSource;

    fn facts(fingerprint: &str, depth: usize) -> CertFacts {
        CertFacts {
            depth,
            subject: "CN=a".into(),
            issuer: "CN=b".into(),
            subject_cn: "a".into(),
            issuer_cn: "b".into(),
            serial: "01".into(),
            fingerprint_sha256: fingerprint.into(),
            not_before: 1,
            not_after: 2,
            sans: vec!["a.test".into()],
            is_ca: false,
            self_signed: false,
            key: "ECDSA P-256".into(),
            signature_algorithm: "ecdsa-with-SHA256".into(),
            sent: true,
            source: CertSource::Server,
            der: CertificateDer::from(vec![1, 2, 3]),
        }
    }

    #[test]
    fn the_same_certificate_at_the_same_place_is_kept_once_without_der() {
        let a = kept(&facts("kept-test-aa", 0));
        let b = kept(&facts("kept-test-aa", 0));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.der.is_empty());
        assert_eq!(a.subject, "CN=a");
        // Another depth or another certificate is another copy.
        assert!(!Arc::ptr_eq(&a, &kept(&facts("kept-test-aa", 1))));
        assert!(!Arc::ptr_eq(&a, &kept(&facts("kept-test-bb", 0))));
    }
}
