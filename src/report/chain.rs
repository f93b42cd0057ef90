//! The explanation `smtp-prober chain` prints: what the server sent, the chain built to a trust
//! anchor with every certificate's facts, where building stopped and why, what else is worth
//! fixing, and what to do, naming the settings and flags that fix it. The run itself (the
//! session with `insecure_skip_verify` forced on, and the `--export-dir` PEM files, RFC 7468)
//! is the command's: [`crate::cli::chain`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use super::validity_words;
use crate::clock::{rfc3339, unix_seconds};
use crate::probe::ProbeOutcome;
use crate::tls::{
    missing_issuer, CertFacts, CertSource, ChainError, ChainFlags, ChainReport, MissingIssuer,
    TlsReport,
};
use crate::vocab::Reason;

/// What `--export-dir` did.
#[derive(Debug)]
pub struct Export {
    /// The directory asked for.
    pub dir: PathBuf,
    /// The files written (leaf side first), or why writing failed.
    pub written: Result<Vec<PathBuf>, ExportError>,
}

/// Why `--export-dir` wrote nothing.
#[derive(Debug, thiserror::Error)]
#[error("writing to {}: {source}", dir.display())]
pub struct ExportError {
    /// The directory asked for.
    pub dir: PathBuf,
    /// What failed.
    pub source: std::io::Error,
}

/// What `smtp-prober chain` found.
#[derive(Debug)]
pub struct ChainRun {
    /// The session, with the chain report when TLS was established.
    pub outcome: ProbeOutcome,
    /// The export, when `--export-dir` was given and a TLS session was established.
    pub export: Option<Export>,
}

impl ChainRun {
    /// The TLS session, when one was established.
    pub fn tls(&self) -> Option<&TlsReport> {
        self.outcome.session.tls.as_ref()
    }

    /// Whether a chain to a trust anchor verified and covers the server name (exit code 0).
    pub fn chain_valid(&self) -> bool {
        self.tls().is_some_and(|t| t.chain.valid())
    }
}

/// The report in words, with days left counted from `now`.
pub fn render(run: &ChainRun, now: SystemTime) -> String {
    let now = unix_seconds(now);
    let mut out = String::with_capacity(4096);
    let o = &run.outcome;
    let Some(tls) = run.tls() else {
        let _ = writeln!(out, "chain of {}: no TLS session", o.target);
        match &o.failure {
            Some(f) => {
                let _ = writeln!(
                    out,
                    "the session failed in step {} before the server sent a certificate: {} ({})",
                    f.step, f.reason, f.detail
                );
                let _ = writeln!(out, "hint: {}", f.reason.hint());
            }
            None => {
                let _ = writeln!(out, "the session did not use TLS");
            }
        }
        return out;
    };
    let chain = &tls.chain;
    let flags = chain.flags();
    let _ = writeln!(
        out,
        "chain of {} (checked as {:?}): {} {}",
        o.target, chain.server_name, tls.version, tls.cipher
    );

    render_sent(&mut out, chain, &flags);
    render_built(&mut out, chain, now);
    render_verdict(&mut out, chain);
    render_findings(&mut out, chain, &flags);
    let missing = missing_issuer(chain);
    render_advice(
        &mut out,
        chain,
        &flags,
        missing.as_ref(),
        run.export.is_some(),
    );
    if let Some(export) = &run.export {
        render_export(&mut out, chain, export, missing.as_ref());
    }
    if let Some(f) = &o.failure {
        let _ = writeln!(
            out,
            "\nAfter the handshake the session failed in step {}: {} ({}); the chain above is \
             complete nonetheless.",
            f.step, f.reason, f.detail
        );
    }
    out
}

/// "What the server sent": order, repeats, the root, certificates outside the chain.
fn render_sent(out: &mut String, chain: &ChainReport, flags: &ChainFlags) {
    let n = chain.sent.len();
    let _ = writeln!(
        out,
        "\nThe server sent {n} certificate{}:",
        if n == 1 { "" } else { "s" }
    );
    for (i, c) in chain.sent.iter().enumerate() {
        let mut notes = Vec::new();
        if i == 0 {
            notes.push("leaf".to_string());
        }
        if let Some(first) = chain.sent[..i]
            .iter()
            .position(|p| p.fingerprint_sha256 == c.fingerprint_sha256)
        {
            notes.push(format!("repeats #{first}"));
        }
        if flags.root_sent == Some(i) {
            notes.push("a root: self-signed CA".into());
        }
        if flags.unrelated.contains(&i) && !notes.iter().any(|n| n.starts_with("repeats")) {
            notes.push("not part of the chain".into());
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        let _ = writeln!(out, "  #{i}  {}{notes}", c.subject);
        let _ = writeln!(out, "      issued by {}", c.issuer);
    }
    if flags.wrong_order {
        let _ = writeln!(
            out,
            "  The order is wrong: each certificate should be followed by the one that issued it."
        );
    }
}

/// "The chain built": every certificate with its facts and where it came from.
fn render_built(out: &mut String, chain: &ChainReport, now: i64) {
    let anchor = chain.anchor().map(|a| a.fingerprint_sha256.as_str());
    let heading = if chain.valid() || chain.anchor().is_some() {
        "The chain built to a trust anchor:"
    } else {
        "The chain as far as it could be built:"
    };
    let _ = writeln!(out, "\n{heading}");
    for c in &chain.built {
        let is_anchor = anchor == Some(c.fingerprint_sha256.as_str());
        let _ = writeln!(out, "  depth {}  {}", c.depth, c.subject);
        let _ = writeln!(out, "      from      {}", origin(c, chain, is_anchor));
        let _ = writeln!(out, "      issuer    {}", c.issuer);
        let _ = writeln!(out, "      serial    {}", c.serial);
        let _ = writeln!(out, "      sha256    {}", c.fingerprint_sha256);
        let _ = writeln!(
            out,
            "      valid     {} to {} ({})",
            rfc3339(c.not_before),
            rfc3339(c.not_after),
            validity_words(c, now)
        );
        let _ = writeln!(
            out,
            "      key       {}, signed with {}",
            c.key, c.signature_algorithm
        );
        if c.depth == 0 {
            let _ = writeln!(out, "      names     {}", c.names(", "));
        }
    }
    if chain.leaf_pinned() {
        let _ = writeln!(
            out,
            "  The leaf itself is a trust anchor (pinned in {}).",
            source_words(&chain.built[0].source)
        );
    }
}

/// Where a certificate of the built chain came from, in words.
fn origin(c: &CertFacts, chain: &ChainReport, is_anchor: bool) -> String {
    let position = chain
        .sent
        .iter()
        .position(|s| s.fingerprint_sha256 == c.fingerprint_sha256);
    match (position, is_anchor) {
        (Some(i), true) => format!(
            "the server (#{i}), and a trust anchor in {}",
            source_words(&c.source)
        ),
        (Some(i), false) => format!("the server (#{i})"),
        (None, true) => format!("trust anchor in {}", source_words(&c.source)),
        (None, false) => format!(
            "{}, not sent by the server (supplied locally)",
            source_words(&c.source)
        ),
    }
}

/// A trust source in words.
fn source_words(source: &CertSource) -> String {
    match source {
        CertSource::Server => "the server's handshake".into(),
        CertSource::System => "the system trust store".into(),
        CertSource::Bundled => "the bundled Mozilla roots".into(),
        CertSource::File(p) => format!("CA file {}", p.display()),
    }
}

/// The verdict and, when invalid, where building stopped and why.
fn render_verdict(out: &mut String, chain: &ChainReport) {
    match &chain.error {
        None => {
            let to = match (chain.anchor(), chain.leaf_pinned()) {
                (Some(a), _) => format!(
                    "reaches the trust anchor {:?} ({})",
                    a.subject_cn,
                    source_words(&a.source)
                ),
                (None, true) => "is a pinned certificate".into(),
                (None, false) => "verifies".into(),
            };
            let _ = writeln!(
                out,
                "\nVerdict: VALID. The chain {to} and covers {:?}.",
                chain.server_name
            );
        }
        Some(e) => {
            let _ = writeln!(out, "\nVerdict: INVALID, {}.", e.reason);
            let place = match (e.reason, e.depth) {
                (Reason::CertIncompleteChain | Reason::CertUnknownIssuer, _) => {
                    let last = chain.built.len().saturating_sub(1);
                    format!("Building stopped at depth {last}: ")
                }
                (_, Some(d)) => format!("The certificate at depth {d} fails: "),
                (_, None) => String::new(),
            };
            let _ = writeln!(out, "  {place}{}.", e.detail);
        }
    }
}

/// Findings worth fixing whatever the verdict.
fn render_findings(out: &mut String, chain: &ChainReport, flags: &ChainFlags) {
    if flags.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nFindings:");
    if let Some(i) = flags.root_sent {
        let _ = writeln!(
            out,
            "  - root sent needlessly: #{i} {:?} is a root; a client trusts a root only when it \
             already holds it, so sending it only adds bytes to every handshake.",
            chain.sent[i].subject_cn
        );
    }
    if flags.wrong_order {
        let _ = writeln!(
            out,
            "  - wrong order: the sent certificates are not leaf first, then each issuer in turn \
             (TLS 1.2 requires it; some clients fail to build the chain otherwise)."
        );
    }
    for &i in &flags.duplicates {
        let _ = writeln!(
            out,
            "  - duplicate: #{i} {:?} was sent before.",
            chain.sent[i].subject_cn
        );
    }
    for &i in flags
        .unrelated
        .iter()
        .filter(|i| !flags.duplicates.contains(i))
    {
        let _ = writeln!(
            out,
            "  - not part of the chain: #{i} {:?} was sent but issues none of the chain.",
            chain.sent[i].subject_cn
        );
    }
    for &d in &flags.sha1_signed {
        if let Some(c) = chain.built.get(d).or_else(|| chain.sent.get(d)) {
            let _ = writeln!(
                out,
                "  - SHA-1 signature: depth {d} {:?} is signed with {}; current clients reject \
                 SHA-1 certificate signatures.",
                c.subject_cn, c.signature_algorithm
            );
        }
    }
    if let Some(days) = flags.leaf_lifetime_days {
        let _ = writeln!(
            out,
            "  - validity over {} days: the leaf is valid for {days} days; public CAs may not \
             issue leaves valid longer than {} days and browsers and mail clients refuse them.",
            crate::tls::flags::MAX_LEAF_LIFETIME_DAYS,
            crate::tls::flags::MAX_LEAF_LIFETIME_DAYS
        );
    }
    for &d in &flags.local_intermediates {
        if let Some(c) = chain.built.get(d) {
            let _ = writeln!(
                out,
                "  - intermediate supplied locally: depth {d} {:?} came from {}, not from the \
                 server; clients without that file cannot build the chain \
                 (probe_tls_chain_sent_complete {}).",
                c.subject_cn,
                source_words(&c.source),
                u8::from(chain.sent_complete)
            );
        }
    }
}

/// "What to do": the fix for the verdict, then for the findings.
fn render_advice(
    out: &mut String,
    chain: &ChainReport,
    flags: &ChainFlags,
    missing: Option<&MissingIssuer>,
    exporting: bool,
) {
    let mut todo: Vec<String> = Vec::new();
    if let Some(e) = &chain.error {
        todo.extend(verdict_fix(chain, e));
        if let Some(m) = missing {
            todo.push(missing_issuer_advice(m));
        }
    }
    todo.extend(finding_fixes(chain, flags, exporting));
    let _ = writeln!(out, "\nWhat to do:");
    if todo.is_empty() {
        let _ = writeln!(out, "  Nothing: the server sends a clean chain.");
    }
    for item in todo {
        let _ = writeln!(out, "  - {item}");
    }
}

/// What fixes the reason the chain did not verify.
fn verdict_fix(chain: &ChainReport, e: &ChainError) -> Vec<String> {
    let mut todo = Vec::new();
    match e.reason {
        Reason::CertIncompleteChain => {
            todo.push(
                "On the server: send the intermediate certificate(s) after the leaf, in one \
                     chain file (Postfix: smtpd_tls_chain_files = key.pem, fullchain.pem; Exim: \
                     tls_certificate = fullchain.pem; Exchange/Windows: import the intermediate \
                     into Intermediate Certification Authorities)."
                    .into(),
            );
            todo.push(
                "Until then, clients can hold the intermediate themselves: give smtp-prober \
                     a CA bundle that contains it (--ca-file) together with --export-dir to get \
                     the files to import."
                    .into(),
            );
        }
        Reason::CertUnknownIssuer => todo.push(unknown_issuer_fix(chain)),
        Reason::CertSelfSigned => {
            let fp = chain
                .sent
                .first()
                .map(|c| c.fingerprint_sha256.as_str())
                .unwrap_or_default();
            todo.push(format!(
                "Replace the self-signed certificate with one issued by a CA the clients \
                     trust. To trust it as it is (a private server), confirm its fingerprint \
                     (sha256 {fp}) with the server's administrator and add the certificate to \
                     the client's trust store (tls_config.ca_files, --ca-file)."
            ));
        }
        Reason::CertExpired => todo.push(expired_fix(chain, e.depth)),
        Reason::CertNotYetValid => todo.push(
            "A certificate is not valid yet: it was installed before its start date, or a \
                 clock is wrong. Compare this machine's clock with the server's and the CA's \
                 dates."
                .into(),
        ),
        Reason::CertHostnameMismatch => {
            let names = chain
                .sent
                .first()
                .map(|c| c.names(", "))
                .unwrap_or_default();
            todo.push(format!(
                "The certificate names [{names}], not {:?}. If clients connect by one of \
                     those names, probe with it (--server-name, tls_config.server_name); \
                     otherwise get a certificate that includes {:?}.",
                chain.server_name, chain.server_name
            ));
        }
        Reason::CertBadSignature => todo.push(
            "A signature does not verify: the server's chain file mixes certificates of \
                 different CAs or keys. Reinstall the leaf with the intermediate its CA issued \
                 it with."
                .into(),
        ),
        _ => todo.push(e.reason.hint().to_string()),
    }
    todo
}

/// The fix for `cert_unknown_issuer`: a root the server sent, or none at all.
fn unknown_issuer_fix(chain: &ChainReport) -> String {
    match chain.built.last() {
        Some(top) if top.self_signed && top.sent => format!(
            "The chain ends at the root {:?} (sha256 {}), which this client does not \
             trust. If it is your organisation's CA, confirm that fingerprint with its \
             administrators and add the root to the client's trust store \
             (tls_config.ca_files, --ca-file); never trust it just because the server \
             sent it.",
            top.subject, top.fingerprint_sha256
        ),
        _ => "This client trusts no root that issued the chain. If the server is meant for \
              the public, it should use a certificate from a public CA; for a private CA, \
              get its root from the CA's administrators and add it to the client's trust \
              store (tls_config.ca_files, --ca-file). When some trust source already holds \
              it (a CA bundle), run chain with --ca-file=BUNDLE --export-dir=DIR to \
              extract it. If the CA uses two intermediates, the server may also be \
              missing the upper one."
            .into(),
    }
}

/// The fix for `cert_expired`, by where the expired certificate is.
fn expired_fix(chain: &ChainReport, depth: Option<usize>) -> String {
    let at = depth.and_then(|d| chain.built.get(d).or_else(|| chain.sent.get(d)));
    match at {
        Some(c) if c.depth == 0 => format!(
            "Renew the server certificate {:?} (expired {}) and install the new one with \
             its intermediates.",
            c.subject,
            rfc3339(c.not_after)
        ),
        Some(c) if !c.sent => format!(
            "The intermediate {:?} from {} expired {}: replace it there with the CA's \
             current intermediate, and have the server send its intermediates itself.",
            c.subject,
            source_words(&c.source),
            rfc3339(c.not_after)
        ),
        Some(c) => format!(
            "The server sends an outdated intermediate {:?} (expired {}): install the \
             CA's current intermediate (the one whose key identifier matches the leaf's \
             authority key identifier) in the server's chain file.",
            c.subject,
            rfc3339(c.not_after)
        ),
        None => "Renew the expired certificate on the server.".into(),
    }
}

/// Where to look for the issuer nobody holds.
fn missing_issuer_advice(m: &MissingIssuer) -> String {
    let key = match &m.authority_key_id {
        Some(id) => format!(
            "its subject key identifier is {}, the authority key identifier of depth {}",
            colon_hex(id),
            m.depth
        ),
        None => format!("depth {} names no authority key identifier", m.depth),
    };
    let published = if m.ca_issuers.is_empty() {
        String::new()
    } else {
        format!(", published at {}", m.ca_issuers.join(", "))
    };
    format!(
        "Look for the certificate of {:?} ({key}){published}.",
        m.issuer
    )
}

/// The fixes for the findings, and the export worth running.
fn finding_fixes(chain: &ChainReport, flags: &ChainFlags, exporting: bool) -> Vec<String> {
    let mut todo = Vec::new();
    if flags.root_sent.is_some() || !flags.duplicates.is_empty() || !flags.unrelated.is_empty() {
        todo.push(
            "Clean up the server's chain file: the leaf, then its intermediates, nothing else."
                .into(),
        );
    } else if flags.wrong_order {
        todo.push(
            "Reorder the server's chain file: the leaf, then the intermediate that issued it, \
             then that one's issuer."
                .into(),
        );
    }
    if !flags.local_intermediates.is_empty() && chain.valid() {
        todo.push(
            "Have the server send its intermediate(s): this client verifies only thanks to its \
             local CA file."
                .into(),
        );
    }
    if !flags.sha1_signed.is_empty() || flags.leaf_lifetime_days.is_some() {
        todo.push(
            "Have the CA reissue the certificate(s) named above with SHA-256 and a lifetime \
             within 398 days."
                .into(),
        );
    }
    // A healthy chain leaves out only the root, which every client holds already: nothing
    // worth exporting then.
    let unsent = chain.built.iter().filter(|c| !c.sent).count();
    let needs_import = !chain.valid() || !chain.sent_complete;
    if !exporting && unsent > 0 && needs_import {
        todo.push(format!(
            "Run again with --export-dir=DIR to write the {unsent} certificate(s) the server did \
             not send as PEM files to import into a client trust store."
        ));
    }
    todo
}

/// What `--export-dir` wrote, or why nothing.
fn render_export(
    out: &mut String,
    chain: &ChainReport,
    export: &Export,
    missing: Option<&MissingIssuer>,
) {
    let _ = writeln!(out, "\nExport to {}:", export.dir.display());
    match &export.written {
        Err(e) => {
            let _ = writeln!(out, "  FAILED: {e}");
        }
        Ok(paths) if paths.is_empty() => {
            let why = if chain.built.iter().all(|c| c.sent) && chain.anchor().is_some() {
                "the server sent every certificate of the chain, root included"
            } else if missing.is_some() {
                "no trust source holds what is missing (see above what to look for)"
            } else {
                "every certificate found was sent by the server; none came from a trust source"
            };
            let _ = writeln!(out, "  nothing written: {why}.");
        }
        Ok(paths) => {
            let unsent = chain.built.iter().filter(|c| !c.sent);
            for (path, c) in paths.iter().zip(unsent) {
                let what = if c.self_signed {
                    "root"
                } else {
                    "intermediate"
                };
                let _ = writeln!(
                    out,
                    "  {}  {what} {:?}, sha256 {}",
                    path.display(),
                    c.subject_cn,
                    c.fingerprint_sha256
                );
            }
            let _ = writeln!(
                out,
                "  Import these into the client's trust store as trusted CA certificates \
                 (smtp-prober: tls_config.ca_files or --ca-file; OpenSSL-based clients: append \
                 to their CA file; Java: keytool -importcert; Windows: certutil -addstore)."
            );
        }
    }
}

/// `0a1b2c` as `0A:1B:2C`, the way `openssl x509 -text` prints key identifiers.
fn colon_hex(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_identifiers_print_like_openssl() {
        assert_eq!(colon_hex("0a1bff"), "0A:1B:FF");
        assert_eq!(colon_hex(""), "");
    }
}
