//! smoltcp's view of a Fata [`Net`] device: frames come in batches and leave in batches.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::task::Waker;

use fata::{DeviceError, Net};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ETHERNET_HEADER_LEN, EthernetAddress, EthernetFrame,
    EthernetProtocol, EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpAddress, IpProtocol, Ipv6Address,
    Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

/// Frames pulled from the device per receive call.
pub(crate) const RX_BATCH: usize = 64;
/// Room for one frame: a 1500-byte payload, the Ethernet header and a VLAN tag.
const FRAME_MAX: usize = 1518;

/// Counters a benchmark or test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames received from the device.
    pub rx_frames: u64,
    /// Frames handed to the device.
    pub tx_frames: u64,
    /// Frames dropped because the device's transmit queue stayed full.
    pub tx_dropped: u64,
}

/// A [`Net`] device with a receive batch buffer, ready for smoltcp.
///
/// Received frames are copied once into a fixed batch buffer (no allocation per frame); frames to
/// send are written straight into the device's transmit queue and flushed after each poll.
pub(crate) struct Link {
    net: Box<dyn Net>,
    rx_frames: Vec<u8>,
    rx_lens: [u16; RX_BATCH],
    rx_next: usize,
    rx_count: usize,
    pub(crate) stats: LinkStats,
}

impl Link {
    pub(crate) fn new(net: Box<dyn Net>) -> Link {
        Link {
            net,
            rx_frames: vec![0; RX_BATCH * FRAME_MAX],
            rx_lens: [0; RX_BATCH],
            rx_next: 0,
            rx_count: 0,
            stats: LinkStats::default(),
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
        let mut fill = Some(fill);
        let mut write = |buf: &mut [u8]| {
            let mut frame = EthernetFrame::new_unchecked(buf);
            ethernet.emit(&mut frame);
            if let Some(fill) = fill.take() {
                fill(frame.payload_mut());
            }
        };
        if !self.net.can_transmit()
            || self
                .net
                .transmit(ETHERNET_HEADER_LEN + len, &mut write)
                .is_err()
        {
            return false;
        }
        self.stats.tx_frames += 1;
        true
    }

    /// Pulls the next batch of frames from the device when the last one is used up.
    fn refill(&mut self) {
        if self.rx_next < self.rx_count {
            return;
        }
        let (frames, lens) = (&mut self.rx_frames, &mut self.rx_lens);
        let mut count = 0;
        let received = self.net.receive(RX_BATCH, &mut |frame: &[u8]| {
            // Frames longer than the largest Ethernet frame are dropped: no valid peer sends them.
            if count < RX_BATCH && frame.len() <= FRAME_MAX {
                frames[count * FRAME_MAX..][..frame.len()].copy_from_slice(frame);
                lens[count] = frame.len() as u16;
                count += 1;
            }
        });
        self.rx_next = 0;
        self.rx_count = if received.is_ok() { count } else { 0 };
        self.stats.rx_frames += self.rx_count as u64;
    }
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
    stats: &'a mut LinkStats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let mut result = None;
        let mut fill = |buf: &mut [u8]| {
            if let Some(f) = f.take() {
                result = Some(f(buf));
            }
        };
        let mut sent = self.net.transmit(len, &mut fill);
        if sent == Err(DeviceError::WouldBlock) {
            let _ = self.net.flush();
            sent = self.net.transmit(len, &mut fill);
        }
        match (sent, result) {
            (Ok(()), Some(result)) => {
                self.stats.tx_frames += 1;
                result
            }
            (_, result) => {
                self.stats.tx_dropped += 1;
                // smoltcp needs the closure's result; build the frame in scratch space and drop it.
                result.unwrap_or_else(|| {
                    let mut scratch = vec![0; len];
                    f.take()
                        .map(|f| f(&mut scratch))
                        .expect("the frame closure runs once")
                })
            }
        }
    }
}

impl phy::Device for Link {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        self.refill();
        if self.rx_next >= self.rx_count {
            return None;
        }
        let at = self.rx_next;
        self.rx_next += 1;
        let frame = &self.rx_frames[at * FRAME_MAX..][..usize::from(self.rx_lens[at])];
        Some((
            RxToken(frame),
            TxToken {
                net: &mut *self.net,
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
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.net.mtu() + 14;
        caps.max_burst_size = Some(RX_BATCH);
        caps
    }
}
