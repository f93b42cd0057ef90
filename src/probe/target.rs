//! Probe targets: `host`, `host:port`, `[v6]:port` or a bare IPv6 address.

use crate::smtp::command::reject_line_breaks;

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
/// whitespace and anything that is not a plausible host, so that a target string cannot smuggle
/// anything into logs, SNI or the EHLO conversation.
pub fn parse_target(s: &str, default_port: u16) -> Result<Target, String> {
    reject_line_breaks("target", s).map_err(|e| e.to_string())?;
    if s.is_empty() {
        return Err("target is empty".into());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "target {s:?} contains whitespace or a control character"
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("target {s:?}: missing ']' after an IPv6 address"))?;
        match after {
            "" => (host, None),
            p if p.starts_with(':') => (host, Some(&p[1..])),
            _ => return Err(format!("target {s:?}: unexpected text after ']'")),
        }
    } else if s.matches(':').count() > 1 {
        (s, None) // a bare IPv6 address
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port =
        match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                format!("target {s:?}: port {p:?} is not a number from 1 to 65535")
            })?,
        };
    let ip_literal = host.parse::<std::net::IpAddr>().is_ok();
    let hostname_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !(ip_literal || hostname_ok) {
        return Err(format!(
            "target {s:?}: {host:?} is not a host name or IP address"
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
        assert_eq!(t("::1"), Ok(("::1".into(), 587)));
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
