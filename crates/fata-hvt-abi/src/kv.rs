//! Read-only key-value stores: the layout of a region the monitor writes and the guest reads in
//! place.

use core::mem::size_of;

/// Offset of the first [`KvEntry`] in a key-value region, right after the [`KvHeader`].
pub const KV_ENTRIES: u64 = size_of::<KvHeader>() as u64;

/// The most entries a key-value region may index.
pub const KV_ENTRIES_MAX: u32 = 1 << 16;

/// The longest key, in bytes (the host's `PATH_MAX`).
pub const KV_KEY_MAX: u64 = 4096;

/// Values start at offsets that are multiples of this in a region the monitor writes (the guest
/// does not rely on it).
pub const KV_VALUE_ALIGN: u64 = 8;

/// Bytes of a key-value region's header and index for `count` entries: where its keys may start.
pub const fn kv_index_len(count: u32) -> u64 {
    KV_ENTRIES + count as u64 * size_of::<KvEntry>() as u64
}

/// The first bytes of a key-value region.
///
/// A region (`DeviceInfo::ring_addr`, `ring_len` bytes) is this header, then `count` [`KvEntry`]
/// records, then the keys and the values. Offsets in entries count from the region's start. The
/// monitor writes the keys one after another right after the index and the values after them, each
/// at a multiple of [`KV_VALUE_ALIGN`]; the guest checks only what
/// `fata_hvt_kv::KvRegion::new_checked` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct KvHeader {
    /// Number of entries, at most [`KV_ENTRIES_MAX`].
    pub count: u32,
    /// Reserved; zero.
    pub reserved: u32,
}

/// One key and its value in a key-value region. Entries are sorted by key (bytewise), keys unique.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct KvEntry {
    /// Offset of the key in the region.
    pub key_offset: u64,
    /// Bytes of the key: UTF-8, 1 to [`KV_KEY_MAX`], a `/`-separated relative path.
    pub key_len: u64,
    /// Offset of the value in the region.
    pub value_offset: u64,
    /// Bytes of the value.
    pub value_len: u64,
}
