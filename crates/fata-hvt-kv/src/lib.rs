//! The checked reader of hvt key-value regions: [`KvRegion::new_checked`] validates a region the
//! monitor laid out (`fata-hvt-abi`'s [`KvHeader`] and [`KvEntry`] records, keys and values) and
//! then gives out keys and values with accessors that never panic.
//!
//! The guest platform reads its read-only stores through it, and the fuzz target `kv_region` feeds
//! it arbitrary bytes. It is logic, not contract, so it lives beside the ABI crate rather than in
//! it.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use fata_hvt_abi::{KV_ENTRIES_MAX, KV_KEY_MAX, KvEntry, KvHeader, kv_index_len};
use fata_hvt_codec::Codec;

/// What makes a key-value region unusable; [`KvRegion::new_checked`] names the first it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvDefect {
    /// The region is shorter than its header and index.
    Truncated,
    /// The header counts more than [`KV_ENTRIES_MAX`] entries.
    TooManyEntries(u32),
    /// An entry's key or value reaches past the region, or its key is empty or longer than
    /// [`KV_KEY_MAX`].
    OutOfBounds(u32),
    /// An entry's key is not UTF-8.
    KeyNotUtf8(u32),
    /// An entry's key does not sort after the previous entry's key (unsorted or repeated).
    NotSorted(u32),
}

impl fmt::Display for KvDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvDefect::Truncated => f.write_str("the region is shorter than its index"),
            KvDefect::TooManyEntries(n) => {
                write!(f, "{n} entries, more than the {KV_ENTRIES_MAX} allowed")
            }
            KvDefect::OutOfBounds(i) => {
                write!(f, "entry {i} has a key or value outside the region")
            }
            KvDefect::KeyNotUtf8(i) => write!(f, "entry {i} has a key that is not UTF-8"),
            KvDefect::NotSorted(i) => {
                write!(f, "entry {i} does not sort after the entry before it")
            }
        }
    }
}

/// A checked view of a key-value region: after [`KvRegion::new_checked`] succeeds, no accessor
/// panics and every key and value lies inside the region.
#[derive(Debug, Clone, Copy)]
pub struct KvRegion<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> KvRegion<'a> {
    /// Checks the header, then every entry: key and value inside `bytes`, key 1 to
    /// [`KV_KEY_MAX`] bytes of UTF-8, keys strictly increasing. Takes time linear in the index and
    /// the keys; never panics.
    pub fn new_checked(bytes: &'a [u8]) -> Result<KvRegion<'a>, KvDefect> {
        if bytes.len() < KvHeader::SIZE {
            return Err(KvDefect::Truncated);
        }
        let header = KvHeader::decode(bytes);
        if header.count > KV_ENTRIES_MAX {
            return Err(KvDefect::TooManyEntries(header.count));
        }
        if kv_index_len(header.count) > bytes.len() as u64 {
            return Err(KvDefect::Truncated);
        }
        let region = KvRegion {
            bytes,
            count: header.count,
        };
        let mut previous: &[u8] = &[];
        for i in 0..header.count {
            let entry = region.raw_entry(i);
            let key = region
                .range(entry.key_offset, entry.key_len)
                .filter(|k| !k.is_empty() && k.len() as u64 <= KV_KEY_MAX)
                .ok_or(KvDefect::OutOfBounds(i))?;
            region
                .range(entry.value_offset, entry.value_len)
                .ok_or(KvDefect::OutOfBounds(i))?;
            if core::str::from_utf8(key).is_err() {
                return Err(KvDefect::KeyNotUtf8(i));
            }
            if i > 0 && key <= previous {
                return Err(KvDefect::NotSorted(i));
            }
            previous = key;
        }
        Ok(region)
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether the region holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `index` as (key, value), or `None` past the last entry.
    pub fn entry(&self, index: u32) -> Option<(&'a str, &'a [u8])> {
        if index >= self.count {
            return None;
        }
        let entry = self.raw_entry(index);
        let key = self.range(entry.key_offset, entry.key_len)?;
        let value = self.range(entry.value_offset, entry.value_len)?;
        Some((core::str::from_utf8(key).ok()?, value))
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        (0..self.count).filter_map(|i| self.entry(i))
    }

    /// The value under `key` (a binary search over the sorted keys).
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        let (mut low, mut high) = (0u32, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            let entry = self.raw_entry(mid);
            let probe = self.range(entry.key_offset, entry.key_len)?;
            match probe.cmp(key.as_bytes()) {
                core::cmp::Ordering::Less => low = mid + 1,
                core::cmp::Ordering::Greater => high = mid,
                core::cmp::Ordering::Equal => {
                    return self.range(entry.value_offset, entry.value_len);
                }
            }
        }
        None
    }

    /// Entry `index`'s record; `index < count`, whose records `new_checked` found inside `bytes`.
    fn raw_entry(&self, index: u32) -> KvEntry {
        let at = kv_index_len(index) as usize;
        match self.bytes.get(at..at + KvEntry::SIZE) {
            Some(raw) => KvEntry::decode(raw),
            None => KvEntry::default(),
        }
    }

    /// `len` bytes at `offset`, if they lie inside the region.
    fn range(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fata_hvt_abi::{KV_ENTRIES, KV_VALUE_ALIGN};

    /// A region as the monitor lays it out: index, keys, then values aligned to 8.
    fn region(entries: &[(&[u8], &[u8])]) -> ([u8; 4096], usize) {
        let mut out = [0u8; 4096];
        KvHeader {
            count: entries.len() as u32,
            reserved: 0,
        }
        .encode(&mut out);
        let mut at = kv_index_len(entries.len() as u32) as usize;
        let mut keys = [0usize; 16];
        for (i, (key, _)) in entries.iter().enumerate() {
            keys[i] = at;
            out[at..at + key.len()].copy_from_slice(key);
            at += key.len();
        }
        for (i, (key, value)) in entries.iter().enumerate() {
            at = at.next_multiple_of(KV_VALUE_ALIGN as usize);
            out[at..at + value.len()].copy_from_slice(value);
            KvEntry {
                key_offset: keys[i] as u64,
                key_len: key.len() as u64,
                value_offset: at as u64,
                value_len: value.len() as u64,
            }
            .encode(&mut out[kv_index_len(i as u32) as usize..]);
            at += value.len();
        }
        (out, at)
    }

    #[test]
    fn kv_regions_are_read_after_checking() {
        let (bytes, len) = region(&[
            (b"css/site.css", b"body{}"),
            (b"empty", b""),
            (b"index.html", b"<h1>hi</h1>"),
        ]);
        let kv = KvRegion::new_checked(&bytes[..len]).unwrap();
        assert_eq!(kv.len(), 3);
        assert_eq!(kv.get("index.html"), Some(&b"<h1>hi</h1>"[..]));
        assert_eq!(kv.get("css/site.css"), Some(&b"body{}"[..]));
        assert_eq!(kv.get("empty"), Some(&b""[..]));
        assert_eq!(kv.get("css"), None);
        assert_eq!(kv.get("zzz"), None);
        assert_eq!(kv.get(""), None);
        assert_eq!(kv.entry(1), Some(("empty", &b""[..])));
        assert_eq!(kv.entry(3), None);
        assert_eq!(kv.iter().count(), 3);
        let empty = region(&[]);
        assert!(
            KvRegion::new_checked(&empty.0[..empty.1])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn kv_region_defects_are_named_without_panicking() {
        let check = |bytes: &[u8]| KvRegion::new_checked(bytes).map(|_| ());
        assert_eq!(check(&[1, 0, 0]), Err(KvDefect::Truncated));
        let (bytes, two_len) = region(&[(b"a", b"1"), (b"b", b"2")]);
        let len = two_len;
        assert_eq!(check(&bytes[..40]), Err(KvDefect::Truncated));
        assert_eq!(check(&bytes[..len - 1]), Err(KvDefect::OutOfBounds(1)));
        let mut many = bytes;
        many[..4].copy_from_slice(&(KV_ENTRIES_MAX + 1).to_le_bytes());
        assert_eq!(
            check(&many),
            Err(KvDefect::TooManyEntries(KV_ENTRIES_MAX + 1))
        );
        let (unsorted, len) = region(&[(b"b", b"1"), (b"a", b"2")]);
        assert_eq!(check(&unsorted[..len]), Err(KvDefect::NotSorted(1)));
        let (repeated, len) = region(&[(b"a", b"1"), (b"a", b"2")]);
        assert_eq!(check(&repeated[..len]), Err(KvDefect::NotSorted(1)));
        let (latin1, len) = region(&[(b"caf\xe9", b"1")]);
        assert_eq!(check(&latin1[..len]), Err(KvDefect::KeyNotUtf8(0)));
        let (empty_key, len) = region(&[(b"", b"1")]);
        assert_eq!(check(&empty_key[..len]), Err(KvDefect::OutOfBounds(0)));
        // Offsets and lengths that overflow.
        for (field, value) in [
            (0usize, u64::MAX),
            (8, u64::MAX),
            (16, u64::MAX - 1),
            (24, u64::MAX),
        ] {
            let mut bad = bytes;
            let at = KV_ENTRIES as usize + field;
            bad[at..at + 8].copy_from_slice(&value.to_le_bytes());
            assert_eq!(
                check(&bad[..two_len]),
                Err(KvDefect::OutOfBounds(0)),
                "field {field}"
            );
        }
        // Any bytes at all: checked or refused, never a panic, and checked regions read back.
        let mut state = 0x2545_f491_u32;
        let mut noise = bytes;
        for round in 0..2000 {
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                noise[state as usize % 128] = (state >> 8) as u8;
            }
            if let Ok(kv) = KvRegion::new_checked(&noise[..two_len.min(64 + round % 64)]) {
                for (key, value) in kv.iter() {
                    assert_eq!(kv.get(key), Some(value));
                }
            }
        }
    }
}
