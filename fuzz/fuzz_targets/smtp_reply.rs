//! The SMTP reply parser against arbitrary server bytes: never a panic, never more than the
//! limits allow, and the same replies and verdict whether the bytes come whole or in small
//! reads (the incremental buffer must agree with parsing everything at once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_prober::printable::SHOWN_BYTES;
use smtp_prober::smtp::reply::{parse_reply, Reply, ReplyBuffer, ReplyError, ReplyLimits};

/// Small limits, so that the fuzzer reaches them.
const LIMITS: ReplyLimits = ReplyLimits {
    max_line: 64,
    max_lines: 8,
    max_bytes: 256,
};

/// Every reply in `data`, parsed from the whole buffer, then how it ended.
fn whole(data: &[u8]) -> (Vec<Reply>, Option<ReplyError>) {
    let mut replies = Vec::new();
    let mut at = 0;
    loop {
        match parse_reply(&data[at..], &LIMITS) {
            Ok(Some((reply, used))) => {
                assert!(used > 0 && used <= LIMITS.max_bytes);
                at += used;
                replies.push(reply);
            }
            Ok(None) => return (replies, None),
            Err(e) => return (replies, Some(e)),
        }
    }
}

/// The same, fed to a [`ReplyBuffer`] `chunk` bytes at a time.
fn chunked(data: &[u8], chunk: usize) -> (Vec<Reply>, Option<ReplyError>) {
    let mut buffer = ReplyBuffer::new(LIMITS);
    let mut replies = Vec::new();
    for piece in data.chunks(chunk) {
        buffer.extend(piece);
        loop {
            match buffer.next_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(e) => return (replies, Some(e)),
            }
        }
    }
    (replies, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 16) + 1;
    let (replies, end) = whole(data);
    for reply in &replies {
        assert!((200..=599).contains(&reply.code));
        assert!(!reply.lines.is_empty() && reply.lines.len() <= LIMITS.max_lines);
        // Bytes that are not UTF-8 are kept as U+FFFD, three bytes for one: the text of a line
        // is bounded by three times the line limit, not by the limit itself.
        assert!(reply.lines.iter().all(|l| l.len() < 3 * LIMITS.max_line));
        // What every output shows of a reply is bounded and printable.
        let shown = smtp_prober::printable::shown(&reply.text());
        assert!(shown.len() <= SHOWN_BYTES + 32);
        assert!(!shown.chars().any(char::is_control));
    }
    let (incremental, incremental_end) = chunked(data, chunk);
    assert_eq!(replies, incremental, "chunk size {chunk}");
    // The same verdict; its quote of the offending line is what had arrived, so it may be
    // shorter when the bytes come in small reads.
    assert_eq!(
        end.as_ref().map(std::mem::discriminant),
        incremental_end.as_ref().map(std::mem::discriminant),
        "chunk size {chunk}: {end:?} / {incremental_end:?}"
    );
});
