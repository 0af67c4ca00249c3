//! Arbitrary text checked as a `fata summon` configuration must give a configuration or an error
//! that names a line of the text, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1) + 1;
    match fata_summon::config::parse(text, std::path::Path::new("/nonexistent")) {
        Ok(config) => assert!(config.services.iter().all(|s| !s.name.is_empty())),
        Err(error) => assert!(error.line.is_none_or(|line| (1..=lines).contains(&line))),
    }
});
