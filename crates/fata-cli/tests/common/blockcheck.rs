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

/// Checks that `disk` holds what a read-write blockcheck run wrote and flushed: its `CHUNKS`
/// chunks and the grouped chunk after them, then the discarded chunk and the rest as zeros, and
/// that the journal beside it is empty.
pub fn assert_written(disk: &Path) {
    let bytes = std::fs::read(disk).unwrap();
    for chunk in 0..=CHUNKS {
        let at = chunk * CHUNK;
        let whole = (0..CHUNK).all(|i| bytes[at + i] == pattern_byte(chunk, i));
        assert!(whole, "chunk {chunk} is not in the file");
    }
    assert!(bytes[(CHUNKS + 1) * CHUNK..].iter().all(|&b| b == 0));
    let mut journal = disk.as_os_str().to_owned();
    journal.push(".fata-journal");
    let journal_len = std::fs::metadata(journal).unwrap().len();
    assert_eq!(journal_len, 0, "the journal is empty");
}
