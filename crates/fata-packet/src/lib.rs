//! AF_PACKET rings on a host interface, through which the hvt monitor attaches a guest to a veth,
//! a macvlan or a NIC directly (`fata run --net NAME=packet:IFACE`) instead of through a tap.
//!
//! A `TPACKET_V2` socket maps a receive ring and a transmit ring that it shares with the kernel:
//! received frames are read in place, with no system call, from slots the kernel hands over one
//! by one; frames to send are written into transmit slots, and one `send` hands the kernel all of
//! them. A tap takes a system call per frame each way. (`TPACKET_V3` hands received frames over a
//! whole block at a time, when the block is full or its retire timer, at least 1 ms, runs out: a
//! lone request waits that long. Measured behind apps/echo, it answered 1,000 requests a second
//! with one in flight where V2 answered 14,000; docs/networking.md has the table.)
//!
//! With `PACKET_VNET_HDR_SZ` (Linux 6.2; the 10-byte `PACKET_VNET_HDR` before that) every frame
//! carries a virtio-net header both ways, as a tap's do, so checksums and TCP segmentation are
//! left to the kernel: a frame the host's stack sends through a veth arrives with its TCP checksum
//! not filled in, and may be a 64 KiB segment, which only the header describes. Slots are sized
//! for such segments.
//!
//! The socket takes every frame the interface receives, in promiscuous mode, and none it sends
//! itself (`PACKET_IGNORE_OUTGOING`); it bypasses the queueing discipline on transmit.
//!
//! Written by hand: no maintained crate maps AF_PACKET rings (pnet and the afpacket crates use
//! plain `recv` and `send`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes of one ring slot: its `tpacket2_hdr`, alignment, the virtio-net header and a frame of
/// up to 64 KiB; a slot fills a block of its own (18 pages).
const SLOT_SIZE: usize = 18 << 12;
/// Slots of the receive ring (9 MiB).
const RX_SLOTS: usize = 128;
/// Slots of the transmit ring (4.5 MiB).
const TX_SLOTS: usize = 64;
/// Bytes of both rings' mapping.
const MAP_LEN: usize = (RX_SLOTS + TX_SLOTS) * SLOT_SIZE;
/// Where the data (header, then frame) starts in a transmit slot (the kernel's default without
/// `PACKET_TX_HAS_OFF`).
const TX_DATA: usize = libc::TPACKET2_HDRLEN - size_of::<libc::sockaddr_ll>();

/// Bytes of the virtio-net header [`PacketRing::receive`] and [`PacketRing::queue`] speak
/// (`struct virtio_net_hdr_v1`, with its buffer count).
pub const VNET_HDR_LEN: usize = 12;

/// Bytes of the header the kernel writes before a received frame (`struct virtio_net_hdr`).
const RX_VNET_HDR_LEN: usize = 10;

/// The longest frame a slot carries either way (without the header); longer frames arriving are
/// dropped.
pub const FRAME_MAX: usize = SLOT_SIZE - TX_DATA - VNET_HDR_LEN - 256;

/// An AF_PACKET socket with its two rings mapped.
pub struct PacketRing {
    socket: OwnedFd,
    map: NonNull<u8>,
    /// Bytes of the kernel's virtio-net header before each frame: 12, 10 (older kernels) or 0
    /// (none: plain frames, no offloads).
    vnet: usize,
    /// The next receive slot to look at.
    rx_next: usize,
    /// The next transmit slot to fill.
    tx_next: usize,
    /// Frames queued since the last [`PacketRing::flush`].
    tx_queued: usize,
}

// SAFETY: the mapping belongs to this value alone and is only reached through `&mut self` or
// atomics, so the value may move to another thread.
unsafe impl Send for PacketRing {}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_option<T>(socket: &OwnedFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed, which the kernel only reads.
    check(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
}

impl PacketRing {
    /// Opens an AF_PACKET socket on interface `iface` (which must exist and be up) with its
    /// rings.
    pub fn open(iface: &str) -> io::Result<PacketRing> {
        let name = std::ffi::CString::new(iface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an interface name"))?;
        // SAFETY: `name` is a NUL-terminated string for the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let protocol = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: a plain socket call; the descriptor it returns is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol),
            )
        };
        check(fd)?;
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let v2 = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        set_option(&socket, libc::PACKET_VERSION, &v2)?;
        set_option(&socket, libc::PACKET_IGNORE_OUTGOING, &1 as &libc::c_int)?;
        set_option(&socket, libc::PACKET_QDISC_BYPASS, &1 as &libc::c_int)?;
        // The header before the frames: 12 bytes where the kernel takes a size, else its 10.
        let twelve = VNET_HDR_LEN as libc::c_int;
        let vnet = if set_option(&socket, libc::PACKET_VNET_HDR_SZ, &twelve).is_ok() {
            VNET_HDR_LEN
        } else if set_option(&socket, libc::PACKET_VNET_HDR, &1 as &libc::c_int).is_ok() {
            10
        } else {
            0
        };
        for (option, slots) in [
            (libc::PACKET_RX_RING, RX_SLOTS),
            (libc::PACKET_TX_RING, TX_SLOTS),
        ] {
            let request = libc::tpacket_req {
                tp_block_size: SLOT_SIZE as libc::c_uint,
                tp_block_nr: slots as libc::c_uint,
                tp_frame_size: SLOT_SIZE as libc::c_uint,
                tp_frame_nr: slots as libc::c_uint,
            };
            set_option(&socket, option, &request)?;
        }
        let membership = libc::packet_mreq {
            mr_ifindex: index as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        set_option(&socket, libc::PACKET_ADD_MEMBERSHIP, &membership)?;
        // SAFETY: maps the two rings the options above set up, receive ring first; the mapping
        // is unmapped in `drop` and nothing else refers to it.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                socket.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(map.cast()).ok_or_else(io::Error::last_os_error)?;
        let ring = PacketRing {
            socket,
            map,
            vnet,
            rx_next: 0,
            tx_next: 0,
            tx_queued: 0,
        };
        // SAFETY: all-zero bytes are a valid sockaddr_ll; the fields that matter are set next.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as libc::c_ushort;
        address.sll_protocol = protocol;
        address.sll_ifindex = index as libc::c_int;
        // SAFETY: `address` is a sockaddr_ll of the length passed, read by the kernel.
        check(unsafe {
            libc::bind(
                ring.socket.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(ring)
    }

    /// Whether frames carry the kernel's virtio-net header, through which it offloads checksums
    /// and TCP segmentation; without it they are plain frames and headers are all zero.
    pub fn offloads(&self) -> bool {
        self.vnet != 0
    }

    /// The slot `index` of the receive ring (`tx` false) or the transmit ring.
    fn slot(&self, tx: bool, index: usize) -> *mut u8 {
        let ring = if tx { RX_SLOTS * SLOT_SIZE } else { 0 };
        // SAFETY: `index` is below the ring's slot count, so the slot lies inside the mapping.
        unsafe { self.map.as_ptr().add(ring + index * SLOT_SIZE) }
    }

    /// The status word of a slot, which kernel and process hand it over with.
    fn status(&self, slot: *mut u8) -> &AtomicU32 {
        // SAFETY: every slot starts with a `tpacket2_hdr`, whose first field is the `u32` status,
        // 4-byte aligned (slots are page-aligned); both sides access it atomically.
        unsafe { &*(slot as *const AtomicU32) }
    }

    /// Hands `on_frame` each received frame in turn, with its virtio-net header (all zero
    /// without [`PacketRing::offloads`]), in place, while it returns `true`; a frame it refuses
    /// (no room for it) stays for the next call. Returns how many it took, and how many frames
    /// the kernel cut short (longer than [`FRAME_MAX`]) were dropped.
    pub fn receive(
        &mut self,
        mut on_frame: impl FnMut(&[u8; VNET_HDR_LEN], &[u8]) -> bool,
    ) -> (usize, usize) {
        let (mut taken, mut dropped) = (0, 0);
        loop {
            let slot = self.slot(false, self.rx_next);
            let status = self.status(slot).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the kernel handed the slot over (TP_STATUS_USER, acquire), so its header
            // and frame are written and stay so until the status is given back below.
            let header = unsafe { slot.cast::<libc::tpacket2_hdr>().read() };
            let (at, len) = (usize::from(header.tp_mac), header.tp_snaplen as usize);
            // The kernel writes the 10 bytes of `struct virtio_net_hdr` just before the frame,
            // whatever header size the socket has (the buffer count stays zero).
            let rx_vnet = self.vnet.min(RX_VNET_HDR_LEN);
            if status & libc::TP_STATUS_COPY != 0 || at < rx_vnet || at + len > SLOT_SIZE {
                dropped += 1;
            } else {
                let mut vnet = [0u8; VNET_HDR_LEN];
                // SAFETY: as above; the virtio-net header lies just before the frame, which lies
                // inside the slot (both checked).
                let frame = unsafe {
                    let header = std::slice::from_raw_parts(slot.add(at - rx_vnet), rx_vnet);
                    vnet[..rx_vnet].copy_from_slice(header);
                    std::slice::from_raw_parts(slot.add(at), len)
                };
                if !on_frame(&vnet, frame) {
                    break;
                }
                taken += 1;
            }
            self.status(slot)
                .store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.rx_next = (self.rx_next + 1) % RX_SLOTS;
        }
        (taken, dropped)
    }

    /// Queues a frame of `len` bytes (at most [`FRAME_MAX`]) that `fill` writes in place, behind
    /// `vnet`; `false` when the transmit ring is full (flush, and try again), the frame too long,
    /// or the header asks for an offload without [`PacketRing::offloads`].
    pub fn queue(
        &mut self,
        vnet: &[u8; VNET_HDR_LEN],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> bool {
        let slot = self.slot(true, self.tx_next);
        let status = self.status(slot).load(Ordering::Acquire);
        // A frame the kernel refused as malformed leaves its slot marked so; it is free again.
        let free =
            status == libc::TP_STATUS_AVAILABLE || status & libc::TP_STATUS_WRONG_FORMAT != 0;
        let asks = vnet.iter().any(|&b| b != 0);
        if len > FRAME_MAX || !free || (asks && self.vnet == 0) {
            return false;
        }
        // SAFETY: the slot is the process's (available): the kernel reads it only after the
        // status below says so; header and frame fit the slot after its `tpacket2_hdr`.
        unsafe {
            let data = slot.add(TX_DATA);
            std::slice::from_raw_parts_mut(data, self.vnet).copy_from_slice(&vnet[..self.vnet]);
            fill(std::slice::from_raw_parts_mut(data.add(self.vnet), len));
            let header = slot.cast::<libc::tpacket2_hdr>();
            (*header).tp_len = (self.vnet + len) as u32;
            (*header).tp_snaplen = (self.vnet + len) as u32;
        }
        self.status(slot)
            .store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.tx_next = (self.tx_next + 1) % TX_SLOTS;
        self.tx_queued += 1;
        true
    }

    /// Has the kernel send every queued frame: one system call (a `write` of no bytes) for the
    /// batch.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tx_queued == 0 {
            return Ok(());
        }
        self.tx_queued = 0;
        // A write of no bytes is a send (`MSG_DONTWAIT`: the socket is non-blocking) that takes
        // the frames from the transmit ring; `write` also keeps a confined monitor's allow-list
        // short.
        // SAFETY: a write of no bytes reads nothing through the pointer.
        let sent = unsafe { libc::write(self.socket.as_raw_fd(), [0u8; 1].as_ptr().cast(), 0) };
        if sent < 0 {
            let error = io::Error::last_os_error();
            // A ring the kernel is still sending from is no failure: it sends the rest too.
            if error.kind() != io::ErrorKind::WouldBlock {
                return Err(error);
            }
        }
        Ok(())
    }
}

impl AsRawFd for PacketRing {
    /// The socket, readable when the receive ring holds a frame.
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: the mapping `open` made, of this length, which nothing refers to any more.
        unsafe { libc::munmap(self.map.as_ptr().cast(), MAP_LEN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interface_that_does_not_exist_is_an_error() {
        assert!(PacketRing::open("fata-no-such0").is_err());
        assert!(PacketRing::open("bad\0name").is_err());
    }
}
