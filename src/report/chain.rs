//! The explanation `smtp-prober chain` prints: what the server sent, the chain built to a trust
//! anchor with every certificate's facts, where building stopped and why, what else is worth
//! fixing, and what to do, naming the settings and flags that fix it. The run itself (the
//! session with `insecure_skip_verify` forced on, and the `--export-dir` PEM files, RFC 7468)
//! is the command's: [`crate::cli::chain`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{
    cert_json, handshake_words, ocsp_words, openssl_verdict, openssl_words, tls_words,
    validity_words, CertJson, SessionJson,
};
use crate::clock::{rfc3339, unix_seconds};
use crate::probe::ProbeOutcome;
use crate::tls::export::pem;
use crate::tls::{
    missing_issuer, CertFacts, CertSource, ChainError, ChainFlags, ChainReport, MissingIssuer,
    TlsReport,
};
use crate::vocab::{Audience, Reason};

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
    render_text(run, now, false)
}

/// The report in words; with `show_sent`, each certificate the server sent follows as PEM, as
/// `openssl s_client -showcerts` prints them.
pub fn render_text(run: &ChainRun, now: SystemTime, show_sent: bool) -> String {
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
                let _ = writeln!(out, "hint: {}", f.reason.hint_for(Audience::Cli));
            }
            None => {
                let _ = writeln!(out, "the session did not use TLS");
            }
        }
        return out;
    };
    let chain = &tls.chain;
    let flags = chain.flags();
    let handshake = handshake_words(tls);
    let _ = writeln!(
        out,
        "chain of {} (checked as {:?}): {}{}{handshake}",
        o.target,
        chain.server_name,
        tls_words(tls),
        if handshake.is_empty() { "" } else { ", " }
    );
    let _ = writeln!(out, "OCSP: {}", ocsp_words(tls.ocsp.as_ref(), now));

    render_sent(&mut out, chain, &flags, show_sent);
    render_built(&mut out, chain, now);
    render_verdict(&mut out, chain);
    let findings = findings(chain, &flags);
    if !findings.is_empty() {
        let _ = writeln!(out, "\nFindings:");
        for f in &findings {
            let _ = writeln!(out, "  - {f}");
        }
    }
    let _ = writeln!(out, "\nWhat to do:");
    let advice = advice(chain, &flags, run.export.is_some());
    if advice.is_empty() {
        let _ = writeln!(out, "  Nothing: the server sends a clean chain.");
    }
    for item in advice {
        let _ = writeln!(out, "  - {item}");
    }
    if let Some(export) = &run.export {
        render_export(&mut out, chain, export);
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

/// The report as one JSON document: the same facts, findings and advice as [`render_text`],
/// for scripts. With `show_sent`, each sent certificate carries its PEM.
pub fn render_json(run: &ChainRun, now: SystemTime, show_sent: bool) -> String {
    let doc = ChainJson::new(run, unix_seconds(now), show_sent);
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// "What the server sent": order, repeats, the root, certificates outside the chain; with
/// `show_sent`, each certificate's PEM.
fn render_sent(out: &mut String, chain: &ChainReport, flags: &ChainFlags, show_sent: bool) {
    let n = chain.sent.len();
    let _ = writeln!(
        out,
        "\nThe server sent {n} certificate{}:",
        if n == 1 { "" } else { "s" }
    );
    for (i, c) in chain.sent.iter().enumerate() {
        let notes = sent_notes(chain, flags, i);
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        let _ = writeln!(out, "  #{i}  {}{notes}", c.subject);
        let _ = writeln!(out, "      issued by {}", c.issuer);
        if show_sent {
            out.push_str(&pem(&c.der));
        }
    }
    if flags.wrong_order {
        let _ = writeln!(
            out,
            "  The order is wrong: each certificate should be followed by the one that issued it."
        );
    }
}

/// What is worth saying about the `i`th certificate sent: the leaf, a repeat, a root, one
/// outside the chain.
fn sent_notes(chain: &ChainReport, flags: &ChainFlags, i: usize) -> Vec<String> {
    let c = &chain.sent[i];
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
    notes
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
            let _ = writeln!(out, "  {}{}.", verdict_place(chain, e), e.detail);
            if let Some(openssl) = openssl_words(chain) {
                let _ = writeln!(out, "  {openssl}");
            }
        }
    }
}

/// Where the chain fails: "Building stopped at depth 1: ", "The certificate at depth 0 fails: ".
fn verdict_place(chain: &ChainReport, e: &ChainError) -> String {
    match (e.reason, e.depth) {
        (Reason::CertIncompleteChain | Reason::CertUnknownIssuer, _) => {
            let last = chain.built.len().saturating_sub(1);
            format!("Building stopped at depth {last}: ")
        }
        (_, Some(d)) => format!("The certificate at depth {d} fails: "),
        (_, None) => String::new(),
    }
}

/// Findings worth fixing whatever the verdict.
fn findings(chain: &ChainReport, flags: &ChainFlags) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(i) = flags.root_sent {
        out.push(format!(
            "root sent needlessly: #{i} {:?} is a root; a client trusts a root only when it \
             already holds it, so sending it only adds bytes to every handshake.",
            chain.sent[i].subject_cn
        ));
    }
    if flags.wrong_order {
        out.push(
            "wrong order: the sent certificates are not leaf first, then each issuer in turn \
             (TLS 1.2 requires it; some clients fail to build the chain otherwise)."
                .to_string(),
        );
    }
    for &i in &flags.duplicates {
        out.push(format!(
            "duplicate: #{i} {:?} was sent before.",
            chain.sent[i].subject_cn
        ));
    }
    for &i in flags
        .unrelated
        .iter()
        .filter(|i| !flags.duplicates.contains(i))
    {
        out.push(format!(
            "not part of the chain: #{i} {:?} was sent but issues none of the chain.",
            chain.sent[i].subject_cn
        ));
    }
    for &d in &flags.sha1_signed {
        if let Some(c) = chain.built.get(d).or_else(|| chain.sent.get(d)) {
            out.push(format!(
                "SHA-1 signature: depth {d} {:?} is signed with {}; current clients reject \
                 SHA-1 certificate signatures.",
                c.subject_cn, c.signature_algorithm
            ));
        }
    }
    if let Some(days) = flags.leaf_lifetime_days {
        out.push(format!(
            "validity over {} days: the leaf is valid for {days} days; public CAs may not \
             issue leaves valid longer than {} days and browsers and mail clients refuse them.",
            crate::tls::flags::MAX_LEAF_LIFETIME_DAYS,
            crate::tls::flags::MAX_LEAF_LIFETIME_DAYS
        ));
    }
    for &d in &flags.local_intermediates {
        if let Some(c) = chain.built.get(d) {
            out.push(format!(
                "intermediate supplied locally: depth {d} {:?} came from {}, not from the \
                 server; clients without that file cannot build the chain \
                 (probe_tls_chain_sent_complete {}).",
                c.subject_cn,
                source_words(&c.source),
                u8::from(chain.sent_complete)
            ));
        }
    }
    out
}

/// "What to do": the fix for the verdict, then for the findings, naming the command's flags.
fn advice(chain: &ChainReport, flags: &ChainFlags, exporting: bool) -> Vec<String> {
    let mut todo: Vec<String> = Vec::new();
    if let Some(e) = &chain.error {
        todo.extend(verdict_fix(chain, e));
        if let Some(m) = missing_issuer(chain) {
            todo.push(missing_issuer_advice(&m));
        }
    }
    todo.extend(finding_fixes(chain, flags, exporting));
    todo
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
                "To get the intermediate as a file: run chain again with a CA bundle that holds \
                 it (--ca-file=BUNDLE) and --export-dir=DIR. It goes into the server's chain \
                 file; it is not a trust anchor."
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
                 (sha256 {fp}) with the server's administrator and give the certificate to \
                 the client as a trust anchor (--ca-file; --export-dir writes it)."
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
                 those names, probe with it (--server-name); otherwise get a certificate \
                 that includes {:?}.",
                chain.server_name, chain.server_name
            ));
        }
        Reason::CertBadSignature => todo.push(
            "A signature does not verify: the server's chain file mixes certificates of \
             different CAs or keys. Reinstall the leaf with the intermediate its CA issued \
             it with."
                .into(),
        ),
        _ => todo.push(e.reason.hint_for(Audience::Cli).to_string()),
    }
    todo
}

/// The fix for `cert_unknown_issuer`: a root the server sent, or none at all.
fn unknown_issuer_fix(chain: &ChainReport) -> String {
    match chain.built.last() {
        Some(top) if top.self_signed && top.sent => format!(
            "The chain ends at the root {:?} (sha256 {}), which this client does not \
             trust. If it is your organisation's CA, confirm that fingerprint with its \
             administrators and add the root to the client's trust store (--ca-file; \
             --export-dir writes the root the server sent); never trust it just because \
             the server sent it.",
            top.subject, top.fingerprint_sha256
        ),
        _ => "This client trusts no root that issued the chain, and no trust source of it \
              holds that root, so there is nothing to export from here. If the server is \
              meant for the public, it should use a certificate from a public CA; for a \
              private CA, get its root from the CA's administrators and give it to the \
              client as a trust anchor (--ca-file). When you have a CA bundle that holds it, \
              run chain with --ca-file=BUNDLE --export-dir=DIR to extract the root alone. If \
              the CA uses two intermediates, the server may also be missing the upper one."
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
    let exportable = exportable(chain).len();
    let needs_import = !chain.valid() || !chain.sent_complete;
    if !exporting && exportable > 0 && needs_import {
        todo.push(format!(
            "Run again with --export-dir=DIR to write the {exportable} certificate(s) named \
             above as PEM files."
        ));
    }
    todo
}

/// Why a certificate is exported, which decides where it goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExportRole {
    /// A root a trust source of this client holds and the server did not send: a trust anchor
    /// for other clients.
    Root,
    /// An intermediate a trust source holds and the server did not send. Never a trust anchor:
    /// it belongs in the server's chain file, or in a client's intermediate store.
    Intermediate,
    /// The server's own self-signed certificate: a trust anchor only once its fingerprint is
    /// confirmed.
    SelfSignedServer,
    /// A root the server sent and no trust source holds: a trust anchor only once its
    /// fingerprint is confirmed with its CA.
    UntrustedRoot,
}

impl ExportRole {
    /// The role in one word, for the JSON document.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportRole::Root => "root",
            ExportRole::Intermediate => "intermediate",
            ExportRole::SelfSignedServer => "self_signed_server",
            ExportRole::UntrustedRoot => "untrusted_root",
        }
    }

    /// Where the file goes, in words.
    fn destination(self) -> &'static str {
        match self {
            ExportRole::Root => {
                "a trust anchor: import it into the client's trust store as a trusted CA \
                 (--ca-file; OpenSSL-based clients: their CA file; Java: keytool \
                 -importcert; Windows: certutil -addstore Root)"
            }
            ExportRole::Intermediate => {
                "NOT a trust anchor: it belongs in the server's chain file after the leaf (the \
                 fix); until the server sends it, a client may hold it as an intermediate \
                 (--ca-file uses it as one; Windows: certutil -addstore CA). Never import it \
                 as a trusted root"
            }
            ExportRole::SelfSignedServer => {
                "the server's own certificate: give it to a client as a trust anchor \
                 (--ca-file) only after its administrator confirms this fingerprint"
            }
            ExportRole::UntrustedRoot => {
                "the root the server sent: import it as a trusted CA (--ca-file) only after \
                 the CA's administrators confirm this fingerprint"
            }
        }
    }
}

/// What `--export-dir` writes, leaf side first: every certificate of the built chain the server
/// did not send (from the trust source that holds it), and the certificate the advice asks to
/// trust when there is one (a self-signed server certificate, a root the server sent).
pub fn exportable(chain: &ChainReport) -> Vec<(&CertFacts, ExportRole)> {
    let mut out: Vec<(&CertFacts, ExportRole)> = chain
        .built
        .iter()
        .filter(|c| !c.sent)
        .map(|c| {
            let role = if c.self_signed {
                ExportRole::Root
            } else {
                ExportRole::Intermediate
            };
            (&**c, role)
        })
        .collect();
    match chain.error.as_ref().map(|e| e.reason) {
        Some(Reason::CertSelfSigned) => {
            if let Some(leaf) = chain.sent.first() {
                out.push((leaf, ExportRole::SelfSignedServer));
            }
        }
        Some(Reason::CertUnknownIssuer) => {
            if let Some(top) = chain.built.last().filter(|t| t.self_signed && t.sent) {
                out.push((top, ExportRole::UntrustedRoot));
            }
        }
        _ => {}
    }
    out
}

/// What `--export-dir` wrote, or why nothing.
fn render_export(out: &mut String, chain: &ChainReport, export: &Export) {
    let _ = writeln!(out, "\nExport to {}:", export.dir.display());
    match &export.written {
        Err(e) => {
            let _ = writeln!(out, "  FAILED: {e}");
        }
        Ok(paths) if paths.is_empty() => {
            let _ = writeln!(out, "  nothing written: {}.", nothing_to_export(chain));
        }
        Ok(paths) => {
            for (path, (c, role)) in paths.iter().zip(exportable(chain)) {
                let _ = writeln!(
                    out,
                    "  {}  {} {:?}, sha256 {}\n      {}.",
                    path.display(),
                    role.as_str().replace('_', " "),
                    c.subject_cn,
                    c.fingerprint_sha256,
                    role.destination()
                );
            }
        }
    }
}

/// Why `--export-dir` has nothing to write, agreeing with the advice.
fn nothing_to_export(chain: &ChainReport) -> &'static str {
    if chain.built.iter().all(|c| c.sent) && chain.anchor().is_some() {
        "the server sent every certificate of the chain, root included"
    } else if missing_issuer(chain).is_some() {
        "no trust source of this client holds the missing certificate; get it as \
         \"What to do\" says, or run again with --ca-file=BUNDLE naming a bundle that holds it"
    } else {
        "every certificate found was sent by the server; none came from a trust source"
    }
}

/// The chain command's JSON document.
#[derive(serde::Serialize)]
struct ChainJson<'a> {
    target: &'a str,
    /// When the chain was checked (RFC 3339).
    checked_at: String,
    tls: Option<ChainTlsJson<'a>>,
    /// The session's failure: before TLS (then `tls` is null), or after the handshake.
    session_failure: Option<FailureJson<'a>>,
}

#[derive(serde::Serialize)]
struct ChainTlsJson<'a> {
    #[serde(flatten)]
    session: SessionJson<'a>,
    server_name: &'a str,
    valid: bool,
    reason: Option<&'static str>,
    /// Where the chain fails or where building stopped, and why, in words.
    detail: Option<String>,
    openssl_verify_code: Option<u32>,
    openssl_verify_text: Option<&'static str>,
    sent_complete: bool,
    sent: Vec<SentJson<'a>>,
    built: Vec<BuiltJson<'a>>,
    missing_issuer: Option<MissingJson>,
    findings: Vec<String>,
    advice: Vec<String>,
    export: Option<ExportJson>,
}

#[derive(serde::Serialize)]
struct SentJson<'a> {
    #[serde(flatten)]
    cert: CertJson<'a>,
    notes: Vec<String>,
    pem: Option<String>,
}

#[derive(serde::Serialize)]
struct BuiltJson<'a> {
    #[serde(flatten)]
    cert: CertJson<'a>,
    /// Where it came from, in words.
    from: String,
    anchor: bool,
}

#[derive(serde::Serialize)]
struct MissingJson {
    subject: String,
    issuer: String,
    authority_key_id: Option<String>,
    ca_issuers: Vec<String>,
}

#[derive(serde::Serialize)]
struct ExportJson {
    dir: String,
    files: Vec<ExportFileJson>,
    /// Why nothing was written, or why writing failed.
    note: Option<String>,
}

#[derive(serde::Serialize)]
struct ExportFileJson {
    path: String,
    role: &'static str,
    subject: String,
    fingerprint_sha256: String,
    destination: &'static str,
}

#[derive(serde::Serialize)]
struct FailureJson<'a> {
    step: &'static str,
    reason: &'static str,
    detail: &'a str,
    hint: &'static str,
}

impl<'a> ChainJson<'a> {
    fn new(run: &'a ChainRun, now: i64, show_sent: bool) -> ChainJson<'a> {
        let o = &run.outcome;
        ChainJson {
            target: &o.target,
            checked_at: rfc3339(now),
            tls: run
                .tls()
                .map(|tls| ChainTlsJson::new(tls, run.export.as_ref(), show_sent)),
            session_failure: o.failure.as_ref().map(|f| FailureJson {
                step: f.step.as_str(),
                reason: f.reason.as_str(),
                detail: &f.detail,
                hint: f.reason.hint_for(Audience::Cli),
            }),
        }
    }
}

impl<'a> ChainTlsJson<'a> {
    fn new(tls: &'a TlsReport, export: Option<&Export>, show_sent: bool) -> ChainTlsJson<'a> {
        let chain = &tls.chain;
        let flags = chain.flags();
        let anchor = chain.anchor().map(|a| a.fingerprint_sha256.as_str());
        ChainTlsJson {
            session: SessionJson::new(tls),
            server_name: &chain.server_name,
            valid: chain.valid(),
            reason: chain.error.as_ref().map(|e| e.reason.as_str()),
            detail: chain
                .error
                .as_ref()
                .map(|e| format!("{}{}", verdict_place(chain, e), e.detail)),
            openssl_verify_code: openssl_verdict(chain).map(|(code, _)| code),
            openssl_verify_text: openssl_verdict(chain).map(|(_, text)| text),
            sent_complete: chain.sent_complete,
            sent: chain
                .sent
                .iter()
                .enumerate()
                .map(|(i, c)| SentJson {
                    cert: cert_json(c),
                    notes: sent_notes(chain, &flags, i),
                    pem: show_sent.then(|| pem(&c.der)),
                })
                .collect(),
            built: chain
                .built
                .iter()
                .map(|c| {
                    let is_anchor = anchor == Some(c.fingerprint_sha256.as_str());
                    BuiltJson {
                        cert: cert_json(c),
                        from: origin(c, chain, is_anchor),
                        anchor: is_anchor,
                    }
                })
                .collect(),
            missing_issuer: missing_issuer(chain).map(|m| MissingJson {
                subject: m.subject,
                issuer: m.issuer,
                authority_key_id: m.authority_key_id.as_deref().map(colon_hex),
                ca_issuers: m.ca_issuers,
            }),
            findings: findings(chain, &flags),
            advice: advice(chain, &flags, export.is_some()),
            export: export.map(|e| export_json(chain, e)),
        }
    }
}

/// What `--export-dir` wrote, for the JSON document.
fn export_json(chain: &ChainReport, export: &Export) -> ExportJson {
    let (files, note) = match &export.written {
        Err(e) => (Vec::new(), Some(format!("FAILED: {e}"))),
        Ok(paths) if paths.is_empty() => (Vec::new(), Some(nothing_to_export(chain).to_string())),
        Ok(paths) => (
            paths
                .iter()
                .zip(exportable(chain))
                .map(|(path, (c, role))| ExportFileJson {
                    path: path.display().to_string(),
                    role: role.as_str(),
                    subject: c.subject.clone(),
                    fingerprint_sha256: c.fingerprint_sha256.clone(),
                    destination: role.destination(),
                })
                .collect(),
            None,
        ),
    };
    ExportJson {
        dir: export.dir.display().to_string(),
        files,
        note,
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
