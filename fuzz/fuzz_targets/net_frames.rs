//! Fata's stack must take any frames from a device with offloads without panicking: packets with
//! any virtio-net header (checksums left to fill or vouched for, segmentation requests) and any
//! Ethernet frame, reaching a listening TCP port, a bound UDP port and the interface's own
//! neighbour discovery, ARP and ICMP.
//!
//! One stack serves every input, as a unikernel's does all its life: it runs on an executor of
//! its own thread, and each input's packets are handed to its device, which wakes the stack.
#![no_main]

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::task::Waker;
use std::time::Duration;

use fata::{DeviceError, Net, Offloads, ReadySet};
use fata_net::{Config, Ipv4Addr, Ipv4Cidr, Ipv6Config, Stack, TcpListener, UdpSocket};
use libfuzzer_sys::fuzz_target;

/// Hands out the packets it was given, and takes whatever the stack sends.
#[derive(Default)]
struct Frames {
    waiting: Vec<Vec<u8>>,
    waker: Option<Waker>,
}

/// The device's side the fuzz thread fills.
static FRAMES: Mutex<Frames> = Mutex::new(Frames { waiting: Vec::new(), waker: None });

struct Device;

impl Net for Device {
    fn mac(&self) -> [u8; 6] {
        [2, 0, 0, 0, 0, 2]
    }
    fn mtu(&self) -> usize {
        1500
    }
    fn readiness(&self) -> ReadySet {
        ReadySet::EMPTY
    }
    fn receive(&mut self, max: usize, on_frame: &mut dyn FnMut(&[u8])) -> Result<usize, DeviceError> {
        let mut frames = FRAMES.lock().unwrap();
        let count = frames.waiting.len().min(max);
        for packet in frames.waiting.drain(..count) {
            on_frame(&packet);
        }
        Ok(count)
    }
    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError> {
        fill(&mut vec![0; len]);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn register_receive_waker(&mut self, waker: &Waker) {
        FRAMES.lock().unwrap().waker = Some(waker.clone());
    }
    fn offloads(&self) -> Option<Offloads> {
        Some(Offloads { csum: true, tso4: true, tso6: true })
    }
}

/// Starts the stack's thread; returns where to send each input and where it says it is done.
fn stack_thread() -> (Sender<Vec<Vec<u8>>>, Receiver<()>) {
    let (inputs, input) = channel::<Vec<Vec<u8>>>();
    let (done, finished) = channel();
    std::thread::spawn(move || {
        fata::block_on(async move {
            let config = Config {
                ipv6: Ipv6Config::Slaac,
                ..Config::ipv4(Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 2), 24), None)
            };
            let stack = Stack::new(Box::new(Device), config, 1);
            let _tcp = TcpListener::bind(&stack, 80).unwrap();
            let _udp = UdpSocket::bind(&stack, 53).unwrap();
            loop {
                let Ok(packets) = input.try_recv() else {
                    fata::sleep(Duration::from_micros(20)).await;
                    continue;
                };
                let waker = {
                    let mut frames = FRAMES.lock().unwrap();
                    frames.waiting = packets;
                    frames.waker.take()
                };
                waker.into_iter().for_each(Waker::wake);
                // Let the stack take them all before the next input.
                while !FRAMES.lock().unwrap().waiting.is_empty() {
                    fata::sleep(Duration::from_micros(20)).await;
                }
                done.send(()).unwrap();
            }
        });
    });
    (inputs, finished)
}

static STACK: OnceLock<Mutex<(Sender<Vec<Vec<u8>>>, Receiver<()>)>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    // Packets, each behind a 2-byte little-endian length.
    let mut packets = Vec::new();
    let mut rest = data;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        packets.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    let stack = STACK.get_or_init(|| Mutex::new(stack_thread())).lock().unwrap();
    stack.0.send(packets).unwrap();
    stack.1.recv().unwrap();
});
