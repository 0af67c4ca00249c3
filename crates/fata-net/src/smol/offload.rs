//! The host's checksum and segmentation offloads, through the virtio-net header before each frame
//! of a device that has them (`Net::offloads`: the hvt rings, a unix tap opened with
//! `IFF_VNET_HDR`).
//!
//! smoltcp has no segmentation offload: it cuts TCP into segments of the peer's MSS itself and
//! checksums every byte. So, as a virtio-net driver does for a kernel stack:
//! - smoltcp leaves TCP checksums alone (its device capabilities say so), and this module fills
//!   the header instead: each TCP segment leaves with `NEEDS_CSUM` and the pseudo-header sum in
//!   its checksum field, which the host completes only where a wire needs it;
//! - the MSS option of every SYN received is recorded per connection and replaced by
//!   [`LARGE_MSS`], so smoltcp builds segments of up to 64 KiB; one longer than the peer's real
//!   MSS leaves as one frame with `GSO_TCPV4`/`GSO_TCPV6` and `gso_size` set, and the host cuts it
//!   into segments of the real size (for a peer behind a 1,500-byte hop too);
//! - frames the host marks `NEEDS_CSUM` (its own, not checksummed yet) or `DATA_VALID` (checked
//!   already) are taken as they are; others have their TCP checksum checked here and are dropped
//!   when it is wrong. Received TCP segments may be as large as the host merged them.
//!
//! Hand-written: no crate does this for smoltcp (virtio-drivers moves the header but leaves its
//! meaning to the stack). The header's layout is `struct virtio_net_hdr_v1`, little-endian.

use fata::{Offloads, VNET_HDR_LEN};
use smoltcp::wire::{IpAddress, IpProtocol, Ipv4Address, Ipv6Address, checksum};

/// The MSS smoltcp is told every peer takes, when the host segments TCP: it builds segments of
/// up to this many bytes (less its options), which stay within a 64 KiB frame.
pub(crate) const LARGE_MSS: u16 = 64_000;

const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const ETHERNET_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const TCP_SYN: u8 = 0x02;
/// Offset of the checksum in a TCP header.
const TCP_CHECKSUM: usize = 16;
/// Connections whose peer's MSS is remembered; more share slots and fall back to the minimum.
const MSS_SLOTS: usize = 1024;
/// The MSS every IPv4 host must take (RFC 9293), for a connection whose real one was forgotten.
const MIN_MSS_V4: u16 = 536;
/// The same for IPv6 (the minimum MTU, 1280, less 60 bytes of headers).
const MIN_MSS_V6: u16 = 1220;

/// What a received packet's header and frame say, checked against the frame's bounds.
struct Segment {
    /// Offset of the transport header.
    l4: usize,
    /// End of the IP packet (frames may carry padding after it).
    end: usize,
    protocol: IpProtocol,
    src: IpAddress,
    dst: IpAddress,
}

/// Finds the IP and transport headers of an Ethernet frame carrying IPv4 or IPv6; `None` for
/// anything else, which passes through untouched (smoltcp drops what it cannot take).
fn segment(frame: &[u8]) -> Option<Segment> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = ETHERNET_LEN;
    let header = frame.get(ip..)?;
    match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(header.first()? & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([*header.get(2)?, *header.get(3)?]));
            if ihl < 20 || total < ihl || header.len() < total {
                return None;
            }
            let src = Ipv4Address::from_octets(header[12..16].try_into().ok()?);
            let dst = Ipv4Address::from_octets(header[16..20].try_into().ok()?);
            Some(Segment {
                l4: ip + ihl,
                end: ip + total,
                protocol: IpProtocol::from(header[9]),
                src: src.into(),
                dst: dst.into(),
            })
        }
        ETHERTYPE_IPV6 => {
            let payload = usize::from(u16::from_be_bytes([*header.get(4)?, *header.get(5)?]));
            if header.len() < 40 + payload {
                return None;
            }
            let src = Ipv6Address::from_octets(header[8..24].try_into().ok()?);
            let dst = Ipv6Address::from_octets(header[24..40].try_into().ok()?);
            // Hop-by-hop, routing and destination options may come before the transport header.
            let (mut next, mut l4) = (header[6], 40);
            while matches!(next, 0 | 43 | 60) {
                let options = header.get(l4..l4 + 2)?;
                next = options[0];
                l4 += (usize::from(options[1]) + 1) * 8;
            }
            if l4 > 40 + payload {
                return None;
            }
            Some(Segment {
                l4: ip + l4,
                end: ip + 40 + payload,
                protocol: IpProtocol::from(next),
                src: src.into(),
                dst: dst.into(),
            })
        }
        _ => None,
    }
}

/// The pseudo-header sum (not complemented) of a transport segment of `len` bytes.
fn pseudo_header(s: &Segment, len: usize) -> u16 {
    checksum::pseudo_header(&s.src, &s.dst, s.protocol, len as u32)
}

/// Who a connection is to, from this side: the peer's address and port, and ours.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Flow {
    peer: [u8; 16],
    peer_port: u16,
    local_port: u16,
}

impl Flow {
    /// The flow of a TCP segment, received (`incoming`) or sent.
    fn of(s: &Segment, tcp: &[u8], incoming: bool) -> Flow {
        let (peer, ports) = if incoming {
            (s.src, [tcp[0], tcp[1], tcp[2], tcp[3]])
        } else {
            (s.dst, [tcp[2], tcp[3], tcp[0], tcp[1]])
        };
        let peer = match peer {
            IpAddress::Ipv4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddress::Ipv6(v6) => v6.octets(),
        };
        Flow {
            peer,
            peer_port: u16::from_be_bytes([ports[0], ports[1]]),
            local_port: u16::from_be_bytes([ports[2], ports[3]]),
        }
    }

    fn slot(&self) -> usize {
        // FNV-1a over the key: cheap, and spreads neighbouring ports.
        let mut hash: u32 = 0x811c_9dc5;
        let ports = [self.peer_port.to_be_bytes(), self.local_port.to_be_bytes()];
        for byte in self.peer.iter().chain(ports.as_flattened()) {
            hash = (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193);
        }
        hash as usize % MSS_SLOTS
    }
}

/// Counters of the offload work, for `LinkStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OffloadCounts {
    /// Frames sent as one large segment for the host to cut.
    pub segmented: u64,
    /// Received frames longer than the link's MTU allows: segments the host merged.
    pub merged: u64,
    /// Received frames dropped for a wrong checksum.
    pub bad_checksum: u64,
}

/// The offload state of one device: what the host does, and the peers' real MSS.
pub(crate) struct Offload {
    offloads: Offloads,
    /// The largest frame without offload, for counting merged ones.
    plain_frame: usize,
    mss: alloc::boxed::Box<[Option<(Flow, u16)>]>,
    pub(crate) counts: OffloadCounts,
}

impl Offload {
    /// The work for a device whose host does `offloads`, on a link of `mtu` bytes.
    pub(crate) fn new(offloads: Offloads, mtu: usize) -> Offload {
        Offload {
            offloads,
            plain_frame: mtu + 18,
            mss: alloc::vec![None; MSS_SLOTS].into_boxed_slice(),
            counts: OffloadCounts::default(),
        }
    }

    /// Whether smoltcp leaves TCP checksums to this module.
    pub(crate) fn tcp_checksums(&self) -> bool {
        self.offloads.csum
    }

    /// Whether the host segments TCP over IPv4 or IPv6: smoltcp may then build segments of up
    /// to 64 KiB.
    pub(crate) fn large_segments(&self) -> bool {
        self.offloads.csum && (self.offloads.tso4 || self.offloads.tso6)
    }

    fn segments(&self, s: &Segment) -> bool {
        self.offloads.csum
            && match s.src {
                IpAddress::Ipv4(_) => self.offloads.tso4,
                IpAddress::Ipv6(_) => self.offloads.tso6,
            }
    }

    /// Prepares a received packet (header and frame) for smoltcp, which takes the frame after
    /// the header; `false` drops it (a TCP segment with a wrong checksum, a packet too short).
    pub(crate) fn receive(&mut self, packet: &mut [u8]) -> bool {
        self.prepare(packet).is_some()
    }

    fn prepare(&mut self, packet: &mut [u8]) -> Option<()> {
        let (header, frame) = packet.split_at_mut_checked(VNET_HDR_LEN)?;
        let flags = header[0];
        if frame.len() > self.plain_frame {
            self.counts.merged += 1;
        }
        let Some(s) = segment(frame) else {
            return Some(());
        };
        if flags & F_NEEDS_CSUM != 0 && s.protocol != IpProtocol::Tcp {
            // The host left a UDP or ICMPv6 checksum to fill: smoltcp checks those.
            let start = usize::from(u16::from_le_bytes([header[6], header[7]]));
            let field = start + usize::from(u16::from_le_bytes([header[8], header[9]]));
            if field + 2 > s.end || start < s.l4 {
                return None;
            }
            let mut sum = !checksum::data(&frame[start..s.end]);
            if s.protocol == IpProtocol::Udp && sum == 0 {
                sum = 0xffff;
            }
            frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
        }
        if s.protocol != IpProtocol::Tcp || !self.tcp_checksums() {
            return Some(());
        }
        let tcp = &frame[s.l4..s.end];
        if tcp.len() < 20 {
            return None;
        }
        let checked = flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0;
        if !checked
            && checksum::combine(&[pseudo_header(&s, tcp.len()), checksum::data(tcp)]) != 0xffff
        {
            self.counts.bad_checksum += 1;
            return None;
        }
        if tcp[13] & TCP_SYN != 0 && self.segments(&s) {
            let flow = Flow::of(&s, tcp, true);
            let l4 = s.l4;
            let options_end = (l4 + usize::from(tcp[12] >> 4) * 4).clamp(l4 + 20, s.end);
            if let Some(at) = mss_option(&frame[l4 + 20..options_end]) {
                let at = l4 + 20 + at;
                let real = u16::from_be_bytes([frame[at], frame[at + 1]]);
                self.mss[flow.slot()] = Some((flow, real));
                frame[at..at + 2].copy_from_slice(&LARGE_MSS.to_be_bytes());
            }
        }
        Some(())
    }

    /// Writes the virtio-net header of a packet whose frame smoltcp just built after it: a TCP
    /// segment gets its pseudo-header sum and `NEEDS_CSUM`, and one longer than its peer's MSS
    /// is marked for the host to cut.
    pub(crate) fn transmit(&mut self, packet: &mut [u8]) {
        let Some((header, frame)) = packet.split_at_mut_checked(VNET_HDR_LEN) else {
            return;
        };
        header.fill(0);
        if !self.tcp_checksums() {
            return;
        }
        let Some(s) = segment(frame) else {
            return;
        };
        if s.protocol != IpProtocol::Tcp || s.end - s.l4 < 20 {
            return;
        }
        let len = s.end - s.l4;
        let tcp_header = usize::from(frame[s.l4 + 12] >> 4) * 4;
        if !(20..=len).contains(&tcp_header) {
            return;
        }
        let sum = pseudo_header(&s, len);
        frame[s.l4 + TCP_CHECKSUM..][..2].copy_from_slice(&sum.to_be_bytes());
        header[0] = F_NEEDS_CSUM;
        header[6..8].copy_from_slice(&((s.l4) as u16).to_le_bytes());
        header[8..10].copy_from_slice(&(TCP_CHECKSUM as u16).to_le_bytes());
        if !self.segments(&s) {
            return;
        }
        let flow = Flow::of(&s, &frame[s.l4..s.end], false);
        let mss = match (self.mss[flow.slot()], s.src) {
            (Some((known, mss)), _) if known == flow => mss,
            (_, IpAddress::Ipv4(_)) => MIN_MSS_V4,
            (_, IpAddress::Ipv6(_)) => MIN_MSS_V6,
        };
        // The MSS counts payload behind a bare 20-byte header; options come out of it.
        let piece = usize::from(mss).saturating_sub(tcp_header - 20).max(1);
        if len - tcp_header > piece {
            header[1] = match s.src {
                IpAddress::Ipv4(_) => GSO_TCPV4,
                IpAddress::Ipv6(_) => GSO_TCPV6,
            };
            header[2..4].copy_from_slice(&((s.l4 + tcp_header) as u16).to_le_bytes());
            header[4..6].copy_from_slice(&(piece as u16).to_le_bytes());
            self.counts.segmented += 1;
        }
    }
}

/// Offset of the MSS option's value among TCP `options`, if there is one.
fn mss_option(options: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            0 => return None,
            1 => at += 1,
            kind => {
                let len = usize::from(*options.get(at + 1)?);
                if len < 2 || at + len > options.len() {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(at + 2);
                }
                at += len;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const ALL: Offloads = Offloads {
        csum: true,
        tso4: true,
        tso6: true,
    };

    /// A packet: a virtio-net header with `flags`, then an Ethernet frame carrying a TCP/IPv4
    /// segment from 10.0.0.1:4000 to 10.0.0.2:80 with `tcp_flags`, an MSS option of `mss` and
    /// `payload` bytes, its checksum right when `good`.
    fn tcp_packet(flags: u8, tcp_flags: u8, mss: u16, payload: usize, good: bool) -> Vec<u8> {
        let mut tcp = Vec::from([0x0f, 0xa0, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, tcp_flags]);
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, 2, 4]);
        tcp.extend_from_slice(&mss.to_be_bytes());
        tcp.extend((0..payload).map(|i| i as u8));
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
        let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Tcp, tcp.len() as u32);
        let sum = !checksum::combine(&[pseudo, checksum::data(&tcp)]) ^ if good { 0 } else { 1 };
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        let mut packet = Vec::from([flags, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        packet.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (20 + tcp.len()) as u16;
        packet.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        packet[VNET_HDR_LEN + ETHERNET_LEN + 2..][..2].copy_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&src.octets());
        packet.extend_from_slice(&dst.octets());
        packet.extend_from_slice(&tcp);
        packet
    }

    /// The packet as smoltcp would send it back: the addresses and ports swapped.
    fn reply(packet: &[u8]) -> Vec<u8> {
        let mut reply = packet.to_vec();
        let ip = VNET_HDR_LEN + ETHERNET_LEN;
        reply[ip + 12..ip + 20].rotate_left(4);
        reply[ip + 20..ip + 24].rotate_left(2);
        reply
    }

    #[test]
    fn a_syn_tells_smoltcp_a_large_mss_and_large_replies_are_cut_to_the_real_one() {
        let mut offload = Offload::new(ALL, 1500);
        let mut syn = tcp_packet(0, TCP_SYN, 1460, 0, true);
        assert!(offload.receive(&mut syn));
        let mss_at = VNET_HDR_LEN + ETHERNET_LEN + 20 + 22;
        assert_eq!(&syn[mss_at..mss_at + 2], &LARGE_MSS.to_be_bytes());

        // 30,000 bytes behind a 24-byte header (4 bytes of options): cut into 1,456 pieces.
        let mut large = reply(&tcp_packet(0, 0x10, 0, 30_000, true));
        offload.transmit(&mut large);
        assert_eq!(large[0], F_NEEDS_CSUM);
        assert_eq!(large[1], GSO_TCPV4);
        assert_eq!(u16::from_le_bytes([large[2], large[3]]), 14 + 20 + 24);
        assert_eq!(u16::from_le_bytes([large[4], large[5]]), 1456);
        assert_eq!(u16::from_le_bytes([large[6], large[7]]), 14 + 20);
        assert_eq!(u16::from_le_bytes([large[8], large[9]]), 16);
        assert_eq!(offload.counts.segmented, 1);
        // A small segment is only left for the host to checksum.
        let mut small = reply(&tcp_packet(0, 0x10, 0, 100, true));
        offload.transmit(&mut small);
        assert_eq!(&small[..2], [F_NEEDS_CSUM, 0]);
        // Another peer, never seen: the least MSS every IPv4 host takes.
        let mut other = tcp_packet(0, 0x10, 0, 30_000, true);
        offload.transmit(&mut other);
        assert_eq!(u16::from_le_bytes([other[4], other[5]]), 536 - 4);
    }

    #[test]
    fn wrong_tcp_checksums_are_dropped_unless_the_host_vouches() {
        let mut offload = Offload::new(ALL, 1500);
        assert!(offload.receive(&mut tcp_packet(0, 0x10, 0, 100, true)));
        assert!(!offload.receive(&mut tcp_packet(0, 0x10, 0, 100, false)));
        assert_eq!(offload.counts.bad_checksum, 1);
        // The host checked it, or has yet to fill it in: taken as it is.
        assert!(offload.receive(&mut tcp_packet(F_DATA_VALID, 0x10, 0, 100, false)));
        assert!(offload.receive(&mut tcp_packet(F_NEEDS_CSUM, 0x10, 0, 100, false)));
        // Merged by the host: longer than the link's MTU.
        assert!(offload.receive(&mut tcp_packet(F_NEEDS_CSUM, 0x10, 0, 60_000, false)));
        assert_eq!(offload.counts.merged, 1);
    }

    #[test]
    fn a_udp_checksum_left_to_fill_is_filled() {
        let mut offload = Offload::new(ALL, 1500);
        let mut packet = tcp_packet(F_NEEDS_CSUM, 0, 0, 100, true);
        let ip = VNET_HDR_LEN + ETHERNET_LEN;
        packet[ip + 9] = 17;
        let udp = ip + 20;
        let len = (packet.len() - udp) as u16;
        packet[udp + 4..udp + 6].copy_from_slice(&len.to_be_bytes());
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 1), Ipv4Address::new(10, 0, 0, 2));
        let pseudo = checksum::pseudo_header_v4(&src, &dst, IpProtocol::Udp, u32::from(len));
        packet[udp + 6..udp + 8].copy_from_slice(&pseudo.to_be_bytes());
        packet[6..8].copy_from_slice(&((udp - VNET_HDR_LEN) as u16).to_le_bytes());
        packet[8..10].copy_from_slice(&6u16.to_le_bytes());
        assert!(offload.receive(&mut packet));
        let whole = checksum::combine(&[pseudo, checksum::data(&packet[udp..])]);
        assert_eq!(whole, 0xffff, "the filled checksum adds up");
    }

    #[test]
    fn no_frame_is_too_broken_to_pass_or_drop() {
        let mut offload = Offload::new(ALL, 1500);
        let good = tcp_packet(F_NEEDS_CSUM, TCP_SYN, 1460, 10, true);
        for cut in 0..good.len() {
            let _ = offload.receive(&mut good[..cut].to_vec());
            offload.transmit(&mut good[..cut].to_vec());
        }
        for byte in VNET_HDR_LEN..good.len() {
            let mut bent = good.clone();
            bent[byte] ^= 0xff;
            let _ = offload.receive(&mut bent.clone());
            offload.transmit(&mut bent);
        }
    }
}
