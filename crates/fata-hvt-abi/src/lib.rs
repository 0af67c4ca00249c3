//! The hvt ABI: the whole contract between a Fata unikernel and its KVM monitor.
//!
//! This crate is the lowest layer of the hvt target and the only code the guest platform
//! (`fata-hvt`) and the monitor (`fata-monitor`) share. It has no dependencies and no `unsafe`.
//!
//! # The contract in short
//! - **Image.** A static x86-64 ELF executable linked at [`LOAD_ADDR`], with a `PT_NOTE` carrying an
//!   [`AbiNote`] that names the [`ABI_VERSION`] it was built for. The monitor refuses any other version.
//!   The same segment carries the image's manifest ([`NOTE_TYPE_MANIFEST`]): the devices its app
//!   takes and its settings, which `fata run` checks against the command line before boot.
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
//!   ([`doorbell_address`]) to have a full transmit ring sent at once. The receive ring's header
//!   also counts the interface's moves to another host link ([`NetRingHeader::moves`]).
//! - **Block devices.** Each [`DeviceKind::Block`] entry describes a request ring and a completion
//!   ring in guest RAM ([`BlockRingHeader`], [`BlockRequest`], [`BlockCompletion`]); the monitor
//!   takes every published request at the guest's exits, runs them on the host together, and
//!   publishes each completion with its own status.
//! - **Key-value stores.** Each [`DeviceKind::Kv`] entry describes a read-only region of guest RAM
//!   holding a sorted index ([`KvHeader`], [`KvEntry`]) and the values; the guest reads it in place
//!   after checking it (the checked reader is the `fata-hvt-kv` crate), with no hypercall.
//!
//! Every struct is `#[repr(C)]` with explicit padding, little-endian, and the tests pin every size
//! and offset. Like Solo5's `hvt_abi.h`, this crate holds declarations only: the byte codec the
//! monitor reads guest memory with is `fata-hvt-codec`, and the key-value reader is `fata-hvt-kv`.
//! Fields that hold guest-physical addresses have their own type, [`GuestAddr`], so the monitor
//! cannot mistake one for a host pointer.
//!
//! | module | what it declares |
//! |---|---|
//! | [`boot`] | the load address, memory limits, [`BootInfo`] and its device table |
//! | [`hypercall`] | the hypercall window, the [`Hypercall`] numbers and their argument structs |
//! | [`net`] | network rings, slots and doorbells |
//! | [`block`] | block request and completion rings |
//! | [`kv`] | the layout of read-only key-value regions |
//! | [`note`] | the ELF notes that name an image's ABI version and declare its devices |
#![no_std]
#![forbid(unsafe_code)]

pub mod block;
pub mod boot;
pub mod hypercall;
pub mod kv;
pub mod net;
pub mod note;

pub use block::*;
pub use boot::*;
pub use hypercall::*;
pub use kv::*;
pub use net::*;
pub use note::*;

use core::fmt;

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
/// `Yield` and doorbell exits; the rings' `waiting` flag became reserved); 5 added block devices
/// ([`DeviceKind::Block`]); 6 gave the receive ring's header a `moves` count
/// ([`NetRingHeader::moves`]), so a guest restored or migrated onto another link announces itself;
/// 7 put a virtio-net header before every frame, let packets of up to 64 KiB span slots
/// ([`NET_SLOT_WRAP`], [`net_packet_slots`]) and named the host's offloads
/// ([`DeviceInfo::offloads`]), so TCP moves in large segments the host cuts up.
pub const ABI_VERSION: u32 = 7;

/// A guest-physical address, as it appears in the ABI's structs (Solo5 marks the same fields with
/// `HVT_GUEST_PTR`). Guest memory is identity-mapped, so it is also the guest's virtual address.
/// The monitor turns one into host bytes only through its checked guest-memory accessor; the
/// newtype keeps it from being used as a number or a host pointer by accident.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct GuestAddr(pub u64);

impl fmt::Display for GuestAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

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
        assert_eq!(offset_of!(DeviceInfo, offloads), 64);
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
        assert_eq!(size_of::<ManifestHeader>(), 16);
        assert_eq!(offset_of!(ManifestHeader, device_count), 4);
        assert_eq!(offset_of!(ManifestHeader, coalesce_us), 8);
        assert_eq!(size_of::<ManifestDevice>(), 24);
        assert_eq!(offset_of!(ManifestDevice, flags), 4);
        assert_eq!(offset_of!(ManifestDevice, name), 8);
        assert_eq!(manifest_len(2), 64);
        assert_eq!(
            (NOTE_TYPE_ABI, NOTE_TYPE_MANIFEST, MANIFEST_VERSION),
            (1, 2, 1)
        );
        assert_eq!(size_of::<NetRingHeader>(), 192);
        assert_eq!(offset_of!(NetRingHeader, produced), 0);
        assert_eq!(offset_of!(NetRingHeader, consumed), 64);
        assert_eq!(offset_of!(NetRingHeader, moves), 128);
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

    #[test]
    fn net_ring_layout_is_pinned() {
        assert_eq!(NET_PACKET_MAX, 12 + 65554);
        assert!(NET_FRAME_MAX >= NET_MTU as u64 + 18);
        assert_eq!(NET_PACKET_SLOTS_MAX, 33);
        assert_eq!(net_packet_slots(NET_PACKET_MIN), 1);
        assert_eq!(net_packet_slots(2040), 1);
        assert_eq!(net_packet_slots(2041), 2);
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
        assert_eq!(doorbell_address(0), GuestAddr(DOORBELL_BASE));
        assert_eq!(doorbell_address(3), GuestAddr(0xFFFF_E018));
        assert!(doorbell_address(MAX_DEVICES as u32).0 < HYPERCALL_BASE);
    }

    #[test]
    fn block_ring_layout_is_pinned() {
        assert_eq!(size_of::<BlockRingHeader>(), 320);
        assert_eq!(offset_of!(BlockRingHeader, requests_produced), 0);
        assert_eq!(offset_of!(BlockRingHeader, requests_consumed), 64);
        assert_eq!(offset_of!(BlockRingHeader, completions_produced), 128);
        assert_eq!(offset_of!(BlockRingHeader, completions_consumed), 192);
        assert_eq!(offset_of!(BlockRingHeader, sector_size), 256);
        assert_eq!(offset_of!(BlockRingHeader, flags), 260);
        assert_eq!(offset_of!(BlockRingHeader, sectors), 264);
        assert_eq!(offset_of!(BlockRingHeader, request_max), 272);
        assert_eq!(offset_of!(BlockRingHeader, reserved), 280);
        assert_eq!(size_of::<BlockRequest>(), 64);
        assert_eq!(offset_of!(BlockRequest, tag), 0);
        assert_eq!(offset_of!(BlockRequest, op), 8);
        assert_eq!(offset_of!(BlockRequest, flags), 12);
        assert_eq!(offset_of!(BlockRequest, sector), 16);
        assert_eq!(offset_of!(BlockRequest, len), 24);
        assert_eq!(offset_of!(BlockRequest, buffer), 32);
        assert_eq!(offset_of!(BlockRequest, reserved), 40);
        assert_eq!(size_of::<BlockCompletion>(), 16);
        assert_eq!(offset_of!(BlockCompletion, status), 8);
        assert!(BLOCK_REQUESTS >= BLOCK_HEADER + size_of::<BlockRingHeader>() as u64);
        assert_eq!(
            block_ring_len(128),
            (4096 + 128 * 80usize).div_ceil(4096) as u64 * 4096
        );
        assert_eq!(block_ring_len(1), 8192);
        assert_eq!(block_request_slot(128, 129), 4096 + 64);
        assert_eq!(block_completion_slot(128, 0), 4096 + 128 * 64);
        let max = BLOCK_SLOTS_MAX;
        assert!(block_completion_slot(max, u32::MAX) + 16 <= block_ring_len(max));
        assert_eq!(BlockOp::from_u32(4), Some(BlockOp::Discard));
        assert_eq!(BlockOp::from_u32(0), None);
        assert_eq!(BlockStatus::from_u32(6), Some(BlockStatus::Unsupported));
        assert_eq!(BlockStatus::from_u32(7), None);
        assert_eq!(DeviceKind::Block as u32, 2);
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
}
