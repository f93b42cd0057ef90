//! A real, private mail stack for integration tests: Postfix (submission with STARTTLS + SASL,
//! implicit TLS, plain inbound SMTP) delivering over LMTP to Dovecot (IMAP with STARTTLS,
//! IMAPS), from the Debian bookworm packages, run as root on free loopback ports inside a
//! temporary directory. Covers the servers' side of RFC 5321 (SMTP), RFC 3207 (STARTTLS),
//! RFC 8314 (implicit TLS), RFC 4954 (AUTH), RFC 2033 (LMTP), RFC 9051/3501 (IMAP).
//!
//! # What `MailStack::start()` sets up
//!
//! Everything lives in one directory `$SMTP_PROBER_MAILSTACK_DIR/mailstack-XXXXXX` (default
//! parent: the system temp dir; `scripts/test.sh` points it at a per-run directory so it can find
//! leftovers). Five TCP ports on 127.0.0.1, each picked free by binding `127.0.0.1:0`:
//!
//! | accessor              | server  | behaviour |
//! |-----------------------|---------|-----------|
//! | [`MailStack::submission_addr`] | Postfix | `smtpd_tls_security_level=encrypt`: STARTTLS offered and required before MAIL and AUTH; AUTH PLAIN LOGIN (Dovecot SASL) after STARTTLS; relays only when authenticated (`permit_sasl_authenticated, reject`) |
//! | [`MailStack::smtps_addr`]      | Postfix | implicit TLS (`smtpd_tls_wrappermode=yes`), AUTH PLAIN LOGIN, relays only when authenticated |
//! | [`MailStack::smtp_addr`]       | Postfix | plain, no STARTTLS, no AUTH; accepts mail for [`DOMAIN`] only (like an MX on port 25) |
//! | [`MailStack::imap_addr`]       | Dovecot | IMAP, STARTTLS offered (LOGIN is allowed before it too: Dovecot trusts loopback) |
//! | [`MailStack::imaps_addr`]      | Dovecot | IMAP over implicit TLS |
//!
//! The SMTP greeting is `220 mail.example.test ESMTP <id>` and the IMAP greeting ends with
//! `<id> ready.`, where `<id>` is [`MailStack::id`] (the directory name); the harness checks it to
//! be sure a port is answered by this stack and not by a neighbour that took the port.
//!
//! Users ([`PROBE`], [`INBOX`], passwords in [`TestUser`]; also written to
//! [`MailStack::password_file`]) exist in Dovecot's passwd-file, which serves both SMTP AUTH (via
//! Postfix's Dovecot SASL socket) and IMAP login. Postfix accepts mail for exactly those two
//! addresses of [`DOMAIN`] (`virtual_mailbox_maps`, other recipients get `550 5.1.1`) and hands it
//! to Dovecot LMTP over a unix socket; Dovecot stores it in Maildir under `mail/`. Mailboxes
//! `INBOX` and `Junk` (special-use `\Junk`) exist and are subscribed from the first login.
//! `recipient_delimiter = +` with `lmtp_save_to_detail_mailbox`: mail to `inbox+Junk@example.test`
//! lands in the Junk folder of `inbox@example.test` (a real way to test "delivered to Junk").
//! Mail to any other domain is refused (`default_transport = error`): nothing ever leaves loopback.
//! No DNS lookups (`smtpd_peername_lookup = no`, `smtp_dns_support_level = disabled`).
//!
//! PKI (rcgen, ECDSA P-256, valid from yesterday for 30 days): a root CA
//! ([`MailStack::root_ca_pem_path`]), an intermediate CA, a leaf for [`SERVER_NAME`]
//! (`localhost`) with IP SAN 127.0.0.1. Every TLS port sends leaf + intermediate (a complete
//! chain without the root), so a client trusting only the root verifies.
//!
//! Chain ports ([`MailStack::start_with_chains`], for certificate chain tests): one more Postfix
//! smtpd per [`ServedChain`], on its own free port, STARTTLS offered (not required), no AUTH,
//! sending exactly the chain file given (key, leaf, then whatever certificates in whatever order:
//! `smtpd_tls_chain_files` with one file). Look it up with [`MailStack::chain_addr`].
//!
//! # OAuth 2.0 (optional)
//!
//! [`MailStack::start_with`] with [`Options::oauth2_introspection_url`] adds one more port,
//! [`MailStack::oauth_submission_addr`]: Postfix submission like the first (STARTTLS required,
//! relay only when authenticated) whose `smtpd_sasl_mechanism_filter` makes it advertise
//! `AUTH LOGIN XOAUTH2 OAUTHBEARER`, the way Office 365 offers `AUTH LOGIN XOAUTH2`. Dovecot
//! then has `auth_mechanisms = plain login xoauth2 oauthbearer` and a second passdb
//! `driver = oauth2` (`mechanisms = xoauth2 oauthbearer`) that checks each bearer token with a
//! `POST token=…` to the introspection URL (RFC 7662, `introspection_mode = post`), which the test
//! serves; an active token must name the user in `username` (and say `"active": true`). The
//! other ports keep offering `AUTH PLAIN LOGIN` only (`smtpd_sasl_mechanism_filter = plain,
//! login` in main.cf). A refused token gets Dovecot's JSON error challenge, then `535 5.7.8`.
//!
//! # Held mail, added headers and Sieve (optional)
//!
//! [`Options::recipient_access`] gives Postfix a `check_recipient_access` table for every port:
//! `HOLD` keeps a recipient's mail in the hold queue ([`MailStack::held`] counts it,
//! [`MailStack::release_held`] lets one recipient's go: `postsuper -H` of its queue ids from
//! `postqueue -j`, then `postqueue -f`), and
//! `PREPEND Authentication-Results: …` stamps the verdict an upstream filter would add.
//! [`Options::sieve_before`] has Dovecot's LMTP run a Sieve script before every delivery
//! (Debian `dovecot-sieve`), e.g. a rule filing mail with a failed DKIM result into Junk.
//!
//! Logs: Postfix via postlogd to `postfix.log` (`maillog_file`), Dovecot to `dovecot.log`; their
//! tails are attached to every start error ([`MailStack::log_tail`]).
//!
//! # Life cycle
//!
//! `start()` generates the PKI, writes the configs, starts Dovecot (`dovecot -c`) then Postfix
//! (`postfix -c DIR start`), and waits (bounded) until every port greets with the stack's id,
//! TLS ports through a verified handshake. A port taken by someone else between our pick and the
//! daemon's bind is retried with fresh ports. Stacks started in parallel (tests in threads)
//! never share ports or directories.
//!
//! Stopping has exactly one implementation, `tests/support/mailstack-stop.sh`, run by a watchdog
//! `sh` child started with each stack. The watchdog blocks reading its stdin, whose write end
//! only this process holds: it gets EOF when the `MailStack` is dropped (Drop closes the pipe and
//! waits for the watchdog) *or* when the test process ends in any way (normal exit, panic abort,
//! SIGKILL), because the kernel closes the pipe. That is what makes [`MailStack::shared`] safe:
//! Rust never drops statics, but the watchdog still stops the stack right after the test binary
//! exits. The watchdog ignores SIGINT/SIGTERM/SIGHUP so a Ctrl-C of `cargo test` still cleans
//! up. `scripts/test.sh` then waits for all stack directories of its run to disappear and stops
//! and reports any leftover as a failure. The stop script sends SIGTERM to Postfix's master (gone
//! in ~20 ms) and SIGKILL to Dovecot's process group (a graceful Dovecot stop waits ~1 s for its
//! log process; the stack is disposable), waits for both, then removes the directory.
//!
//! Measured on the 2-core development VM under load: start 0.4-1.0 s, stop 20-170 ms, a mail
//! accepted on submission is visible over IMAPS 20-140 ms later (including the IMAPS login).
//! A failed AUTH or IMAP LOGIN answers after ~0.5 s (Dovecot's failure flush interval; the 2 s
//! failure delay and the per-IP auth penalty are switched off).
//!
//! Requires root (Postfix and Dovecot start as root and drop privileges; mail is stored as the
//! system user `mail`), and the packages `postfix`, `dovecot-imapd`, `dovecot-lmtpd`
//! (`scripts/test.sh` installs them).

use anyhow::{anyhow, bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::ServerName;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The mail domain Postfix accepts and Dovecot stores.
pub const DOMAIN: &str = "example.test";
/// The name in the leaf certificate (DNS SAN; IP SAN 127.0.0.1 as well).
pub const SERVER_NAME: &str = "localhost";
/// Postfix's `myhostname`, shown in the SMTP greeting and EHLO reply.
pub const SMTP_HOSTNAME: &str = "mail.example.test";

/// A mailbox user known to Dovecot (IMAP login, SMTP AUTH) and to Postfix (recipient).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestUser {
    /// Login name and mail address.
    pub address: &'static str,
    /// Password for AUTH PLAIN/LOGIN and IMAP LOGIN.
    pub password: &'static str,
}

/// The account the prober logs in with to submit mail.
pub const PROBE: TestUser = TestUser {
    address: "probe@example.test",
    password: "probe-secret-7Hq2",
};

/// The account whose mailboxes (INBOX, Junk) receive the probe mail.
pub const INBOX: TestUser = TestUser {
    address: "inbox@example.test",
    password: "inbox-secret-4Zr9",
};

const USERS: [TestUser; 2] = [PROBE, INBOX];

/// The address whose mail lands in INBOX's Junk folder.
pub const JUNK_ADDRESS: &str = "inbox+Junk@example.test";
/// The `Authentication-Results:` the shared stack stamps on mail to [`JUNK_ADDRESS`]: the
/// verdict an upstream filter that sent it to Junk would have written.
pub const JUNK_VERDICT: &str = "mail.example.test; dkim=fail (signature did not verify) \
     header.d=example.test; spf=softfail smtp.mailfrom=probe@example.test; dmarc=fail \
     header.from=example.test";

/// A certificate chain for an extra STARTTLS port of Postfix (see
/// [`MailStack::start_with_chains`]).
#[derive(Clone, Debug)]
pub struct ServedChain {
    /// The name [`MailStack::chain_addr`] finds the port by.
    pub name: String,
    /// One PEM file as `smtpd_tls_chain_files` reads it: the private key, then the leaf, then the
    /// certificates to send after it, in that order.
    pub key_and_chain_pem: String,
}

/// What a stack offers beyond the defaults ([`MailStack::start_with`]).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// One extra STARTTLS port per chain (see [`ServedChain`]).
    pub chains: Vec<ServedChain>,
    /// Adds the OAuth 2.0 submission port, whose tokens Dovecot checks against this RFC 7662
    /// introspection endpoint (plain `http://` on loopback; Dovecot trusts no test CA).
    pub oauth2_introspection_url: Option<String>,
    /// Postfix access-table entries checked for every recipient on every port
    /// (`check_recipient_access`): a recipient address and its action, such as `HOLD` (the mail
    /// waits in the hold queue until [`MailStack::release_held`]) or `PREPEND Name: value` (a
    /// header added as an upstream filter would).
    pub recipient_access: Vec<(String, String)>,
    /// A Sieve script Dovecot runs before delivering each mail over LMTP (`sieve_before`, from
    /// the `dovecot-sieve` package: see [`MailStack::sieve_available`]).
    pub sieve_before: Option<String>,
}

/// Environment variable naming the parent directory of stack directories.
pub const DIR_ENV: &str = "SMTP_PROBER_MAILSTACK_DIR";

/// How long `start()` waits for all ports to greet.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often `start()` tries again with fresh ports after a port collision.
const START_ATTEMPTS: u32 = 3;
/// How many log lines a start error shows per log.
const LOG_TAIL_LINES: usize = 25;

/// Ports this process has handed out, so that two stacks started in parallel by one test binary
/// never get the same port, even after the first one's daemon released it.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The process-wide stack behind [`MailStack::shared`] (or why it could not start).
static SHARED: OnceLock<Result<MailStack, String>> = OnceLock::new();

/// The listening ports of one stack (besides the chain ports).
#[derive(Clone, Copy, Debug)]
struct Ports {
    submission: u16,
    smtps: u16,
    smtp: u16,
    imap: u16,
    imaps: u16,
    /// Present with [`Options::oauth2_introspection_url`].
    oauth_submission: Option<u16>,
}

/// Paths of the generated PKI files.
#[derive(Clone, Debug)]
struct Pki {
    root: PathBuf,
    intermediate: PathBuf,
    leaf: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

/// The watchdog process that runs `mailstack-stop.sh` when its stdin closes.
struct Watchdog {
    child: Child,
    /// Held open until drop; never written to.
    stdin: Option<ChildStdin>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Closing our end of the pipe is the stop signal; then wait until the stop script has
        // stopped both daemons and removed the directory, so the stack is gone when drop returns.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// A running Postfix + Dovecot pair. Dropping it stops both and removes its directory.
pub struct MailStack {
    id: String,
    dir: PathBuf,
    ports: Ports,
    pki: Pki,
    startup: Duration,
    tls: Arc<rustls::ClientConfig>,
    /// The extra chain ports, by name.
    chain_ports: Vec<(String, u16)>,
    // Declared last: dropped after everything else, and it is what stops the stack.
    _watchdog: Watchdog,
}

impl std::fmt::Debug for MailStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailStack")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl MailStack {
    /// Whether this machine can run a stack: Postfix and Dovecot (with its IMAP and LMTP
    /// programs) installed, and root to start them. When it cannot, `test` is skipped with one
    /// line on stderr, or fails when `CI` is set (see [`super::programs::installed`]).
    pub fn available(test: &str) -> bool {
        const PACKAGES: &str = "postfix, dovecot-imapd and dovecot-lmtpd";
        if !super::programs::installed(test, &["postfix", "dovecot"], PACKAGES) {
            return false;
        }
        let helpers = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/lmtp"];
        if let Some(missing) = helpers.iter().find(|p| !Path::new(p).is_file()) {
            let why = format!("{missing} not installed (bash scripts/test.sh installs {PACKAGES})");
            super::programs::skip(test, &why);
            return false;
        }
        if let Err(e) = require_root() {
            super::programs::skip(test, &format!("{e}"));
            return false;
        }
        true
    }

    /// Starts a private stack on free ports; blocks until every port greets (or fails with the
    /// logs' tails).
    pub fn start() -> anyhow::Result<MailStack> {
        MailStack::start_with(&Options::default())
    }

    /// Like [`MailStack::start`], plus one STARTTLS port per chain that sends exactly that chain
    /// (for certificate chain tests; see [`ServedChain`]).
    pub fn start_with_chains(chains: &[ServedChain]) -> anyhow::Result<MailStack> {
        MailStack::start_with(&Options {
            chains: chains.to_vec(),
            ..Options::default()
        })
    }

    /// Like [`MailStack::start`], with the extras `options` ask for.
    pub fn start_with(options: &Options) -> anyhow::Result<MailStack> {
        let programs = Programs::find()?;
        require_root()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match start_once(&programs, options) {
                Ok(stack) => return Ok(stack),
                Err(failure) if failure.port_collision => last_error = Some(failure.error),
                Err(failure) => return Err(failure.error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("no start attempt made"))
            .context(format!(
                "mail stack: ports kept colliding in {START_ATTEMPTS} attempts"
            )))
    }

    /// The stack shared by all tests of this test binary, started on first use. It is stopped
    /// by its watchdog when the test process exits (see the module documentation). Tests sharing
    /// it must not depend on mailbox contents they did not create (use unique subjects). Mail
    /// to [`JUNK_ADDRESS`] gets the failing [`JUNK_VERDICT`] stamped on it.
    ///
    /// Panics (failing the calling test) if the stack could not start; later callers get the same
    /// error without trying again.
    pub fn shared() -> &'static MailStack {
        let stack = SHARED.get_or_init(|| {
            MailStack::start_with(&Options {
                recipient_access: vec![(
                    JUNK_ADDRESS.to_string(),
                    format!("PREPEND Authentication-Results: {JUNK_VERDICT}"),
                )],
                ..Options::default()
            })
            .map_err(|e| format!("{e:#}"))
        });
        match stack {
            Ok(stack) => stack,
            Err(error) => panic!("shared mail stack did not start: {error}"),
        }
    }

    /// This stack's id: its directory name, also in the SMTP and IMAP greetings.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stack's directory (configs, PKI, logs, maildirs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Submission: STARTTLS required, then AUTH; relays only for authenticated clients.
    pub fn submission_addr(&self) -> SocketAddr {
        loopback(self.ports.submission)
    }

    /// Submission over implicit TLS (SMTPS), AUTH required to relay.
    pub fn smtps_addr(&self) -> SocketAddr {
        loopback(self.ports.smtps)
    }

    /// Plain SMTP without STARTTLS or AUTH, accepting mail for [`DOMAIN`] only.
    pub fn smtp_addr(&self) -> SocketAddr {
        loopback(self.ports.smtp)
    }

    /// IMAP with STARTTLS.
    pub fn imap_addr(&self) -> SocketAddr {
        loopback(self.ports.imap)
    }

    /// IMAP over implicit TLS.
    pub fn imaps_addr(&self) -> SocketAddr {
        loopback(self.ports.imaps)
    }

    /// Submission advertising `AUTH LOGIN XOAUTH2 OAUTHBEARER` after STARTTLS, when started
    /// with [`Options::oauth2_introspection_url`].
    pub fn oauth_submission_addr(&self) -> Option<SocketAddr> {
        self.ports.oauth_submission.map(loopback)
    }

    /// The STARTTLS port serving the [`ServedChain`] called `name`.
    pub fn chain_addr(&self, name: &str) -> Option<SocketAddr> {
        self.chain_ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, port)| loopback(port))
    }

    /// The root CA certificate (PEM) that every TLS port's chain leads to.
    pub fn root_ca_pem_path(&self) -> &Path {
        &self.pki.root
    }

    /// The intermediate CA certificate (PEM), also sent by the servers.
    pub fn intermediate_pem_path(&self) -> &Path {
        &self.pki.intermediate
    }

    /// The leaf certificate alone (PEM).
    pub fn leaf_pem_path(&self) -> &Path {
        &self.pki.leaf
    }

    /// Leaf then intermediate (PEM): what the servers send.
    pub fn server_chain_pem_path(&self) -> &Path {
        &self.pki.chain
    }

    /// The leaf's private key (PEM, PKCS#8).
    pub fn server_key_pem_path(&self) -> &Path {
        &self.pki.key
    }

    /// A rustls client configuration (ring) trusting only this stack's root.
    pub fn client_tls_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.tls)
    }

    /// A file holding `user`'s password (no newline), for `password_file` settings.
    pub fn password_file(&self, user: TestUser) -> PathBuf {
        self.dir.join("secrets").join(user.address)
    }

    /// The Maildir of `user` (`cur/`, `new/`, `.Junk/`).
    pub fn maildir(&self, user: TestUser) -> PathBuf {
        let (local, domain) = user
            .address
            .split_once('@')
            .unwrap_or((user.address, DOMAIN));
        self.dir
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// Postfix's log file.
    pub fn postfix_log_path(&self) -> PathBuf {
        self.dir.join("postfix.log")
    }

    /// Dovecot's log file.
    pub fn dovecot_log_path(&self) -> PathBuf {
        self.dir.join("dovecot.log")
    }

    /// How long `start()` took for this stack (the successful attempt).
    pub fn startup_duration(&self) -> Duration {
        self.startup
    }

    /// The last lines of both logs, for assertion messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// How many mails wait in Postfix's hold queue.
    pub fn held(&self) -> usize {
        let hold = self.dir.join("postfix/spool/queue/hold");
        let mut n = 0;
        let mut dirs = vec![hold];
        while let Some(d) = dirs.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => dirs.push(e.path()),
                    Ok(_) => n += 1,
                    Err(_) => {}
                }
            }
        }
        n
    }

    /// Releases the held mail for `recipient` (its queue ids from `postqueue -j`, then
    /// `postsuper -H` of each) and has Postfix deliver it now (`postqueue -f`). Returns how
    /// many were released.
    pub fn release_held(&self, recipient: &str) -> anyhow::Result<usize> {
        let etc = self.dir.join("postfix/etc");
        let run = |program: &str, args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(find_program(program)?)
                .arg("-c")
                .arg(&etc)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("running {program}"))?;
            if !out.status.success() {
                bail!(
                    "{program} {args:?} failed ({}): {}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                    self.log_tail()
                );
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let listing = run("postqueue", &["-j"])?;
        let mut ids = Vec::new();
        for line in listing.lines().filter(|l| !l.trim().is_empty()) {
            let entry: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("postqueue -j: {line}"))?;
            let for_recipient = entry["recipients"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["address"] == recipient));
            if entry["queue_name"] == "hold" && for_recipient {
                ids.push(entry["queue_id"].as_str().unwrap_or_default().to_string());
            }
        }
        for id in &ids {
            run("postsuper", &["-H", id])?;
        }
        run("postqueue", &["-f"])?;
        Ok(ids.len())
    }

    /// Whether Dovecot's Sieve plugin (Debian `dovecot-sieve`) is installed, for stacks with
    /// [`Options::sieve_before`]; when it is not, `test` is skipped with one line on stderr, or
    /// fails when `CI` is set.
    pub fn sieve_available(test: &str) -> bool {
        if Path::new(SIEVE_PLUGIN).is_file() {
            return true;
        }
        let why =
            format!("{SIEVE_PLUGIN} not installed (bash scripts/test.sh installs dovecot-sieve)");
        super::programs::skip(test, &why);
        false
    }
}

/// Dovecot's Sieve plugin, from the `dovecot-sieve` package.
const SIEVE_PLUGIN: &str = "/usr/lib/dovecot/modules/lib90_sieve_plugin.so";

/// Every message file of a Maildir (all folders), with its content.
pub fn maildir_messages(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if matches!(
                p.parent()
                    .and_then(|d| d.file_name())
                    .and_then(|n| n.to_str()),
                Some("cur" | "new")
            ) {
                out.push((p.clone(), fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    out
}

/// Drops a message straight into a Maildir folder (`new/`, no flags), as another mail client
/// would have left it. See [`plant_with`].
pub fn plant(stack: &MailStack, folder: &Path, name: &str, content: &str) -> PathBuf {
    plant_with(stack, folder, name, content, None, None)
}

/// Drops a message straight into a Maildir folder. With `flags` (Maildir info letters, e.g.
/// `"T"` for `\Deleted`, `"S"` for `\Seen`) it goes to `cur/` carrying them; with `mtime` the
/// file is dated back (Dovecot's INTERNALDATE of a Maildir message is its modification time).
/// Folders that do not exist yet (`Maildir/.Name` is the mailbox `Name`) are made as Dovecot
/// would: owned by the mail user that owns the stack's `mail/` directory, so Dovecot can use
/// them, and LMTP can deliver to `user+Name@` there.
pub fn plant_with(
    stack: &MailStack,
    folder: &Path,
    name: &str,
    content: &str,
    flags: Option<&str>,
    mtime: Option<std::time::SystemTime>,
) -> PathBuf {
    let owner = fs::metadata(stack.dir().join("mail")).expect("stat mail/");
    let chown = |p: &Path| {
        std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid()))
            .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()))
    };
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = folder.to_path_buf();
    while !at.exists() {
        missing.push(at.clone());
        at = at.parent().expect("a parent").to_path_buf();
    }
    for sub in ["cur", "new", "tmp"] {
        let d = folder.join(sub);
        if !d.exists() {
            missing.push(d);
        }
    }
    missing.sort_by_key(|p| p.components().count());
    for d in &missing {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        chown(d);
    }
    let path = match flags {
        None => folder.join("new").join(format!("{name}.planted")),
        Some(flags) => folder.join("cur").join(format!("{name}.planted:2,{flags}")),
    };
    fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    chown(&path);
    if let Some(t) = mtime {
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("dating {}: {e}", path.display()));
    }
    path
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// The outcome of one failed start attempt.
struct StartFailure {
    error: anyhow::Error,
    /// A daemon could not bind or a port greeted with a foreign id: worth retrying.
    port_collision: bool,
}

impl From<anyhow::Error> for StartFailure {
    fn from(error: anyhow::Error) -> Self {
        StartFailure {
            error,
            port_collision: false,
        }
    }
}

fn start_once(programs: &Programs, options: &Options) -> Result<MailStack, StartFailure> {
    let chains = &options.chains;
    let began = Instant::now();
    let dir = create_stack_dir()?;
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("stack directory {} has no usable name", dir.display()))?
        .to_owned();
    // From here on the watchdog owns cleanup: every early return drops it, which stops whatever
    // was started and removes the directory.
    let watchdog = spawn_watchdog(&dir)?;
    let (ports, extra) = pick_ports(options.oauth2_introspection_url.is_some(), chains.len())?;
    let (pki, tls) = write_pki(&dir)?;
    let chain_files = write_served_chains(&dir, chains, &extra)?;
    let mail_user = system_user("mail")
        .or_else(|_| system_user("nobody"))
        .context("no system user to own the maildirs")?;
    write_users(&dir, mail_user)?;
    write_dovecot_conf(&dir, &id, &ports, &pki, mail_user, options)?;
    write_postfix_conf(
        &dir,
        &id,
        &ports,
        &pki,
        &chain_files,
        &options.recipient_access,
    )?;

    let dovecot_conf = dir.join("dovecot").join("dovecot.conf");
    run_start_command(
        &dir,
        "dovecot",
        Command::new(&programs.dovecot).arg("-c").arg(&dovecot_conf),
    )?;
    run_start_command(
        &dir,
        "postfix",
        Command::new(&programs.postfix)
            .arg("-c")
            .arg(dir.join("postfix").join("etc"))
            .arg("start"),
    )?;
    wait_ready(&dir, &id, &ports, &extra, &tls)?;

    Ok(MailStack {
        id,
        dir,
        ports,
        pki,
        startup: began.elapsed(),
        tls,
        chain_ports: chains.iter().map(|c| c.name.clone()).zip(extra).collect(),
        _watchdog: watchdog,
    })
}

/// Absolute paths of the daemons' command-line programs.
struct Programs {
    postfix: PathBuf,
    dovecot: PathBuf,
}

impl Programs {
    fn find() -> anyhow::Result<Programs> {
        Ok(Programs {
            postfix: find_program("postfix")?,
            dovecot: find_program("dovecot")?,
        })
    }
}

/// Looks in `PATH` and the sbin directories (not on a non-root `PATH`).
fn find_program(name: &str) -> anyhow::Result<PathBuf> {
    super::programs::find_program(name).ok_or_else(|| {
        anyhow!(
            "`{name}` not found: install postfix, dovecot-imapd and dovecot-lmtpd \
                 (`bash scripts/test.sh` does)"
        )
    })
}

fn require_root() -> anyhow::Result<()> {
    // /proc/self belongs to the effective user: a way to learn it without libc.
    let uid = fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    if uid != 0 {
        bail!(
            "the mail stack needs root (uid {uid}): Postfix and Dovecot start as root and drop \
             privileges"
        );
    }
    Ok(())
}

/// Creates `mailstack-XXXXXX` under `$SMTP_PROBER_MAILSTACK_DIR` or the temp dir, traversable by
/// the daemons' users (postfix, dovecot, mail).
fn create_stack_dir() -> anyhow::Result<PathBuf> {
    let parent = std::env::var_os(DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("mailstack-")
        .tempdir_in(&parent)
        .with_context(|| format!("creating a stack directory in {}", parent.display()))?
        // The watchdog removes it, also after this process is gone.
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", dir.display()))?;
    // Unix socket paths are limited to 107 bytes; ours are the longest paths in the stack.
    let longest = dir.join("dovecot/run/token-login/tokenlogin");
    if longest.as_os_str().len() > 100 {
        bail!(
            "stack directory {} is too deep for unix socket paths; set {DIR_ENV} to a shorter \
             directory",
            dir.display()
        );
    }
    Ok(dir)
}

fn spawn_watchdog(dir: &Path) -> anyhow::Result<Watchdog> {
    let stop_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mailstack-stop.sh");
    // `read` returns at EOF, which comes when the last write end closes: on drop, or when this
    // process dies. Ignored signals stay ignored across `exec`, so the stop script cannot be
    // interrupted by the Ctrl-C that ended the test run.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' INT TERM HUP QUIT; read -r _ignored; exec sh "$0" "$1""#)
        .arg(&stop_script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the mail stack watchdog (sh)")?;
    let stdin = child.stdin.take();
    Ok(Watchdog { child, stdin })
}

/// Picks five distinct free loopback ports (six with `oauth`) plus `extra` more, never one handed
/// out before in this process.
fn pick_ports(oauth: bool, extra: usize) -> anyhow::Result<(Ports, Vec<u16>)> {
    let mut guard = HANDED_OUT
        .lock()
        .map_err(|_| anyhow!("port registry poisoned by a panicking test"))?;
    let handed_out = guard.get_or_insert_with(HashSet::new);
    // All listeners stay bound until five are found, so the kernel gives distinct ports.
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    let fixed = if oauth { 6 } else { 5 };
    let wanted = fixed + extra;
    while ports.len() < wanted {
        if listeners.len() > 50 + extra {
            bail!("could not find {wanted} unused loopback ports");
        }
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports.push(port);
        }
    }
    Ok((
        Ports {
            submission: ports[0],
            smtps: ports[1],
            smtp: ports[2],
            imap: ports[3],
            imaps: ports[4],
            oauth_submission: if oauth { Some(ports[5]) } else { None },
        },
        ports[fixed..].to_vec(),
    ))
}

/// Writes each served chain to `pki/chain-<i>.pem` (it holds a private key: root-only, read by
/// smtpd before it drops privileges) and pairs it with its port.
fn write_served_chains(
    dir: &Path,
    chains: &[ServedChain],
    ports: &[u16],
) -> anyhow::Result<Vec<(PathBuf, u16)>> {
    let mut files = Vec::with_capacity(chains.len());
    for (i, (chain, &port)) in chains.iter().zip(ports).enumerate() {
        let path = dir.join("pki").join(format!("chain-{i}.pem"));
        fs::write(&path, &chain.key_and_chain_pem)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        files.push((path, port));
    }
    Ok(files)
}

/// Generates root CA -> intermediate CA -> leaf (localhost, 127.0.0.1) and writes the PEM files.
fn write_pki(dir: &Path) -> anyhow::Result<(Pki, Arc<rustls::ClientConfig>)> {
    let pki_dir = dir.join("pki");
    fs::create_dir(&pki_dir)?;
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(30);
    };

    let mut root_params = CertificateParams::new(Vec::<String>::new())?;
    root_params
        .distinguished_name
        .push(DnType::CommonName, "smtp-prober Test Root CA");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut root_params);
    let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate()?)?;

    let mut mid_params = CertificateParams::new(Vec::<String>::new())?;
    mid_params
        .distinguished_name
        .push(DnType::CommonName, "smtp-prober Test Intermediate CA");
    mid_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    mid_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    mid_params.use_authority_key_identifier_extension = true;
    validity(&mut mid_params);
    let intermediate = CertifiedIssuer::signed_by(mid_params, KeyPair::generate()?, &root)?;

    let mut leaf_params =
        CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    validity(&mut leaf_params);
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &intermediate)?;

    let pki = Pki {
        root: pki_dir.join("root-ca.pem"),
        intermediate: pki_dir.join("intermediate-ca.pem"),
        leaf: pki_dir.join("server.pem"),
        chain: pki_dir.join("server-chain.pem"),
        key: pki_dir.join("server.key"),
    };
    fs::write(&pki.root, root.pem())?;
    fs::write(&pki.intermediate, intermediate.pem())?;
    fs::write(&pki.leaf, leaf.pem())?;
    fs::write(&pki.chain, format!("{}{}", leaf.pem(), intermediate.pem()))?;
    fs::write(&pki.key, leaf_key.serialize_pem())?;
    // Read as root by Postfix's smtpd (before it drops privileges) and Dovecot's config process.
    fs::set_permissions(&pki.key, fs::Permissions::from_mode(0o600))?;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der().clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((pki, Arc::new(tls)))
}

/// A system account: (uid, gid), from /etc/passwd.
fn system_user(name: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 3 && fields[0] == name)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .ok_or_else(|| anyhow!("no user `{name}` in /etc/passwd"))
}

/// Writes Dovecot's passwd-file, Postfix's recipient table, the password files and the maildir
/// root.
fn write_users(dir: &Path, (uid, gid): (u32, u32)) -> anyhow::Result<()> {
    let secrets = dir.join("secrets");
    fs::create_dir(&secrets)?;
    fs::set_permissions(&secrets, fs::Permissions::from_mode(0o700))?;
    let dovecot = dir.join("dovecot");
    fs::create_dir(&dovecot)?;
    let postfix = dir.join("postfix");
    fs::create_dir_all(postfix.join("etc"))?;
    fs::create_dir_all(postfix.join("spool"))?;

    let mut passwd = String::new();
    let mut recipients = String::new();
    for user in USERS {
        writeln!(passwd, "{}:{{PLAIN}}{}", user.address, user.password)?;
        writeln!(recipients, "{} OK", user.address)?;
        fs::write(secrets.join(user.address), user.password)?;
    }
    fs::write(dovecot.join("users"), passwd)?;
    write_postfix_file(&postfix.join("etc").join("recipients"), &recipients)?;

    let mail = dir.join("mail");
    fs::create_dir(&mail)?;
    std::os::unix::fs::chown(&mail, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", mail.display()))?;
    fs::set_permissions(&mail, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn write_dovecot_conf(
    dir: &Path,
    id: &str,
    ports: &Ports,
    pki: &Pki,
    (uid, _gid): (u32, u32),
    options: &Options,
) -> anyhow::Result<()> {
    let d = dir.display();
    let (mechanisms, oauth2_passdb) = match &options.oauth2_introspection_url {
        None => ("plain login", String::new()),
        Some(url) => {
            // RFC 7662 introspection by POST of `token=...`; the username in the answer must be
            // the one logging in, and the token must be active.
            let oauth2_conf = format!(
                "introspection_mode = post\n\
                 introspection_url = {url}\n\
                 username_attribute = username\n\
                 active_attribute = active\n\
                 active_value = true\n\
                 force_introspection = yes\n"
            );
            fs::write(dir.join("dovecot/oauth2.conf.ext"), oauth2_conf)?;
            // The passwd-file passdb stays unrestricted: the static userdb's user lookups
            // (LMTP delivery) come without a mechanism and would skip a `mechanisms =` passdb.
            // For a bearer token it simply finds no matching password, and the oauth2 passdb
            // decides.
            (
                "plain login xoauth2 oauthbearer",
                format!(
                    "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                     args = {d}/dovecot/oauth2.conf.ext\n}}\n"
                ),
            )
        }
    };
    let sieve = match &options.sieve_before {
        None => String::new(),
        Some(script) => {
            // In a directory of the mail user: Dovecot compiles the script there on first use.
            let sieve_dir = dir.join("dovecot/sieve");
            fs::create_dir(&sieve_dir)?;
            let path = sieve_dir.join("before.sieve");
            fs::write(&path, script)?;
            for p in [&sieve_dir, &path] {
                std::os::unix::fs::chown(p, Some(uid), Some(uid))
                    .with_context(|| format!("chown {}", p.display()))?;
            }
            format!(
                "protocol lmtp {{\n  mail_plugins = $mail_plugins sieve\n}}\n\
                 plugin {{\n  sieve_before = {}\n}}\n",
                path.display()
            )
        }
    };
    let conf = format!(
        r#"# Generated by tests/support/mailstack.rs for one test stack.
instance_name = {id}
base_dir = {d}/dovecot/run
state_dir = {d}/dovecot/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
login_greeting = {id} ready.

ssl = required
ssl_cert = <{chain}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2

auth_mechanisms = {mechanisms}
# Tests provoke 535/NO replies on purpose: no 2 s failure delay (what remains is Dovecot's 0.5 s
# failure flush interval), and no auth penalty (anvil doubles a delay per failure from an IP, up
# to 15 s, and every test connects from 127.0.0.1); Dovecot skips the penalty when it cannot
# connect to the anvil-auth-penalty socket.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/dovecot/users
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={uid} gid={uid} home={d}/mail/%d/%n
}}
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
recipient_delimiter = +
lmtp_save_to_detail_mailbox = yes

namespace inbox {{
  inbox = yes
  separator = /
  mailbox INBOX {{
    auto = subscribe
  }}
  mailbox Junk {{
    auto = subscribe
    special_use = \Junk
  }}
}}

# Tests in parallel log in to the same account from 127.0.0.1.
protocol imap {{
  mail_max_userip_connections = 1000
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener {d}/dovecot/lmtp {{
    user = postfix
    mode = 0600
  }}
}}
service auth {{
  unix_listener {d}/dovecot/auth-postfix {{
    user = postfix
    mode = 0600
  }}
}}
{sieve}"#,
        chain = pki.chain.display(),
        key = pki.key.display(),
        imap = ports.imap,
        imaps = ports.imaps,
    );
    fs::create_dir(dir.join("dovecot/run"))?;
    fs::create_dir(dir.join("dovecot/state"))?;
    fs::write(dir.join("dovecot/dovecot.conf"), conf)?;
    Ok(())
}

fn write_postfix_conf(
    dir: &Path,
    id: &str,
    ports: &Ports,
    pki: &Pki,
    chains: &[(PathBuf, u16)],
    recipient_access: &[(String, String)],
) -> anyhow::Result<()> {
    let d = dir.display();
    let recipient_restrictions = if recipient_access.is_empty() {
        String::new()
    } else {
        let table: String = recipient_access
            .iter()
            .map(|(address, action)| format!("{address} {action}\n"))
            .collect();
        write_postfix_file(&dir.join("postfix/etc/recipient_access"), &table)?;
        format!(
            "smtpd_recipient_restrictions = check_recipient_access \
             texthash:{d}/postfix/etc/recipient_access\n"
        )
    };
    // With OAuth, Dovecot offers xoauth2 and oauthbearer too: only the OAuth port shows them.
    let (mechanism_filter, oauth_service) = match ports.oauth_submission {
        None => (String::new(), String::new()),
        Some(port) => (
            "smtpd_sasl_mechanism_filter = plain, login\n".to_string(),
            format!(
                "# (d) OAuth submission: like (a), advertising AUTH LOGIN XOAUTH2 OAUTHBEARER.\n\
                 127.0.0.1:{port} inet n - n - - smtpd\n  \
                 -o syslog_name={id}/oauth\n  \
                 -o smtpd_tls_security_level=encrypt\n  \
                 -o smtpd_sasl_auth_enable=yes\n  \
                 -o smtpd_sasl_mechanism_filter=login,xoauth2,oauthbearer\n  \
                 -o smtpd_relay_restrictions=permit_sasl_authenticated,reject\n"
            ),
        ),
    };
    // The spool (queue + data) sits outside the config directory: `postfix check` wants every
    // file under the config directory owned by root, and the queue is owned by `postfix`.
    let main_cf = format!(
        r#"# Generated by tests/support/mailstack.rs for one test stack.
compatibility_level = 3.6
queue_directory = {d}/postfix/spool/queue
data_directory = {d}/postfix/spool/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = {id}
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}

myhostname = {SMTP_HOSTNAME}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
smtputf8_enable = yes
smtpd_banner = $myhostname ESMTP {id}

# The test domain goes to Dovecot over LMTP; everything else is refused, so nothing ever leaves
# loopback and no DNS is consulted.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{d}/postfix/etc/recipients
virtual_transport = lmtp:unix:{d}/dovecot/lmtp
recipient_delimiter = +
default_transport = error:mail to other domains is disabled in the test stack
relay_transport = error:mail to other domains is disabled in the test stack
smtp_dns_support_level = disabled
smtpd_peername_lookup = no

# Fast tests: no sleeping after errors, no inbound flow control.
smtpd_error_sleep_time = 0
in_flow_delay = 0

smtpd_tls_chain_files = {key}, {chain}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/dovecot/auth-postfix
smtpd_sasl_auth_enable = no
smtpd_sasl_authenticated_header = yes
smtpd_client_restrictions =
smtpd_relay_restrictions = reject_unauth_destination
{mechanism_filter}{recipient_restrictions}"#,
        key = pki.key.display(),
        chain = pki.chain.display(),
    );
    let mut master_cf = format!(
        r#"# Generated by tests/support/mailstack.rs for one test stack.
# service type  private unpriv  chroot  wakeup  maxproc command + args
# (a) submission: STARTTLS required, AUTH only after it, relay only when authenticated.
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name={id}/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
# (b) submissions: implicit TLS.
127.0.0.1:{smtps} inet n - n - - smtpd
  -o syslog_name={id}/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
# (c) plain inbound SMTP: no TLS, no AUTH, mail for the test domain only.
127.0.0.1:{smtp} inet n - n - - smtpd
  -o syslog_name={id}/smtp
  -o smtpd_tls_security_level=none
{oauth_service}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"#,
        submission = ports.submission,
        smtps = ports.smtps,
        smtp = ports.smtp,
    );
    // (e) chain ports: STARTTLS offered, no AUTH, each sending its own chain file.
    for (i, (file, port)) in chains.iter().enumerate() {
        let _ = write!(
            master_cf,
            "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name={id}/chain-{i}\n  \
             -o smtpd_tls_chain_files={}\n",
            file.display()
        );
    }
    let etc = dir.join("postfix/etc");
    write_postfix_file(&etc.join("main.cf"), &main_cf)?;
    write_postfix_file(&etc.join("master.cf"), &master_cf)?;
    // Postfix creates the queue's subdirectories with their owners (`post-install
    // create-missing`, run by `postfix start`); the queue root itself must exist, owned by root.
    fs::create_dir(dir.join("postfix/spool/queue"))?;
    Ok(())
}

/// Writes a file Postfix reads, dated a minute back. Postfix does not read a configuration or
/// lookup table file modified within the last second (it may be half written): it sleeps 300 ms
/// and looks again, which cost 1.8 s per start with freshly written files.
fn write_postfix_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(past))
        .with_context(|| format!("dating {} back", path.display()))?;
    Ok(())
}

/// Runs a daemon's start command (which returns once the daemon is up or has failed), with its
/// output in a file: a daemon that keeps an inherited pipe open would block a reader forever.
fn run_start_command(dir: &Path, name: &str, command: &mut Command) -> Result<(), StartFailure> {
    let out_path = dir.join(format!("{name}-start.out"));
    let out = fs::File::create(&out_path).map_err(anyhow::Error::from)?;
    let err = out.try_clone().map_err(anyhow::Error::from)?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("running {name}"))?;
    if status.success() {
        return Ok(());
    }
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    let tail = log_tail(dir);
    Err(StartFailure {
        port_collision: output.contains("in use") || tail.contains("in use"),
        error: anyhow!("{name} failed to start ({status}):\n{output}\n{tail}"),
    })
}

/// Which greeting a port must send, and whether TLS comes first.
struct Expect {
    what: &'static str,
    port: u16,
    implicit_tls: bool,
    prefix: &'static str,
}

/// Waits until every port greets with this stack's id; TLS ports through a verified handshake.
fn wait_ready(
    dir: &Path,
    id: &str,
    ports: &Ports,
    chain_ports: &[u16],
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(), StartFailure> {
    let mut expectations = vec![
        Expect {
            what: "submission",
            port: ports.submission,
            implicit_tls: false,
            prefix: "220 ",
        },
        Expect {
            what: "smtps",
            port: ports.smtps,
            implicit_tls: true,
            prefix: "220 ",
        },
        Expect {
            what: "smtp",
            port: ports.smtp,
            implicit_tls: false,
            prefix: "220 ",
        },
        Expect {
            what: "imap",
            port: ports.imap,
            implicit_tls: false,
            prefix: "* OK ",
        },
        Expect {
            what: "imaps",
            port: ports.imaps,
            implicit_tls: true,
            prefix: "* OK ",
        },
    ];
    if let Some(port) = ports.oauth_submission {
        expectations.push(Expect {
            what: "oauth submission",
            port,
            implicit_tls: false,
            prefix: "220 ",
        });
    }
    // A chain port's greeting comes before STARTTLS: nothing about its chain is verified here.
    expectations.extend(chain_ports.iter().map(|&port| Expect {
        what: "chain",
        port,
        implicit_tls: false,
        prefix: "220 ",
    }));
    let deadline = Instant::now() + READY_TIMEOUT;
    for expect in &expectations {
        loop {
            match read_greeting(expect, tls) {
                Ok(line) if line.starts_with(expect.prefix) && line.contains(id) => break,
                Ok(line) => {
                    // Someone else answers on our port: it was taken between pick and bind.
                    return Err(StartFailure {
                        port_collision: true,
                        error: anyhow!(
                            "{} port {} answered {:?}, not stack {id}\n{}",
                            expect.what,
                            expect.port,
                            line,
                            log_tail(dir)
                        ),
                    });
                }
                Err(error) if Instant::now() >= deadline => {
                    let tail = log_tail(dir);
                    return Err(StartFailure {
                        port_collision: tail.contains("in use"),
                        error: anyhow!(
                            "{} port {} not ready after {:?}: {error:#}\n{tail}",
                            expect.what,
                            expect.port,
                            READY_TIMEOUT
                        ),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    Ok(())
}

/// Connects and reads the first line the server sends (at most 1 KiB).
fn read_greeting(expect: &Expect, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<String> {
    let stream = TcpStream::connect_timeout(&loopback(expect.port), Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    if expect.implicit_tls {
        let name = ServerName::try_from(SERVER_NAME)?.to_owned();
        let conn = rustls::ClientConnection::new(Arc::clone(tls), name)?;
        let mut tls_stream = rustls::StreamOwned::new(conn, stream);
        BufReader::new(Read::by_ref(&mut tls_stream).take(1024)).read_line(&mut line)?;
        // Say goodbye so the daemons do not log a lost connection as an error.
        let _ = tls_stream.write_all(quit_command(expect.prefix));
    } else {
        let mut stream = stream;
        BufReader::new(Read::by_ref(&mut stream).take(1024)).read_line(&mut line)?;
        let _ = stream.write_all(quit_command(expect.prefix));
    }
    Ok(line.trim_end().to_owned())
}

fn quit_command(greeting_prefix: &str) -> &'static [u8] {
    if greeting_prefix.starts_with('*') {
        b"a LOGOUT\r\n"
    } else {
        b"QUIT\r\n"
    }
}

/// The last lines of the Postfix and Dovecot logs of the stack in `dir`.
fn log_tail(dir: &Path) -> String {
    let mut out = String::new();
    for name in ["postfix.log", "dovecot.log"] {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_else(|e| format!("({e})\n"));
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        let _ = writeln!(out, "--- tail of {}/{name}:", dir.display());
        for line in &lines[start..] {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
