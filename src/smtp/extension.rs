//! ESMTP service extensions announced in the EHLO reply (RFC 5321 §4.1.1.1 and the RFCs of each
//! keyword: 3207 STARTTLS, 4954 AUTH, 1870 SIZE, 2920 PIPELINING, 6152 8BITMIME, 6531 SMTPUTF8,
//! 2034 ENHANCEDSTATUSCODES, 3030 CHUNKING/BINARYMIME, 3461 DSN, 8689 REQUIRETLS).

use super::reply::Reply;

/// One EHLO keyword with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extension {
    /// STARTTLS: the server can upgrade the connection to TLS.
    StartTls,
    /// AUTH with the offered SASL mechanisms, upper case.
    Auth(Vec<String>),
    /// SIZE with the maximum message size in bytes, if given (0 means no fixed limit).
    Size(Option<u64>),
    /// PIPELINING.
    Pipelining,
    /// 8BITMIME.
    EightBitMime,
    /// SMTPUTF8.
    SmtpUtf8,
    /// ENHANCEDSTATUSCODES.
    EnhancedStatusCodes,
    /// CHUNKING (BDAT).
    Chunking,
    /// BINARYMIME.
    BinaryMime,
    /// DSN.
    Dsn,
    /// REQUIRETLS.
    RequireTls,
    /// Any other keyword, upper case, with its parameters as sent.
    Other { keyword: String, params: String },
}

impl Extension {
    /// Parses one EHLO line after the first (the first line is the server's name).
    pub fn parse(line: &str) -> Option<Extension> {
        let line = line.trim();
        let (keyword, params) = match line.split_once([' ', '=']) {
            Some((k, p)) => (k, p.trim()),
            None => (line, ""),
        };
        if keyword.is_empty()
            || !keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        let keyword = keyword.to_ascii_uppercase();
        Some(match keyword.as_str() {
            "STARTTLS" => Extension::StartTls,
            "AUTH" => Extension::Auth(
                params
                    .split_whitespace()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
            ),
            "SIZE" => Extension::Size(
                params
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok()),
            ),
            "PIPELINING" => Extension::Pipelining,
            "8BITMIME" => Extension::EightBitMime,
            "SMTPUTF8" => Extension::SmtpUtf8,
            "ENHANCEDSTATUSCODES" => Extension::EnhancedStatusCodes,
            "CHUNKING" => Extension::Chunking,
            "BINARYMIME" => Extension::BinaryMime,
            "DSN" => Extension::Dsn,
            "REQUIRETLS" => Extension::RequireTls,
            _ => Extension::Other {
                keyword,
                params: params.to_string(),
            },
        })
    }

    /// The keyword alone, upper case: a bounded label value for metrics.
    pub fn keyword(&self) -> &str {
        match self {
            Extension::StartTls => "STARTTLS",
            Extension::Auth(_) => "AUTH",
            Extension::Size(_) => "SIZE",
            Extension::Pipelining => "PIPELINING",
            Extension::EightBitMime => "8BITMIME",
            Extension::SmtpUtf8 => "SMTPUTF8",
            Extension::EnhancedStatusCodes => "ENHANCEDSTATUSCODES",
            Extension::Chunking => "CHUNKING",
            Extension::BinaryMime => "BINARYMIME",
            Extension::Dsn => "DSN",
            Extension::RequireTls => "REQUIRETLS",
            Extension::Other { keyword, .. } => keyword,
        }
    }

    /// The keyword with its parameters, as a person reads it (`AUTH PLAIN LOGIN`, `SIZE 10240000`):
    /// printable and bounded, since the parameters are the server's.
    pub fn describe(&self) -> String {
        let text = match self {
            Extension::Auth(m) if !m.is_empty() => format!("AUTH {}", m.join(" ")),
            Extension::Size(Some(n)) => format!("SIZE {n}"),
            Extension::Other { keyword, params } if !params.is_empty() => {
                format!("{keyword} {params}")
            }
            other => other.keyword().to_string(),
        };
        crate::printable::shown(&text)
    }
}

/// What the server said about itself in its EHLO reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// The name in the first line of the reply.
    pub name: String,
    /// The keywords, in the order sent; lines that are not keywords are skipped.
    pub extensions: Vec<Extension>,
}

impl ServerInfo {
    /// Reads a 250 EHLO reply.
    pub fn from_ehlo(reply: &Reply) -> ServerInfo {
        let name = reply
            .lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let extensions = reply
            .lines
            .iter()
            .skip(1)
            .filter_map(|l| Extension::parse(l))
            .collect();
        ServerInfo { name, extensions }
    }

    /// Whether STARTTLS is offered.
    pub fn supports_starttls(&self) -> bool {
        self.extensions.contains(&Extension::StartTls)
    }

    /// Whether SMTPUTF8 is offered.
    pub fn supports_smtputf8(&self) -> bool {
        self.extensions.contains(&Extension::SmtpUtf8)
    }

    /// The AUTH mechanisms offered (all AUTH lines merged, duplicates removed).
    pub fn auth_mechanisms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for ext in &self.extensions {
            if let Extension::Auth(mechs) = ext {
                for m in mechs {
                    if !out.contains(m) {
                        out.push(m.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::{parse_reply, ReplyLimits};

    fn info(raw: &str) -> ServerInfo {
        let (reply, _) = parse_reply(raw.as_bytes(), &ReplyLimits::default())
            .unwrap()
            .unwrap();
        ServerInfo::from_ehlo(&reply)
    }

    #[test]
    fn postfix_ehlo() {
        let i = info(
            "250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n\
             250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n\
             250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n",
        );
        assert_eq!(i.name, "mail.example.com");
        assert!(i.supports_starttls());
        assert!(i.supports_smtputf8());
        assert_eq!(i.auth_mechanisms(), vec!["PLAIN", "LOGIN"]);
        assert!(i.extensions.contains(&Extension::Size(Some(10_240_000))));
        assert!(i.extensions.contains(&Extension::Pipelining));
        assert!(i.extensions.contains(&Extension::EightBitMime));
        assert!(i.extensions.contains(&Extension::EnhancedStatusCodes));
        assert!(i.extensions.contains(&Extension::Chunking));
        assert!(i.extensions.contains(&Extension::Dsn));
        assert!(i.extensions.contains(&Extension::Other {
            keyword: "VRFY".into(),
            params: String::new()
        }));
        let described: Vec<String> = i.extensions.iter().map(Extension::describe).collect();
        assert!(described.contains(&"AUTH PLAIN LOGIN".to_string()));
        assert!(described.contains(&"SIZE 10240000".to_string()));
    }

    #[test]
    fn office365_style_and_oddities() {
        let i = info("250-SN4PR0201CA0047.outlook.office365.com Hello [192.0.2.1]\r\n250-SIZE 157286400\r\n250-AUTH LOGIN XOAUTH2\r\n250-BINARYMIME\r\n250 smtputf8\r\n");
        assert_eq!(i.name, "SN4PR0201CA0047.outlook.office365.com");
        assert!(!i.supports_starttls());
        assert_eq!(i.auth_mechanisms(), vec!["LOGIN", "XOAUTH2"]);
        assert!(i.supports_smtputf8(), "keywords are case-insensitive");
        assert_eq!(Extension::parse("SIZE"), Some(Extension::Size(None)));
        assert_eq!(Extension::parse("  "), None);
        assert_eq!(Extension::parse("bad*keyword"), None);
        assert_eq!(
            Extension::parse("auth login").map(|e| e.describe()),
            Some("AUTH LOGIN".into())
        );
    }
}
