//! Arbitrary bytes decoded as a snapshot's state must give a snapshot or an error, never a panic
//! or unbounded memory; a snapshot that decodes must pass its own checks and encode back to the
//! same bytes.
//!
//! The input is tried twice: as a whole state file (magic, version, length and checksum), and as
//! a body framed with a right checksum, so the fuzzer reaches the body's decoder too.
#![no_main]

use fata_snapshot::{FORMAT_VERSION, MAGIC, decode, encode, state_crc};
use libfuzzer_sys::fuzz_target;

/// Checks what decoding `bytes` gives.
fn check(bytes: &[u8]) {
    let crc = state_crc(bytes);
    if let Ok(snapshot) = decode(bytes) {
        assert_eq!(snapshot.validate(), Ok(()));
        assert_eq!(encode(&snapshot), bytes, "one encoding per snapshot");
        assert_eq!(crc.ok(), Some(crc32c::crc32c(&bytes[..bytes.len() - 4])));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
    framed.extend_from_slice(data);
    let crc = crc32c::crc32c(&framed);
    framed.extend_from_slice(&crc.to_le_bytes());
    check(&framed);
});
