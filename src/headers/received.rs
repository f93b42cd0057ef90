//! The `Received:` trace of a delivered mail (RFC 5321 §4.4, RFC 5322 §3.6.7): each server that
//! took the mail put one on top, `from <name> (<what it saw>) by <itself> via … with <protocol>
//! id … for <recipient>; <date>`, so read bottom up they are the hops the mail took, each with
//! the time it arrived there. The hop split ([`hops`]) is the time between consecutive stamps.
//!
//! Real trace fields stray from the grammar (Exchange's `with Microsoft SMTP Server (…)`, Gmail's
//! `by 2002:a05:…` without a `from`, qmail's comment-only fields, dates in every variant
//! [`super::date`] knows): each clause is read if it is there, nothing is required, and a field
//! without a readable date still names its hop.

use super::{date, split_outside, token};

/// The most characters kept of a host name (a label value) or protocol.
pub const MAX_NAME: usize = 64;
/// Received dates have one-second resolution: a hop up to this much negative is rounding,
/// beyond it the two hosts' clocks disagree.
pub const RESOLUTION: f64 = 1.0;

/// What one `Received:` field says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The name the sending host gave (`from` clause), lowercased and cut.
    pub from: Option<String>,
    /// The address the receiving host saw it connect from (the `[…]` literal in the comment
    /// after `from`).
    pub from_ip: Option<String>,
    /// The receiving host (`by` clause).
    pub by: Option<String>,
    /// The protocol (`with` clause: `esmtps`, `lmtp`, `microsoft smtp server`, …).
    pub with: Option<String>,
    /// When the receiving host took the mail, in Unix seconds.
    pub date: Option<i64>,
}

/// Reads one unfolded `Received:` value.
pub fn parse(value: &str) -> Received {
    let parts = split_outside(value, ';');
    let (clauses, stamp) = match parts.as_slice() {
        [only] => (*only, None),
        [.., last] => {
            let end = value.len() - last.len() - 1;
            (&value[..end], Some(*last))
        }
        [] => (value, None),
    };
    let mut r = Received {
        date: stamp.and_then(date::parse),
        ..Received::default()
    };
    let mut keyword: Option<&'static str> = None;
    let mut with: Vec<String> = Vec::new();
    for piece in pieces(clauses) {
        match piece {
            Piece::Comment(c) => {
                if keyword == Some("from") && r.from_ip.is_none() {
                    r.from_ip = address_literal(c);
                }
            }
            Piece::Word(w) => {
                if let Some(k) = clause_keyword(w) {
                    keyword = Some(k);
                    continue;
                }
                match keyword {
                    Some("from") if r.from.is_none() => r.from = token(w, MAX_NAME),
                    Some("by") if r.by.is_none() => r.by = token(w, MAX_NAME),
                    Some("with") if with.len() < 4 => with.extend(token(w, MAX_NAME)),
                    _ => {}
                }
            }
        }
    }
    if !with.is_empty() {
        let joined = with.join(" ");
        r.with = Some(joined.chars().take(MAX_NAME).collect());
    }
    r
}

/// The clause keywords of RFC 5321 §4.4 (`Stamp`), any case.
fn clause_keyword(word: &str) -> Option<&'static str> {
    ["from", "by", "via", "with", "id", "for"]
        .into_iter()
        .find(|k| word.eq_ignore_ascii_case(k))
}

/// The first `[…]` address literal in a comment (`mx1.example.net [192.0.2.1]`,
/// `[IPv6:2001:db8::1]`), or a bare address (`(2603:10a6:20b:100::12)`).
fn address_literal(comment: &str) -> Option<String> {
    if let Some(open) = comment.find('[') {
        let rest = &comment[open + 1..];
        let inner = &rest[..rest.find(']')?];
        let inner = inner.strip_prefix("IPv6:").unwrap_or(inner);
        return token(inner, MAX_NAME).filter(|t| t.parse::<std::net::IpAddr>().is_ok());
    }
    comment
        .split_whitespace()
        .find_map(|w| w.parse::<std::net::IpAddr>().ok())
        .map(|ip| ip.to_string())
}

enum Piece<'a> {
    Word(&'a str),
    /// The text inside one top-level comment (nested ones included).
    Comment(&'a str),
}

/// Words and top-level comments of the clause part, in order.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start: Option<usize> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if depth > 0 {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Some(s) = start.take() {
                            out.push(Piece::Comment(&text[s..i]));
                        }
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '(' => {
                if let Some(s) = start.take() {
                    out.push(Piece::Word(&text[s..i]));
                }
                depth = 1;
                start = Some(i + 1);
            }
            c if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push(Piece::Word(&text[s..i]));
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(if depth > 0 {
            Piece::Comment(&text[s..])
        } else {
            Piece::Word(&text[s..])
        });
    }
    out
}

/// One hop of the mail's way: the host that took it and how long that took since the hop
/// before.
#[derive(Clone, Debug, PartialEq)]
pub struct Hop {
    /// 1 for the first server after the prober, counting up to the mailbox.
    pub index: usize,
    /// The `Received:` field of the hop.
    pub received: Received,
    /// Seconds from the previous stamp (for the first hop: from the second in which the
    /// submission server accepted the mail, since the stamps are whole seconds) to this hop's
    /// stamp. `None` when either date is unreadable. Negative when the clocks disagree:
    /// reported as it is.
    pub seconds: Option<f64>,
    /// Whether the hop is negative beyond the dates' resolution (and, for the first hop, the
    /// time the submission itself took): the hosts' clocks disagree.
    pub clock_skew: bool,
}

/// The hops of a trace given newest first (as the fields appear), oldest first. `accepted` is
/// when the submission server accepted the mail (Unix seconds, with fraction) and `submitting`
/// how long the transaction took before that (MAIL to the final reply): the first server stamps
/// when it began to receive, so its stamp may come up to that much (plus the resolution) before
/// `accepted` without any clock being wrong. The stamps have whole seconds, so the first hop
/// counts from the whole second of `accepted`: a mail stamped in the second it was accepted
/// took 0 s there, not minus the fraction, and so did one stamped in an earlier second while
/// it was being submitted (DATA began before a second's turn, the final reply came after it).
/// The hops add up to the delivery time within a second.
pub fn hops(newest_first: &[String], accepted: f64, submitting: f64) -> Vec<Hop> {
    let submission_began = (accepted - submitting.max(0.0)).floor();
    let mut previous = Some(accepted.floor());
    newest_first
        .iter()
        .rev()
        .enumerate()
        .map(|(i, value)| {
            let received = parse(value);
            let stamp = received.date.map(|d| d as f64);
            let seconds = match (previous, stamp) {
                (Some(p), Some(s)) if i == 0 && s < p && s >= submission_began => Some(0.0),
                (Some(p), Some(s)) => Some(s - p),
                _ => None,
            };
            let allowed = if i == 0 {
                RESOLUTION + submitting.max(0.0)
            } else {
                RESOLUTION
            };
            previous = stamp;
            Hop {
                index: i + 1,
                received,
                seconds,
                clock_skew: seconds.is_some_and(|s| s < -allowed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T13:00:00Z.
    const T: i64 = 1_796_043_600;

    fn r(
        from: Option<&str>,
        ip: Option<&str>,
        by: Option<&str>,
        with: Option<&str>,
        date: Option<i64>,
    ) -> Received {
        Received {
            from: from.map(str::to_string),
            from_ip: ip.map(str::to_string),
            by: by.map(str::to_string),
            with: with.map(str::to_string),
            date,
        }
    }

    /// Trace fields as the common servers write them, composed after RFC 5321 §4.4 and the
    /// servers' documented formats (names and addresses from the documentation ranges).
    #[test]
    fn real_world_trace_fields() {
        let table: &[(&str, &str, Received)] = &[
            (
                "Postfix submission (ESMTPSA, TLS comment, authenticated sender)",
                "from client.example.net (client.example.net [192.0.2.10]) (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256) (No client certificate requested) (Authenticated sender: probe@example.net) by smtp.example.net (Postfix) with ESMTPSA id 4QbXyZ1abcz9sT for <inbox@example.org>; Mon, 30 Nov 2026 13:00:00 +0000 (UTC)",
                r(Some("client.example.net"), Some("192.0.2.10"), Some("smtp.example.net"), Some("esmtpsa"), Some(T)),
            ),
            (
                "Postfix relay to the next MX",
                "from smtp.example.net (smtp.example.net [198.51.100.7]) by mx1.example.org (Postfix) with ESMTPS id 4QbXz01kq5z1xyz for <inbox@example.org>; Mon, 30 Nov 2026 14:00:02 +0100 (CET)",
                r(Some("smtp.example.net"), Some("198.51.100.7"), Some("mx1.example.org"), Some("esmtps"), Some(T + 2)),
            ),
            (
                "Dovecot LMTP delivery",
                "from mx1.example.org ([127.0.0.1]) by imap1.example.org with LMTP id 0Ci9KxYtZ2X4BQAA0J78UA (envelope-from <probe@example.net>) for <inbox@example.org>; Mon, 30 Nov 2026 13:00:03 +0000",
                r(Some("mx1.example.org"), Some("127.0.0.1"), Some("imap1.example.org"), Some("lmtp"), Some(T + 3)),
            ),
            (
                "Exchange Online, between its own servers (IPv6 without brackets)",
                "from AM6PR02MB1234.eurprd02.prod.outlook.com (2603:10a6:20b:100::12) by DB9PR02MB5678.eurprd02.prod.outlook.com (2603:10a6:10:1f0::16) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.20; Mon, 30 Nov 2026 13:00:04 +0000",
                r(Some("am6pr02mb1234.eurprd02.prod.outlook.com"), Some("2603:10a6:20b:100::12"), Some("db9pr02mb5678.eurprd02.prod.outlook.com"), Some("microsoft smtp server"), Some(T + 4)),
            ),
            (
                "Exchange Online, from the internet (Frontend Transport)",
                "from mx1.example.net (192.0.2.25) by AM4PEPF00027A5F.mail.protection.outlook.com (10.167.16.85) with Microsoft SMTP Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.7633.15 via Frontend Transport; Mon, 30 Nov 2026 13:00:05 +0000",
                r(Some("mx1.example.net"), Some("192.0.2.25"), Some("am4pepf00027a5f.mail.protection.outlook.com"), Some("microsoft smtp server"), Some(T + 5)),
            ),
            (
                "Gmail, accepting from the internet",
                "from mail.example.net (mail.example.net. [192.0.2.33]) by mx.google.com with ESMTPS id a640c23a62f3a-a9a1b2c3d4esi123456766b.123.2026.11.30.05.00.06 for <inbox@gmail.com> (version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256); Mon, 30 Nov 2026 05:00:06 -0800 (PST)",
                r(Some("mail.example.net"), Some("192.0.2.33"), Some("mx.google.com"), Some("esmtps"), Some(T + 6)),
            ),
            (
                "Gmail, internal hop without a from clause",
                "by 2002:a05:6a10:1234:b0:5a1:2b3c:4d5e with SMTP id x12csp123456pxb; Mon, 30 Nov 2026 05:00:07 -0800 (PST)",
                r(None, None, Some("2002:a05:6a10:1234:b0:5a1:2b3c:4d5e"), Some("smtp"), Some(T + 7)),
            ),
            (
                "Sendmail with an IPv6 literal and obsolete zone",
                "from relay.example.net (relay.example.net [IPv6:2001:db8::25]) by mail.example.org (8.17.1/8.17.1) with ESMTP id 4AUD08Ab012345 for <inbox@example.org>; Mon, 30 Nov 2026 08:00:08 EST",
                r(Some("relay.example.net"), Some("2001:db8::25"), Some("mail.example.org"), Some("esmtp"), Some(T + 8)),
            ),
            (
                "qmail, comment only, date without a day of week",
                "(qmail 12345 invoked by uid 89); 30 Nov 2026 13:00:09 -0000",
                r(None, None, None, None, Some(T + 9)),
            ),
            (
                "Exim, upper-case keywords and a nested comment",
                "FROM [192.0.2.44] (helo=client (really)) BY mx.example.org WITH esmtpsa (TLS1.3) tls TLS_AES_128_GCM_SHA256 (Exim 4.97) (envelope-from <a@example.net>) ID 1tGxyz-000ABC-DE; Mon, 30 Nov 2026 13:00:10 +0000",
                r(Some("[192.0.2.44]"), None, Some("mx.example.org"), Some("esmtpsa tls tls_aes_128_gcm_sha256"), Some(T + 10)),
            ),
            (
                "no date at all",
                "from a.example by b.example with SMTP",
                r(Some("a.example"), None, Some("b.example"), Some("smtp"), None),
            ),
            (
                "an unreadable date",
                "from a.example by b.example; sometime last week",
                r(Some("a.example"), None, Some("b.example"), None, None),
            ),
        ];
        for (what, value, want) in table {
            assert_eq!(&parse(value), want, "{what}");
        }
    }

    #[test]
    fn hostile_fields_stay_bounded() {
        let long_name = "a".repeat(5000);
        let got = parse(&format!(
            "from {long_name} by {long_name}\u{1b}[31m with {long_name}; x"
        ));
        assert_eq!(got.from.as_ref().map(String::len), Some(MAX_NAME));
        assert_eq!(got.by.as_ref().map(String::len), Some(MAX_NAME));
        assert!(got.by.as_ref().is_some_and(|b| b
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]@+/".contains(c))));
        assert_eq!(got.with.as_ref().map(|w| w.chars().count()), Some(MAX_NAME));
        let nested = "(".repeat(10_000);
        assert_eq!(parse(&nested), Received::default());
        assert_eq!(parse(";;;;"), Received::default());
        assert_eq!(parse(""), Received::default());
    }

    #[test]
    fn a_first_stamp_taken_during_the_submission_is_not_negative() {
        let trace = ["from client (localhost [127.0.0.1]) by mail.example.test (Postfix) with ESMTPSA id y; Mon, 30 Nov 2026 12:59:59 +0000".to_string()];
        // DATA began at 12:59:59.995, the final reply came at 13:00:00.002.
        let split = hops(&trace, T as f64 + 0.002, 0.007);
        assert_eq!(split[0].seconds, Some(0.0));
        assert!(!split[0].clock_skew);
        // Stamped before the submission began: the clocks disagree, reported as it is.
        let split = hops(&trace, T as f64 + 0.5, 0.007);
        assert_eq!(split[0].seconds, Some(-1.0));
        let earlier = [
            "from client by mail.example.test with ESMTPSA; Mon, 30 Nov 2026 12:59:57 +0000"
                .to_string(),
        ];
        let split = hops(&earlier, T as f64 + 0.5, 0.007);
        assert_eq!(split[0].seconds, Some(-3.0));
        assert!(split[0].clock_skew);
    }

    #[test]
    fn hops_telescope_from_the_acceptance() {
        // Newest first, as in the mail: LMTP delivery, then the submission server.
        let trace = [
            "from mail.example.test ([127.0.0.1]) by host with LMTP id x; Mon, 30 Nov 2026 13:00:02 +0000".to_string(),
            "from client (localhost [127.0.0.1]) by mail.example.test (Postfix) with ESMTPSA id y; Mon, 30 Nov 2026 13:00:00 +0000".to_string(),
        ];
        let accepted = T as f64 + 0.25;
        let split = hops(&trace, accepted, 0.1);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].index, 1);
        assert_eq!(split[0].received.by.as_deref(), Some("mail.example.test"));
        // Stamped in the second it was accepted: 0 s, not -0.25 s.
        assert_eq!(split[0].seconds, Some(0.0));
        assert!(!split[0].clock_skew);
        assert_eq!(split[1].received.by.as_deref(), Some("host"));
        assert_eq!(split[1].seconds, Some(2.0));
        let sum: f64 = split.iter().filter_map(|h| h.seconds).sum();
        assert_eq!(sum, 2.0);
        assert!((sum - ((T + 2) as f64 - accepted)).abs() < 1.0);
    }

    #[test]
    fn clock_skew_is_reported_not_hidden() {
        let trace = [
            "by c.example; Mon, 30 Nov 2026 13:00:05 +0000".to_string(),
            "by b.example; Mon, 30 Nov 2026 12:59:50 +0000".to_string(),
            "by a.example; Mon, 30 Nov 2026 13:00:00 +0000".to_string(),
        ];
        let split = hops(&trace, T as f64 + 0.5, 0.2);
        let seconds: Vec<Option<f64>> = split.iter().map(|h| h.seconds).collect();
        assert_eq!(seconds, [Some(0.0), Some(-10.0), Some(15.0)]);
        let skewed: Vec<bool> = split.iter().map(|h| h.clock_skew).collect();
        assert_eq!(skewed, [false, true, false]);
        // The first hop is allowed the resolution plus the submission's own time.
        let early = ["by a.example; Mon, 30 Nov 2026 12:59:57 +0000".to_string()];
        assert!(!hops(&early, T as f64, 2.5)[0].clock_skew);
        assert!(hops(&early, T as f64, 1.5)[0].clock_skew);
    }

    #[test]
    fn an_unreadable_date_leaves_its_hop_and_the_next_unknown() {
        let trace = [
            "by c.example; Mon, 30 Nov 2026 13:00:05 +0000".to_string(),
            "by b.example; garbage".to_string(),
            "by a.example; Mon, 30 Nov 2026 13:00:01 +0000".to_string(),
        ];
        let seconds: Vec<Option<f64>> = hops(&trace, T as f64, 0.0)
            .iter()
            .map(|h| h.seconds)
            .collect();
        assert_eq!(seconds, [Some(1.0), None, None]);
    }
}
