//! The EHLO extension parser against arbitrary reply lines: never a panic, keywords fit for a
//! metric label, descriptions bounded and printable, AUTH mechanisms without duplicates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_prober::printable::SHOWN_BYTES;
use smtp_prober::smtp::extension::{Extension, ServerInfo};
use smtp_prober::smtp::reply::{parse_reply, ReplyLimits};

fuzz_target!(|data: &[u8]| {
    // As a whole reply, the way the session reads it.
    if let Ok(Some((reply, _))) = parse_reply(data, &ReplyLimits::default()) {
        let info = ServerInfo::from_ehlo(&reply);
        for ext in &info.extensions {
            check(ext);
        }
        let mechanisms = info.auth_mechanisms();
        for (i, m) in mechanisms.iter().enumerate() {
            assert!(!mechanisms[..i].contains(m), "duplicate mechanism {m}");
        }
        let _ = info.supports_starttls();
    }
    // And every line alone.
    for line in String::from_utf8_lossy(data).split('\n') {
        if let Some(ext) = Extension::parse(line) {
            check(&ext);
        }
    }
});

fn check(ext: &Extension) {
    let keyword = ext.keyword();
    assert!(!keyword.is_empty());
    assert!(keyword
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'));
    let described = ext.describe();
    assert!(described.len() <= SHOWN_BYTES + 32);
    assert!(!described.chars().any(char::is_control));
}
