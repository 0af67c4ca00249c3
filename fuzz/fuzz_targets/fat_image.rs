//! Arbitrary bytes opened as a FAT image: opening, walking every directory and reading every
//! file must give the image's bytes or an error, never a panic, a hang or unbounded memory; and
//! what a walk accepts reads back consistently.
//!
//! The input is the start of an image: reads past its end see zeros, up to the size its boot
//! sector claims (at most 48 MiB), so a short input stands for a whole FAT16 or FAT32 volume
//! whose data region is mostly empty.
#![no_main]

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use fata_disk::Image;
use libfuzzer_sys::fuzz_target;

/// The largest image an input stands for.
const MAX_LEN: u64 = 48 << 20;

/// The input, then zeros up to `len`.
struct ZeroTail<'a> {
    data: &'a [u8],
    len: u64,
    at: u64,
}

impl Read for ZeroTail<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len.saturating_sub(self.at)).min(buf.len() as u64) as usize;
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = self
                .data
                .get((self.at + i as u64) as usize)
                .copied()
                .unwrap_or(0);
        }
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for ZeroTail<'_> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(off) => self.len.checked_add_signed(off),
            SeekFrom::Current(off) => self.at.checked_add_signed(off),
        };
        self.at = to.ok_or_else(|| std::io::Error::other("seek out of range"))?;
        Ok(self.at)
    }
}

/// The size the boot sector claims, within the fuzzer's limit.
fn claimed_len(data: &[u8]) -> u64 {
    let at = |i: usize| data.get(i).copied().unwrap_or(0);
    let sector = u64::from(u16::from_le_bytes([at(11), at(12)]));
    let sectors = match u16::from_le_bytes([at(19), at(20)]) {
        0 => u64::from(u32::from_le_bytes([at(32), at(33), at(34), at(35)])),
        small => u64::from(small),
    };
    (sector * sectors).clamp(data.len() as u64, MAX_LEN.max(data.len() as u64))
}

fuzz_target!(|data: &[u8]| {
    let len = claimed_len(data);
    let reader = ZeroTail { data, len, at: 0 };
    let Ok(image) = Image::from_reader(Path::new("fuzz.img"), reader, len) else {
        return;
    };
    let Ok(entries) = image.entries() else {
        return;
    };
    for pair in entries.windows(2) {
        assert!(pair[0].path < pair[1].path, "paths sorted and unique");
    }
    let mut total = 0u64;
    for entry in &entries {
        assert!(!entry.path.is_empty() && !entry.path.starts_with('/'));
        assert!(
            !entry
                .path
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        );
        if entry.is_dir {
            continue;
        }
        total += entry.size;
        if let Ok(bytes) = image.read(entry) {
            assert_eq!(bytes.len() as u64, entry.size);
        }
    }
    assert!(total <= len, "files claim no more than the image holds");
});
