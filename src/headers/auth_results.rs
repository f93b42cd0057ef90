//! `Authentication-Results:` (RFC 8601): what the receiving side concluded about SPF, DKIM and
//! DMARC (and ARC) for the delivered mail, the usual explanation of a token mail in Junk.
//!
//! `authserv-id [version] ; method[/version]=result [reason=…] [ptype.property=value …] ; …`, or
//! `authserv-id; none`. Exchange Online leaves out the authserv-id (`spf=pass (…)
//! smtp.mailfrom=…;dkim=…`); that is read too. Only the methods and results of the IANA
//! registries are kept, as `'static` words, so they are safe as label values; anything else is
//! `other`.
//!
//! Which field to believe: a mail may carry several, and only those added by the mailbox's own
//! side mean anything (an earlier hop's, or one the sender forged, do not). The mailbox's side
//! adds its field last, so each method is taken from the newest field that has it.

use super::{split_outside, strip_comments, token};

/// The methods reported, as label values.
pub const METHODS: [&str; 4] = ["spf", "dkim", "dmarc", "arc"];

/// The results of RFC 8601 §2.7 (and the registry's additions), as label values; any other
/// result word is [`OTHER`].
const RESULTS: [&str; 12] = [
    "pass",
    "fail",
    "softfail",
    "neutral",
    "none",
    "temperror",
    "permerror",
    "policy",
    "hardfail",
    "bestguesspass",
    "discard",
    "quarantine",
];
/// A result word outside [`RESULTS`].
pub const OTHER: &str = "other";
/// The most characters kept of an authserv-id or a property.
const MAX_TEXT: usize = 64;
/// The most verdicts kept from one mail (several DKIM signatures each have one).
pub const MAX_VERDICTS: usize = 16;

/// One method's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `spf`, `dkim`, `dmarc` or `arc`.
    pub method: &'static str,
    /// `pass`, `fail`, … or [`OTHER`].
    pub result: &'static str,
    /// Who concluded it (the field's authserv-id), when it says.
    pub authserv_id: Option<String>,
    /// The first property given (`header.d=example.net`, `smtp.mailfrom=…`), cut and plain.
    pub property: Option<String>,
}

/// The verdicts of every method, each from the newest field that has it. `newest_first` are the
/// unfolded values of the `Authentication-Results:` fields in the order they appear.
pub fn verdicts(newest_first: &[String]) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    for field in newest_first {
        let parsed = parse(field);
        let seen: Vec<&'static str> = out.iter().map(|v| v.method).collect();
        for v in parsed {
            if !seen.contains(&v.method) && out.len() < MAX_VERDICTS {
                out.push(v);
            }
        }
    }
    out
}

/// The verdicts of one field, for the methods of [`METHODS`].
pub fn parse(value: &str) -> Vec<Verdict> {
    let parts = split_outside(value, ';');
    let mut parts = parts.iter();
    let first = parts.next().map(|p| strip_comments(p)).unwrap_or_default();
    let (authserv_id, first_resinfo) = if first.contains('=') {
        // No authserv-id (Exchange Online): the first part is already a result.
        (None, Some(first))
    } else {
        let id = first
            .split_whitespace()
            .next()
            .and_then(|w| token(w, MAX_TEXT));
        (id, None)
    };
    first_resinfo
        .into_iter()
        .chain(parts.map(|p| strip_comments(p)))
        .filter_map(|resinfo| resinfo_verdict(&resinfo, authserv_id.as_ref()))
        .take(MAX_VERDICTS)
        .collect()
}

/// `method[/version] = result [reason=…] [properties]` (comments already removed).
fn resinfo_verdict(resinfo: &str, authserv_id: Option<&String>) -> Option<Verdict> {
    let (method, rest) = resinfo.split_once('=')?;
    let method = method.split('/').next()?.trim().to_ascii_lowercase();
    let method = METHODS.into_iter().find(|m| *m == method)?;
    let mut words = rest.split_whitespace();
    let result = words.next()?.to_ascii_lowercase();
    let result = RESULTS.into_iter().find(|r| *r == result).unwrap_or(OTHER);
    let property = words
        .find(|w| {
            w.split_once('=')
                .is_some_and(|(k, _)| k.contains('.') && !k.eq_ignore_ascii_case("reason"))
        })
        .and_then(plain);
    Some(Verdict {
        method,
        result,
        authserv_id: authserv_id.cloned(),
        property,
    })
}

/// A property as `ptype.name=value`, lowercased, cut, with nothing but plain characters.
fn plain(word: &str) -> Option<String> {
    let (key, value) = word.split_once('=')?;
    Some(format!("{}={}", token(key, 24)?, token(value, MAX_TEXT)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(
        method: &'static str,
        result: &'static str,
        id: Option<&str>,
        property: Option<&str>,
    ) -> Verdict {
        Verdict {
            method,
            result,
            authserv_id: id.map(str::to_string),
            property: property.map(str::to_string),
        }
    }

    /// Fields composed after RFC 8601 §B and the providers' documented formats.
    #[test]
    fn fields_as_providers_write_them() {
        let table: &[(&str, &str, Vec<Verdict>)] = &[
            (
                "Gmail",
                "mx.google.com; dkim=pass header.i=@example.net header.s=s1 header.b=AbCdEf12; spf=pass (google.com: domain of probe@example.net designates 192.0.2.10 as permitted sender) smtp.mailfrom=probe@example.net; dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=example.net",
                vec![
                    v("dkim", "pass", Some("mx.google.com"), Some("header.i=@example.net")),
                    v("spf", "pass", Some("mx.google.com"), Some("smtp.mailfrom=probe@example.net")),
                    v("dmarc", "pass", Some("mx.google.com"), Some("header.from=example.net")),
                ],
            ),
            (
                "Exchange Online (no authserv-id, compauth ignored)",
                "spf=softfail (sender IP is 192.0.2.10) smtp.mailfrom=example.net; dkim=none (message not signed) header.d=none;dmarc=fail action=quarantine header.from=example.net;compauth=fail reason=001",
                vec![
                    v("spf", "softfail", None, Some("smtp.mailfrom=example.net")),
                    v("dkim", "none", None, Some("header.d=none")),
                    v("dmarc", "fail", None, Some("header.from=example.net")),
                ],
            ),
            (
                "OpenDKIM / OpenDMARC with a version and reason",
                "mail.example.org 1; dkim=fail reason=\"signature verification failed\" (2048-bit key; unprotected) header.d=example.net header.i=@example.net header.b=\"xYz\"",
                vec![v("dkim", "fail", Some("mail.example.org"), Some("header.d=example.net"))],
            ),
            (
                "several DKIM signatures, method versions, spaces around '='",
                "mx.example.org; dkim/1 = pass header.d=example.net; dkim=fail header.d=other.example; arc = none",
                vec![
                    v("dkim", "pass", Some("mx.example.org"), Some("header.d=example.net")),
                    v("dkim", "fail", Some("mx.example.org"), Some("header.d=other.example")),
                    v("arc", "none", Some("mx.example.org"), None),
                ],
            ),
            ("no result", "mx.example.org; none", vec![]),
            (
                "unknown method and result words",
                "mx.example.org; iprev=pass policy.iprev=192.0.2.1; spf=maybe smtp.mailfrom=a@b",
                vec![v("spf", "other", Some("mx.example.org"), Some("smtp.mailfrom=a@b"))],
            ),
            (
                "upper case",
                "MX.Example.ORG; SPF=PASS SMTP.MAILFROM=A@EXAMPLE.NET",
                vec![v("spf", "pass", Some("mx.example.org"), Some("smtp.mailfrom=a@example.net"))],
            ),
        ];
        for (what, field, want) in table {
            assert_eq!(&parse(field), want, "{what}");
        }
    }

    #[test]
    fn each_method_from_the_newest_field() {
        // The mailbox's side (newest, first) says dkim=fail; an earlier hop said pass and has
        // an SPF result the newest one lacks.
        let fields = [
            "imap.example.org; dkim=fail header.d=example.net; dmarc=fail header.from=example.net"
                .to_string(),
            "relay.example.org; dkim=pass header.d=example.net; spf=pass smtp.mailfrom=example.net"
                .to_string(),
        ];
        let got = verdicts(&fields);
        let summary: Vec<(&str, &str, Option<&str>)> = got
            .iter()
            .map(|v| (v.method, v.result, v.authserv_id.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("dkim", "fail", Some("imap.example.org")),
                ("dmarc", "fail", Some("imap.example.org")),
                ("spf", "pass", Some("relay.example.org")),
            ]
        );
    }

    #[test]
    fn hostile_fields_stay_bounded() {
        let flood = "dkim=pass header.d=x;".repeat(1000);
        assert_eq!(parse(&format!("mx; {flood}")).len(), MAX_VERDICTS);
        let many: Vec<String> = (0..100)
            .map(|_| "mx; spf=pass; dkim=fail".to_string())
            .collect();
        assert_eq!(verdicts(&many).len(), 2);
        let long = format!(
            "{}; dkim=pass header.d={}\u{1b}[2J",
            "a".repeat(5000),
            "b".repeat(5000)
        );
        let got = parse(&long);
        assert_eq!(got[0].authserv_id.as_ref().map(String::len), Some(MAX_TEXT));
        let prop = got[0].property.as_deref().unwrap_or_default();
        assert!(
            prop.len() <= 24 + 1 + MAX_TEXT && prop.starts_with("header.d=bbb"),
            "{prop}"
        );
        assert!(parse("").is_empty());
        assert!(parse("=;=;=").is_empty());
        assert!(parse(&"(".repeat(10_000)).is_empty());
    }
}
