//! Probe targets: `host`, `host:port`, `[v6]:port` or a bare IPv6 address.

use std::net::Ipv6Addr;

/// A target split into host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a target string is not a target. Each message quotes the target (escaped), so that
/// nothing in it reaches a log or a page raw.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing was given.
    #[error("target is empty")]
    Empty,
    /// A space, a line break or another control character.
    #[error("target {0:?} contains a space, line break or control character")]
    Unprintable(String),
    /// `scheme://…`.
    #[error("target {0:?} must be host[:port], not a URL")]
    Url(String),
    /// The port is not 1 to 65535.
    #[error("target {target:?}: port {port:?} must be a number from 1 to 65535")]
    Port {
        /// The target.
        target: String,
        /// The port as written.
        port: String,
    },
    /// `[` without `]`.
    #[error("target {0:?}: missing ] after the IPv6 address")]
    UnclosedBracket(String),
    /// Something other than an IPv6 address in brackets.
    #[error("target {target:?}: {inside:?} is not an IPv6 address")]
    NotIpv6 {
        /// The target.
        target: String,
        /// What the brackets hold.
        inside: String,
    },
    /// Something other than `:port` after the brackets.
    #[error("target {0:?}: expected :port after the IPv6 address")]
    AfterBracket(String),
    /// An IPv6 address without brackets: its colons would be taken for a port.
    #[error("target {0:?}: an IPv6 address must be in brackets, like [2001:db8::1]:25")]
    UnbracketedIpv6(String),
    /// Not a plausible DNS name or IPv4 address.
    #[error(
        "target {target:?}: host {host:?} is not a DNS name or IP address (internationalised \
         names in their xn-- form)"
    )]
    Host {
        /// The target.
        target: String,
        /// The host part.
        host: String,
    },
}

/// Parses a target, using `default_port` when it names none. Refuses line breaks, NUL,
/// whitespace, URLs, unbracketed IPv6 and anything that is not a plausible host, so that a
/// target string cannot smuggle anything into logs, SNI or the conversation.
pub fn parse_target(target: &str, default_port: u16) -> Result<Target, TargetError> {
    let owned = || target.to_string();
    if target.is_empty() {
        return Err(TargetError::Empty);
    }
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TargetError::Unprintable(owned()));
    }
    if target.contains("://") {
        return Err(TargetError::Url(owned()));
    }
    let port = |text: &str| match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(TargetError::Port {
            target: owned(),
            port: text.to_string(),
        }),
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::UnclosedBracket(owned()))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(TargetError::NotIpv6 {
                target: owned(),
                inside: inside.to_string(),
            });
        }
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(text) => port(text)?,
                None => return Err(TargetError::AfterBracket(owned())),
            },
        };
        return Ok(Target {
            host: inside.to_string(),
            port,
        });
    }
    let (host, port) = match target.split_once(':') {
        None => (target, default_port),
        Some((host, text)) if !text.contains(':') => (host, port(text)?),
        Some(_) => return Err(TargetError::UnbracketedIpv6(owned())),
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid_host {
        return Err(TargetError::Host {
            target: owned(),
            host: host.to_string(),
        });
    }
    Ok(Target {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = |s| parse_target(s, 587).map(|t| (t.host, t.port));
        assert_eq!(t("smtp.example.com"), Ok(("smtp.example.com".into(), 587)));
        assert_eq!(
            t("smtp.example.com:25"),
            Ok(("smtp.example.com".into(), 25))
        );
        assert_eq!(t("127.0.0.1:2525"), Ok(("127.0.0.1".into(), 2525)));
        assert_eq!(t("[::1]:465"), Ok(("::1".into(), 465)));
        assert_eq!(t("[::1]"), Ok(("::1".into(), 587)));
        assert_eq!(
            parse_target("[::1]:465", 1).unwrap().to_string(),
            "[::1]:465"
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            "ho st",
            "host\r\nEHLO",
            "[::1",
            "[::1]x",
            "bad/host",
            "host\0",
        ] {
            assert!(parse_target(bad, 25).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_target_accepts_host_port_forms() {
        let ok = |s: &str| {
            let t = parse_target(s, 587).unwrap();
            (t.host, t.port)
        };
        assert_eq!(ok("smtp.example.com"), ("smtp.example.com".into(), 587));
        assert_eq!(ok("smtp.example.com:25"), ("smtp.example.com".into(), 25));
        assert_eq!(ok("192.0.2.1:465"), ("192.0.2.1".into(), 465));
        assert_eq!(ok("[2001:db8::1]"), ("2001:db8::1".into(), 587));
        assert_eq!(ok("[2001:db8::1]:25"), ("2001:db8::1".into(), 25));

        let err = |s: &str| parse_target(s, 587).unwrap_err().to_string();
        assert_eq!(err(""), "target is empty");
        assert_eq!(
            err("2001:db8::1"),
            "target \"2001:db8::1\": an IPv6 address must be in brackets, like [2001:db8::1]:25"
        );
        assert_eq!(
            err("mx.example.com:0"),
            "target \"mx.example.com:0\": port \"0\" must be a number from 1 to 65535"
        );
        assert_eq!(
            err("mx.example.com:smtp"),
            "target \"mx.example.com:smtp\": port \"smtp\" must be a number from 1 to 65535"
        );
        assert_eq!(
            err("mx.example.com\r\nQUIT"),
            "target \"mx.example.com\\r\\nQUIT\" contains a space, line break or control character"
        );
        assert_eq!(
            err("a\0b"),
            "target \"a\\0b\" contains a space, line break or control character"
        );
        assert_eq!(
            err("smtp://mx.example.com"),
            "target \"smtp://mx.example.com\" must be host[:port], not a URL"
        );
        assert_eq!(
            err("[zz]:25"),
            "target \"[zz]:25\": \"zz\" is not an IPv6 address"
        );
        assert_eq!(
            err("user@mx.example.com"),
            "target \"user@mx.example.com\": host \"user@mx.example.com\" is not a DNS name or IP \
             address (internationalised names in their xn-- form)"
        );
    }
}
