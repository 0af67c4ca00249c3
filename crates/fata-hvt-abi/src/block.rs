//! Block devices: a request ring and a completion ring in guest RAM, served on the guest's exits.
//!
//! The guest writes [`BlockRequest`]s into the request ring and publishes them; at its next exit
//! (every [`Hypercall::Yield`](crate::Hypercall::Yield), or a store to the device's doorbell) the
//! monitor takes every published request, starts them all on the host together, and publishes a
//! [`BlockCompletion`] for each one that is done, in whatever order they finish. Many requests are
//! in flight at once and one exit carries a whole batch.

use crate::GuestAddr;
use crate::boot::PAGE_SIZE;
use core::fmt;
use core::mem::size_of;

/// Bytes per sector of every block device the monitor serves.
pub const BLOCK_SECTOR_SIZE: u64 = 512;

/// The most bytes one read, write or discard may cover (4 MiB).
pub const BLOCK_REQUEST_MAX: u64 = 4 << 20;

/// The most slots a block ring may have; slot counts are powers of two from 1 to this.
pub const BLOCK_SLOTS_MAX: u32 = 1024;

/// The most bytes of grouped writes ([`BLOCK_FLAG_GROUPED`]) that may wait for a flush (64 MiB);
/// a grouped write past that completes with [`BlockStatus::NoSpace`].
pub const BLOCK_GROUPED_MAX: u64 = 64 << 20;

/// Offset of the [`BlockRingHeader`] in a block device's ring memory.
pub const BLOCK_HEADER: u64 = 0;

/// Offset of the first [`BlockRequest`] slot in a block device's ring memory; the
/// [`BlockCompletion`] slots follow the request slots.
pub const BLOCK_REQUESTS: u64 = PAGE_SIZE;

/// [`BlockRingHeader::flags`] bit: the device refuses writes and discards
/// ([`BlockStatus::ReadOnly`]).
pub const BLOCK_READ_ONLY: u32 = 1;

/// [`BlockRingHeader::flags`] bit: writes never reach the host file; they stay in the monitor's
/// memory for the life of the guest (`fata run --block NAME=FILE:cow`).
pub const BLOCK_COPY_ON_WRITE: u32 = 2;

/// [`BlockRequest::flags`] bit on a write: hold the write back until the next flush, which applies
/// every grouped write since the previous flush together. If the monitor is killed, the file holds
/// all of a flush's grouped writes or none of them: the monitor records them in a journal beside
/// the file (`FILE.fata-journal`) before it writes them in place, and finishes an interrupted
/// journal the next time it opens the file. Reads see grouped writes at once. A file system that
/// flushes only between whole operations stays consistent whenever the monitor dies.
pub const BLOCK_FLAG_GROUPED: u32 = 1;

/// Bytes of ring memory for a block device with `slots` slots
/// ([`DeviceInfo::ring_len`](crate::DeviceInfo::ring_len)), a whole number of pages.
pub const fn block_ring_len(slots: u32) -> u64 {
    let bytes = BLOCK_REQUESTS
        + slots as u64 * (size_of::<BlockRequest>() as u64 + size_of::<BlockCompletion>() as u64);
    bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE
}

/// Offset in ring memory of request slot `index` (taken modulo `slots`, a power of two).
pub const fn block_request_slot(slots: u32, index: u32) -> u64 {
    BLOCK_REQUESTS + (index & (slots - 1)) as u64 * size_of::<BlockRequest>() as u64
}

/// Offset in ring memory of completion slot `index` (taken modulo `slots`, a power of two).
pub const fn block_completion_slot(slots: u32, index: u32) -> u64 {
    BLOCK_REQUESTS
        + slots as u64 * size_of::<BlockRequest>() as u64
        + (index & (slots - 1)) as u64 * size_of::<BlockCompletion>() as u64
}

/// The header of a block device's ring memory: the two rings' indices, each on its own cache
/// line, and the device's geometry, which the monitor writes before the guest starts and never
/// changes.
///
/// All four indices count since boot and wrap at 2^32; slot `i` is at index `i % slots`. The guest
/// produces requests (`requests_produced`, release after filling the slot) and consumes
/// completions (`completions_consumed`); the monitor consumes requests (`requests_consumed`, once
/// it has copied them out) and produces completions (`completions_produced`, release after filling
/// the slot). The guest keeps at most `slots` requests between submitting one and consuming its
/// completion, so neither ring can overflow; indices that claim more than `slots` entries in a
/// ring end the guest with an ABI violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct BlockRingHeader {
    /// Requests the guest has published.
    pub requests_produced: u32,
    /// Padding to the next cache line.
    pub pad0: [u32; 15],
    /// Requests the monitor has taken; their slots may be filled again.
    pub requests_consumed: u32,
    /// Padding to the next cache line.
    pub pad1: [u32; 15],
    /// Completions the monitor has published.
    pub completions_produced: u32,
    /// Padding to the next cache line.
    pub pad2: [u32; 15],
    /// Completions the guest has consumed.
    pub completions_consumed: u32,
    /// Padding to the next cache line.
    pub pad3: [u32; 15],
    /// Bytes per sector: [`BLOCK_SECTOR_SIZE`].
    pub sector_size: u32,
    /// [`BLOCK_READ_ONLY`], [`BLOCK_COPY_ON_WRITE`].
    pub flags: u32,
    /// The device's size in sectors.
    pub sectors: u64,
    /// The most bytes one request may cover: [`BLOCK_REQUEST_MAX`].
    pub request_max: u64,
    /// Reserved; zero.
    pub reserved: [u64; 5],
}

/// What a [`BlockRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BlockOp {
    /// Read `len` bytes from `sector` on into `buffer`.
    Read = 1,
    /// Write `len` bytes from `buffer` to `sector` on.
    Write = 2,
    /// Complete after every request taken before it, having made every write taken before it
    /// durable (`fdatasync` on the host) and applied the grouped writes. `len` is 0.
    Flush = 3,
    /// Tell the device that `len` bytes from `sector` on are no longer needed: they read back as
    /// zeros and the host may free their space. `buffer` is unused.
    Discard = 4,
}

impl BlockOp {
    /// The operation with number `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<BlockOp> {
        Some(match n {
            1 => BlockOp::Read,
            2 => BlockOp::Write,
            3 => BlockOp::Flush,
            4 => BlockOp::Discard,
            _ => return None,
        })
    }
}

/// One request, as the guest writes it into a request slot. The monitor copies the slot when it
/// takes it, so the guest may reuse the slot at once; the buffer must stay untouched until the
/// request's completion is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockRequest {
    /// In: any value; the completion carries it back.
    pub tag: u64,
    /// In: a [`BlockOp`] number.
    pub op: u32,
    /// In: [`BLOCK_FLAG_GROUPED`] on a write; otherwise zero.
    pub flags: u32,
    /// In: the first sector.
    pub sector: u64,
    /// In: bytes to move or discard, a multiple of the sector size from 1 sector to
    /// [`BLOCK_REQUEST_MAX`]; 0 for a flush.
    pub len: u64,
    /// In: a read's or write's buffer in guest RAM. It must lie inside guest memory the guest
    /// may write (a writable segment of the image, the heap or the stack), clear of every ring.
    pub buffer: GuestAddr,
    /// Reserved; zero.
    pub reserved: [u64; 3],
}

/// The answer to one request, as the monitor writes it into a completion slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BlockCompletion {
    /// The request's [`BlockRequest::tag`].
    pub tag: u64,
    /// A [`BlockStatus`] number.
    pub status: u32,
    /// Reserved; zero.
    pub reserved: u32,
}

/// How a request ended. A bad request gets a status; it never ends the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BlockStatus {
    /// Done.
    Ok = 0,
    /// The host reported an I/O error (`EIO`).
    IoError = 1,
    /// A write or discard on a read-only device.
    ReadOnly = 2,
    /// The sectors reach past the end of the device.
    OutOfRange = 3,
    /// Malformed: an unknown operation or flag, a length that is zero, not whole sectors or over
    /// [`BLOCK_REQUEST_MAX`], or a buffer outside the guest's writable memory or over a ring.
    BadRequest = 4,
    /// The host has no room for the data (`ENOSPC`), or too many grouped writes wait for a flush.
    NoSpace = 5,
    /// The device does not do this (discard on a host file system that cannot punch holes).
    Unsupported = 6,
}

impl BlockStatus {
    /// The status with number `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<BlockStatus> {
        Some(match n {
            0 => BlockStatus::Ok,
            1 => BlockStatus::IoError,
            2 => BlockStatus::ReadOnly,
            3 => BlockStatus::OutOfRange,
            4 => BlockStatus::BadRequest,
            5 => BlockStatus::NoSpace,
            6 => BlockStatus::Unsupported,
            _ => return None,
        })
    }
}

impl fmt::Display for BlockStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockStatus::Ok => "done",
            BlockStatus::IoError => "I/O error on the host",
            BlockStatus::ReadOnly => "the device is read-only",
            BlockStatus::OutOfRange => "past the end of the device",
            BlockStatus::BadRequest => "malformed request",
            BlockStatus::NoSpace => "no space left",
            BlockStatus::Unsupported => "not supported by this device",
        })
    }
}
