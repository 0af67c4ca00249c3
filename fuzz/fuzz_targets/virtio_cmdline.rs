//! An arbitrary kernel command line read by a virtio guest must give its tokens or name the one
//! that is bad, never panic; arguments encoded by the host tool read back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fata_virtio_abi::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = format!("fata.arg={}", fata_virtio_abi::percent_encode(text));
    let parsed = fata_virtio_abi::parse(line.as_bytes()).expect("an encoded argument reads back");
    assert_eq!(parsed.args, [text]);
});
