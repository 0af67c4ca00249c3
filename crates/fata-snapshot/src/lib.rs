//! The snapshot format of Fata's hvt monitor.
//!
//! A snapshot is a directory of two files:
//!
//! - [`STATE_FILE`] (`state`): a [`Snapshot`], encoded by [`encode`] and checked by [`decode`]:
//!   magic, format version, body length, body, and a CRC-32C of everything before it;
//! - [`MEMORY_FILE`] (`memory`): a sparse file as long as the guest's RAM, each page the guest
//!   touched at its guest-physical offset and holes elsewhere, so the monitor can map it privately
//!   as the restored guest's RAM. [`Snapshot::memory`] lists the extents written, each with a
//!   CRC-32C of its bytes.
//!
//! The same [`Snapshot`] travels over a migration's connection. Decoding never panics and never
//! trusts a length before checking it against the input: a truncated, corrupt or foreign file is
//! a [`FormatError`].
//!
//! The vCPU's registers travel as the raw bytes of KVM's own structures ([`VcpuState`]): this
//! crate stays free of KVM, and the monitor checks each blob's size when it turns it back into a
//! structure.
//!
//! On the host, [`MemoryWriter`] writes the memory file, [`write_state`] the state file (after
//! it, atomically), [`read_state`] and [`open_memory`] read them back, and [`verify_extents`]
//! checks the memory's extents against their checksums.
#![forbid(unsafe_code)]

mod codec;
mod dir;
mod memory;
mod stream;

pub use codec::{FormatError, decode, encode, state_crc};
pub use dir::{SnapshotError, open_memory, read_state, write_state};
pub use memory::{MemoryWriter, verify_extents, verify_file_extents};
pub use stream::{
    ARRIVED, FAILED, Hello, MAX_RUN_PAGES, Message, Receiver, StreamError, send_hello, send_pages,
    send_state,
};

/// The state file's name inside a snapshot directory.
pub const STATE_FILE: &str = "state";
/// The memory file's name inside a snapshot directory.
pub const MEMORY_FILE: &str = "memory";
/// The first bytes of a state file.
pub const MAGIC: [u8; 8] = *b"FATASNAP";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A running guest, frozen: what the monitor needs to carry it on elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The hvt ABI version the guest was built for (`fata_hvt_abi::ABI_VERSION`).
    pub abi_version: u32,
    /// Which image the guest runs.
    pub image: ImageIdentity,
    /// Bytes of guest RAM.
    pub mem_bytes: u64,
    /// The name the guest ran under (`fata run --name`).
    pub name: String,
    /// Host wall clock when the snapshot was taken, in nanoseconds since the epoch.
    pub taken_wall_ns: u64,
    /// The snapshot this one holds only the differences from (`fata snapshot --diff`).
    pub parent: Option<Parent>,
    /// The extents of guest memory in this snapshot's memory file, sorted and disjoint, each a
    /// multiple of 4 KiB at a 4 KiB-aligned offset. Pages in no extent are zero (or, with a
    /// parent, the parent's).
    pub memory: Vec<Extent>,
    /// The vCPU.
    pub vcpu: VcpuState,
    /// The devices, in handle order.
    pub devices: Vec<DeviceState>,
    /// How the monitor ran the guest.
    pub run: RunSettings,
}

/// Which image a snapshot's guest runs: a restore refuses another.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageIdentity {
    /// Where the image was, for messages and as the default on restore.
    pub path: String,
    /// Its length in bytes.
    pub len: u64,
    /// The SHA-256 of its bytes.
    pub sha256: [u8; 32],
}

/// The snapshot a diff snapshot builds on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parent {
    /// The parent's directory, as given when the diff was taken.
    pub dir: String,
    /// The CRC-32C trailer of the parent's state file: a restore refuses a parent that changed.
    pub state_crc: u32,
}

/// A run of guest pages in the memory file, at the same offset as in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// Guest-physical (and file) offset, 4 KiB-aligned.
    pub offset: u64,
    /// Length, a multiple of 4 KiB.
    pub len: u64,
    /// CRC-32C of the extent's bytes.
    pub crc: u32,
}

/// The vCPU, as the raw bytes of KVM's structures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VcpuState {
    /// `struct kvm_regs`.
    pub regs: Vec<u8>,
    /// `struct kvm_sregs`.
    pub sregs: Vec<u8>,
    /// `struct kvm_xsave` (FPU, SSE and AVX state).
    pub xsave: Vec<u8>,
    /// `struct kvm_xcrs`.
    pub xcrs: Vec<u8>,
    /// `struct kvm_vcpu_events`.
    pub events: Vec<u8>,
    /// `struct kvm_lapic_state`.
    pub lapic: Vec<u8>,
    /// `struct kvm_debugregs`.
    pub debugregs: Vec<u8>,
    /// The MSRs the guest uses, as (index, value).
    pub msrs: Vec<(u32, u64)>,
    /// The TSC frequency in kHz.
    pub tsc_khz: u32,
    /// The guest's TSC when the snapshot was taken.
    pub tsc: u64,
}

/// One device of the guest and the monitor's state for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    /// A network interface.
    Net(NetState),
    /// A block device.
    Block(BlockState),
    /// A key-value store (its contents are in guest memory).
    Kv(KvState),
}

/// A network interface: its rings live in guest memory; these are the monitor's own indices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetState {
    /// The name the guest knows it by.
    pub name: String,
    /// The tap it was attached to (the default on restore).
    pub tap: String,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// Guest-physical address of its ring memory.
    pub ring_addr: u64,
    /// Receive slots the monitor has published.
    pub rx_produced: u32,
    /// Transmit slots the monitor has consumed.
    pub tx_consumed: u32,
    /// How many times the interface has moved to another link (restores and migrations).
    pub moves: u32,
}

/// A block device: its rings live in guest memory; the monitor finished every request it had
/// taken before the snapshot, so what remains are completions not yet published.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockState {
    /// The name the guest knows it by.
    pub name: String,
    /// The file it was backed by (the default on restore).
    pub path: String,
    /// `rw`, `ro` or `cow`.
    pub mode: String,
    /// Its size in 512-byte sectors: a restore refuses a file of another size.
    pub sectors: u64,
    /// Guest-physical address of its ring memory.
    pub ring_addr: u64,
    /// Requests the monitor has taken.
    pub requests_consumed: u32,
    /// Completions the monitor has published.
    pub completions_produced: u32,
    /// The guest's completions-consumed index as the monitor last saw it.
    pub completions_seen: u32,
    /// Completions waiting for room on the ring: (the guest's tag, the status code).
    pub pending: Vec<(u64, u32)>,
    /// With `cow`, the sectors written so far: (first sector, bytes).
    pub overlay: Vec<(u64, Vec<u8>)>,
}

/// A key-value store, read into guest memory at boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KvState {
    /// The name the guest knows it by.
    pub name: String,
    /// The directory or image it was read from.
    pub source: String,
    /// Guest-physical address of its region.
    pub region_addr: u64,
    /// Bytes of the region.
    pub region_len: u64,
}

/// How the monitor ran the guest, carried over to a restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSettings {
    /// `--coalesce-us`.
    pub net_coalesce_us: u64,
    /// Writable guest memory a block buffer may lie in: (start, end) ranges.
    pub writable: Vec<(u64, u64)>,
}
