//! smoltcp's view of a Fata [`Net`] device: frames come in batches and leave in batches.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::task::Waker;

use fata::{DeviceError, Net, OFFLOAD_FRAME_MAX, VNET_HDR_LEN};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::phy::{self, Checksum, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame,
    EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv6Address,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

use super::offload::Offload;

/// Frames pulled from the device per batch.
pub(crate) const RX_BATCH: usize = 64;
/// Room for one frame of a device without offloads: a 1500-byte payload, the Ethernet header
/// and a VLAN tag.
const FRAME_MAX: usize = 1518;
/// Packets of a device with offloads (up to 64 KiB each) that the batch buffer holds at least.
const LARGE_PACKETS: usize = 4;
/// The largest IP packet a device with segmentation offload carries.
const LARGE_IP_PACKET: usize = 65535;

/// Counters a benchmark or test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames received from the device.
    pub rx_frames: u64,
    /// Frames handed to the device.
    pub tx_frames: u64,
    /// Frames dropped because the device's transmit queue stayed full.
    pub tx_dropped: u64,
    /// Frames sent as one large TCP segment for the host to cut (segmentation offload).
    pub tx_segmented: u64,
    /// Received frames longer than the link's MTU: TCP segments the host merged.
    pub rx_merged: u64,
    /// Received frames dropped for a wrong TCP checksum (checked here when smoltcp leaves TCP
    /// checksums to the host).
    pub rx_bad_checksum: u64,
    /// IPv6 router advertisements received (for SLAAC's router discovery, see `discovery`).
    pub rx_router_adverts: u64,
}

/// A [`Net`] device with a receive batch buffer, ready for smoltcp.
///
/// Received frames are copied once into a fixed batch buffer (no allocation per frame); frames to
/// send are written straight into the device's transmit queue and flushed after each poll. For a
/// device with offloads ([`Net::offloads`]) each frame has a virtio-net header before it, which
/// [`Offload`] reads and writes.
pub(crate) struct Link {
    net: Box<dyn Net>,
    offload: Option<Offload>,
    /// Received packets, one after another.
    rx_buffer: Vec<u8>,
    /// Start and length of each packet in `rx_buffer`.
    rx_packets: [(u32, u32); RX_BATCH],
    rx_next: usize,
    rx_count: usize,
    pub(crate) stats: LinkStats,
}

impl Link {
    pub(crate) fn new(net: Box<dyn Net>) -> Link {
        let offload = net.offloads().map(|o| Offload::new(o, net.mtu()));
        let buffer = if offload.is_some() {
            (RX_BATCH * FRAME_MAX).max(LARGE_PACKETS * (VNET_HDR_LEN + OFFLOAD_FRAME_MAX))
        } else {
            RX_BATCH * FRAME_MAX
        };
        Link {
            net,
            offload,
            rx_buffer: vec![0; buffer],
            rx_packets: [(0, 0); RX_BATCH],
            rx_next: 0,
            rx_count: 0,
            stats: LinkStats::default(),
        }
    }

    /// Whether the device's frames carry virtio-net headers: TCP segments may be large, and are
    /// acknowledged at once (a merged segment stands for many).
    pub(crate) fn offloading(&self) -> bool {
        self.offload.is_some()
    }

    /// The longest packet a receive may hand out.
    fn packet_max(&self) -> usize {
        if self.offload.is_some() {
            VNET_HDR_LEN + OFFLOAD_FRAME_MAX
        } else {
            FRAME_MAX
        }
    }

    pub(crate) fn net(&self) -> &dyn Net {
        &*self.net
    }

    /// Has `waker` woken when a frame waits on a device that lives in memory (one without a
    /// readiness bit); other devices ignore it.
    pub(crate) fn register_receive_waker(&mut self, waker: &Waker) {
        self.net.register_receive_waker(waker);
    }

    /// Hands the frames queued during a poll to the host.
    pub(crate) fn flush(&mut self) {
        // A failed flush loses frames the way a congested wire would; TCP retransmits.
        let _ = self.net.flush();
    }

    /// Queues an announcement of each of `addresses`, so that switches and the peers'
    /// neighbour caches learn that the address is behind this MAC on this link: for IPv4 a
    /// gratuitous ARP, an ARP request to the Ethernet broadcast address whose sender and target
    /// address are both the interface's own (RFC 5227's announcement); for IPv6 an unsolicited
    /// neighbour advertisement with the override flag to all nodes (RFC 4861, 7.2.6). `false`
    /// when the device had no room for every frame: the caller tries again later (an
    /// announcement sent twice does no harm).
    pub(crate) fn announce(&mut self, addresses: impl Iterator<Item = IpAddress>) -> bool {
        let mac = EthernetAddress(self.net.mac());
        for address in addresses {
            let sent = match address {
                IpAddress::Ipv4(address) => {
                    let arp = ArpRepr::EthernetIpv4 {
                        operation: ArpOperation::Request,
                        source_hardware_addr: mac,
                        source_protocol_addr: address,
                        // Ignored in an announcement; RFC 5227 asks for zeros.
                        target_hardware_addr: EthernetAddress([0; 6]),
                        target_protocol_addr: address,
                    };
                    self.send_ethernet(
                        EthernetAddress::BROADCAST,
                        EthernetProtocol::Arp,
                        arp.buffer_len(),
                        |payload| arp.emit(&mut ArpPacket::new_unchecked(payload)),
                    )
                }
                IpAddress::Ipv6(address) => {
                    let all_nodes = Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
                    let advert = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                        flags: NdiscNeighborFlags::OVERRIDE,
                        target_addr: address,
                        lladdr: Some(RawHardwareAddress::from(mac)),
                    });
                    let ip = Ipv6Repr {
                        src_addr: address,
                        dst_addr: all_nodes,
                        next_header: IpProtocol::Icmpv6,
                        payload_len: advert.buffer_len(),
                        // Neighbour discovery messages must arrive with the largest hop limit.
                        hop_limit: 255,
                    };
                    // 33:33 followed by the low 32 bits of the multicast group (RFC 2464).
                    let all_nodes_mac = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);
                    let len = ip.buffer_len() + advert.buffer_len();
                    self.send_ethernet(all_nodes_mac, EthernetProtocol::Ipv6, len, |payload| {
                        let mut packet = Ipv6Packet::new_unchecked(payload);
                        ip.emit(&mut packet);
                        advert.emit(
                            &address,
                            &all_nodes,
                            &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
                            &ChecksumCapabilities::default(),
                        );
                    })
                }
            };
            if !sent {
                return false;
            }
        }
        true
    }

    /// Queues one Ethernet frame from this interface's MAC to `dst`, whose payload of `len`
    /// bytes `fill` writes; `false` when the device had no room.
    fn send_ethernet(
        &mut self,
        dst: EthernetAddress,
        ethertype: EthernetProtocol,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> bool {
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress(self.net.mac()),
            dst_addr: dst,
            ethertype,
        };
        if !self.net.can_transmit() {
            return false;
        }
        let mut tx = TxToken {
            net: &mut *self.net,
            offload: self.offload.as_mut(),
            stats: &mut self.stats,
        };
        tx.send(ETHERNET_HEADER_LEN + len, |buf| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            ethernet.emit(&mut frame);
            fill(frame.payload_mut());
        })
        .is_some()
    }

    /// Pulls the next batch of packets from the device when the last one is used up, as many as
    /// the batch buffer surely holds.
    fn refill(&mut self) {
        if self.rx_next < self.rx_count {
            return;
        }
        let packet_max = self.packet_max();
        let (buffer, packets) = (&mut self.rx_buffer, &mut self.rx_packets);
        let (mut count, mut used) = (0, 0);
        loop {
            let fits = ((buffer.len() - used) / packet_max).min(RX_BATCH - count);
            if fits == 0 {
                break;
            }
            let received = self.net.receive(fits, &mut |packet: &[u8]| {
                // Longer packets are dropped: no valid peer sends them.
                if count < RX_BATCH
                    && packet.len() <= packet_max
                    && used + packet.len() <= buffer.len()
                {
                    buffer[used..][..packet.len()].copy_from_slice(packet);
                    packets[count] = (used as u32, packet.len() as u32);
                    used += packet.len();
                    count += 1;
                }
            });
            if received.is_err() || received == Ok(0) {
                break;
            }
        }
        self.rx_next = 0;
        self.rx_count = count;
        self.stats.rx_frames += count as u64;
    }

    /// Folds the offload counters into the link's.
    fn count_offloads(&mut self) {
        if let Some(offload) = &self.offload {
            self.stats.tx_segmented = offload.counts.segmented;
            self.stats.rx_merged = offload.counts.merged;
            self.stats.rx_bad_checksum = offload.counts.bad_checksum;
        }
    }
}

/// Whether `frame` (Ethernet) is an ICMPv6 router advertisement: IPv6 (ethertype 0x86dd) whose
/// next header is ICMPv6 (58, routers send no extension headers before it) and whose ICMPv6 type
/// is 134.
fn is_router_advert(frame: &[u8]) -> bool {
    const ETHERNET: usize = 14;
    const IPV6: usize = 40;
    frame.len() > ETHERNET + IPV6
        && frame[12..14] == [0x86, 0xdd]
        && frame[ETHERNET + 6] == 58
        && frame[ETHERNET + IPV6] == 134
}

/// One received frame.
pub(crate) struct RxToken<'a>(&'a [u8]);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

/// Room for one frame in the device's transmit queue.
pub(crate) struct TxToken<'a> {
    net: &'a mut dyn Net,
    offload: Option<&'a mut Offload>,
    stats: &'a mut LinkStats,
}

impl TxToken<'_> {
    /// Queues a frame of `len` bytes that `f` writes (after a virtio-net header, which the
    /// offload then fills, on a device with offloads); `None` when the device had no room even
    /// after a flush.
    fn send<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let header = if self.offload.is_some() {
            VNET_HDR_LEN
        } else {
            0
        };
        let mut f = Some(f);
        let mut result = None;
        let offload = &mut self.offload;
        let mut fill = |buf: &mut [u8]| {
            if let Some(f) = f.take() {
                result = Some(f(&mut buf[header..]));
                if let Some(offload) = offload.as_deref_mut() {
                    offload.transmit(buf);
                }
            }
        };
        let mut sent = self.net.transmit(header + len, &mut fill);
        if sent == Err(DeviceError::WouldBlock) {
            let _ = self.net.flush();
            sent = self.net.transmit(header + len, &mut fill);
        }
        match (sent, result) {
            (Ok(()), Some(result)) => {
                self.stats.tx_frames += 1;
                Some(result)
            }
            (_, result) => {
                self.stats.tx_dropped += 1;
                drop(result);
                None
            }
        }
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, len: usize, f: F) -> R {
        let mut f = Some(f);
        if let Some(result) = self.send(len, |buf| f.take().map(|f| f(buf))).flatten() {
            return result;
        }
        // smoltcp needs the closure's result; build the frame in scratch space and drop it.
        let mut scratch = vec![0; len];
        f.take()
            .map(|f| f(&mut scratch))
            .expect("the frame closure runs once")
    }
}

impl phy::Device for Link {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let (start, len) = loop {
            self.refill();
            if self.rx_next >= self.rx_count {
                self.count_offloads();
                return None;
            }
            let (start, len) = self.rx_packets[self.rx_next];
            let (start, len) = (start as usize, len as usize);
            self.rx_next += 1;
            match self.offload.as_mut() {
                None => break (start, len),
                Some(offload) => {
                    if offload.receive(&mut self.rx_buffer[start..][..len]) {
                        break (start + VNET_HDR_LEN, len - VNET_HDR_LEN);
                    }
                    // A segment with a wrong checksum, or no frame at all: the next one.
                }
            }
        };
        if is_router_advert(&self.rx_buffer[start..][..len]) {
            self.stats.rx_router_adverts += 1;
        }
        Some((
            RxToken(&self.rx_buffer[start..][..len]),
            TxToken {
                net: &mut *self.net,
                offload: self.offload.as_mut(),
                stats: &mut self.stats,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        // A full transmit queue holds the data back in the sockets (sent on a later poll) rather
        // than building frames only to drop them, which TCP would have to recover from by
        // retransmission timeouts.
        if !self.net.can_transmit() {
            self.flush();
            if !self.net.can_transmit() {
                return None;
            }
        }
        Some(TxToken {
            net: &mut *self.net,
            offload: self.offload.as_mut(),
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.net.mtu() + 14;
        caps.max_burst_size = Some(RX_BATCH);
        if let Some(offload) = &self.offload
            && offload.tcp_checksums()
        {
            // The host fills TCP checksums and checks those it received; the offload checks the
            // rest.
            caps.checksum.tcp = Checksum::None;
            if offload.large_segments() {
                // smoltcp may build (and take) TCP segments of up to 64 KiB.
                caps.max_transmission_unit = LARGE_IP_PACKET + 14;
            }
        }
        caps
    }
}
