//! Findings about a chain that an admin should fix even when it verifies: the root sent along,
//! duplicates, certificates out of order or unrelated to the chain (RFC 8446 §4.4.2, RFC 5246
//! §7.4.2), SHA-1 signatures (RFC 9155 deprecates SHA-1 in TLS signatures; CAs stopped issuing
//! them), a leaf valid longer than the CA/Browser Forum's 398 days, and intermediates this client
//! had to supply from a local CA file because the server did not send them.
//!
//! Each finding is one small pure function over fingerprints, names or dates, so that it can be
//! tested without a handshake; [`ChainReport::flags`] applies them all.

use super::trust::is_public_root;
use super::{CertFacts, CertSource, ChainReport};
use std::sync::Arc;

/// The longest leaf lifetime the CA/Browser Forum Baseline Requirements allow for certificates
/// issued since 2020-09-01, in days.
pub const MAX_LEAF_LIFETIME_DAYS: i64 = 398;

/// What is worth fixing about a chain besides its verdict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainFlags {
    /// Position in the sent list of a root (a self-signed CA certificate after the leaf). Sending
    /// it is needless: a client trusts a root only when it already holds it.
    pub root_sent: Option<usize>,
    /// Positions in the sent list of certificates that repeat an earlier one.
    pub duplicates: Vec<usize>,
    /// The sent certificates of the chain do not follow the chain's order (leaf, its issuer, that
    /// one's issuer, ...), which TLS 1.2 requires and TLS 1.3 still asks for.
    pub wrong_order: bool,
    /// Positions in the sent list of certificates that are not part of the built chain.
    pub unrelated: Vec<usize>,
    /// Depths in the built chain of certificates signed with SHA-1. A self-signed root's own
    /// signature is never checked, so roots are not listed.
    pub sha1_signed: Vec<usize>,
    /// The leaf's lifetime in days, when longer than [`MAX_LEAF_LIFETIME_DAYS`] and the chain
    /// ends at a publicly trusted root (the limit binds public CAs only; a private CA may issue
    /// what it likes).
    pub leaf_lifetime_days: Option<i64>,
    /// Depths in the built chain of intermediates taken from a local CA file because the server
    /// did not send them (`probe_tls_chain_sent_complete 0` when the chain verifies).
    pub local_intermediates: Vec<usize>,
}

impl ChainFlags {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        *self == ChainFlags::default()
    }
}

impl ChainReport {
    /// The findings about this chain.
    pub fn flags(&self) -> ChainFlags {
        let sent: Vec<&str> = self
            .sent
            .iter()
            .map(|c| c.fingerprint_sha256.as_str())
            .collect();
        let built: Vec<&str> = self
            .built
            .iter()
            .map(|c| c.fingerprint_sha256.as_str())
            .collect();
        let chain = self.listed();
        ChainFlags {
            root_sent: root_position(&self.sent),
            duplicates: duplicate_positions(&sent),
            wrong_order: !in_chain_order(&sent, &built),
            unrelated: if built.is_empty() {
                Vec::new()
            } else {
                unrelated_positions(&sent, &built)
            },
            sha1_signed: chain
                .iter()
                .filter(|c| !c.self_signed && is_sha1(&c.signature_algorithm))
                .map(|c| c.depth)
                .collect(),
            leaf_lifetime_days: chain.first().and_then(|leaf| {
                let public = self.anchor().is_some_and(|a| is_public_root(&a.der));
                long_lived_leaf(leaf, public)
            }),
            local_intermediates: self
                .built
                .iter()
                .filter(|c| is_local_intermediate(c))
                .map(|c| c.depth)
                .collect(),
        }
    }

    /// The trust anchor the chain was built to: the last certificate of the built chain when a
    /// trust source holds it. `None` when building stopped short of an anchor, and for a pinned
    /// self-signed leaf (which is its own anchor, see [`ChainReport::leaf_pinned`]).
    pub fn anchor(&self) -> Option<&CertFacts> {
        let last = self.built.last()?;
        let from_trust_source = last.source != CertSource::Server && !is_local_intermediate(last);
        (from_trust_source && self.built.len() > 1).then_some(last)
    }

    /// Whether the leaf itself is a trust anchor: a self-signed certificate pinned with a CA file.
    pub fn leaf_pinned(&self) -> bool {
        self.valid() && self.built.len() == 1
    }
}

/// The lifetime in days of a leaf over the public CAs' limit, when the chain ends at a public
/// root.
pub fn long_lived_leaf(leaf: &CertFacts, public_anchor: bool) -> Option<i64> {
    if !public_anchor || leaf.is_ca {
        return None;
    }
    Some(lifetime_days(leaf.not_before, leaf.not_after)).filter(|&d| d > MAX_LEAF_LIFETIME_DAYS)
}

/// Position after the leaf of the first self-signed CA certificate.
pub fn root_position(sent: &[Arc<CertFacts>]) -> Option<usize> {
    sent.iter()
        .enumerate()
        .skip(1)
        .find(|(_, c)| c.self_signed && c.is_ca)
        .map(|(i, _)| i)
}

/// Positions of entries equal to an earlier one.
pub fn duplicate_positions(fingerprints: &[&str]) -> Vec<usize> {
    fingerprints
        .iter()
        .enumerate()
        .filter(|(i, fp)| fingerprints[..*i].contains(fp))
        .map(|(i, _)| i)
        .collect()
}

/// Whether the certificates of `built` (leaf first) that were sent appear in `sent` in chain
/// order, each at its first occurrence. Certificates of `sent` outside the chain and duplicates
/// are other findings and do not count here.
pub fn in_chain_order(sent: &[&str], built: &[&str]) -> bool {
    let mut last_depth = None;
    for (i, fp) in sent.iter().enumerate() {
        if sent[..i].contains(fp) {
            continue;
        }
        let Some(depth) = built.iter().position(|b| b == fp) else {
            continue;
        };
        if last_depth.is_some_and(|last| depth < last) {
            return false;
        }
        last_depth = Some(depth);
    }
    true
}

/// Positions of sent certificates that the built chain does not contain.
pub fn unrelated_positions(sent: &[&str], built: &[&str]) -> Vec<usize> {
    sent.iter()
        .enumerate()
        .filter(|(_, fp)| !built.contains(fp))
        .map(|(i, _)| i)
        .collect()
}

/// Whether a signature algorithm (as [`CertFacts::signature_algorithm`] names it: OpenSSL's
/// name, or the dotted OID when unnamed) uses SHA-1.
pub fn is_sha1(signature_algorithm: &str) -> bool {
    const SHA1_OIDS: [&str; 4] = [
        "1.2.840.113549.1.1.5", // sha1WithRSAEncryption
        "1.2.840.10045.4.1",    // ecdsa-with-SHA1
        "1.2.840.10040.4.3",    // dsa-with-sha1
        "1.3.14.3.2.29",        // the old OIW sha1WithRSASignature
    ];
    let lower = signature_algorithm.to_ascii_lowercase();
    lower.contains("sha1") || SHA1_OIDS.contains(&signature_algorithm)
}

/// A validity period in whole days, counted as RFC 5280 §4.1.2.5 does (both ends included).
pub fn lifetime_days(not_before: i64, not_after: i64) -> i64 {
    (not_after.saturating_sub(not_before).saturating_add(1)) / 86_400
}

/// Whether a certificate of a built chain is an intermediate held in a local CA file: the store
/// keeps every non-self-signed certificate of a CA file as an intermediate, and only those.
fn is_local_intermediate(c: &CertFacts) -> bool {
    !c.sent && !c.self_signed && matches!(c.source, CertSource::File(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_later_repeats() {
        assert_eq!(duplicate_positions(&["a", "b", "a", "b", "c"]), vec![2, 3]);
        assert!(duplicate_positions(&["a", "b", "c"]).is_empty());
    }

    #[test]
    fn chain_order_ignores_extras_and_repeats() {
        // built: leaf a, intermediate b, root c
        let built = ["a", "b", "c"];
        assert!(in_chain_order(&["a", "b"], &built));
        assert!(in_chain_order(&["a", "b", "c"], &built));
        assert!(in_chain_order(&["a", "x", "b"], &built), "x is unrelated");
        assert!(in_chain_order(&["a", "b", "b"], &built), "b is a repeat");
        assert!(!in_chain_order(&["a", "c", "b"], &built));
        assert!(in_chain_order(&["a", "c"], &built), "b was not sent");
        assert!(in_chain_order(&["a"], &[]));
    }

    #[test]
    fn unrelated_certificates_are_outside_the_built_chain() {
        assert_eq!(unrelated_positions(&["a", "x", "b"], &["a", "b", "c"]), [1]);
        assert!(unrelated_positions(&["a", "b"], &["a", "b", "c"]).is_empty());
    }

    #[test]
    fn sha1_by_name_or_oid() {
        assert!(is_sha1("sha1WithRSAEncryption"));
        assert!(is_sha1("ecdsa-with-SHA1"));
        assert!(is_sha1("1.3.14.3.2.29"));
        assert!(!is_sha1("sha256WithRSAEncryption"));
        assert!(!is_sha1("ecdsa-with-SHA384"));
        assert!(!is_sha1("1.2.840.113549.1.1.11"));
    }

    #[test]
    fn lifetime_counts_both_ends() {
        let day = 86_400;
        // 2020-09-01T00:00:00Z .. 2021-10-04T23:59:59Z: exactly 399 days.
        assert_eq!(
            lifetime_days(1_598_918_400, 1_598_918_400 + 399 * day - 1),
            399
        );
        assert_eq!(lifetime_days(0, 398 * day - 1), 398);
        assert_eq!(
            lifetime_days(0, 398 * day),
            398,
            "one second more is not a day"
        );
        assert_eq!(lifetime_days(10, 0), 0);
    }

    /// A client that trusts the demo root from a CA file, plus `extra` certificates in it.
    fn client(
        pki: &crate::demo::DemoPki,
        extra: &[&str],
    ) -> (super::super::TlsClient, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let mut pem = pki.root_pem().to_string();
        for e in extra {
            pem.push_str(e);
        }
        std::fs::write(&path, pem).unwrap();
        let settings = super::super::TlsSettings {
            trust: vec![],
            ca_files: vec![path],
            ..Default::default()
        };
        (super::super::TlsClient::new(&settings).unwrap(), dir)
    }

    #[test]
    fn flags_of_real_chains() {
        let pki = crate::demo::DemoPki::localhost();
        let (leaf, inter, root) = (
            pki.leaf.der.clone(),
            pki.intermediate.der.clone(),
            pki.root.der.clone(),
        );
        let now = std::time::SystemTime::now();
        let (c, _dir) = client(&pki, &[]);

        let clean = c.verify_chain(&[leaf.clone(), inter.clone()], "localhost", now);
        assert!(clean.valid());
        assert!(clean.flags().is_empty(), "{:?}", clean.flags());
        assert_eq!(clean.anchor().map(|a| a.depth), Some(2));

        let messy = c.verify_chain(
            &[leaf.clone(), root.clone(), inter.clone(), inter.clone()],
            "localhost",
            now,
        );
        assert!(messy.valid());
        let flags = messy.flags();
        assert_eq!(flags.root_sent, Some(1));
        assert!(flags.wrong_order);
        assert_eq!(flags.duplicates, [3]);
        assert_eq!(flags.unrelated, Vec::<usize>::new());
        assert!(flags.local_intermediates.is_empty());

        let other = crate::demo::DemoPki::generate(&[]).unwrap();
        let extra = c.verify_chain(
            &[leaf.clone(), other.intermediate.der.clone(), inter.clone()],
            "localhost",
            now,
        );
        assert!(extra.valid());
        assert_eq!(extra.flags().unrelated, [1]);
        assert!(!extra.flags().wrong_order);

        let (local, _dir2) = client(&pki, &[pki.intermediate_pem()]);
        let report = local.verify_chain(std::slice::from_ref(&leaf), "localhost", now);
        assert!(report.valid() && !report.sent_complete);
        assert_eq!(report.flags().local_intermediates, [1]);
        assert!(matches!(
            report.anchor().map(|a| &a.source),
            Some(CertSource::File(_))
        ));

        let mut long = crate::demo::PkiOptions::new(&[]);
        long.leaf_not_after = now + std::time::Duration::from_secs(500 * 86_400);
        let long = crate::demo::DemoPki::with_options(&long).unwrap();
        let (lc, _dir3) = client(&long, &[]);
        let report = lc.verify_chain(&long.chain(&crate::demo::Sent::Full), "localhost", now);
        assert!(report.valid());
        // From yesterday to 500 days ahead: 501 days, which only a public CA may not issue.
        assert_eq!(report.flags().leaf_lifetime_days, None);
        assert_eq!(long_lived_leaf(&report.built[0], true), Some(501));
        assert_eq!(long_lived_leaf(&report.built[0], false), None);
        assert!(!is_public_root(&long.root.der));
        assert!(is_public_root(&webpki_root_certs::TLS_SERVER_ROOT_CERTS[0]));

        let untrusted = c.verify_chain(std::slice::from_ref(&other.leaf.der), "localhost", now);
        assert!(!untrusted.valid());
        assert!(untrusted.anchor().is_none());
    }
}
