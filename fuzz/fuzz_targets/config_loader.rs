//! The configuration loader against arbitrary text: never a panic, and an error always names
//! the file and says something.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_prober::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_str(text, "fuzz.yml") {
        Ok(config) => assert!(config.targets.len() <= text.len()),
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.yml"), "{message}");
        }
    }
});
