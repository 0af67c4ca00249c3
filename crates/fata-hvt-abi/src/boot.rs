//! Where the image goes, how much memory a guest may have, and what the monitor tells the guest at
//! entry: [`BootInfo`] with its table of [`DeviceInfo`] entries.

use crate::GuestAddr;

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

/// The most bytes of app arguments the monitor passes (the NUL-terminated strings together).
pub const CMDLINE_MAX: u64 = 64 * 1024;

/// Number of entries in [`BootInfo::devices`].
pub const MAX_DEVICES: usize = 8;

/// The exit status a guest reports when [`BootInfo::abi_version`] is not the version it was built
/// for (the monitor's note check normally catches this first).
pub const ABI_MISMATCH_STATUS: i32 = 0x7f00_0001;

/// What a [`DeviceInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceKind {
    /// An unused entry.
    None = 0,
    /// A network interface: receive and transmit rings in guest RAM and a doorbell.
    Net = 1,
    /// A block device: request and completion rings in guest RAM and a doorbell.
    Block = 2,
    /// A read-only key-value store: an index and the values in read-only guest RAM
    /// (`fata_hvt_kv::KvRegion`).
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
/// [`NET_RX_HEADER`](crate::NET_RX_HEADER), [`NET_TX_HEADER`](crate::NET_TX_HEADER) and the slots
/// at [`NET_SLOTS`](crate::NET_SLOTS): `rx_slots` receive slots, then `tx_slots` transmit slots.
///
/// For a [`DeviceKind::Block`] device, `ring_addr..ring_addr + ring_len` is page-aligned guest
/// RAM below the stack laid out as [`BLOCK_HEADER`](crate::BLOCK_HEADER) (geometry and indices,
/// written by the monitor before the guest starts) and [`BLOCK_REQUESTS`](crate::BLOCK_REQUESTS):
/// `rx_slots` request slots, then as many completion slots; `tx_slots`, `mac` and `mtu` are zero.
///
/// For a [`DeviceKind::Kv`] store, `ring_addr` is the page-aligned start of a region of guest RAM
/// the guest may read but not write, `ring_len` the bytes of it that hold the store (the mapping
/// covers them rounded up to a page), laid out as `fata_hvt_kv::KvRegion` describes; `handle` is
/// the entry's index and every other field is zero. A key-value store has no doorbell and never
/// becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceInfo {
    /// The name the host gave the device (`--net service=tap0` gives `service`), UTF-8, NUL-padded.
    pub name: [u8; 16],
    /// A [`DeviceKind`] number.
    pub kind: u32,
    /// The device's handle: its bit in [`YieldArgs::interest`](crate::YieldArgs::interest) and
    /// `ready`, and its doorbell slot.
    pub handle: u32,
    /// Guest-physical address of the device's ring memory or key-value region (page-aligned).
    pub ring_addr: GuestAddr,
    /// Size in bytes of the ring memory: [`net_ring_len`](crate::net_ring_len)`(rx_slots,
    /// tx_slots)` for a network device; [`block_ring_len`](crate::block_ring_len)`(rx_slots)` for
    /// a block device; the bytes of the region for a key-value store.
    pub ring_len: u64,
    /// The interface's MAC address (network devices).
    pub mac: [u8; 6],
    /// The largest Ethernet payload a frame may carry, without the 14-byte header (network
    /// devices).
    pub mtu: u16,
    /// Number of receive slots, a power of two up to [`NET_SLOTS_MAX`](crate::NET_SLOTS_MAX)
    /// (network devices); number of request slots, a power of two up to
    /// [`BLOCK_SLOTS_MAX`](crate::BLOCK_SLOTS_MAX) (block devices).
    pub rx_slots: u32,
    /// Number of transmit slots, a power of two up to [`NET_SLOTS_MAX`](crate::NET_SLOTS_MAX)
    /// (network devices).
    pub tx_slots: u32,
    /// The device's doorbell: [`doorbell_address`](crate::doorbell_address)`(handle)`.
    pub doorbell: GuestAddr,
    /// What the host offloads for a network device (`NET_OFFLOAD_CSUM`, `_TSO4`, `_TSO6`): which
    /// checksum and segmentation requests a packet's virtio-net header may carry either way;
    /// zero for other devices.
    pub offloads: u64,
}

impl DeviceInfo {
    /// An unused entry.
    pub const EMPTY: DeviceInfo = DeviceInfo {
        name: [0; 16],
        kind: DeviceKind::None as u32,
        handle: 0,
        ring_addr: GuestAddr(0),
        ring_len: 0,
        mac: [0; 6],
        mtu: 0,
        rx_slots: 0,
        tx_slots: 0,
        doorbell: GuestAddr(0),
        offloads: 0,
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
    /// The monitor's [`ABI_VERSION`](crate::ABI_VERSION). Frozen at offset 0.
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
    pub cmdline_addr: GuestAddr,
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
