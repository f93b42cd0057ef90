//! The demo server's own parsers and reply builders: SASL mechanism names, bearer client
//! responses (XOAUTH2, OAUTHBEARER RFC 7628), MAIL/RCPT paths and reply lines.
//!
//! The demo deliberately does not reuse the prober's protocol types (`crate::smtp`): it is the
//! independent peer the prober is tested against, and sharing a parser would let one bug pass
//! on both sides of every test.

/// A SASL mechanism the server can run. Adding one means a variant here and its exchange in
/// `Session::authenticate`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 4616: one response `authzid NUL authcid NUL password`.
    Plain,
    /// The de-facto LOGIN mechanism: user name and password, each after a 334 prompt.
    Login,
    /// Google's and Microsoft's XOAUTH2: `user=U ^A auth=Bearer T ^A ^A`, checked against
    /// `ServerConfig::bearer_tokens`.
    Xoauth2,
    /// RFC 7628 OAUTHBEARER: a GS2 header `n,a=U,` then `^A`-separated `key=value` pairs with
    /// `auth=Bearer T`, checked against `ServerConfig::bearer_tokens`.
    Oauthbearer,
}

impl Mechanism {
    /// The name as advertised in EHLO and given in AUTH.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Mechanism> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "LOGIN" => Some(Mechanism::Login),
            "XOAUTH2" => Some(Mechanism::Xoauth2),
            "OAUTHBEARER" => Some(Mechanism::Oauthbearer),
            _ => None,
        }
    }

    /// The JSON error challenge sent before the final failure of a bearer mechanism, as
    /// Dovecot 2.3 sends it (Google and Microsoft send the same shape for XOAUTH2; RFC 7628
    /// §3.2.2 names the OAUTHBEARER status `invalid_token`).
    pub(super) fn error_challenge(self) -> &'static str {
        match self {
            Mechanism::Oauthbearer => r#"{"status":"invalid_token"}"#,
            _ => r#"{"status":"401","schemes":"bearer","scope":"mail"}"#,
        }
    }
}

/// What a bearer mechanism's client response says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Bearer<'a> {
    /// The user it logs in as; OAUTHBEARER may leave it to the token.
    pub(super) user: Option<String>,
    pub(super) token: &'a str,
}

/// Parses an XOAUTH2 (`user=U^Aauth=Bearer T^A^A`) or OAUTHBEARER (`n,a=U,^Ahost=H^Aport=P^A
/// auth=Bearer T^A^A`, RFC 7628 §3.1) client response; `None` when it is malformed.
pub(super) fn parse_bearer(mechanism: Mechanism, message: &[u8]) -> Option<Bearer<'_>> {
    let text = std::str::from_utf8(message).ok()?;
    let body = text.strip_suffix("\x01\x01")?;
    let (mut user, pairs) = match mechanism {
        Mechanism::Oauthbearer => {
            let (gs2, pairs) = body.split_once('\x01')?;
            // gs2-header: no channel binding ("n" or "y"), then an optional authzid.
            let mut fields = gs2.split(',');
            if !matches!(fields.next(), Some("n" | "y")) {
                return None;
            }
            let authzid = fields.next()?;
            let user = match authzid.strip_prefix("a=") {
                Some(name) => Some(name.replace("=2C", ",").replace("=3D", "=")),
                None if authzid.is_empty() => None,
                None => return None,
            };
            (user, pairs)
        }
        _ => (None, body),
    };
    let mut token = None;
    for pair in pairs.split('\x01') {
        let (key, value) = pair.split_once('=')?;
        match key {
            "user" if mechanism == Mechanism::Xoauth2 => user = Some(value.to_string()),
            "auth" => {
                let (scheme, credentials) = value.split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                token = Some(credentials.trim());
            }
            _ => {}
        }
    }
    if mechanism == Mechanism::Xoauth2 && user.is_none() {
        return None;
    }
    Some(Bearer {
        user,
        token: token.filter(|t| !t.is_empty())?,
    })
}

/// A line without its CRLF (or bare LF).
pub(super) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A scripted reply as it goes on the wire: `\n`-separated lines joined by CRLF, CRLF at the end.
pub(super) fn wire_reply(text: &str) -> String {
    let mut wire = String::with_capacity(text.len() + 4);
    for line in text.trim_end_matches(['\r', '\n']).split('\n') {
        wire.push_str(line.trim_end_matches('\r'));
        wire.push_str("\r\n");
    }
    wire
}

/// `code-line` … `code line`, joined by CRLF without the final one.
pub(super) fn multiline(code: &str, lines: &[String]) -> String {
    let last = lines.len().saturating_sub(1);
    let mut reply = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        reply.push_str(&format!("{code}{sep}{line}"));
        if i != last {
            reply.push_str("\r\n");
        }
    }
    reply
}

/// Splits `FROM:<a@b> PARAMS` (keyword case-insensitive, spaces after the colon tolerated)
/// into the address and the parameters.
pub(super) fn parse_path<'a>(args: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = args[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}
