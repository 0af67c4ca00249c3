//! Network devices: two single-producer rings per device in guest RAM, their slots, and the
//! doorbell a guest stores to when its transmit ring is full.

use crate::GuestAddr;
use crate::boot::PAGE_SIZE;
use crate::hypercall::HYPERCALL_BASE;
use core::mem::size_of;

/// Guest-physical base of the doorbell window, the page below the hypercall window: no RAM is
/// behind it either. A store of any width to [`doorbell_address`]`(handle)` exits to the monitor,
/// which sends every frame on network device `handle`'s transmit ring (and fills its receive ring)
/// before it resumes the guest; for a block device it takes the published requests and starts
/// them. The guest rings it when its transmit ring is full, or to start block requests without
/// waiting.
pub const DOORBELL_BASE: u64 = 0xFFFF_E000;

/// Size of the doorbell window: one 8-byte slot per device handle.
pub const DOORBELL_WINDOW_SIZE: u64 = 0x1000;

/// The doorbell of device `handle`; [`DeviceInfo::doorbell`](crate::DeviceInfo::doorbell) carries
/// the same value.
pub const fn doorbell_address(handle: u32) -> GuestAddr {
    GuestAddr(DOORBELL_BASE + (handle as u64) * 8)
}

const _: () = assert!(
    DOORBELL_BASE + DOORBELL_WINDOW_SIZE == HYPERCALL_BASE,
    "the doorbell window lies just below the hypercall window"
);

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
/// ([`DeviceInfo::ring_len`](crate::DeviceInfo::ring_len)).
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

/// The header of one network ring (receive or transmit), at [`NET_RX_HEADER`] or [`NET_TX_HEADER`]
/// in a device's ring memory. Each field sits on its own 64-byte cache line.
///
/// Both indices count slots since boot and wrap at 2^32; slot `i` is at index `i % slots`. The
/// ring holds `produced - consumed` (wrapping) frames, never more than its slot count. The producer
/// fills slot `produced`, then publishes it by storing `produced + 1` (release); the consumer reads
/// slots up to `produced` (acquire), then frees them by storing `consumed`.
///
/// The guest produces on the transmit ring and consumes on the receive ring; the monitor does the
/// opposite, on the guest's exits: at every [`Hypercall::Yield`](crate::Hypercall::Yield) it sends
/// the published transmit frames and reads what the host has into free receive slots, before it
/// decides whether to sleep; a doorbell store does the same for one device. Nothing touches the
/// rings while the guest runs, so neither side needs a wake-up protocol. The guest waits for
/// received frames with [`Hypercall::Yield`](crate::Hypercall::Yield) only.
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
    /// Meaningful in the receive ring's header only (zero in the transmit ring's); the monitor
    /// writes it, the guest reads it (acquire): how many times the interface has moved to another
    /// host link, by a restore or a migration. Zero at boot. When it changes, the guest announces
    /// itself on the new link (a gratuitous ARP for each of its IPv4 addresses), so that peers and
    /// switches learn where it is now. (Version 3's `waiting` flag, reserved in versions 4 and 5.)
    pub moves: u32,
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

/// The monitor's promise about coalescing (`fata run --coalesce-us`): it delays resuming a guest
/// only after a resumption that brought fewer than this many received frames; one that brought at
/// least this many is a batch already, and the next `Yield` that finds frames returns at once.
/// Every target keeps the same rule (`fata_platform::COALESCE_BELOW`; the guest platform checks
/// at compile time that the two agree).
pub const COALESCE_BELOW: u32 = 16;
