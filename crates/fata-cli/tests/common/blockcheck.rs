//! What apps/blockcheck writes and reads, for the block device tests on every target.

use std::path::Path;

/// Bytes per blockcheck chunk (one request each).
pub const CHUNK: usize = 64 << 10;
/// The chunks blockcheck writes and reads with its default of 32 in flight.
pub const CHUNKS: usize = 32;
/// The disk the tests give it.
pub const DISK: usize = 4 << 20;

/// Byte `i` of chunk `chunk` as blockcheck writes it.
pub fn pattern_byte(chunk: usize, i: usize) -> u8 {
    (chunk * 31 + i * 7 + i / 4096) as u8
}

/// Writes a disk image whose first `CHUNKS` chunks hold blockcheck's pattern and the rest `fill`;
/// returns its bytes.
pub fn patterned(path: &Path, fill: u8) -> Vec<u8> {
    let mut bytes = vec![fill; DISK];
    for (at, byte) in bytes[..CHUNKS * CHUNK].iter_mut().enumerate() {
        *byte = pattern_byte(at / CHUNK, at % CHUNK);
    }
    std::fs::write(path, &bytes).unwrap();
    bytes
}
