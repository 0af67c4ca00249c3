//! Network devices over the rings the monitor shares in guest RAM (layout in `fata-hvt-abi`).
//!
//! Receiving reads packets (a virtio-net header and a frame, up to 64 KiB, over as many slots as
//! they take) straight out of the receive ring and frees their slots; transmitting fills the next
//! transmit slots in place and publishes them. Neither exits: the monitor moves the packets at the
//! guest's next `Yield`, so a busy guest sends and receives in batches. Only a full transmit ring
//! makes the guest store to the device's doorbell, an exit in which the monitor sends the ring at
//! once.

use crate::{boot, hypercall};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use fata_hvt_abi::{
    BootInfo, DeviceKind, GuestAddr, MAX_DEVICES, NET_OFFLOAD_CSUM, NET_OFFLOAD_TSO4,
    NET_OFFLOAD_TSO6, NET_PACKET_MAX, NET_PACKET_MIN, NET_PACKET_SLOTS_MAX, NET_RX_HEADER,
    NET_SLOT_SIZE, NET_SLOT_WRAP, NET_SLOTS_MAX, NET_SLOTS_MIN, NET_TX_HEADER, NetRingHeader,
    NetSlotHeader, net_packet_slots, net_ring_len, net_rx_slot, net_tx_slot,
};

/// Bytes of a slot's header, before its packet.
const NET_SLOT_HEADER: u64 = size_of::<NetSlotHeader>() as u64;
use fata_platform::{DeviceError, Net, Offloads, ReadySet};

const _: () = assert!(
    fata_hvt_abi::NET_VNET_HDR_LEN as usize == fata_platform::VNET_HDR_LEN
        && fata_hvt_abi::NET_FRAME_MAX as usize == fata_platform::OFFLOAD_FRAME_MAX,
    "the ring's packets are what the platform's offloading devices carry"
);
use spin::Once;

/// One network device as the boot info describes it, checked.
#[derive(Debug, Clone)]
pub struct Rings {
    /// The device's name.
    pub name: String,
    handle: u32,
    mac: [u8; 6],
    mtu: u16,
    base: usize,
    rx_slots: u32,
    tx_slots: u32,
    doorbell: GuestAddr,
    offloads: Offloads,
}

static RINGS: Once<Vec<Rings>> = Once::new();

/// The network devices in the boot info (entries that do not describe a usable ring are skipped).
pub fn devices() -> &'static [Rings] {
    RINGS.call_once(|| boot::info().map_or_else(Vec::new, parse))
}

fn parse(info: &BootInfo) -> Vec<Rings> {
    let count = (info.device_count as usize).min(MAX_DEVICES);
    info.devices[..count]
        .iter()
        .filter(|d| d.kind == DeviceKind::Net as u32)
        .filter(|d| {
            let slots_ok =
                |n: u32| n.is_power_of_two() && (NET_SLOTS_MIN..=NET_SLOTS_MAX).contains(&n);
            slots_ok(d.rx_slots)
                && slots_ok(d.tx_slots)
                && d.handle < 64
                && d.ring_len == net_ring_len(d.rx_slots, d.tx_slots)
                && d.ring_addr.0.is_multiple_of(4096)
                && d.ring_addr.0 != 0
                && d.ring_addr
                    .0
                    .checked_add(d.ring_len)
                    .is_some_and(|end| end <= info.mem_size)
        })
        .map(|d| {
            let len = d.name.iter().position(|&b| b == 0).unwrap_or(d.name.len());
            Rings {
                name: String::from_utf8_lossy(&d.name[..len]).into_owned(),
                handle: d.handle,
                mac: d.mac,
                mtu: d.mtu,
                base: d.ring_addr.0 as usize,
                rx_slots: d.rx_slots,
                tx_slots: d.tx_slots,
                doorbell: d.doorbell,
                offloads: Offloads {
                    csum: d.offloads & NET_OFFLOAD_CSUM != 0,
                    tso4: d.offloads & NET_OFFLOAD_TSO4 != 0,
                    tso6: d.offloads & NET_OFFLOAD_TSO6 != 0,
                },
            }
        })
        .collect()
}

impl Rings {
    /// A `u32` field of a ring header.
    fn index(&self, header: u64, field: usize) -> &AtomicU32 {
        let at = self.base + header as usize + field;
        // SAFETY: `base..base + ring_len` is RAM the monitor reserved for this device for the
        // guest's whole life (checked against the RAM size in `parse`); ring headers lie inside it
        // at these ABI offsets, 4-byte aligned, and both sides only access them atomically.
        unsafe { &*(at as *const AtomicU32) }
    }

    fn produced(&self, header: u64) -> &AtomicU32 {
        self.index(header, core::mem::offset_of!(NetRingHeader, produced))
    }

    fn consumed(&self, header: u64) -> &AtomicU32 {
        self.index(header, core::mem::offset_of!(NetRingHeader, consumed))
    }

    fn moves(&self) -> &AtomicU32 {
        self.index(NET_RX_HEADER, core::mem::offset_of!(NetRingHeader, moves))
    }

    /// Whether the receive ring holds a frame.
    fn has_frames(&self) -> bool {
        self.produced(NET_RX_HEADER).load(Ordering::Acquire)
            != self.consumed(NET_RX_HEADER).load(Ordering::Relaxed)
    }

    /// Whether the transmit ring has `slots` free slots after the guest's `produced` ones; when
    /// it has not, rings the doorbell (the monitor sends the ring) and looks again.
    fn tx_room(&self, produced: u32, slots: u32) -> bool {
        let has_room = || {
            let consumed = self.consumed(NET_TX_HEADER).load(Ordering::Acquire);
            self.tx_slots - produced.wrapping_sub(consumed).min(self.tx_slots) >= slots
        };
        if has_room() {
            return true;
        }
        hypercall::doorbell(self.doorbell);
        has_room()
    }
}

/// The devices in `interest` whose receive ring holds a frame.
pub fn ready(interest: u64) -> u64 {
    devices()
        .iter()
        .filter(|r| interest & (1 << r.handle) != 0 && r.has_frames())
        .fold(0, |set, r| set | (1 << r.handle))
}

/// A network device of the hvt target.
pub struct HvtNet {
    rings: Rings,
    rx_consumed: u32,
    tx_produced: u32,
}

impl HvtNet {
    /// The device over `rings`; call once per device (it takes over the guest's ring indices).
    pub fn new(rings: Rings) -> HvtNet {
        HvtNet {
            rx_consumed: rings.consumed(NET_RX_HEADER).load(Ordering::Relaxed),
            tx_produced: rings.produced(NET_TX_HEADER).load(Ordering::Relaxed),
            rings,
        }
    }

    /// The slot at `offset` in ring memory: its header and its frame bytes.
    fn slot(&self, offset: u64) -> (*mut NetSlotHeader, *mut u8) {
        let at = self.rings.base + offset as usize;
        (
            at as *mut NetSlotHeader,
            (at + size_of::<NetSlotHeader>()) as *mut u8,
        )
    }
}

impl Net for HvtNet {
    fn mac(&self) -> [u8; 6] {
        self.rings.mac
    }

    fn mtu(&self) -> usize {
        usize::from(self.rings.mtu)
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::single(self.rings.handle)
    }

    fn receive(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DeviceError> {
        let rings = &self.rings;
        let produced = rings.produced(NET_RX_HEADER).load(Ordering::Acquire);
        let mut count = 0;
        while count < max && self.rx_consumed != produced {
            let at = self.rx_consumed % rings.rx_slots;
            let (header, packet) = self.slot(net_rx_slot(rings.rx_slots, self.rx_consumed));
            // SAFETY: the slot lies inside the ring (index taken modulo the slot count) and,
            // published and not yet freed, belongs to the guest: the monitor does not write it
            // until `consumed` passes it.
            let NetSlotHeader { len, flags } = unsafe { header.read() };
            let slots = if flags & NET_SLOT_WRAP != 0 {
                rings.rx_slots - at
            } else {
                // The monitor never writes more than a packet, nor past the ring's end; the
                // length is capped to both all the same.
                let room = u64::from(rings.rx_slots - at) * NET_SLOT_SIZE - NET_SLOT_HEADER;
                let len = u64::from(len).min(NET_PACKET_MAX).min(room) as usize;
                // SAFETY: as above, for the packet's slots, which lie before the ring's end.
                on_frame(unsafe { core::slice::from_raw_parts(packet, len) });
                count += 1;
                net_packet_slots(len as u64)
            };
            self.rx_consumed = self.rx_consumed.wrapping_add(slots);
        }
        if count > 0 {
            rings
                .consumed(NET_RX_HEADER)
                .store(self.rx_consumed, Ordering::Release);
        }
        Ok(count)
    }

    /// Queues one packet (the virtio-net header and the frame) of `len` bytes in the slots it
    /// takes, after a wrap slot when it would not fit before the ring's end.
    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        if !(NET_PACKET_MIN as usize..=NET_PACKET_MAX as usize).contains(&len) {
            return Err(DeviceError::InvalidArgument);
        }
        let rings = &self.rings;
        let slots = net_packet_slots(len as u64);
        let tail = rings.tx_slots - self.tx_produced % rings.tx_slots;
        let skip = if slots > tail { tail } else { 0 };
        if !rings.tx_room(self.tx_produced, skip + slots) {
            return Err(DeviceError::WouldBlock);
        }
        if skip > 0 {
            let (wrap, _) = self.slot(net_tx_slot(
                rings.rx_slots,
                rings.tx_slots,
                self.tx_produced,
            ));
            // SAFETY: the slot lies inside the ring and is free (room was checked above), so the
            // monitor does not read it until it is published below.
            unsafe {
                wrap.write(NetSlotHeader {
                    len: 0,
                    flags: NET_SLOT_WRAP,
                })
            };
        }
        let start = self.tx_produced.wrapping_add(skip);
        let (header, packet) = self.slot(net_tx_slot(rings.rx_slots, rings.tx_slots, start));
        // SAFETY: the packet's slots lie inside the ring, before its end (a wrap moved it to the
        // first slot otherwise), and are free, so the monitor does not read them until they are
        // published below; `len` is within the packet limits checked above.
        unsafe {
            fill(core::slice::from_raw_parts_mut(packet, len));
            header.write(NetSlotHeader {
                len: len as u32,
                flags: 0,
            });
        }
        self.tx_produced = start.wrapping_add(slots);
        self.rings
            .produced(NET_TX_HEADER)
            .store(self.tx_produced, Ordering::Release);
        Ok(())
    }

    /// Whether the longest packet fits (after a wrap, if it must skip the ring's tail).
    fn can_transmit(&self) -> bool {
        let tail = self.rings.tx_slots - self.tx_produced % self.rings.tx_slots;
        let skip = if tail < NET_PACKET_SLOTS_MAX { tail } else { 0 };
        self.rings
            .tx_room(self.tx_produced, skip + NET_PACKET_SLOTS_MAX)
    }

    fn offloads(&self) -> Option<Offloads> {
        Some(self.rings.offloads)
    }

    /// The receive ring header's `moves`, which the monitor bumps when it restores or migrates
    /// the guest onto another tap.
    fn moves(&self) -> u32 {
        self.rings.moves().load(Ordering::Acquire)
    }

    /// Nothing to do: published frames leave at the guest's next exit (a `Yield`, or the doorbell
    /// when the ring fills), which batches them with everything else the guest sends meanwhile.
    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}
