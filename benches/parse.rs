//! Reply parser throughput (RFC 5321 §4.2 replies through `smtp::reply::parse_reply`): a typical
//! EHLO reply, a 1 KiB multiline reply, and how fast hostile input is rejected: 64 KiB of
//! garbage, a line that never ends, and replies that arrive a little at a time, the way the
//! session's read loop hands them to the parser (it parses the whole buffer after every read).
//!
//! Then the delivered mail's trace: what reading a real header block costs (unfolding its
//! `Received:` and `Authentication-Results:` fields, the hop split, the verdicts), and the
//! worst the delivery check lets a mailbox hand it (48 KiB of trace fields).
//!
//! Prints figures; asserts only that each case parses (or fails) the way it should.

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{heading, result, show, Percentiles};
use smtp_prober::smtp::reply::{parse_reply, ReplyBuffer, ReplyError, ReplyLimits};

/// What a submission server (Postfix, Exchange) answers to EHLO.
const EHLO_REPLY: &str = "250-smtp.example.com Hello [192.0.2.10]\r\n\
250-SIZE 157286400\r\n\
250-PIPELINING\r\n\
250-DSN\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250-STARTTLS\r\n\
250-AUTH LOGIN XOAUTH2\r\n\
250-8BITMIME\r\n\
250-BINARYMIME\r\n\
250-CHUNKING\r\n\
250 SMTPUTF8\r\n";

/// A 1 KiB multiline reply: 16 lines of 64 bytes, CRLF included.
fn kib_reply() -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    for i in 0..16 {
        let sep = if i == 15 { ' ' } else { '-' };
        let text = format!("550{sep}5.7.1 policy line {i:02} ");
        let mut line = text.into_bytes();
        line.resize(62, b'x');
        line.extend_from_slice(b"\r\n");
        out.extend_from_slice(&line);
    }
    assert_eq!(out.len(), 1024);
    out
}

/// A reply of `lines` lines of `line_len` bytes each (CRLF included).
fn reply_of(lines: usize, line_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines * line_len);
    for i in 0..lines {
        let mut line = if i + 1 == lines { b"250 " } else { b"250-" }.to_vec();
        line.resize(line_len - 2, b'k');
        line.extend_from_slice(b"\r\n");
        out.extend_from_slice(&line);
    }
    out
}

/// Times `f` in batches for about `budget` and returns the time per call of each batch.
fn per_call(budget: Duration, mut f: impl FnMut()) -> Percentiles {
    // Find a batch size that takes about a millisecond.
    let mut batch = 1u32;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= Duration::from_micros(500) || batch >= 1 << 24 {
            break;
        }
        batch *= 2;
    }
    let mut samples = Vec::new();
    let end = Instant::now() + budget;
    while Instant::now() < end || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(t.elapsed() / batch);
    }
    Percentiles::of(&mut samples)
}

/// Feeds `reply` `step` bytes at a time through the session's `ReplyBuffer`, as its read loop
/// does. Returns the number of reads and the bytes of the reply (or the rejection).
fn feed(reply: &[u8], step: usize, limits: &ReplyLimits) -> (usize, Result<usize, ReplyError>) {
    let mut buf = ReplyBuffer::new(*limits);
    let mut calls = 0;
    for piece in reply.chunks(step) {
        buf.extend(piece);
        calls += 1;
        match buf.next_reply() {
            Ok(Some(r)) => return (calls, Ok(r.lines.iter().map(|l| l.len() + 6).sum())),
            Ok(None) => {}
            Err(e) => return (calls, Err(e)),
        }
    }
    (calls, Ok(0))
}

fn main() {
    let quick = common::quick();
    let budget = if quick {
        Duration::from_millis(20)
    } else {
        Duration::from_millis(700)
    };
    let limits = ReplyLimits::default();

    heading("reply parser throughput (parse_reply, default limits)");
    let kib = kib_reply();
    for (name, bytes) in [
        ("ehlo", EHLO_REPLY.as_bytes()),
        ("multiline_1k", kib.as_slice()),
    ] {
        let parsed = parse_reply(bytes, &limits);
        assert!(
            matches!(parsed, Ok(Some((_, used))) if used == bytes.len()),
            "{name} parses whole"
        );
        let p = per_call(budget, || {
            let _ = black_box(parse_reply(black_box(bytes), &limits));
        });
        let per_sec = 1.0 / p.median.as_secs_f64();
        let mb_s = bytes.len() as f64 * per_sec / 1e6;
        println!(
            "{name:<14} {:>5} bytes  {}  -> {:.2} M replies/s, {:.0} MB/s",
            bytes.len(),
            p.show(),
            per_sec / 1e6,
            mb_s
        );
        result(
            &format!("parse.{name}.per_reply"),
            p.median.as_nanos() as f64,
            "ns",
        );
        result(&format!("parse.{name}.replies_per_s"), per_sec, "1/s");
        result(&format!("parse.{name}.throughput"), mb_s, "MB/s");
    }

    heading("hostile input: time to reject");
    // 64 KiB of bytes that are not a reply and hold no line feed.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match (state >> 24) as u8 {
                b'\n' => b'?',
                b => b,
            }
        })
        .collect();
    // A valid start, then a line that never ends.
    let mut endless_line = b"250-".to_vec();
    endless_line.resize(64 * 1024, b'x');
    let cases: [(&str, &[u8]); 2] = [
        ("garbage_64k", &garbage),
        ("endless_line_64k", &endless_line),
    ];
    for (name, bytes) in cases {
        assert!(parse_reply(bytes, &limits).is_err(), "{name} is rejected");
        let p = per_call(budget, || {
            let _ = black_box(parse_reply(black_box(bytes), &limits));
        });
        println!("{name:<34} whole buffer at once       {}", p.show());
        result(
            &format!("parse.reject.{name}"),
            p.median.as_nanos() as f64,
            "ns",
        );
    }

    // As the session sees them: the buffer grows by one read at a time and ReplyBuffer decides
    // when to parse again (a line ended, a line began, a bound was crossed).
    let max_reply = reply_of(limits.max_lines, limits.max_bytes / limits.max_lines);
    let feeds: [(&str, &[u8], usize); 4] = [
        ("endless_line in 4 KiB reads", &endless_line, 4096),
        ("endless_line in 1-byte reads", &endless_line, 1),
        ("64 KiB reply (128 lines) in 4 KiB reads", &max_reply, 4096),
        ("64 KiB reply (128 lines) in 64-byte reads", &max_reply, 64),
    ];
    for (name, bytes, step) in feeds {
        let (calls, outcome) = feed(bytes, step, &limits);
        let what = match &outcome {
            Ok(used) => format!("parsed {used} bytes"),
            Err(e) => format!("rejected: {e}"),
        };
        let runs = if quick { 1 } else { 5 };
        let mut samples: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let _ = black_box(feed(black_box(bytes), step, &limits));
                t.elapsed()
            })
            .collect();
        let p = Percentiles::of(&mut samples);
        println!(
            "{name:<42} {calls:>6} reads   total {:>9}  ({what})",
            show(p.median)
        );
        let key = name
            .replace(" in ", "_")
            .replace([' ', '(', ')', '-'], "_")
            .replace("__", "_")
            .to_lowercase();
        result(
            &format!("parse.feed.{}", key.trim_matches('_')),
            p.median.as_nanos() as f64 / 1e3,
            "µs",
        );
    }

    mail_trace(budget);
}

/// A header block as a mail that crossed Exchange Online into a Postfix relay and a Dovecot
/// mailbox carries it: six hops and two Authentication-Results fields.
const TRACE: &str = "Received: from mx1.example.org ([127.0.0.1]) by imap1.example.org with LMTP id 0Ci9KxYtZ2X4BQAA0J78UA (envelope-from <probe@example.net>) for <inbox@example.org>; Mon, 30 Nov 2026 13:00:06 +0000\r\n\
Authentication-Results: mx1.example.org; dkim=pass header.d=example.net header.s=s1; spf=pass smtp.mailfrom=probe@example.net; dmarc=pass header.from=example.net\r\n\
Received: from relay.example.net (relay.example.net [IPv6:2001:db8::25])\r\n\tby mx1.example.org (Postfix) with ESMTPS id 4QbXz01kq5z1xyz\r\n\tfor <inbox@example.org>; Mon, 30 Nov 2026 14:00:05 +0100 (CET)\r\n\
Received: from AM6PR02MB1234.eurprd02.prod.outlook.com (2603:10a6:20b:100::12) by DB9PR02MB5678.eurprd02.prod.outlook.com (2603:10a6:10:1f0::16) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.20; Mon, 30 Nov 2026 13:00:04 +0000\r\n\
Authentication-Results: spf=pass (sender IP is 192.0.2.10) smtp.mailfrom=example.net; dkim=none (message not signed) header.d=none;dmarc=bestguesspass action=none header.from=example.net;compauth=pass reason=109\r\n\
Received: from mx1.example.net (192.0.2.25) by AM4PEPF00027A5F.mail.protection.outlook.com (10.167.16.85) with Microsoft SMTP Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.7633.15 via Frontend Transport; Mon, 30 Nov 2026 13:00:03 +0000\r\n\
Received: from client.example.net (client.example.net [192.0.2.10]) (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)) (Authenticated sender: probe@example.net) by smtp.example.net (Postfix) with ESMTPSA id 4QbXyZ1abcz9sT; Mon, 30 Nov 2026 05:00:01 -0800 (PST)\r\n\
Received: by 2002:a05:6a10:1234:b0:5a1:2b3c:4d5e with SMTP id x12csp123456pxb; Mon, 30 Nov 2026 13:00:00 +0000\r\n\
Subject: MFA delivery probe 12345678\r\n\r\n";

/// The cost of reading a delivered mail's trace, as the delivery check does once per mail.
fn mail_trace(budget: Duration) {
    use smtp_prober::headers::{auth_results, received, unfold};
    let read = |block: &[u8]| {
        let trace = unfold(block, "received");
        let hops = received::hops(&trace, 1_796_043_599.5, 0.1);
        let verdicts = auth_results::verdicts(&unfold(block, "authentication-results"));
        (hops.len(), verdicts.len())
    };
    heading("delivered mail's trace (unfold, hop split, verdicts)");
    assert_eq!(read(TRACE.as_bytes()), (6, 3));
    // The most the check reads: 48 KiB of trace fields (it keeps 32 of them).
    let line = "Received: from relay.example.net by mx.example.org with ESMTP; Mon, 30 Nov 2026 13:00:00 +0000\r\n";
    let flood: String = line.repeat(48 * 1024 / line.len());
    for (name, block) in [
        ("six_hops", TRACE.as_bytes()),
        ("flood_48k", flood.as_bytes()),
    ] {
        let p = per_call(budget, || {
            let _ = black_box(read(black_box(block)));
        });
        println!("{name:<14} {:>6} bytes  {}", block.len(), p.show());
        result(
            &format!("parse.trace.{name}"),
            p.median.as_nanos() as f64 / 1e3,
            "µs",
        );
    }
}
