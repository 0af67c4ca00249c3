//! The hvt ABI: the whole contract between a Fata unikernel and its KVM monitor.
//!
//! This crate is the lowest layer of the hvt target and the only code the guest platform
//! (`fata-hvt`) and the monitor (`fata-monitor`) share. It has no dependencies and no `unsafe`.
//!
//! # The contract in short
//! - **Image.** A static x86-64 ELF executable linked at [`LOAD_ADDR`], with a `PT_NOTE` carrying an
//!   [`AbiNote`] that names the [`ABI_VERSION`] it was built for. The monitor refuses any other version.
//! - **Entry.** The guest starts at its ELF entry point in 64-bit mode at CPL3 with paging on
//!   (identity map), SSE enabled, `RSP` at the top of RAM and `RDI` holding the guest-physical address
//!   of a read-only [`BootInfo`].
//! - **Hypercalls.** The guest fills the argument struct of a [`Hypercall`] in its own memory and
//!   stores the struct's guest-physical address, as one 8-byte store, to [`hypercall_address`]. That
//!   window has no memory behind it, so the store traps to the monitor, which reads the struct, writes
//!   back the fields marked *out*, and resumes the guest after the store.
//! - **Network devices.** Each [`DeviceKind::Net`] entry of the boot info describes rings in guest
//!   RAM ([`NetRingHeader`], slots of [`NET_SLOT_SIZE`] bytes) that the guest fills and drains
//!   without exits; the monitor moves frames between them and the host whenever the guest exits to
//!   it (every [`Hypercall::Yield`]), and the guest stores to the device's doorbell
//!   ([`doorbell_address`]) to have a full transmit ring sent at once.
//! - **Key-value stores.** Each [`DeviceKind::Kv`] entry describes a read-only region of guest RAM
//!   holding a sorted index ([`KvHeader`], [`KvEntry`]) and the values; the guest reads it in place
//!   through [`KvRegion`], with no hypercall.
//!
//! Every struct is `#[repr(C)]` with explicit padding, little-endian; [`Codec`] gives the monitor a
//! safe byte-level view built from the same field offsets, and the tests pin every size and offset.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::mem::{offset_of, size_of};

/// The ABI version. Both sides check it: the monitor reads it from the image's [`AbiNote`] and
/// refuses a mismatch; the guest compares [`BootInfo::abi_version`] and exits with
/// [`ABI_MISMATCH_STATUS`] on a mismatch.
///
/// Bump rule: any change to a layout, a hypercall number, a constant in this crate or the meaning of
/// a field bumps the version. Only additions that an older peer provably never sees (filling a
/// `reserved` field that the other side ignores when zero) may keep it. Three things never change, so
/// that a mismatch can always be reported: [`BootInfo::abi_version`] at offset 0, the number of
/// [`Hypercall::Exit`] and the layout of [`ExitArgs`].
///
/// History: 1 had no devices; 2 added network devices; 3 added read-only key-value stores
/// ([`DeviceKind::Kv`]); 4 moved network rings to exit-driven service (the monitor moves frames on
/// `Yield` and doorbell exits; the rings' `waiting` flag became reserved).
pub const ABI_VERSION: u32 = 4;

/// Guest-physical (= virtual) address where the image's first segment may start: 1 MiB.
/// Everything below belongs to the monitor (page tables, GDT, boot info, command line).
pub const LOAD_ADDR: u64 = 0x10_0000;

/// The guest page size the monitor maps images with; ELF segments must not share a page.
pub const PAGE_SIZE: u64 = 4096;

/// The largest RAM a guest may have (3 GiB): guest memory stays below the hypercall window.
pub const MAX_MEM_BYTES: u64 = 0xC000_0000;

/// The stack the monitor reserves at the top of RAM; the guest's heap ends at
/// [`BootInfo::stack_bottom`], below it.
pub const STACK_SIZE: u64 = 1 << 20;

/// Guest-physical base of the hypercall window: no RAM is behind it, so a store there exits to the
/// monitor. The guest's page tables map it user-writable and not executable.
pub const HYPERCALL_BASE: u64 = 0xFFFF_F000;

/// Size of the hypercall window: one 8-byte slot per hypercall number.
pub const HYPERCALL_WINDOW_SIZE: u64 = 0x1000;

/// Guest-physical base of the doorbell window, the page below the hypercall window: no RAM is behind
/// it either. A store of any width to [`doorbell_address`]`(handle)` exits to the monitor, which
/// sends every frame on device `handle`'s transmit ring (and fills its receive ring) before it
/// resumes the guest. The guest rings it when its transmit ring is full.
pub const DOORBELL_BASE: u64 = 0xFFFF_E000;

/// Size of the doorbell window: one 8-byte slot per device handle.
pub const DOORBELL_WINDOW_SIZE: u64 = 0x1000;

/// The doorbell of device `handle`; [`DeviceInfo::doorbell`] carries the same value.
pub const fn doorbell_address(handle: u32) -> u64 {
    DOORBELL_BASE + (handle as u64) * 8
}

const _: () = assert!(
    DOORBELL_BASE + DOORBELL_WINDOW_SIZE == HYPERCALL_BASE,
    "the doorbell window lies just below the hypercall window"
);

const _: () = assert!(
    MAX_MEM_BYTES <= HYPERCALL_BASE,
    "RAM must stay below the hypercall window"
);

/// The address the guest stores an argument struct's guest-physical address to, to make hypercall
/// `nr`. The store must be exactly 8 bytes wide.
pub const fn hypercall_address(nr: Hypercall) -> u64 {
    HYPERCALL_BASE + (nr as u32 as u64) * 8
}

/// The most bytes one [`Hypercall::ConsoleWrite`] may carry (64 KiB). A longer write is an ABI
/// violation that ends the guest; the guest platform splits long output into chunks.
pub const CONSOLE_WRITE_MAX: u64 = 64 * 1024;

/// The most bytes of app arguments the monitor passes (the NUL-terminated strings together).
pub const CMDLINE_MAX: u64 = 64 * 1024;

/// Number of entries in [`BootInfo::devices`].
pub const MAX_DEVICES: usize = 8;

/// Size of one network ring slot: an 8-byte [`NetSlotHeader`] and then the frame.
pub const NET_SLOT_SIZE: u64 = 2048;

/// The longest frame a slot holds: [`NET_SLOT_SIZE`] minus the slot header. Frames are Ethernet
/// frames without preamble or FCS; the monitor drops longer frames from the tap.
pub const NET_FRAME_MAX: u64 = NET_SLOT_SIZE - size_of::<NetSlotHeader>() as u64;

/// The shortest frame the guest may transmit: an Ethernet header.
pub const NET_FRAME_MIN: u64 = 14;

/// The most slots a ring may have; slot counts are powers of two from 1 to this.
pub const NET_SLOTS_MAX: u32 = 1 << 15;

/// Offset of the receive ring's [`NetRingHeader`] in a device's ring memory.
pub const NET_RX_HEADER: u64 = 0;

/// Offset of the transmit ring's [`NetRingHeader`] in a device's ring memory.
pub const NET_TX_HEADER: u64 = 256;

/// Offset of the first receive slot in a device's ring memory; the transmit slots follow the
/// receive slots.
pub const NET_SLOTS: u64 = PAGE_SIZE;

/// Bytes of ring memory for a device with `rx_slots` receive and `tx_slots` transmit slots
/// ([`DeviceInfo::ring_len`]).
pub const fn net_ring_len(rx_slots: u32, tx_slots: u32) -> u64 {
    NET_SLOTS + (rx_slots as u64 + tx_slots as u64) * NET_SLOT_SIZE
}

/// Offset in ring memory of receive slot `index` (taken modulo `rx_slots`, a power of two).
pub const fn net_rx_slot(rx_slots: u32, index: u32) -> u64 {
    NET_SLOTS + (index & (rx_slots - 1)) as u64 * NET_SLOT_SIZE
}

/// Offset in ring memory of transmit slot `index` (taken modulo `tx_slots`, a power of two).
pub const fn net_tx_slot(rx_slots: u32, tx_slots: u32, index: u32) -> u64 {
    NET_SLOTS + (rx_slots as u64 + (index & (tx_slots - 1)) as u64) * NET_SLOT_SIZE
}

/// The MTU (Ethernet payload bytes) the monitor reports for its tap devices.
pub const NET_MTU: u16 = 1500;

/// [`YieldArgs::timeout_ns`] value meaning "no deadline: wait until a device is ready".
pub const YIELD_FOREVER: u64 = u64::MAX;

/// The exit status a guest reports when [`BootInfo::abi_version`] is not the version it was built
/// for (the monitor's note check normally catches this first).
pub const ABI_MISMATCH_STATUS: i32 = 0x7f00_0001;

/// A hypercall number: the slot index in the hypercall window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Hypercall {
    /// End the guest with a status. Arguments: [`ExitArgs`]. Never returns. Frozen across versions.
    Exit = 1,
    /// Write bytes to the console (the monitor's stdout). Arguments: [`ConsoleWriteArgs`].
    ConsoleWrite = 2,
    /// Move every network device's frames (send the published transmit frames, fill the receive
    /// rings), then block until a device in the interest set is ready (a network device: its
    /// receive ring holds a frame) or the timeout passes; a timeout of 0 only moves frames.
    /// Arguments: [`YieldArgs`].
    Yield = 3,
    /// Reserved: network devices need no hypercall (their rings and doorbells work without one);
    /// monitors end the guest with an ABI violation.
    Net = 4,
    /// Reserved for block devices of a later ABI version; monitors end the guest with an ABI
    /// violation.
    Block = 5,
}

impl Hypercall {
    /// The hypercall with number `nr`, if there is one.
    pub const fn from_u32(nr: u32) -> Option<Hypercall> {
        Some(match nr {
            1 => Hypercall::Exit,
            2 => Hypercall::ConsoleWrite,
            3 => Hypercall::Yield,
            4 => Hypercall::Net,
            5 => Hypercall::Block,
            _ => return None,
        })
    }
}

impl fmt::Display for Hypercall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hypercall::Exit => "exit",
            Hypercall::ConsoleWrite => "console write",
            Hypercall::Yield => "yield",
            Hypercall::Net => "net (reserved)",
            Hypercall::Block => "block (reserved)",
        })
    }
}

/// Arguments of [`Hypercall::Exit`]. Frozen across versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExitArgs {
    /// In: the exit status; the monitor's process exits with it (truncated to 0..=255 by the OS).
    pub status: i32,
    /// Padding, zero.
    pub pad: u32,
}

/// Arguments of [`Hypercall::ConsoleWrite`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConsoleWriteArgs {
    /// In: guest-physical address of the bytes.
    pub data: u64,
    /// In: number of bytes, at most [`CONSOLE_WRITE_MAX`].
    pub len: u64,
}

/// Arguments of [`Hypercall::Yield`].
///
/// The timeout is relative so that guest and monitor need not share a clock: the guest converts its
/// TSC deadline to nanoseconds from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct YieldArgs {
    /// In: how long to wait at most, in nanoseconds; [`YIELD_FOREVER`] for no deadline, 0 to poll.
    pub timeout_ns: u64,
    /// In: the device handles to wait for, one bit per handle (bit `h` is handle `h`).
    pub interest: u64,
    /// Out: the handles in `interest` that are ready when the call returns (may be empty).
    pub ready: u64,
}

/// What a [`DeviceInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceKind {
    /// An unused entry.
    None = 0,
    /// A network interface: receive and transmit rings in guest RAM and a doorbell.
    Net = 1,
    /// A block device (arrives with a later ABI version).
    Block = 2,
    /// A read-only key-value store: an index and the values in read-only guest RAM
    /// ([`KvRegion`]).
    Kv = 3,
}

impl DeviceKind {
    /// The kind with number `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<DeviceKind> {
        Some(match n {
            0 => DeviceKind::None,
            1 => DeviceKind::Net,
            2 => DeviceKind::Block,
            3 => DeviceKind::Kv,
            _ => return None,
        })
    }
}

/// One device the host configured.
///
/// For a [`DeviceKind::Net`] device, `ring_addr..ring_addr + ring_len` is page-aligned guest RAM
/// the monitor reserved (outside the heap: see [`BootInfo::heap_end`]) and laid out as
/// [`NET_RX_HEADER`], [`NET_TX_HEADER`] and the slots at [`NET_SLOTS`]: `rx_slots` receive slots,
/// then `tx_slots` transmit slots.
///
/// For a [`DeviceKind::Kv`] store, `ring_addr` is the page-aligned start of a region of guest RAM
/// the guest may read but not write, `ring_len` the bytes of it that hold the store (the mapping
/// covers them rounded up to a page), laid out as [`KvRegion`] describes; `handle` is the entry's
/// index and every other field is zero. A key-value store has no doorbell and never becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceInfo {
    /// The name the host gave the device (`--net service=tap0` gives `service`), UTF-8, NUL-padded.
    pub name: [u8; 16],
    /// A [`DeviceKind`] number.
    pub kind: u32,
    /// The device's handle: its bit in [`YieldArgs::interest`] and `ready`, and its doorbell slot.
    pub handle: u32,
    /// Guest-physical address of the device's ring memory or key-value region (page-aligned).
    pub ring_addr: u64,
    /// Size in bytes of the ring memory: [`net_ring_len`]`(rx_slots, tx_slots)` for a network
    /// device; the bytes of the region for a key-value store.
    pub ring_len: u64,
    /// The interface's MAC address (network devices).
    pub mac: [u8; 6],
    /// The largest Ethernet payload a frame may carry, without the 14-byte header (network devices).
    pub mtu: u16,
    /// Number of receive slots, a power of two up to [`NET_SLOTS_MAX`] (network devices).
    pub rx_slots: u32,
    /// Number of transmit slots, a power of two up to [`NET_SLOTS_MAX`] (network devices).
    pub tx_slots: u32,
    /// The device's doorbell: [`doorbell_address`]`(handle)`.
    pub doorbell: u64,
    /// Reserved; zero.
    pub reserved: u64,
}

impl DeviceInfo {
    /// An unused entry.
    pub const EMPTY: DeviceInfo = DeviceInfo {
        name: [0; 16],
        kind: DeviceKind::None as u32,
        handle: 0,
        ring_addr: 0,
        ring_len: 0,
        mac: [0; 6],
        mtu: 0,
        rx_slots: 0,
        tx_slots: 0,
        doorbell: 0,
        reserved: 0,
    };
}

impl Default for DeviceInfo {
    fn default() -> Self {
        DeviceInfo::EMPTY
    }
}

/// What the monitor tells the guest at entry. It lives in guest memory below [`LOAD_ADDR`], mapped
/// read-only; `RDI` holds its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BootInfo {
    /// The monitor's [`ABI_VERSION`]. Frozen at offset 0.
    pub abi_version: u32,
    /// Number of used entries at the start of `devices`.
    pub device_count: u32,
    /// Bytes of RAM, guest-physical `0..mem_size`.
    pub mem_size: u64,
    /// First guest-physical address past the image (page-aligned): the heap starts here.
    pub kernel_end: u64,
    /// Lowest address of the stack at the top of RAM.
    pub stack_bottom: u64,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// The guest's TSC value at the moment `wall_clock_ns` was read.
    pub boot_tsc: u64,
    /// Host wall clock (nanoseconds since the Unix epoch, UTC) at `boot_tsc`.
    pub boot_wall_ns: u64,
    /// Guest-physical address of the app arguments: `argc` strings, each ending in a NUL byte.
    pub cmdline_addr: u64,
    /// Total bytes at `cmdline_addr`, NULs included (at most [`CMDLINE_MAX`]).
    pub cmdline_len: u64,
    /// Number of app arguments (the program name is not one of them).
    pub argc: u64,
    /// 32 bytes from the host's random source, to seed the guest's generator.
    pub seed: [u8; 32],
    /// The configured devices; entries at `device_count` and after are [`DeviceInfo::EMPTY`].
    pub devices: [DeviceInfo; MAX_DEVICES],
    /// The end of the heap (page-aligned, at most `stack_bottom`): device rings and key-value
    /// regions lie between it and the stack.
    pub heap_end: u64,
    /// Reserved for additions; zero.
    pub reserved: [u64; 7],
}

/// The header of one network ring (receive or transmit), at [`NET_RX_HEADER`] or [`NET_TX_HEADER`]
/// in a device's ring memory. Each field sits on its own 64-byte cache line.
///
/// Both indices count slots since boot and wrap at 2^32; slot `i` is at index `i % slots`. The
/// ring holds `produced - consumed` (wrapping) frames, never more than its slot count. The producer
/// fills slot `produced`, then publishes it by storing `produced + 1` (release); the consumer reads
/// slots up to `produced` (acquire), then frees them by storing `consumed`.
///
/// The guest produces on the transmit ring and consumes on the receive ring; the monitor does the
/// opposite, on the guest's exits: at every [`Hypercall::Yield`] it sends the published transmit
/// frames and reads what the host has into free receive slots, before it decides whether to
/// sleep; a doorbell store does the same for one device. Nothing touches the rings while the guest
/// runs, so neither side needs a wake-up protocol. The guest waits for received frames with
/// [`Hypercall::Yield`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct NetRingHeader {
    /// Slots the producer has published.
    pub produced: u32,
    /// Padding to the next cache line.
    pub pad0: [u32; 15],
    /// Slots the consumer has freed.
    pub consumed: u32,
    /// Padding to the next cache line.
    pub pad1: [u32; 15],
    /// Reserved; zero (version 3's `waiting` flag).
    pub reserved: u32,
    /// Padding to the next cache line.
    pub pad2: [u32; 15],
}

/// The first 8 bytes of a ring slot; the frame follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NetSlotHeader {
    /// Bytes of the frame: [`NET_FRAME_MIN`] to [`NET_FRAME_MAX`] on the transmit ring (anything
    /// else ends the guest), at most [`NET_FRAME_MAX`] on the receive ring.
    pub len: u32,
    /// Reserved; zero.
    pub flags: u32,
}

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
/// monitor writes the keys one after another right after the index and the values after them,
/// each at a multiple of [`KV_VALUE_ALIGN`]; the guest checks only what [`KvRegion::new_checked`]
/// lists.
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

/// The ELF note type of an [`AbiNote`].
pub const NOTE_TYPE_ABI: u32 = 1;

/// The ELF note name of an [`AbiNote`], NUL included.
pub const NOTE_NAME: [u8; 5] = *b"Fata\0";

/// The ELF note the guest carries in a `PT_NOTE` segment (section `.note.fata`) to say which ABI it
/// was built for: standard note header, name [`NOTE_NAME`] padded to 8 bytes, descriptor = version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct AbiNote {
    /// Length of the name, NUL included: 5.
    pub namesz: u32,
    /// Length of the descriptor: 4.
    pub descsz: u32,
    /// [`NOTE_TYPE_ABI`].
    pub kind: u32,
    /// [`NOTE_NAME`] padded with NULs to a multiple of 4.
    pub name: [u8; 8],
    /// The [`ABI_VERSION`] the image was built for.
    pub version: u32,
}

impl AbiNote {
    /// The note for this crate's [`ABI_VERSION`].
    pub const CURRENT: AbiNote = AbiNote {
        namesz: NOTE_NAME.len() as u32,
        descsz: 4,
        kind: NOTE_TYPE_ABI,
        name: *b"Fata\0\0\0\0",
        version: ABI_VERSION,
    };
}

/// One field type the [`Codec`] structs are made of, encoded little-endian.
trait Field: Sized {
    fn put(&self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut [u8]) {
                out[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                let mut raw = [0u8; size_of::<$t>()];
                raw.copy_from_slice(&bytes[..size_of::<$t>()]);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
int_field!(u16, u32, i32, u64);

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut [u8]) {
        out[..N].copy_from_slice(self);
    }
    fn get(bytes: &[u8]) -> Self {
        let mut raw = [0u8; N];
        raw.copy_from_slice(&bytes[..N]);
        raw
    }
}

impl<T: Field + Copy + Default, const N: usize> Field for [T; N] {
    fn put(&self, out: &mut [u8]) {
        for (i, item) in self.iter().enumerate() {
            item.put(&mut out[i * size_of::<T>()..]);
        }
    }
    fn get(bytes: &[u8]) -> Self {
        let mut items = [T::default(); N];
        for (i, item) in items.iter_mut().enumerate() {
            *item = T::get(&bytes[i * size_of::<T>()..]);
        }
        items
    }
}

/// The byte image of an ABI struct, as it lies in guest memory (little-endian, `#[repr(C)]` offsets).
///
/// The monitor reads and writes guest memory as bytes and converts with this trait, so it never
/// reinterprets guest bytes as Rust values.
pub trait Codec: Sized {
    /// `size_of::<Self>()`.
    const SIZE: usize;
    /// Writes the struct's bytes into `out[..SIZE]`. Panics if `out` is shorter.
    fn encode(&self, out: &mut [u8]);
    /// Reads the struct from `bytes[..SIZE]`. Panics if `bytes` is shorter.
    fn decode(bytes: &[u8]) -> Self;
}

macro_rules! codec {
    ($name:ident { $($field:ident: $t:ty),* $(,)? }) => {
        impl Field for $name {
            fn put(&self, out: &mut [u8]) {
                $( Field::put(&self.$field, &mut out[offset_of!($name, $field)..]); )*
            }
            fn get(bytes: &[u8]) -> Self {
                $name { $( $field: <$t as Field>::get(&bytes[offset_of!($name, $field)..]), )* }
            }
        }
        impl Codec for $name {
            const SIZE: usize = size_of::<$name>();
            fn encode(&self, out: &mut [u8]) {
                Field::put(self, &mut out[..Self::SIZE]);
            }
            fn decode(bytes: &[u8]) -> Self {
                <$name as Field>::get(&bytes[..Self::SIZE])
            }
        }
    };
}

codec!(ExitArgs {
    status: i32,
    pad: u32
});
codec!(ConsoleWriteArgs {
    data: u64,
    len: u64
});
codec!(YieldArgs {
    timeout_ns: u64,
    interest: u64,
    ready: u64
});
codec!(DeviceInfo {
    name: [u8; 16],
    kind: u32,
    handle: u32,
    ring_addr: u64,
    ring_len: u64,
    mac: [u8; 6],
    mtu: u16,
    rx_slots: u32,
    tx_slots: u32,
    doorbell: u64,
    reserved: u64,
});
codec!(BootInfo {
    abi_version: u32,
    device_count: u32,
    mem_size: u64,
    kernel_end: u64,
    stack_bottom: u64,
    tsc_khz: u64,
    boot_tsc: u64,
    boot_wall_ns: u64,
    cmdline_addr: u64,
    cmdline_len: u64,
    argc: u64,
    seed: [u8; 32],
    devices: [DeviceInfo; MAX_DEVICES],
    heap_end: u64,
    reserved: [u64; 7],
});
codec!(KvHeader {
    count: u32,
    reserved: u32
});
codec!(KvEntry {
    key_offset: u64,
    key_len: u64,
    value_offset: u64,
    value_len: u64
});
codec!(AbiNote {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 8],
    version: u32
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<ExitArgs>(), 8);
        assert_eq!(offset_of!(ExitArgs, status), 0);
        assert_eq!(size_of::<ConsoleWriteArgs>(), 16);
        assert_eq!(offset_of!(ConsoleWriteArgs, len), 8);
        assert_eq!(size_of::<YieldArgs>(), 24);
        assert_eq!(offset_of!(YieldArgs, interest), 8);
        assert_eq!(offset_of!(YieldArgs, ready), 16);
        assert_eq!(size_of::<DeviceInfo>(), 72);
        assert_eq!(offset_of!(DeviceInfo, kind), 16);
        assert_eq!(offset_of!(DeviceInfo, handle), 20);
        assert_eq!(offset_of!(DeviceInfo, ring_addr), 24);
        assert_eq!(offset_of!(DeviceInfo, ring_len), 32);
        assert_eq!(offset_of!(DeviceInfo, mac), 40);
        assert_eq!(offset_of!(DeviceInfo, mtu), 46);
        assert_eq!(offset_of!(DeviceInfo, rx_slots), 48);
        assert_eq!(offset_of!(DeviceInfo, tx_slots), 52);
        assert_eq!(offset_of!(DeviceInfo, doorbell), 56);
        assert_eq!(offset_of!(DeviceInfo, reserved), 64);
        assert_eq!(offset_of!(BootInfo, abi_version), 0);
        assert_eq!(offset_of!(BootInfo, mem_size), 8);
        assert_eq!(offset_of!(BootInfo, tsc_khz), 32);
        assert_eq!(offset_of!(BootInfo, boot_wall_ns), 48);
        assert_eq!(offset_of!(BootInfo, cmdline_addr), 56);
        assert_eq!(offset_of!(BootInfo, argc), 72);
        assert_eq!(offset_of!(BootInfo, seed), 80);
        assert_eq!(offset_of!(BootInfo, devices), 112);
        assert_eq!(offset_of!(BootInfo, heap_end), 112 + 8 * 72);
        assert_eq!(offset_of!(BootInfo, reserved), 112 + 8 * 72 + 8);
        assert_eq!(size_of::<BootInfo>(), 112 + 8 * 72 + 64);
        assert_eq!(size_of::<AbiNote>(), 24);
        assert_eq!(offset_of!(AbiNote, version), 20);
        assert_eq!(size_of::<NetRingHeader>(), 192);
        assert_eq!(offset_of!(NetRingHeader, produced), 0);
        assert_eq!(offset_of!(NetRingHeader, consumed), 64);
        assert_eq!(offset_of!(NetRingHeader, reserved), 128);
        assert_eq!(size_of::<NetSlotHeader>(), 8);
        assert_eq!(offset_of!(NetSlotHeader, flags), 4);
        assert_eq!(size_of::<KvHeader>(), 8);
        assert_eq!(offset_of!(KvHeader, count), 0);
        assert_eq!(offset_of!(KvHeader, reserved), 4);
        assert_eq!(size_of::<KvEntry>(), 32);
        assert_eq!(offset_of!(KvEntry, key_offset), 0);
        assert_eq!(offset_of!(KvEntry, key_len), 8);
        assert_eq!(offset_of!(KvEntry, value_offset), 16);
        assert_eq!(offset_of!(KvEntry, value_len), 24);
        assert_eq!(KV_ENTRIES, 8);
        assert_eq!(kv_index_len(3), 8 + 3 * 32);
        assert_eq!(DeviceKind::Kv as u32, 3);
        assert_eq!(DeviceKind::from_u32(3), Some(DeviceKind::Kv));
        assert_eq!(DeviceKind::from_u32(4), None);
    }

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

    #[test]
    fn net_ring_layout_is_pinned() {
        assert_eq!(NET_FRAME_MAX, 2040);
        assert!(NET_FRAME_MAX >= NET_MTU as u64 + 18);
        assert!(NET_TX_HEADER >= NET_RX_HEADER + size_of::<NetRingHeader>() as u64);
        assert!(NET_SLOTS >= NET_TX_HEADER + size_of::<NetRingHeader>() as u64);
        assert_eq!(net_ring_len(256, 128), 4096 + 384 * 2048);
        assert_eq!(net_rx_slot(256, 0), 4096);
        assert_eq!(net_rx_slot(256, 257), 4096 + 2048);
        assert_eq!(net_tx_slot(256, 128, 0), 4096 + 256 * 2048);
        assert_eq!(net_tx_slot(256, 128, 128 + 127), 4096 + 383 * 2048);
        assert!(net_tx_slot(256, 128, u32::MAX) + NET_SLOT_SIZE <= net_ring_len(256, 128));
        let max = NET_SLOTS_MAX;
        assert!(net_tx_slot(max, max, u32::MAX) + NET_SLOT_SIZE <= net_ring_len(max, max));
        assert_eq!(doorbell_address(0), DOORBELL_BASE);
        assert_eq!(doorbell_address(3), 0xFFFF_E018);
        assert!(doorbell_address(MAX_DEVICES as u32) < HYPERCALL_BASE);
    }

    #[test]
    fn hypercall_numbers_are_pinned() {
        assert_eq!(hypercall_address(Hypercall::Exit), HYPERCALL_BASE + 8);
        assert_eq!(Hypercall::ConsoleWrite as u32, 2);
        assert_eq!(Hypercall::Yield as u32, 3);
        for nr in 0..64 {
            if let Some(call) = Hypercall::from_u32(nr) {
                assert_eq!(call as u32, nr);
                assert!(hypercall_address(call) < HYPERCALL_BASE + HYPERCALL_WINDOW_SIZE);
            }
        }
    }

    #[test]
    fn codec_round_trips_at_the_repr_c_offsets() {
        let mut info = BootInfo {
            abi_version: ABI_VERSION,
            mem_size: 32 << 20,
            tsc_khz: 2_000_000,
            argc: 2,
            seed: [7; 32],
            ..BootInfo::default()
        };
        info.devices[1].name[0] = b'n';
        info.devices[1].ring_len = 0x1234;
        info.devices[1].mac = [2, 0, 0, 0, 0, 9];
        info.devices[1].mtu = 1500;
        info.devices[1].tx_slots = 64;
        info.heap_end = 0x1e0_0000;
        let mut bytes = [0u8; BootInfo::SIZE];
        info.encode(&mut bytes);
        assert_eq!(&bytes[0..4], &ABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[32..40], &2_000_000u64.to_le_bytes());
        let ring_len_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, ring_len);
        assert_eq!(
            &bytes[ring_len_at..ring_len_at + 8],
            &0x1234u64.to_le_bytes()
        );
        let mac_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, mac);
        assert_eq!(&bytes[mac_at..mac_at + 8], &[2, 0, 0, 0, 0, 9, 0xdc, 0x05]);
        assert_eq!(BootInfo::decode(&bytes), info);

        let args = YieldArgs {
            timeout_ns: 5,
            interest: 1,
            ready: 0,
        };
        let mut raw = [0u8; YieldArgs::SIZE];
        args.encode(&mut raw);
        assert_eq!(YieldArgs::decode(&raw), args);

        let mut note = [0u8; AbiNote::SIZE];
        AbiNote::CURRENT.encode(&mut note);
        assert_eq!(&note[12..17], &NOTE_NAME);
        assert_eq!(AbiNote::decode(&note), AbiNote::CURRENT);
    }
}
