//! Certificate facts kept for a long time (the latest result of every scheduled target), without
//! their DER and shared: every result that holds the same certificate at the same place of its
//! chain points to one copy.
//!
//! A chain's facts are about 2 KiB (names, SANs, fingerprints), the bulk of a kept result after
//! its transcript. Targets of one provider (the MX hosts of a hosted mail service, the
//! submission servers of one customer) present the same certificates, and within one result the
//! chain built from the server's certificates repeats them. Sharing makes a certificate cost
//! its facts once, however many targets and results hold it.

use super::{CertFacts, CertSource};
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// What makes two facts equal: the certificate (its fingerprint; every other fact is derived
/// from its DER) and its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    fingerprint: String,
    depth: usize,
    sent: bool,
    source: CertSource,
}

/// The facts in use, and when to look for those no result holds any more.
struct Kept {
    facts: HashMap<Key, Weak<CertFacts>>,
    prune_at: usize,
}

/// Pruning runs when the table reaches this size, then twice the size it pruned to: each entry
/// is visited a bounded number of times on average.
const PRUNE_AT_LEAST: usize = 1024;

static KEPT: LazyLock<Mutex<Kept>> = LazyLock::new(|| {
    Mutex::new(Kept {
        facts: HashMap::new(),
        prune_at: PRUNE_AT_LEAST,
    })
});

/// `facts` without DER, shared with every other kept copy of the same certificate at the same
/// place.
pub(crate) fn kept(facts: &Arc<CertFacts>) -> Arc<CertFacts> {
    let key = Key {
        fingerprint: facts.fingerprint_sha256.clone(),
        depth: facts.depth,
        sent: facts.sent,
        source: facts.source.clone(),
    };
    let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shared) = kept.facts.get(&key).and_then(Weak::upgrade) {
        return shared;
    }
    let shared = Arc::new(CertFacts {
        der: CertificateDer::from(Vec::new()),
        ..(**facts).clone()
    });
    kept.facts.insert(key, Arc::downgrade(&shared));
    if kept.facts.len() >= kept.prune_at {
        kept.facts.retain(|_, w| w.strong_count() > 0);
        kept.prune_at = (kept.facts.len() * 2).max(PRUNE_AT_LEAST);
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(fingerprint: &str, depth: usize) -> Arc<CertFacts> {
        Arc::new(CertFacts {
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
        })
    }

    #[test]
    fn the_same_certificate_at_the_same_place_is_kept_once_without_der() {
        let a = kept(&facts("kept-test-aa", 0));
        let b = kept(&facts("kept-test-aa", 0));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.der.is_empty());
        assert_eq!(a.subject, "CN=a");
        // Another depth or another certificate is another entry.
        assert!(!Arc::ptr_eq(&a, &kept(&facts("kept-test-aa", 1))));
        assert!(!Arc::ptr_eq(&a, &kept(&facts("kept-test-bb", 0))));
    }

    #[test]
    fn facts_no_result_holds_are_dropped() {
        for i in 0..3 * PRUNE_AT_LEAST {
            drop(kept(&facts(&format!("kept-test-drop-{i}"), 0)));
        }
        let held = kept(&facts("kept-test-held", 0));
        let table = KEPT.lock().unwrap();
        // Pruned along the way: far fewer entries than were ever added.
        assert!(
            table.facts.len() < 2 * PRUNE_AT_LEAST + 64,
            "{}",
            table.facts.len()
        );
        let key = Key {
            fingerprint: "kept-test-held".into(),
            depth: 0,
            sent: true,
            source: CertSource::Server,
        };
        assert!(Arc::ptr_eq(&table.facts[&key].upgrade().unwrap(), &held));
    }
}
