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

/// Size of one network ring slot: an 8-byte [`NetSlotHeader`] and then the packet, which may run
/// on over the following slots (see [`NetSlotHeader`]).
pub const NET_SLOT_SIZE: u64 = 2048;

/// Bytes of the virtio-net header (`struct virtio_net_hdr_v1`: flags, GSO type, header length,
/// GSO size, checksum start and offset, buffer count; little-endian) at the start of every packet
/// in either ring. It is what the host's tap device speaks (`IFF_VNET_HDR`), so a packet goes to
/// and from the tap in one `write` or `read`: it says which checksums are left to fill
/// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) or were checked already (`VIRTIO_NET_HDR_F_DATA_VALID`), and
/// whether the frame is one large TCP segment that the host cuts into `gso_size` pieces
/// (`VIRTIO_NET_HDR_GSO_TCPV4`, `_TCPV6`). A guest may set them only as far as
/// [`DeviceInfo::offloads`](crate::DeviceInfo::offloads) allows; all zero is a plain frame.
pub const NET_VNET_HDR_LEN: u64 = 12;

/// The longest Ethernet frame (without preamble or FCS) in a packet: a 64 KiB IP packet, the
/// largest a segmentation offload carries, with an Ethernet header and a VLAN tag.
pub const NET_FRAME_MAX: u64 = 65536 + 18;

/// The shortest Ethernet frame in a packet: an Ethernet header.
pub const NET_FRAME_MIN: u64 = 14;

/// The longest packet (virtio-net header and frame) in a ring; the monitor drops longer frames
/// from the tap.
pub const NET_PACKET_MAX: u64 = NET_VNET_HDR_LEN + NET_FRAME_MAX;

/// The shortest packet the guest may transmit.
pub const NET_PACKET_MIN: u64 = NET_VNET_HDR_LEN + NET_FRAME_MIN;

/// How many consecutive slots a packet of `len` bytes takes, its slot header included.
pub const fn net_packet_slots(len: u64) -> u32 {
    (size_of::<NetSlotHeader>() as u64 + len).div_ceil(NET_SLOT_SIZE) as u32
}

/// Slots the longest packet takes (33).
pub const NET_PACKET_SLOTS_MAX: u32 = net_packet_slots(NET_PACKET_MAX);

/// The fewest slots a ring may have: room for two of the longest packets, one of which may have
/// to skip the ring's tail.
pub const NET_SLOTS_MIN: u32 = 128;

const _: () = assert!(NET_SLOTS_MIN >= 2 * NET_PACKET_SLOTS_MAX);

/// [`NetSlotHeader::flags`]: the slot holds no packet; the ring's next packet is in its first
/// slot. A producer writes it when the next packet would not fit before the ring's end.
pub const NET_SLOT_WRAP: u32 = 1;

/// [`DeviceInfo::offloads`](crate::DeviceInfo::offloads): the host fills and checks TCP and UDP
/// checksums (`TUN_F_CSUM`): packets either way may carry `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const NET_OFFLOAD_CSUM: u64 = 1;
/// The host segments large TCP/IPv4 packets (`TUN_F_TSO4`) and may deliver them.
pub const NET_OFFLOAD_TSO4: u64 = 2;
/// The host segments large TCP/IPv6 packets (`TUN_F_TSO6`) and may deliver them.
pub const NET_OFFLOAD_TSO6: u64 = 4;

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

/// The MTU (Ethernet payload bytes) the monitor reports for its tap devices: the largest frame a
/// guest sends without segmentation offload.
pub const NET_MTU: u16 = 1500;

/// The header of one network ring (receive or transmit), at [`NET_RX_HEADER`] or [`NET_TX_HEADER`]
/// in a device's ring memory. Each field sits on its own 64-byte cache line.
///
/// Both indices count slots since boot and wrap at 2^32; slot `i` is at index `i % slots`. The
/// ring holds `produced - consumed` (wrapping) slots' worth of packets, never more than its slot
/// count. The producer fills the slots from `produced` on (a packet takes
/// [`net_packet_slots`]`(len)` of them), then publishes them by storing `produced` past them
/// (release); the consumer reads slots up to `produced` (acquire), then frees them by storing
/// `consumed`.
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

/// The first 8 bytes of the first slot of a packet; the packet (a [`NET_VNET_HDR_LEN`]-byte
/// virtio-net header, then the Ethernet frame) follows, contiguous in memory: a packet longer
/// than a slot runs on over the next slots (whose headers it overwrites) and takes
/// [`net_packet_slots`]`(len)` of them. A packet never runs past the ring's last slot: when it
/// would, the producer first marks the slot at `produced` [`NET_SLOT_WRAP`] and publishes the
/// slots up to the ring's end with it, and the packet starts at the ring's first slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NetSlotHeader {
    /// Bytes of the packet: [`NET_PACKET_MIN`] to [`NET_PACKET_MAX`] on the transmit ring
    /// (anything else ends the guest), at most [`NET_PACKET_MAX`] on the receive ring; zero in a
    /// [`NET_SLOT_WRAP`] slot.
    pub len: u32,
    /// [`NET_SLOT_WRAP`], or zero.
    pub flags: u32,
}

/// The monitor's promise about coalescing (`fata run --coalesce-us`): it delays resuming a guest
/// only after a resumption that brought fewer than this many received frames; one that brought at
/// least this many is a batch already, and the next `Yield` that finds frames returns at once.
/// Every target keeps the same rule (`fata_platform::COALESCE_BELOW`; the guest platform checks
/// at compile time that the two agree).
pub const COALESCE_BELOW: u32 = 16;
