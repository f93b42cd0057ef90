//! Chain building and verdicts (RFC 5280 §6, RFC 8446 §4.4.2, RFC 6125 for the name check).
//!
//! webpki decides whether a chain is valid: it verifies the leaf for server authentication
//! against the anchors, using the intermediates the server sent plus the ones held locally
//! (`ca_files`). When it succeeds, its verified path is the built chain. When it fails, its error
//! alone is too coarse for an admin ("unknown issuer" covers a missing intermediate, an untrusted
//! root and a self-signed certificate), so a second, simple builder walks from the leaf towards
//! an anchor by issuer name and signature, and the verdict is read from where that walk stopped
//! and from the validity dates of the certificates it found.

use super::cert::{is_self_signed, key_ids_differ, parse, signed_by};
use super::trust::TrustStore;
use super::{CertFacts, CertSource, ChainError, ChainReport};
use crate::clock::rfc3339;
use crate::vocab::Reason;
use rustls_pki_types::{CertificateDer, ServerName, SignatureVerificationAlgorithm, UnixTime};
use std::sync::Arc;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;

/// Longest chain the fallback builder follows (webpki's own limit is six intermediates).
const MAX_CHAIN_LEN: usize = 8;

/// Verifies `sent` (leaf first, as received) against `store` at `now` and names `server_name`.
/// A chain this store verified before is answered from its [`Verdicts`].
pub(crate) fn analyze(
    store: &TrustStore,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    sent: &[CertificateDer<'static>],
    server_name: &str,
    now: UnixTime,
) -> ChainReport {
    let key = Verdicts::key(sent, server_name);
    let seconds = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if let Some(report) = store.verdicts.get(&key, seconds) {
        return report;
    }
    let report = analyze_anew(store, algorithms, sent, server_name, now);
    if report.error.is_none() {
        store.verdicts.keep(key, &report);
    }
    report
}

/// How many verdicts a trust store keeps: the chains of a few hundred servers.
const VERDICTS_KEPT: usize = 256;
/// How long a verdict is used at most.
const VERDICT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// The chains a trust store (a module's TLS client) verified, with their reports. A server sends
/// the same chain on every probe, and verifying it again (a signature per certificate, parsing
/// and hashing each) was a third of a probe's CPU. A verdict is used only for the very same
/// certificates (SHA-256 of their DER) checked for the same name, while `now` is within every
/// certificate's validity, and for an hour at most; the oldest goes first beyond
/// [`VERDICTS_KEPT`]. Chains that did not verify are analysed every time: their diagnosis
/// depends on more than that. The handshake's own signature, which proves the server holds the
/// leaf's key, is checked on every handshake regardless.
#[derive(Debug, Default)]
pub(crate) struct Verdicts(std::sync::Mutex<VerdictMap>);

#[derive(Debug, Default)]
struct VerdictMap {
    by_key: std::collections::HashMap<[u8; 32], Kept>,
    /// Keys, oldest first.
    order: std::collections::VecDeque<[u8; 32]>,
}

#[derive(Debug)]
struct Kept {
    report: ChainReport,
    /// The latest notBefore and the earliest notAfter of its certificates (Unix seconds).
    valid: (i64, i64),
    until: std::time::Instant,
}

impl Verdicts {
    /// What a verdict is kept under: the name and every certificate, length-prefixed.
    fn key(sent: &[CertificateDer<'_>], server_name: &str) -> [u8; 32] {
        use sha2::{Digest as _, Sha256};
        let mut hash = Sha256::new();
        for part in std::iter::once(server_name.as_bytes()).chain(sent.iter().map(|d| d.as_ref())) {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        hash.finalize().into()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VerdictMap> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report kept under `key`, when it still holds at `now` (Unix seconds).
    fn get(&self, key: &[u8; 32], now: i64) -> Option<ChainReport> {
        let map = self.lock();
        let kept = map.by_key.get(key)?;
        let fresh = std::time::Instant::now() < kept.until;
        (fresh && kept.valid.0 <= now && now < kept.valid.1).then(|| kept.report.clone())
    }

    /// How many verdicts are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Keeps `report`, a chain that verified.
    fn keep(&self, key: [u8; 32], report: &ChainReport) {
        let certificates = report.sent.iter().chain(report.built.iter());
        let valid = certificates.fold((i64::MIN, i64::MAX), |(from, to), c| {
            (from.max(c.not_before), to.min(c.not_after))
        });
        let kept = Kept {
            report: report.clone(),
            valid,
            until: std::time::Instant::now() + VERDICT_LIFETIME,
        };
        let mut map = self.lock();
        if map.by_key.insert(key, kept).is_none() {
            map.order.push_back(key);
        }
        while map.order.len() > VERDICTS_KEPT {
            if let Some(oldest) = map.order.pop_front() {
                map.by_key.remove(&oldest);
            }
        }
    }
}

/// [`analyze`] without the verdicts kept.
fn analyze_anew(
    store: &TrustStore,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    sent: &[CertificateDer<'static>],
    server_name: &str,
    now: UnixTime,
) -> ChainReport {
    let sent_facts: Vec<Arc<CertFacts>> = sent
        .iter()
        .enumerate()
        .map(|(i, der)| Arc::new(CertFacts::from_der(der, i, true, CertSource::Server)))
        .collect();
    let mut report = ChainReport {
        sent: sent_facts,
        built: Vec::new(),
        error: None,
        sent_complete: false,
        server_name: server_name.to_owned(),
    };
    let Some(leaf_der) = sent.first() else {
        report.error = Some(ChainError {
            reason: Reason::CertIncompleteChain,
            depth: None,
            detail: "the server sent no certificate".into(),
            openssl_code: None,
        });
        return report;
    };
    let Ok(leaf) = EndEntityCert::try_from(leaf_der) else {
        report.built = vec![report.sent[0].clone()];
        report.error = Some(ChainError {
            reason: Reason::CertBadSignature,
            depth: Some(0),
            detail: "the leaf certificate is not valid X.509 DER".into(),
            openssl_code: None,
        });
        return report;
    };

    // Sent intermediates first: webpki tries candidates in order, and a path through what the
    // server sent is the one its other clients see.
    let with_local: Vec<CertificateDer<'_>> = sent[1..]
        .iter()
        .chain(store.intermediates.iter().map(|s| &s.der))
        .map(|d| CertificateDer::from(d.as_ref()))
        .collect();
    let verified = leaf.verify_for_usage(
        algorithms,
        &store.webpki_anchors,
        &with_local,
        now,
        KeyUsage::server_auth(),
        None,
        None,
    );

    match verified {
        Ok(path) => {
            let used_local;
            (report.built, used_local) = verified_chain(store, sent, &report.sent, &path);
            report.error = check_name(&leaf, &report.sent[0], server_name);
            // Whether the path needs what only we hold; the name check is not part of it.
            report.sent_complete = !used_local || sent_reaches_anchor(store, sent, now);
        }
        Err(webpki_error) => {
            let walk = walk(store, sent, now, Intermediates::SentAndLocal);
            let sent_path = matches!(walk.end, WalkEnd::Anchor)
                && walk.built.iter().rev().skip(1).all(|c| c.sent);
            report.sent_complete = sent_path || sent_reaches_anchor(store, sent, now);
            report.built = walk.built.into_iter().map(Arc::new).collect();
            report.error = Some(diagnose(&report.built, walk.end, &webpki_error, now));
        }
    }
    report
}

/// The chain of a path webpki verified, leaf first, each certificate attributed to the server
/// or the trust source that holds it; and whether a local intermediate was needed.
fn verified_chain(
    store: &TrustStore,
    sent: &[CertificateDer<'static>],
    sent_facts: &[Arc<CertFacts>],
    path: &webpki::VerifiedPath<'_>,
) -> (Vec<Arc<CertFacts>>, bool) {
    let mut used_local = false;
    let mut built = vec![sent_facts[0].clone()];
    for cert in path.intermediate_certificates() {
        let der = cert.der();
        let depth = built.len();
        let facts = match sent.iter().position(|s| s.as_ref() == der.as_ref()) {
            // The server's own certificate: shared with `sent` when it sits at the same depth.
            Some(i) if sent_facts[i].depth == depth => sent_facts[i].clone(),
            Some(i) => Arc::new(CertFacts {
                depth,
                ..(*sent_facts[i]).clone()
            }),
            None => {
                used_local = true;
                let stored = store
                    .intermediates
                    .iter()
                    .find(|s| s.der.as_ref() == der.as_ref());
                let source = stored.map_or(CertSource::Server, |s| s.source.clone());
                Arc::new(CertFacts::from_der(&der.into_owned(), depth, false, source))
            }
        };
        built.push(facts);
    }
    let anchor = path.anchor();
    if let Some(i) = store
        .webpki_anchors
        .iter()
        .position(|a| std::ptr::eq(a, anchor))
    {
        let stored = &store.anchors[i];
        // A pinned self-signed leaf is its own anchor: list it once.
        if stored.der.as_ref() != sent[0].as_ref() {
            let sent_too = sent.iter().any(|s| s.as_ref() == stored.der.as_ref());
            built.push(Arc::new(stored.facts(built.len(), sent_too)));
        }
    }
    (built, used_local)
}

/// Whether the certificates the server sent reach a trust anchor by issuer name and signature,
/// without any local intermediate and whatever their validity dates (completeness is about what
/// was sent; dates have verdicts of their own).
fn sent_reaches_anchor(
    store: &TrustStore,
    sent: &[CertificateDer<'static>],
    now: UnixTime,
) -> bool {
    matches!(
        walk(store, sent, now, Intermediates::SentOnly).end,
        WalkEnd::Anchor
    )
}

/// The hostname check (RFC 6125 via webpki: SAN DNS names and IP addresses; the CN is ignored).
fn check_name(
    leaf: &EndEntityCert<'_>,
    facts: &CertFacts,
    server_name: &str,
) -> Option<ChainError> {
    let covered = ServerName::try_from(server_name)
        .ok()
        .is_some_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok());
    if covered {
        return None;
    }
    Some(ChainError {
        reason: Reason::CertHostnameMismatch,
        depth: Some(0),
        detail: format!(
            "the certificate names [{}] and does not cover {server_name:?}",
            facts.names(", ")
        ),
        openssl_code: Some(62),
    })
}

/// Where the fallback builder stopped.
#[derive(Debug)]
enum WalkEnd {
    /// The last certificate in `built` is a trust anchor.
    Anchor,
    /// The head is self-signed and no trust source holds it.
    SelfSigned,
    /// No certificate anywhere is named as the head's issuer (`namesake`: some are, but their
    /// key identifier says they hold another key).
    IssuerNotFound { namesake: bool },
    /// Certificates are named as the head's issuer, but none of their keys verifies its signature.
    BadSignature,
    /// The chain grew past [`MAX_CHAIN_LEN`].
    TooLong,
}

/// Which intermediates the fallback builder may use besides the sent certificates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Intermediates {
    /// The sent certificates and the local ones from `ca_files`: the chain this client builds.
    SentAndLocal,
    /// The sent certificates only: the chain any client holding the root builds.
    SentOnly,
}

/// The result of the fallback builder.
struct Walk {
    built: Vec<CertFacts>,
    end: WalkEnd,
}

/// A certificate that may issue the head of the walk.
struct Candidate<'a> {
    der: &'a CertificateDer<'static>,
    sent: bool,
    source: CertSource,
    anchor: bool,
}

/// Walks from the leaf towards an anchor: at each step the issuer is looked up by name, among
/// anchors first, then the sent certificates, then local intermediates; a candidate counts only
/// if its key verifies the head's signature, and among several a currently valid one is
/// preferred. Greedy, without backtracking: it explains a failure that webpki (which does
/// backtrack) already established, it does not decide validity.
fn walk(
    store: &TrustStore,
    sent: &[CertificateDer<'static>],
    now: UnixTime,
    intermediates: Intermediates,
) -> Walk {
    let mut built = vec![CertFacts::from_der(&sent[0], 0, true, CertSource::Server)];
    let mut head_der = sent[0].clone();
    loop {
        let Some(head) = parse(&head_der) else {
            return Walk {
                built,
                end: WalkEnd::BadSignature,
            };
        };
        if built.len() > MAX_CHAIN_LEN {
            return Walk {
                built,
                end: WalkEnd::TooLong,
            };
        }
        let search = find_issuer(store, sent, intermediates, &built, &head, &head_der, now);
        let end = match search.chosen {
            Some(issuer) if issuer.anchor => {
                // A self-signed leaf that is itself an anchor (pinned): nothing more to list.
                if issuer.der.as_ref() != head_der.as_ref() {
                    let depth = built.len();
                    built.push(CertFacts::from_der(
                        issuer.der,
                        depth,
                        issuer.sent,
                        issuer.source,
                    ));
                }
                WalkEnd::Anchor
            }
            Some(issuer) => {
                let depth = built.len();
                let next = issuer.der.clone();
                built.push(CertFacts::from_der(
                    issuer.der,
                    depth,
                    issuer.sent,
                    issuer.source,
                ));
                head_der = next;
                continue;
            }
            None if is_self_signed(&head) => WalkEnd::SelfSigned,
            None if search.named => WalkEnd::BadSignature,
            None => WalkEnd::IssuerNotFound {
                namesake: search.namesake,
            },
        };
        return Walk { built, end };
    }
}

/// What the search for the head's issuer found.
struct IssuerSearch<'a> {
    /// The issuer to continue with.
    chosen: Option<Candidate<'a>>,
    /// Some certificate carries the issuer's name and key identifier (its signature may fail).
    named: bool,
    /// Some certificate carries the issuer's name but, by key identifier, another key.
    namesake: bool,
}

/// Looks up the issuer of `head` by name among the anchors, the sent certificates and (when
/// allowed) the local intermediates; a candidate counts only if its key verifies the head's
/// signature, and an anchor, then a currently valid one, is preferred.
fn find_issuer<'a>(
    store: &'a TrustStore,
    sent: &'a [CertificateDer<'static>],
    intermediates: Intermediates,
    built: &[CertFacts],
    head: &X509Certificate<'_>,
    head_der: &CertificateDer<'_>,
    now: UnixTime,
) -> IssuerSearch<'a> {
    let issuer_name = head.issuer().as_raw();
    let in_chain = |der: &[u8]| built.iter().any(|f| f.der.as_ref() == der);
    let anchors = store.anchors_named(issuer_name).iter().map(|&i| {
        let stored = &store.anchors[i];
        Candidate {
            der: &stored.der,
            sent: sent.iter().any(|s| s.as_ref() == stored.der.as_ref()),
            source: stored.source.clone(),
            anchor: true,
        }
    });
    let sent_candidates = sent.iter().skip(1).map(|der| Candidate {
        der,
        sent: true,
        source: CertSource::Server,
        anchor: false,
    });
    let local = store
        .intermediates
        .iter()
        .filter(|_| intermediates == Intermediates::SentAndLocal)
        .filter(|s| s.subject == issuer_name)
        .map(|s| Candidate {
            der: &s.der,
            sent: sent.iter().any(|d| d.as_ref() == s.der.as_ref()),
            source: s.source.clone(),
            anchor: false,
        });

    let mut search = IssuerSearch {
        chosen: None,
        named: false,
        namesake: false,
    };
    let mut chosen_valid = false;
    for candidate in anchors.chain(sent_candidates).chain(local) {
        let Some(issuer) = parse(candidate.der) else {
            continue;
        };
        if issuer.subject().as_raw() != issuer_name {
            continue;
        }
        // The head itself, sent again or found in a store: the question is who issued it.
        if candidate.der.as_ref() == head_der.as_ref() && !candidate.anchor {
            continue;
        }
        if !candidate.anchor && in_chain(candidate.der.as_ref()) {
            continue;
        }
        if key_ids_differ(head, &issuer) {
            search.namesake = true;
            continue;
        }
        search.named = true;
        if !signed_by(head, issuer.public_key()) {
            continue;
        }
        let valid_now = is_valid_at(&issuer, now);
        let better = match &search.chosen {
            None => true,
            Some(current) => {
                (candidate.anchor && !current.anchor)
                    || (candidate.anchor == current.anchor && valid_now && !chosen_valid)
            }
        };
        if better {
            search.chosen = Some(candidate);
            chosen_valid = valid_now;
        }
    }
    search
}

/// Whether `cert` is within its validity period at `now`.
fn is_valid_at(cert: &X509Certificate<'_>, now: UnixTime) -> bool {
    let now = now.as_secs() as i64;
    cert.validity().not_before.timestamp() <= now && now <= cert.validity().not_after.timestamp()
}

/// The verdict for a chain webpki rejected, from the fallback walk.
///
/// Incomplete chain or unknown issuer — the heuristic: RFC 8446 §4.4.2 (and RFC 5246 §7.4.2)
/// make the server send its leaf followed by the certificates that certify it, and let it omit
/// only the root, which the client must already hold. So when building stops at the **leaf**
/// (its issuer is neither sent, nor an anchor, nor a local intermediate), the missing piece is an
/// intermediate the server should have sent: `cert_incomplete_chain`. When it stops at a **CA
/// certificate** (a sent or local intermediate whose issuer is nowhere, or a sent root no trust
/// source holds), the server did its part and the missing piece is a root: `cert_unknown_issuer`.
/// Two cases are misnamed by this rule and cannot be told apart without fetching certificates:
/// a leaf issued directly by an untrusted root (reported incomplete), and a chain missing a
/// second intermediate above a sent one (reported unknown issuer). A lone self-signed leaf is
/// `cert_self_signed`.
///
/// A certificate carrying the issuer's name but, by its subject key identifier, another key than
/// the head's authority key identifier names is not the issuer (a re-keyed CA, an outdated
/// intermediate of the same name): such a head counts as issuer-not-found, as OpenSSL has it, not
/// as a bad signature. `cert_bad_signature` is left for a signature that fails although the key
/// identifiers agree or are absent.
///
/// When the walk reached an anchor, the first certificate (from the leaf up, anchors excluded,
/// as webpki does not check an anchor's dates) outside its validity period names the depth;
/// otherwise webpki's own error is mapped.
fn diagnose(
    built: &[Arc<CertFacts>],
    end: WalkEnd,
    webpki_error: &webpki::Error,
    now: UnixTime,
) -> ChainError {
    let last = built.len() - 1;
    let head = &built[last];
    match end {
        WalkEnd::Anchor => date_fault(built, now).unwrap_or_else(|| map_webpki_error(webpki_error)),
        WalkEnd::SelfSigned if last == 0 => ChainError {
            reason: Reason::CertSelfSigned,
            depth: Some(0),
            detail: format!(
                "the server sent the self-signed certificate {:?}, which no trust source holds",
                head.subject
            ),
            openssl_code: Some(18),
        },
        WalkEnd::SelfSigned => ChainError {
            reason: Reason::CertUnknownIssuer,
            depth: None,
            detail: format!(
                "the chain ends at the root {:?} (depth {last}), which no trust source holds",
                head.subject
            ),
            openssl_code: Some(19),
        },
        WalkEnd::IssuerNotFound { namesake } if last == 0 => ChainError {
            reason: Reason::CertIncompleteChain,
            depth: None,
            detail: format!(
                "the leaf's issuer {:?} was not sent by the server and no trust source holds \
                 it{}",
                head.issuer,
                namesake_note(namesake)
            ),
            openssl_code: Some(20),
        },
        WalkEnd::IssuerNotFound { namesake } => ChainError {
            reason: Reason::CertUnknownIssuer,
            depth: None,
            detail: format!(
                "the chain ends at {:?} (depth {last}), whose issuer {:?} no trust source \
                 holds{}",
                head.subject,
                head.issuer,
                namesake_note(namesake)
            ),
            // OpenSSL says 2 when the certificate whose issuer is missing came from its own
            // store rather than from the peer.
            openssl_code: Some(if head.sent { 20 } else { 2 }),
        },
        WalkEnd::BadSignature => ChainError {
            reason: Reason::CertBadSignature,
            depth: Some(last),
            detail: format!(
                "the signature of {:?} (depth {last}) does not verify with the key of any \
                 certificate named {:?}",
                head.subject, head.issuer
            ),
            openssl_code: Some(7),
        },
        WalkEnd::TooLong => ChainError {
            reason: Reason::CertUnknownIssuer,
            depth: None,
            detail: format!("no trust anchor within {MAX_CHAIN_LEN} certificates"),
            openssl_code: None,
        },
    }
}

/// The first certificate of a chain built to an anchor, from the leaf up (the anchor excluded,
/// as webpki does not check an anchor's dates), that is outside its validity period at `now`.
fn date_fault(built: &[Arc<CertFacts>], now: UnixTime) -> Option<ChainError> {
    let now = now.as_secs() as i64;
    let checked = if built.len() > 1 {
        built.len() - 1
    } else {
        built.len()
    };
    built[..checked].iter().find_map(|facts| {
        if now < facts.not_before {
            Some(ChainError {
                reason: Reason::CertNotYetValid,
                depth: Some(facts.depth),
                detail: format!(
                    "certificate {:?} at depth {} is valid from {} only",
                    facts.subject,
                    facts.depth,
                    rfc3339(facts.not_before)
                ),
                openssl_code: Some(9),
            })
        } else if now > facts.not_after {
            Some(ChainError {
                reason: Reason::CertExpired,
                depth: Some(facts.depth),
                detail: format!(
                    "certificate {:?} at depth {} expired at {}",
                    facts.subject,
                    facts.depth,
                    rfc3339(facts.not_after)
                ),
                openssl_code: Some(10),
            })
        } else {
            None
        }
    })
}

/// The words added when certificates with the issuer's name were found but hold another key.
fn namesake_note(namesake: bool) -> &'static str {
    if namesake {
        " (a certificate with that name was found, but its key identifier differs from the \
         authority key identifier: it is another key of that CA, not the issuer)"
    } else {
        ""
    }
}

/// The closest `cert_*` reason for a webpki error the walk did not explain. Errors about a
/// certificate's use (missing serverAuth EKU, a CA without the CA flag, name or path length
/// constraints) have no reason of their own: they mean no usable path to an anchor exists, so
/// they become `cert_unknown_issuer` with webpki's words in the detail.
fn map_webpki_error(error: &webpki::Error) -> ChainError {
    use webpki::Error as E;
    let (reason, openssl_code) = match error {
        E::CertExpired { .. } => (Reason::CertExpired, Some(10)),
        E::CertNotValidYet { .. } => (Reason::CertNotYetValid, Some(9)),
        E::BadDer
        | E::BadDerTime
        | E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
        | E::SignatureAlgorithmMismatch => (Reason::CertBadSignature, Some(7)),
        E::RequiredEkuNotFoundContext(_) => (Reason::CertUnknownIssuer, Some(26)),
        E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => (Reason::CertUnknownIssuer, Some(24)),
        E::PathLenConstraintViolated => (Reason::CertUnknownIssuer, Some(25)),
        E::NameConstraintViolation => (Reason::CertUnknownIssuer, Some(47)),
        _ => (Reason::CertUnknownIssuer, None),
    };
    ChainError {
        reason,
        depth: None,
        detail: format!("the chain does not verify: {error}"),
        openssl_code,
    }
}
