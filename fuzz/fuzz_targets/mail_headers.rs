//! The delivered mail's header parsers (`Received:` with its dates, `Authentication-Results:`)
//! against arbitrary bytes: never a panic, and only short, plain words kept (host names and
//! properties as label values, methods and results from the registries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_prober::headers::auth_results::{self, MAX_VERDICTS, METHODS, OTHER};
use smtp_prober::headers::received::{self, MAX_NAME};
use smtp_prober::headers::{date, unfold};

fn plain(word: &str, max: usize) -> bool {
    word.chars().count() <= max
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]@+/= ".contains(c))
}

fuzz_target!(|data: &[u8]| {
    let trace = unfold(data, "received");
    for value in &trace {
        let _ = date::parse(value);
        let r = received::parse(value);
        for word in [&r.from, &r.by, &r.with, &r.from_ip].into_iter().flatten() {
            assert!(plain(word, MAX_NAME), "{word:?}");
        }
    }
    let hops = received::hops(&trace, 1_796_043_600.0, 0.5);
    assert_eq!(hops.len(), trace.len());
    for (i, hop) in hops.iter().enumerate() {
        assert_eq!(hop.index, i + 1);
        assert!(hop.seconds.is_none_or(f64::is_finite));
    }
    let fields = unfold(data, "authentication-results");
    let verdicts = auth_results::verdicts(&fields);
    assert!(verdicts.len() <= MAX_VERDICTS);
    for v in &verdicts {
        assert!(METHODS.contains(&v.method));
        assert!(v.result == OTHER || plain(v.result, 16));
        for word in [&v.authserv_id, &v.property].into_iter().flatten() {
            assert!(plain(word, 24 + 1 + 64), "{word:?}");
        }
    }
});
