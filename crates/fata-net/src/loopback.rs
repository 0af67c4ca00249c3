//! An Ethernet link made of memory: a [`Net`] device whose frames never leave the process, so a
//! stack (or two) can be tested without root, a tap device or KVM.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::task::Waker;

use fata::{DeviceError, Net, ReadySet};

/// Frames one direction of the link holds (flushed or queued) before the sender is told it is
/// full: far more than the TCP windows and UDP buffers of a test fill at once.
const QUEUE_FRAMES: usize = 4096;
/// The payload one frame carries, as on an ordinary Ethernet.
const MTU: usize = 1500;
/// The largest frame: the payload and the 14-byte Ethernet header.
const FRAME_MAX: usize = MTU + 14;

/// One direction of the link.
#[derive(Default)]
struct Wire {
    /// Frames flushed by the sending end, oldest first.
    frames: VecDeque<Vec<u8>>,
    /// Buffers of frames already received, for the sender to fill again.
    spare: Vec<Vec<u8>>,
    /// The receiving end's task, woken when frames are flushed.
    waiting: Option<Waker>,
}

/// A [`Net`] device whose frames stay in memory, for tests and for stacks that talk inside one
/// process.
///
/// [`Loopback::new`] makes one device whose frames come back to itself, as smoltcp's
/// `phy::Loopback` does: one stack talks to its own address. [`Loopback::pair`] makes two devices
/// joined like the ends of a veth pair: a client stack and a server stack, each with its own
/// address and MAC, talk over ARP, IPv4, TCP and UDP exactly as two hosts on one Ethernet would,
/// which is what the integration tests of fata-net and fata-http use.
///
/// Frames pass to the other end at `flush`, in order. Once 4,096 frames wait for the other end,
/// `can_transmit` says the wire is full and the stack holds its data back rather than lose it
/// (a reply built while receiving is dropped then, as on a congested wire). The device has no readiness bit; it wakes the receiving stack through
/// [`Net::register_receive_waker`]. No clock, no I/O: it is `no_std` and works on every target.
///
/// ```no_run
/// # async fn run() {
/// use fata_net::{Config, Ipv4Addr, Ipv4Cidr, Loopback, Stack};
/// let config = |last| Config::ipv4(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, last), 24), None);
/// let (a, b) = Loopback::pair();
/// let server = Stack::new(Box::new(a), config(1), 1);
/// let client = Stack::new(Box::new(b), config(2), 2);
/// # }
/// ```
pub struct Loopback {
    mac: [u8; 6],
    /// Frames for this end.
    inbox: Rc<RefCell<Wire>>,
    /// Frames for the other end (the same wire as `inbox` for a single device).
    outbox: Rc<RefCell<Wire>>,
    /// Frames transmitted since the last flush.
    queued: Vec<Vec<u8>>,
}

impl Loopback {
    /// One device whose transmitted frames are received by itself, with MAC 02:00:00:00:00:01.
    pub fn new() -> Loopback {
        let wire = Rc::new(RefCell::new(Wire::default()));
        Loopback::end(1, wire.clone(), wire)
    }

    /// Two devices joined to each other, with MACs 02:00:00:00:00:01 and 02:00:00:00:00:02:
    /// what one transmits the other receives.
    pub fn pair() -> (Loopback, Loopback) {
        let one_to_two = Rc::new(RefCell::new(Wire::default()));
        let two_to_one = Rc::new(RefCell::new(Wire::default()));
        (
            Loopback::end(1, two_to_one.clone(), one_to_two.clone()),
            Loopback::end(2, one_to_two, two_to_one),
        )
    }

    fn end(id: u8, inbox: Rc<RefCell<Wire>>, outbox: Rc<RefCell<Wire>>) -> Loopback {
        Loopback {
            // Locally administered, unicast.
            mac: [0x02, 0, 0, 0, 0, id],
            inbox,
            outbox,
            queued: Vec::new(),
        }
    }
}

impl Default for Loopback {
    fn default() -> Loopback {
        Loopback::new()
    }
}

impl Net for Loopback {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> usize {
        MTU
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::EMPTY
    }

    fn receive(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DeviceError> {
        let mut inbox = self.inbox.borrow_mut();
        let mut count = 0;
        while count < max {
            let Some(frame) = inbox.frames.pop_front() else {
                break;
            };
            on_frame(&frame);
            inbox.spare.push(frame);
            count += 1;
        }
        Ok(count)
    }

    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        if len > FRAME_MAX {
            return Err(DeviceError::InvalidArgument);
        }
        if !self.can_transmit() {
            return Err(DeviceError::WouldBlock);
        }
        let mut frame = self.outbox.borrow_mut().spare.pop().unwrap_or_default();
        frame.clear();
        frame.resize(len, 0);
        fill(&mut frame);
        self.queued.push(frame);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let waiting = {
            let mut outbox = self.outbox.borrow_mut();
            outbox.frames.extend(self.queued.drain(..));
            outbox.waiting.take()
        };
        if let Some(waker) = waiting {
            waker.wake();
        }
        Ok(())
    }

    fn can_transmit(&self) -> bool {
        self.outbox.borrow().frames.len() + self.queued.len() < QUEUE_FRAMES
    }

    fn register_receive_waker(&mut self, waker: &Waker) {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.frames.is_empty() {
            inbox.waiting = Some(waker.clone());
        } else {
            waker.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::sync::Arc;
    use alloc::task::Wake;
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Count>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn send(end: &mut Loopback, frame: &[u8]) -> Result<(), DeviceError> {
        end.transmit(frame.len(), &mut |buf| buf.copy_from_slice(frame))
    }

    fn received(end: &mut Loopback, max: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let count = end.receive(max, &mut |f| frames.push(f.to_vec())).unwrap();
        assert_eq!(count, frames.len());
        frames
    }

    #[test]
    fn a_pair_carries_frames_in_order_once_flushed() {
        let (mut a, mut b) = Loopback::pair();
        assert_ne!(a.mac(), b.mac());
        send(&mut a, b"one").unwrap();
        send(&mut a, b"two").unwrap();
        assert!(
            received(&mut b, 8).is_empty(),
            "nothing passes before flush"
        );
        a.flush().unwrap();
        assert!(received(&mut a, 8).is_empty(), "a does not hear itself");
        assert_eq!(received(&mut b, 1), [b"one".to_vec()]);
        send(&mut b, b"back").unwrap();
        b.flush().unwrap();
        assert_eq!(received(&mut b, 8), [b"two".to_vec()]);
        assert_eq!(received(&mut a, 8), [b"back".to_vec()]);
    }

    #[test]
    fn a_single_device_hears_itself() {
        let mut lo = Loopback::new();
        send(&mut lo, b"echo").unwrap();
        lo.flush().unwrap();
        assert_eq!(received(&mut lo, 8), [b"echo".to_vec()]);
    }

    #[test]
    fn a_full_wire_refuses_frames_until_the_other_end_takes_them() {
        let (mut a, mut b) = Loopback::pair();
        for _ in 0..QUEUE_FRAMES {
            send(&mut a, b"x").unwrap();
        }
        assert!(!a.can_transmit());
        assert_eq!(send(&mut a, b"x"), Err(DeviceError::WouldBlock));
        a.flush().unwrap();
        assert!(
            !a.can_transmit(),
            "flushed frames still count until received"
        );
        assert_eq!(received(&mut b, 10).len(), 10);
        assert!(a.can_transmit());
        assert_eq!(
            send(&mut a, &[0; FRAME_MAX + 1]),
            Err(DeviceError::InvalidArgument)
        );
    }

    #[test]
    fn the_receiving_end_is_woken_by_a_flush_or_at_once() {
        let (mut a, mut b) = Loopback::pair();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        b.register_receive_waker(&waker);
        send(&mut a, b"x").unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 0, "not before the flush");
        a.flush().unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        b.register_receive_waker(&waker);
        assert_eq!(count.0.load(Ordering::Relaxed), 2, "a frame already waits");
        received(&mut b, 8);
        b.register_receive_waker(&waker);
        a.flush().unwrap();
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            2,
            "an empty flush wakes nobody"
        );
    }
}
