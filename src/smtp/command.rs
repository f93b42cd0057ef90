//! SMTP commands (RFC 5321 §4.1, RFC 3207 STARTTLS, RFC 4954 AUTH) as small types whose
//! `Display` is the exact wire line, CRLF included. No I/O here.
//!
//! Everything that goes into a command line passes through a validating constructor first:
//! CR, LF or NUL inside an EHLO name or an address would let a configuration value smuggle a
//! second command onto the wire, so such values are refused before anything is sent.

use std::fmt;

/// Why a value cannot be put into a command line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// CR, LF or NUL: the value would end the line early and inject a command.
    #[error("{what} {value:?} contains a line break or NUL")]
    LineBreak { what: &'static str, value: String },
    /// Empty where a value is required.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// Other characters the grammar does not allow.
    #[error("{what} {value:?} is not valid: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Refuses CR, LF and NUL: the characters that would end a command line early.
pub fn reject_line_breaks(what: &'static str, value: &str) -> Result<(), InvalidValue> {
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(InvalidValue::LineBreak {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// The fully qualified form of the host name `host`: itself when it has a dot, else the name
/// with a dot that `hosts` (the text of `/etc/hosts`) lists for it, as `hostname -f` finds it
/// there (Debian writes `127.0.1.1 mail.example.com mail`); else `host` itself. Only local
/// files: a DNS query at start could hang a machine without a resolver.
fn qualified_name(host: &str, hosts: &str) -> String {
    if host.contains('.') {
        return host.to_string();
    }
    let prefix = format!("{host}.");
    hosts
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .filter_map(|line| {
            let names: Vec<&str> = line.split_whitespace().skip(1).collect();
            names.contains(&host).then_some(names)
        })
        .flatten()
        .find(|name| name.starts_with(&prefix) && name.len() > prefix.len())
        .unwrap_or(host)
        .to_string()
}

/// The name the client gives in EHLO: a domain or an address literal such as `[192.0.2.1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientName(String);

impl ClientName {
    /// Validates an EHLO name.
    pub fn new(name: &str) -> Result<ClientName, InvalidValue> {
        const WHAT: &str = "EHLO name";
        reject_line_breaks(WHAT, name)?;
        if name.is_empty() {
            return Err(InvalidValue::Empty { what: WHAT });
        }
        if name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue::Invalid {
                what: WHAT,
                value: name.to_string(),
                why:
                    "must be a printable ASCII domain or address literal of at most 255 characters",
            });
        }
        Ok(ClientName(name.to_string()))
    }

    /// This machine's name: its fully qualified name when it has one (RFC 5321 §4.1.1.1 asks
    /// for it, and servers such as Postfix with `reject_non_fqdn_helo_hostname` or Exchange
    /// refuse a bare `EHLO vm`), else its host name, else `localhost`. Looked up once.
    pub fn from_hostname() -> ClientName {
        static NAME: std::sync::OnceLock<ClientName> = std::sync::OnceLock::new();
        NAME.get_or_init(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .unwrap_or_default();
            let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            let name = qualified_name(host.trim(), &hosts);
            ClientName::new(&name).unwrap_or_else(|_| ClientName("localhost".into()))
        })
        .clone()
    }

    /// The name as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mailbox for MAIL FROM / RCPT TO (`local@domain`), without angle brackets. The empty
/// reverse path `<>` is allowed for MAIL FROM only, through [`Mailbox::null`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox(String);

impl Mailbox {
    /// Validates an address given in configuration or on the command line.
    pub fn new(address: &str) -> Result<Mailbox, InvalidValue> {
        const WHAT: &str = "address";
        reject_line_breaks(WHAT, address)?;
        if address.is_empty() {
            return Err(InvalidValue::Empty { what: WHAT });
        }
        let invalid = |why| InvalidValue::Invalid {
            what: WHAT,
            value: address.to_string(),
            why,
        };
        if address.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        if address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>'))
        {
            return Err(invalid(
                "contains whitespace, a control character or an angle bracket",
            ));
        }
        match address.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                Ok(Mailbox(address.to_string()))
            }
            _ => Err(invalid("must look like local-part@domain")),
        }
    }

    /// The null reverse path `<>` (bounces; some probes use it).
    pub fn null() -> Mailbox {
        Mailbox(String::new())
    }

    /// The address without brackets.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the address needs SMTPUTF8 (RFC 6531).
    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `EHLO name`.
#[derive(Clone, Debug)]
pub struct Ehlo<'a>(pub &'a ClientName);

impl fmt::Display for Ehlo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EHLO {}\r\n", self.0)
    }
}

/// `STARTTLS`.
#[derive(Clone, Debug)]
pub struct Starttls;

impl fmt::Display for Starttls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("STARTTLS\r\n")
    }
}

/// `AUTH mechanism [initial-response]` (RFC 4954). The response is base64 and never contains
/// a line break; it is a secret and must be masked in anything shown to a person.
#[derive(Clone, Debug)]
pub struct Auth<'a> {
    /// The SASL mechanism name, upper case.
    pub mechanism: &'a str,
    /// Base64 initial response, `=` for an empty one.
    pub initial_response: Option<&'a str>,
}

impl fmt::Display for Auth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.initial_response {
            Some(ir) => write!(f, "AUTH {} {}\r\n", self.mechanism, ir),
            None => write!(f, "AUTH {}\r\n", self.mechanism),
        }
    }
}

/// A line answering a 334 challenge: base64 data, or empty to answer an error challenge.
#[derive(Clone, Debug)]
pub struct AuthResponse<'a>(pub &'a str);

impl fmt::Display for AuthResponse<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\r\n", self.0)
    }
}

/// `MAIL FROM:<reverse-path> [SMTPUTF8]`.
#[derive(Clone, Debug)]
pub struct Mail<'a> {
    /// The reverse path.
    pub from: &'a Mailbox,
    /// Add the SMTPUTF8 parameter (RFC 6531) when an address is not ASCII.
    pub smtputf8: bool,
}

impl fmt::Display for Mail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MAIL FROM:<{}>", self.from)?;
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        f.write_str("\r\n")
    }
}

/// `RCPT TO:<forward-path>`.
#[derive(Clone, Debug)]
pub struct Rcpt<'a>(pub &'a Mailbox);

impl fmt::Display for Rcpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RCPT TO:<{}>\r\n", self.0)
    }
}

/// `DATA`.
#[derive(Clone, Debug)]
pub struct Data;

impl fmt::Display for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DATA\r\n")
    }
}

/// `QUIT`.
#[derive(Clone, Debug)]
pub struct Quit;

impl fmt::Display for Quit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QUIT\r\n")
    }
}

/// The message content as sent after DATA's 354: lines ending in CRLF, every line that starts
/// with a dot given a second one (RFC 5321 §4.5.2), then the `.` line that ends the data.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        // Normalise bare LF (and a CR not followed by LF is kept as is) to CRLF line ends.
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ehlo_name_is_the_qualified_one_when_the_machine_knows_it() {
        let hosts = "127.0.0.1 localhost\n127.0.1.1 mail1.example.com mail1 # the installer\n";
        assert_eq!(qualified_name("mail1", hosts), "mail1.example.com");
        assert_eq!(
            qualified_name("mail1.example.org", hosts),
            "mail1.example.org"
        );
        // A bare name with no qualified form stays bare; another host's names are not taken.
        assert_eq!(qualified_name("vm", "127.0.0.1 localhost vm\n"), "vm");
        assert_eq!(
            qualified_name("vm", "10.0.0.2 vmhost.example.com vmhost\n"),
            "vm"
        );
        assert_eq!(qualified_name("vm", ""), "vm");
    }

    #[test]
    fn wire_lines() {
        let name = ClientName::new("probe.example.com").unwrap();
        let from = Mailbox::new("a@example.com").unwrap();
        let to = Mailbox::new("b@example.com").unwrap();
        assert_eq!(Ehlo(&name).to_string(), "EHLO probe.example.com\r\n");
        assert_eq!(Starttls.to_string(), "STARTTLS\r\n");
        assert_eq!(
            Auth {
                mechanism: "PLAIN",
                initial_response: Some("AGEAYg==")
            }
            .to_string(),
            "AUTH PLAIN AGEAYg==\r\n"
        );
        assert_eq!(
            Auth {
                mechanism: "LOGIN",
                initial_response: None
            }
            .to_string(),
            "AUTH LOGIN\r\n"
        );
        assert_eq!(AuthResponse("").to_string(), "\r\n");
        assert_eq!(
            Mail {
                from: &from,
                smtputf8: false
            }
            .to_string(),
            "MAIL FROM:<a@example.com>\r\n"
        );
        assert_eq!(
            Mail {
                from: &Mailbox::null(),
                smtputf8: false
            }
            .to_string(),
            "MAIL FROM:<>\r\n"
        );
        assert_eq!(
            Mail {
                from: &from,
                smtputf8: true
            }
            .to_string(),
            "MAIL FROM:<a@example.com> SMTPUTF8\r\n"
        );
        assert_eq!(Rcpt(&to).to_string(), "RCPT TO:<b@example.com>\r\n");
        assert_eq!(Data.to_string(), "DATA\r\n");
        assert_eq!(Quit.to_string(), "QUIT\r\n");
    }

    #[test]
    fn injection_is_refused() {
        for bad in ["a@b.com\r\nRCPT TO:<x@y>", "a@b.com\n", "a\0@b.com"] {
            assert!(
                matches!(Mailbox::new(bad), Err(InvalidValue::LineBreak { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ClientName::new("host\r\nMAIL FROM:<x>"),
            Err(InvalidValue::LineBreak { .. })
        ));
        assert!(matches!(
            ClientName::new(""),
            Err(InvalidValue::Empty { .. })
        ));
        assert!(matches!(
            ClientName::new("two words"),
            Err(InvalidValue::Invalid { .. })
        ));
        assert!(matches!(
            Mailbox::new("a b@c.com"),
            Err(InvalidValue::Invalid { .. })
        ));
        assert!(matches!(
            Mailbox::new("<a@c.com>"),
            Err(InvalidValue::Invalid { .. })
        ));
        assert!(matches!(
            Mailbox::new("nodomain"),
            Err(InvalidValue::Invalid { .. })
        ));
        assert!(matches!(
            Mailbox::new("@c.com"),
            Err(InvalidValue::Invalid { .. })
        ));
        assert!(ClientName::new("[192.0.2.1]").is_ok());
        assert!(Mailbox::new("jörg@example.com").is_ok_and(|m| !m.is_ascii()));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".start"), b"..start\r\n.\r\n");
        assert_eq!(dot_stuff(b"bare\nlf\n.x"), b"bare\r\nlf\r\n..x\r\n.\r\n");
        assert_eq!(dot_stuff(b"mid.dot\r\n"), b"mid.dot\r\n.\r\n");
        assert_eq!(
            dot_stuff(b"\r\n.\r\n"),
            b"\r\n..\r\n.\r\n",
            "a lone dot line cannot end the data early"
        );
    }
}
