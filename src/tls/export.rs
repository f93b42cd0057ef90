//! Exporting what a client trust store lacks: the PEM files (RFC 7468) of the built chain's
//! certificates that the server did not send (missing intermediates and the root), and, when
//! building stopped short of an anchor, the issuer to look for (its name, the authority key
//! identifier of RFC 5280 §4.2.1.1 and the caIssuers URLs of §4.2.2.1).

use super::cert::{authority_key_id, ca_issuers_urls, parse};
use super::{CertFacts, ChainReport};
use crate::vocab::Reason;
use base64::Engine as _;
use std::io;
use std::path::{Path, PathBuf};

/// The issuer certificate that building needed and could not find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingIssuer {
    /// Depth of the certificate whose issuer is missing.
    pub depth: usize,
    /// That certificate's subject (RFC 4514).
    pub subject: String,
    /// The missing certificate's subject: the issuer name to look for (RFC 4514).
    pub issuer: String,
    /// The authority key identifier, lower-case hex: the missing certificate's subject key
    /// identifier. `None` when the certificate has no such extension.
    pub authority_key_id: Option<String>,
    /// Where the issuer's certificate can be downloaded, from authority information access.
    pub ca_issuers: Vec<String>,
}

/// Writes one PEM file per certificate of `report.built` that the server did not send, into
/// `dir` (created when missing), named `<depth>-<common name>.pem`. Returns the paths written,
/// leaf side first. A chain the server sent complete, root included, writes nothing.
pub fn export_missing(report: &ChainReport, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let missing: Vec<&CertFacts> = report
        .built
        .iter()
        .filter(|c| !c.sent)
        .map(|c| &**c)
        .collect();
    export(&missing, dir)
}

/// Writes one PEM file per certificate into `dir` (created when missing), named
/// `<depth>-<common name>.pem`, in the order given. Returns the paths written.
pub fn export(certs: &[&CertFacts], dir: &Path) -> io::Result<Vec<PathBuf>> {
    if certs.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::with_capacity(certs.len());
    for cert in certs {
        let path = dir.join(file_name(cert));
        std::fs::write(&path, pem(&cert.der))?;
        written.push(path);
    }
    Ok(written)
}

/// The issuer to look for when building stopped at a certificate whose issuer no source holds
/// (`cert_incomplete_chain` or `cert_unknown_issuer` with a chain that does not end in a
/// self-signed certificate); `None` otherwise.
pub fn missing_issuer(report: &ChainReport) -> Option<MissingIssuer> {
    let error = report.error.as_ref()?;
    if !matches!(
        error.reason,
        Reason::CertIncompleteChain | Reason::CertUnknownIssuer
    ) {
        return None;
    }
    let top = report.built.last()?;
    if top.self_signed {
        return None;
    }
    let cert = parse(&top.der);
    Some(MissingIssuer {
        depth: top.depth,
        subject: top.subject.clone(),
        issuer: top.issuer.clone(),
        authority_key_id: cert.as_ref().and_then(authority_key_id),
        ca_issuers: cert.as_ref().map(ca_issuers_urls).unwrap_or_default(),
    })
}

/// A certificate as PEM: base64 of the DER in lines of 64 characters (RFC 7468 §2).
pub fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        // base64 output is ASCII, so any 64-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// `<depth>-<common name as a file-name-safe slug of at most 64 characters>.pem`; the
/// fingerprint stands in for a certificate without a common name.
fn file_name(cert: &CertFacts) -> String {
    let mut slug = String::new();
    for c in cert.subject_cn.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    // A common name may be long (a hostile one up to the shown kilobyte): a file name is not.
    slug.truncate(64);
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() {
        cert.fingerprint_sha256.get(..16).unwrap_or("certificate")
    } else {
        slug
    };
    format!("{}-{}.pem", cert.depth, slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_at_64_columns_and_round_trips() {
        let der: Vec<u8> = (0..=255u8).collect();
        let text = pem(&der);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.lines().all(|l| l.len() <= 64));
        let parsed: Vec<_> = rustls_pemfile::certs(&mut text.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].as_ref(), der.as_slice());
    }

    #[test]
    fn file_names_of_long_or_hostile_common_names_stay_short_and_plain() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let cn = format!("../{}\n\x1b[2J", "a".repeat(300));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let facts = CertFacts::from_der(cert.der(), 1, true, crate::tls::CertSource::Server);
        let name = file_name(&facts);
        assert_eq!(name, format!("1-{}.pem", "a".repeat(64)));
    }
}
