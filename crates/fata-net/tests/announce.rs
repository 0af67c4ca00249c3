//! After its device moves to another link, a stack announces its addresses there, once per move
//! (a gratuitous ARP for IPv4, an unsolicited neighbour advertisement for IPv6), and tries again
//! when the device had no room.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use common::run;
use fata::{DeviceError, Net, ReadySet};
use fata_net::{Config, Ipv4Addr, Ipv4Cidr, Ipv6Addr, Ipv6Cidr, Stack};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];

/// What the test and the device share.
#[derive(Default)]
struct Wire {
    moves: Cell<u32>,
    full: Cell<bool>,
    queued: RefCell<Vec<Vec<u8>>>,
    flushed: RefCell<Vec<Vec<u8>>>,
    waker: RefCell<Option<Waker>>,
}

impl Wire {
    /// The device moved: bump its count and wake the stack, as the monitor's next `Yield` does.
    fn moved(&self) {
        self.moves.set(self.moves.get() + 1);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    fn take_flushed(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.flushed.borrow_mut())
    }
}

/// A device that receives nothing and records what is flushed.
struct Recorder(Rc<Wire>);

impl Net for Recorder {
    fn mac(&self) -> [u8; 6] {
        MAC
    }

    fn mtu(&self) -> usize {
        1500
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::EMPTY
    }

    fn receive(&mut self, _: usize, _: &mut dyn FnMut(&[u8])) -> Result<usize, DeviceError> {
        Ok(0)
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        if self.0.full.get() {
            return Err(DeviceError::WouldBlock);
        }
        let mut frame = vec![0; len];
        fill(&mut frame);
        self.0.queued.borrow_mut().push(frame);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        let queued = std::mem::take(&mut *self.0.queued.borrow_mut());
        self.0.flushed.borrow_mut().extend(queued);
        Ok(())
    }

    fn can_transmit(&self) -> bool {
        !self.0.full.get()
    }

    fn register_receive_waker(&mut self, waker: &Waker) {
        *self.0.waker.borrow_mut() = Some(waker.clone());
    }

    fn moves(&self) -> u32 {
        self.0.moves.get()
    }
}

/// The announcement of 10.0.0.9 from 02:00:00:00:00:0a.
#[rustfmt::skip]
const ANNOUNCEMENT: [u8; 42] = [
    // Ethernet: to broadcast, from our MAC, ARP.
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06,
    // ARP: Ethernet, IPv4, lengths 6 and 4, request.
    0, 1, 0x08, 0, 6, 4, 0, 1,
    // Sender: our MAC and address.
    0x02, 0, 0, 0, 0, 0x0a, 10, 0, 0, 9,
    // Target: no MAC, our address again.
    0, 0, 0, 0, 0, 0, 10, 0, 0, 9,
];

async fn settle() {
    fata::sleep(Duration::from_millis(50)).await;
}

#[test]
fn a_moved_interface_announces_its_address_once_per_move() {
    run(async {
        let wire = Rc::new(Wire::default());
        // Moved before the stack existed: nothing of it is stale, nothing to announce.
        wire.moves.set(3);
        let config = Config::ipv4(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 9), 24), None);
        let stack = Stack::new(Box::new(Recorder(wire.clone())), config, 1);
        settle().await;
        assert_eq!(wire.take_flushed(), Vec::<Vec<u8>>::new(), "a fresh stack");

        wire.moved();
        settle().await;
        assert_eq!(wire.take_flushed(), [ANNOUNCEMENT.to_vec()]);
        settle().await;
        assert!(wire.take_flushed().is_empty(), "one announcement per move");

        // No room when it moves: the stack tries again by itself once there is.
        wire.full.set(true);
        wire.moved();
        settle().await;
        assert!(wire.take_flushed().is_empty());
        wire.full.set(false);
        settle().await;
        assert_eq!(wire.take_flushed(), [ANNOUNCEMENT.to_vec()]);
        drop(stack);
    });
}

/// Checks that `frame` is an unsolicited neighbour advertisement of `address` from our MAC, to
/// all nodes, with the override flag and a correct ICMPv6 checksum.
fn assert_advertises(frame: &[u8], address: Ipv6Addr) {
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    assert_eq!(
        frame.len(),
        14 + 40 + 32,
        "Ethernet, IPv6 and the advertisement"
    );
    assert_eq!(
        &frame[..12],
        [0x33, 0x33, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 0x0a]
    );
    assert_eq!(&frame[12..14], [0x86, 0xdd], "IPv6");
    let (ip, icmp) = frame[14..].split_at(40);
    assert_eq!(
        &ip[4..8],
        [0, 32, 58, 255],
        "32 bytes of ICMPv6, hop limit 255"
    );
    assert_eq!(ip[8..24], address.octets(), "from the address itself");
    assert_eq!(ip[24..40], all_nodes.octets());
    assert_eq!(&icmp[..2], [136, 0], "a neighbour advertisement");
    assert_eq!(
        icmp[4], 0x20,
        "override, neither solicited nor from a router"
    );
    assert_eq!(icmp[8..24], address.octets(), "its target");
    assert_eq!(
        &icmp[24..],
        [2, 1, 0x02, 0, 0, 0, 0, 0x0a],
        "our MAC as the target's"
    );
    // The checksum covers the pseudo-header (addresses, length, next header) and the message.
    let mut sum: u32 = ip[8..40]
        .chunks(2)
        .chain(icmp.chunks(2))
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    sum += 32 + 58;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "the ICMPv6 checksum");
}

#[test]
fn a_moved_ipv6_interface_advertises_each_address() {
    run(async {
        let wire = Rc::new(Wire::default());
        let address: Ipv6Addr = "fd00::9".parse().unwrap();
        let config = Config::ipv6(Ipv6Cidr::new(address, 64), None);
        let stack = Stack::new(Box::new(Recorder(wire.clone())), config, 1);
        settle().await;
        assert!(wire.take_flushed().is_empty(), "a fresh stack");

        wire.moved();
        settle().await;
        let frames = wire.take_flushed();
        assert_eq!(frames.len(), 2, "the link-local and the static address");
        assert_advertises(&frames[0], "fe80::ff:fe00:a".parse().unwrap());
        assert_advertises(&frames[1], address);
        drop(stack);
    });
}
