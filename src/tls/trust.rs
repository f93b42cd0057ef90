//! The trust store of one module: trust anchors from the operating system (rustls-native-certs),
//! Mozilla's roots (webpki-root-certs) and `ca_files`, plus intermediates found in `ca_files`.
//! Built once per module and read by every handshake of it.
//!
//! Every anchor keeps its full certificate, so that a built chain can show the root's facts
//! (dates, fingerprint) and `chain --export-dir` can write it. That is why the bundled roots come
//! from `webpki-root-certs` (the same Mozilla set as `webpki-roots`, shipped as whole
//! certificates) rather than from `webpki-roots`, which only ships the subject and key.

use super::cert::{is_self_signed, parse};
use super::{CertFacts, CertSource, TlsSetupError, TrustKind};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Largest CA file read; a PEM bundle of every public root is about 250 KiB.
pub(crate) const MAX_CA_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Whether `der` is one of the publicly trusted roots (the bundled Mozilla set), whichever
/// trust source it was found in: a system store holds the same roots plus any private ones.
pub(crate) fn is_public_root(der: &[u8]) -> bool {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .any(|root| root.as_ref() == der)
}

/// A certificate held by a trust source.
#[derive(Clone, Debug)]
pub(crate) struct StoredCert {
    pub(crate) der: CertificateDer<'static>,
    pub(crate) source: CertSource,
    /// The raw subject Name (DER), for matching a child's issuer byte for byte as webpki does.
    pub(crate) subject: Vec<u8>,
    /// Its facts, worked out the first time a chain ends at it: parsing, hashing and checking
    /// the self-signature of the same root on every probe was a fifth of a probe's CPU.
    facts: std::sync::OnceLock<CertFacts>,
}

impl StoredCert {
    fn new(der: CertificateDer<'static>, source: CertSource, subject: Vec<u8>) -> StoredCert {
        StoredCert {
            der,
            source,
            subject,
            facts: std::sync::OnceLock::new(),
        }
    }

    /// Its facts at `depth` of a chain, `sent` when the server sent it too.
    pub(crate) fn facts(&self, depth: usize, sent: bool) -> CertFacts {
        let facts = self
            .facts
            .get_or_init(|| CertFacts::from_der(&self.der, 0, false, self.source.clone()));
        CertFacts {
            depth,
            sent,
            ..facts.clone()
        }
    }
}

/// Anchors and locally available intermediates.
#[derive(Debug, Default)]
pub(crate) struct TrustStore {
    /// Anchors in webpki's form; index `i` is `anchors[i]`.
    pub(crate) webpki_anchors: Vec<TrustAnchor<'static>>,
    /// Anchors with their certificates and sources.
    pub(crate) anchors: Vec<StoredCert>,
    /// Non-self-signed certificates from `ca_files`: intermediates a server may fail to send.
    pub(crate) intermediates: Vec<StoredCert>,
    /// Anchor indices by raw subject.
    by_subject: HashMap<Vec<u8>, Vec<usize>>,
    /// SHA-256 of every certificate added, so overlapping sources add each certificate once.
    seen: HashSet<[u8; 32]>,
    /// Why the system store could not be read, when it could not.
    pub(crate) system_problems: Vec<String>,
    /// The chains it verified lately (see [`super::chain::Verdicts`]).
    pub(crate) verdicts: super::chain::Verdicts,
}

impl TrustStore {
    /// Loads `trust` in order, then `ca_files` in order. A certificate present in several
    /// sources is attributed to the first. A missing or unreadable system store is recorded,
    /// not fatal, as long as some source yields an anchor.
    pub(crate) fn load(
        trust: &[TrustKind],
        ca_files: &[PathBuf],
    ) -> Result<TrustStore, TlsSetupError> {
        let mut store = TrustStore::default();
        for kind in trust {
            match kind {
                TrustKind::System => store.add_system(),
                TrustKind::Bundled => {
                    for der in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
                        store.add_anchor(der.clone(), CertSource::Bundled);
                    }
                }
            }
        }
        for path in ca_files {
            store.add_file(path)?;
        }
        if store.anchors.is_empty() {
            let mut why = format!(
                "none from trust sources {trust:?} and {} CA file(s)",
                ca_files.len()
            );
            if !store.system_problems.is_empty() {
                why.push_str("; system store: ");
                why.push_str(&store.system_problems.join("; "));
            }
            return Err(TlsSetupError::NoAnchors(why));
        }
        Ok(store)
    }

    /// Indices of the anchors whose subject is `subject` (raw DER Name).
    pub(crate) fn anchors_named(&self, subject: &[u8]) -> &[usize] {
        self.by_subject
            .get(subject)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Adds the operating system's roots; problems are kept in `system_problems`.
    fn add_system(&mut self) {
        let result = rustls_native_certs::load_native_certs();
        for error in &result.errors {
            self.system_problems.push(error.to_string());
        }
        let before = self.anchors.len();
        let mut skipped = 0usize;
        for der in result.certs {
            if !self.add_anchor(der, CertSource::System) {
                skipped += 1;
            }
        }
        if self.anchors.len() == before && result.errors.is_empty() && skipped == 0 {
            self.system_problems
                .push("no certificates found in the system store".into());
        }
    }

    /// Adds a trusted certificate as an anchor. Returns false when webpki or x509-parser cannot
    /// read it (such a root could never anchor a chain); a duplicate counts as added.
    fn add_anchor(&mut self, der: CertificateDer<'static>, source: CertSource) -> bool {
        if self.seen.contains(&digest(&der)) {
            return true;
        }
        let Some(subject) = parse(&der).map(|c| c.subject().as_raw().to_vec()) else {
            return false;
        };
        let Ok(anchor) = webpki::anchor_from_trusted_cert(&der).map(|a| a.to_owned()) else {
            return false;
        };
        self.seen.insert(digest(&der));
        let index = self.anchors.len();
        self.by_subject
            .entry(subject.clone())
            .or_default()
            .push(index);
        self.webpki_anchors.push(anchor);
        self.anchors.push(StoredCert::new(der, source, subject));
        true
    }

    /// Adds every certificate of a PEM file: self-signed ones become anchors (a CA root, or a
    /// pinned self-signed server certificate), the others local intermediates.
    fn add_file(&mut self, path: &Path) -> Result<(), TlsSetupError> {
        let fail = |why: String| TlsSetupError::CaFile {
            path: path.to_path_buf(),
            why,
        };
        let pem =
            crate::local_file::read(path, MAX_CA_FILE_BYTES).map_err(|e| fail(e.to_string()))?;
        let mut reader = pem.as_slice();
        let mut count = 0usize;
        for item in rustls_pemfile::certs(&mut reader) {
            count += 1;
            let der = item.map_err(|e| fail(format!("certificate {count}: {e}")))?;
            let Some(cert) = parse(&der) else {
                return Err(fail(format!("certificate {count} is not valid X.509 DER")));
            };
            let source = CertSource::File(path.to_path_buf());
            let self_signed = is_self_signed(&cert);
            let subject = cert.subject().as_raw().to_vec();
            if self_signed {
                if !self.add_anchor(der, source) {
                    return Err(fail(format!(
                        "certificate {count} cannot be used as a trust anchor"
                    )));
                }
            } else if self.seen.insert(digest(&der)) {
                self.intermediates
                    .push(StoredCert::new(der, source, subject));
            }
        }
        if count == 0 {
            return Err(fail("holds no PEM certificate".into()));
        }
        Ok(())
    }
}

/// SHA-256 of a certificate, its identity in the store.
fn digest(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn bundled_roots_are_anchors_with_full_certificates() {
        let store = TrustStore::load(&[TrustKind::Bundled], &[]).unwrap();
        assert!(store.anchors.len() > 100, "{}", store.anchors.len());
        assert_eq!(store.anchors.len(), store.webpki_anchors.len());
        assert!(store
            .anchors
            .iter()
            .all(|a| a.source == CertSource::Bundled && parse(&a.der).is_some()));
    }

    #[test]
    fn ca_file_errors_name_the_path() {
        let missing = PathBuf::from("/nonexistent/smtp-prober-ca.pem");
        let err = TrustStore::load(&[], std::slice::from_ref(&missing)).unwrap_err();
        match err {
            TlsSetupError::CaFile { path, .. } => assert_eq!(path, missing),
            other => panic!("unexpected {other:?}"),
        }

        let mut empty = tempfile::NamedTempFile::new().unwrap();
        writeln!(empty, "not a certificate").unwrap();
        let err = TrustStore::load(&[], &[empty.path().to_path_buf()]).unwrap_err();
        assert!(
            err.to_string().contains("holds no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn no_sources_is_an_error() {
        let err = TrustStore::load(&[], &[]).unwrap_err();
        assert!(matches!(err, TlsSetupError::NoAnchors(_)), "{err:?}");
    }
}
