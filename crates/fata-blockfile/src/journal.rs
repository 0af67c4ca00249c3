//! The journal that makes a flush's grouped writes all-or-nothing: its format, and writing its
//! entries in place.
//!
//! `FILE.fata-journal` holds, little-endian:
//!
//! ```text
//! header   magic "FATAJNL1" (8 bytes), sequence (u64), count (u64)
//! entries  count times: sector (u64), the sector's 512 bytes
//! commit   magic "FATACMT1" (8 bytes), sequence (u64), CRC-32 of header and entries (u32), 0 (u32)
//! ```
//!
//! A flush writes the whole journal, `fdatasync`s it, writes the entries in place, `fdatasync`s
//! the file and truncates the journal to nothing (then `fdatasync`s it again). Opening the file
//! finds either nothing, a complete journal (the commit record is there, with the header's
//! sequence and a matching checksum: its entries are written again), or a torn one (anything else:
//! the flush never committed, so none of its writes reached the file, and it is ignored).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::{GROUPED_MAX, SECTOR_SIZE};

/// Bytes per sector, as a `usize`.
const SECTOR: usize = SECTOR_SIZE as usize;
/// The header's magic.
const MAGIC: [u8; 8] = *b"FATAJNL1";
/// The commit record's magic.
const COMMIT: [u8; 8] = *b"FATACMT1";
/// Bytes of the header.
const HEADER: usize = 24;
/// Bytes of one entry.
const ENTRY: usize = 8 + SECTOR;
/// Bytes of the commit record.
const TRAILER: usize = 24;
/// The most entries a journal may hold: one flush's grouped writes.
const MAX_ENTRIES: u64 = GROUPED_MAX / SECTOR_SIZE;
/// The most bytes of in-place writes gathered into one `pwrite`.
const RUN_MAX: usize = 1 << 20;

/// What a journal file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Contents<'a> {
    /// Nothing: the last flush finished.
    Empty,
    /// A journal without a valid commit record: a flush that did not commit.
    Torn,
    /// A committed flush: its entries, sector and bytes, in the order written.
    Complete {
        /// The flush's sequence number.
        sequence: u64,
        /// Its sectors.
        entries: Vec<(u64, &'a [u8; SECTOR])>,
    },
}

/// Appends a journal of `entries` with `sequence` to `out`.
pub(crate) fn encode<'a>(
    sequence: u64,
    entries: impl ExactSizeIterator<Item = (u64, &'a [u8; SECTOR])>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.reserve(HEADER + entries.len() * ENTRY + TRAILER);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (sector, bytes) in entries {
        out.extend_from_slice(&sector.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let checksum = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&COMMIT);
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
}

/// Reads a journal's bytes. Bytes after the commit record are ignored (a journal that could not
/// be truncated and was then overwritten by a shorter one).
pub(crate) fn decode(bytes: &[u8]) -> Contents<'_> {
    if bytes.is_empty() {
        return Contents::Empty;
    }
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Contents::Torn;
    }
    let (Some(sequence), Some(count)) = (u64_at(8), u64_at(16)) else {
        return Contents::Torn;
    };
    if count > MAX_ENTRIES {
        return Contents::Torn;
    }
    let body = HEADER + count as usize * ENTRY;
    let Some(trailer) = bytes.get(body..body + TRAILER) else {
        return Contents::Torn;
    };
    let checksum = u32::from_le_bytes(trailer[16..20].try_into().unwrap());
    if trailer[..8] != COMMIT
        || u64_at(body + 8) != Some(sequence)
        || checksum != crc32fast::hash(&bytes[..body])
    {
        return Contents::Torn;
    }
    let entries = bytes[HEADER..body]
        .chunks_exact(ENTRY)
        .map(|entry| {
            let sector = u64::from_le_bytes(entry[..8].try_into().unwrap());
            (sector, entry[8..].try_into().unwrap())
        })
        .collect();
    Contents::Complete { sequence, entries }
}

/// Writes `entries` (in sector order) to `file` in place, gathering neighbouring sectors into
/// one `pwrite` of up to a megabyte, with `run` as the buffer.
pub(crate) fn write_in_place<'a>(
    file: &File,
    entries: impl Iterator<Item = (u64, &'a [u8; SECTOR])>,
    run: &mut Vec<u8>,
) -> io::Result<()> {
    run.clear();
    let mut first = 0;
    for (sector, bytes) in entries {
        let next = first + (run.len() / SECTOR) as u64;
        if !run.is_empty() && (sector != next || run.len() >= RUN_MAX) {
            file.write_all_at(run, first * SECTOR_SIZE)?;
            run.clear();
        }
        if run.is_empty() {
            first = sector;
        }
        run.extend_from_slice(bytes);
    }
    if !run.is_empty() {
        file.write_all_at(run, first * SECTOR_SIZE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_round_trips_and_every_damage_reads_as_torn() {
        let a = [1u8; SECTOR];
        let b = [2u8; SECTOR];
        let mut bytes = Vec::new();
        encode(7, [(3, &a), (9, &b)].into_iter(), &mut bytes);
        assert_eq!(bytes.len(), HEADER + 2 * ENTRY + TRAILER);
        assert_eq!(&bytes[..8], b"FATAJNL1");
        assert_eq!(
            decode(&bytes),
            Contents::Complete {
                sequence: 7,
                entries: vec![(3, &a), (9, &b)]
            }
        );
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xee; 100]);
        assert!(matches!(
            decode(&longer),
            Contents::Complete { sequence: 7, .. }
        ));
        assert_eq!(decode(&[]), Contents::Empty);
        for cut in [1, 8, 23, HEADER + ENTRY, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), Contents::Torn, "cut at {cut}");
        }
        for flip in [
            0,
            9,
            17,
            HEADER + 3,
            HEADER + 100,
            bytes.len() - 20,
            bytes.len() - 8,
        ] {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x40;
            assert_eq!(decode(&damaged), Contents::Torn, "flipped byte {flip}");
        }
        let mut huge = bytes.clone();
        huge[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Contents::Torn);
        let mut empty = Vec::new();
        encode(1, std::iter::empty(), &mut empty);
        assert_eq!(
            decode(&empty),
            Contents::Complete {
                sequence: 1,
                entries: vec![]
            }
        );
    }

    #[test]
    fn in_place_writes_gather_neighbours() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(16 * SECTOR_SIZE).unwrap();
        let sectors: Vec<[u8; SECTOR]> = (0..4u8).map(|i| [i + 1; SECTOR]).collect();
        let entries = [
            (2, &sectors[0]),
            (3, &sectors[1]),
            (4, &sectors[2]),
            (10, &sectors[3]),
        ];
        write_in_place(&file, entries.into_iter(), &mut Vec::new()).unwrap();
        let mut all = vec![0u8; 16 * SECTOR];
        file.read_exact_at(&mut all, 0).unwrap();
        let firsts: Vec<u8> = all.chunks(SECTOR).map(|s| s[0]).collect();
        assert_eq!(firsts, [0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0]);
    }
}
