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

/// Parses a target, using `default_port` when it names none. Refuses line breaks, NUL,
/// whitespace, URLs, unbracketed IPv6 and anything that is not a plausible host, so that a
/// target string cannot smuggle anything into logs, SNI or the conversation.
pub fn parse_target(target: &str, default_port: u16) -> Result<Target, String> {
    let shown = || target;
    if target.is_empty() {
        return Err("target is empty".to_string());
    }
    if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "target {:?} contains a space, line break or control character",
            shown()
        ));
    }
    if target.contains("://") {
        return Err(format!(
            "target {:?} must be host[:port], not a URL",
            shown()
        ));
    }
    let port = |text: &str| -> Result<u16, String> {
        match text.parse::<u16>() {
            Ok(port) if port != 0 => Ok(port),
            _ => Err(format!(
                "target {:?}: port {:?} must be a number from 1 to 65535",
                shown(),
                text
            )),
        }
    };
    if let Some(rest) = target.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!(
                "target {:?}: missing ] after the IPv6 address",
                shown()
            ));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(format!(
                "target {:?}: {:?} is not an IPv6 address",
                shown(),
                inside
            ));
        }
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(text) => port(text)?,
                None => {
                    return Err(format!(
                        "target {:?}: expected :port after the IPv6 address",
                        shown()
                    ))
                }
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
        Some(_) => {
            return Err(format!(
                "target {:?}: an IPv6 address must be in brackets, like [2001:db8::1]:25",
                shown()
            ))
        }
    };
    let valid_host = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !valid_host {
        return Err(format!(
            "target {:?}: host {:?} is not a DNS name or IP address (internationalised names \
             in their xn-- form)",
            shown(),
            host
        ));
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
}
