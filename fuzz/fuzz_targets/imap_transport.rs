//! The IMAP response handling we own: whatever a server sends, the framer's units tile the
//! input within the limits, and async-imap reading through the bounded transport never panics,
//! never holds more than the limits allow, and every failure reads as a short printable text.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smtp_prober::imap::{BoundedStream, Framer, Limits, Trouble, Unit};
use smtp_prober::printable::printable;

/// Small caps, so that short inputs reach every limit.
const LIMITS: Limits = Limits {
    line: 256,
    literal: 128,
    response: 512,
    literals_per_response: 4,
    responses_per_command: 16,
    bytes_per_command: 2048,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // The framer alone: units are consecutive, lines end in LF, nothing exceeds its cap.
    let mut framer = Framer::new(LIMITS);
    let mut at = 0;
    while let Ok(Some(unit)) = framer.next_unit(&data[at..]) {
        assert!(at + unit.len() <= data.len());
        match unit {
            Unit::Line(n) => {
                assert!(n <= LIMITS.line);
                assert_eq!(data[at + n - 1], b'\n');
            }
            Unit::Literal(n) => assert!(n <= LIMITS.literal),
        }
        at += unit.len();
    }

    // async-imap through the transport, as the delivery check reads a server.
    runtime().block_on(async {
        let io = tokio::io::join(data, tokio::io::sink());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut client = async_imap::Client::new(BoundedStream::new(io, LIMITS, deadline));
        let err = loop {
            match client.read_response().await {
                Ok(Some(_)) => continue,
                Ok(None) => break None,
                Err(e) => break Some(async_imap::error::Error::Io(e)),
            }
        };
        let stream = client.get_ref();
        assert!(stream.peak_buffered() <= LIMITS.line.max(LIMITS.literal) + 8 * 1024);
        if let Some(e) = err {
            let shown = Trouble::of(&e, stream).to_string();
            assert!(shown.len() <= 1024, "{} bytes", shown.len());
            assert!(!shown.chars().any(char::is_control));
        }
    });
    let shown = printable(data, 200);
    assert!(shown.len() <= 200 + 32);
    assert!(!shown.chars().any(char::is_control));
});
