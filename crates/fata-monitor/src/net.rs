//! Network devices: a tap device per interface and two rings in guest RAM, served on the guest's
//! exits by the vCPU thread.
//!
//! The guest and the monitor share two single-producer rings per device (layout in
//! `fata-hvt-abi`): the guest publishes frames on the transmit ring and takes frames from the
//! receive ring without exits. The monitor moves frames when the guest exits to it anyway:
//!
//! - at every `Yield` ([`Nets::wait`]) it writes the published transmit frames to the taps and
//!   reads what the taps hold into free receive slots; if a device of interest then has a frame it
//!   resumes the guest at once, otherwise it sleeps in `ppoll` on those devices' taps until a frame
//!   arrives or the deadline passes, and moves frames again. The block devices join the same
//!   loop through `poll::Service`: they are served before each readiness check, and their
//!   completion descriptors are watched beside the taps;
//! - a guest whose transmit ring is full stores to the device's doorbell, which exits here
//!   ([`Nets::flush`]): the frames go out and the guest resumes.
//! - after the guest moved to other taps (a restore or a migration, [`Nets::moved`]), the next
//!   `Yield` returns at once with the devices ready, so that the guest's stack sees the move
//!   count in its receive ring's header and announces itself on the new link;
//! - with a coalescing limit (`fata run --coalesce-us`), a `Yield` that finds frames already
//!   waiting, after a resumption that brought only a few, naps so that one exit serves a batch
//!   (see `fata_hvt_abi::COALESCE_BELOW`). The nap adapts to the arrival rate: it lasts as long
//!   as such a batch takes to arrive, and there is none when that is longer than the limit, so a
//!   lightly loaded guest answers at once and the naps of a busy one shorten as it gets busier.
//!
//! There is no I/O thread. On this machine a thread wake-up costs a context switch, and one that
//! preempts the vCPU thread also reloads the vCPU (MSR accesses that trap to the outer
//! hypervisor): with an I/O thread per device the monitor spent a whole CPU at 40,000 DNS queries
//! per second. Moving frames on the exits the guest makes anyway costs no extra wake-up, and a
//! busy guest batches on its own: the more it has to do, the more frames each exit moves.
//!
//! Every index and length the guest writes is checked before it is used; the ring memory is reached
//! through one bounds-checked view taken from [`GuestRam::slice`]. A ring the guest broke ends the
//! run with an [`AbiViolation::NetRing`].

use crate::config::NetConfig;
use crate::memory::GuestRam;
use crate::poll::{Service, wait_readable};
use crate::violation::{AbiViolation, RingDefect, Stop};
use fata_hvt_abi::{
    COALESCE_BELOW, DeviceInfo, DeviceKind, GuestAddr, MAX_DEVICES, NET_MTU, NET_OFFLOAD_CSUM,
    NET_OFFLOAD_TSO4, NET_OFFLOAD_TSO6, NET_PACKET_MAX, NET_PACKET_MIN, NET_PACKET_SLOTS_MAX,
    NET_RX_HEADER, NET_SLOT_WRAP, NET_TX_HEADER, NET_VNET_HDR_LEN, NetRingHeader, NetSlotHeader,
    PAGE_SIZE, YIELD_FOREVER, doorbell_address, net_packet_slots, net_ring_len, net_rx_slot,
    net_tx_slot,
};
use fata_packet::PacketRing;
use fata_snapshot::NetState;
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, VolatileSlice, WriteVolatile};

/// Receive slots per device.
pub const RX_SLOTS: u32 = 256;
/// Transmit slots per device.
pub const TX_SLOTS: u32 = 256;

const PRODUCED: u64 = offset_of!(NetRingHeader, produced) as u64;
const CONSUMED: u64 = offset_of!(NetRingHeader, consumed) as u64;
const MOVES: u64 = offset_of!(NetRingHeader, moves) as u64;
const FLAGS: u64 = offset_of!(NetSlotHeader, flags) as u64;
const FRAME: u64 = size_of::<NetSlotHeader>() as u64;
const _: () = assert!(
    fata_tap::VNET_HDR_LEN as u64 == NET_VNET_HDR_LEN,
    "the tap speaks the rings' virtio-net header"
);
const _: () = assert!(
    fata_packet::VNET_HDR_LEN as u64 == NET_VNET_HDR_LEN
        && fata_packet::FRAME_MAX as u64 >= fata_hvt_abi::NET_FRAME_MAX,
    "the AF_PACKET rings carry the rings' packets"
);
/// Offset of `gso_type` in the virtio-net header.
const GSO_TYPE: usize = 1;
/// The longest packet without segmentation offload: the header and a frame of the link's MTU
/// with a VLAN tag.
const PLAIN_PACKET_MAX: u64 = NET_VNET_HDR_LEN + NET_MTU as u64 + 18;

/// Traffic counters of one device.
#[derive(Debug, Default)]
struct Counters {
    frames_in: Cell<u64>,
    bytes_in: Cell<u64>,
    frames_out: Cell<u64>,
    bytes_out: Cell<u64>,
    dropped_in: Cell<u64>,
    dropped_out: Cell<u64>,
    large_in: Cell<u64>,
    segmented_out: Cell<u64>,
}

impl Counters {
    fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }
}

/// Totals over all devices, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames moved from the taps into the guest.
    pub frames_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Frames moved from the guest to the taps.
    pub frames_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Frames from a tap dropped: longer than a slot can hold.
    pub dropped_in: u64,
    /// Frames the tap refused (interface down, queue full, a virtio-net header it rejects).
    pub dropped_out: u64,
    /// Frames from the taps longer than the link's MTU allows: TCP segments the host merged
    /// (receive offload).
    pub large_in: u64,
    /// Frames to the taps the host cuts into segments (segmentation offload).
    pub segmented_out: u64,
    /// Times the vCPU thread slept in `Yield` waiting for a tap or a deadline.
    pub sleeps: u64,
    /// Times a `Yield` waited for more frames before resuming the guest (coalescing).
    pub naps: u64,
}

/// One configured device and the monitor's own ring indices (never read back from guest memory).
struct Device {
    name: String,
    handle: u32,
    mac: [u8; 6],
    link: HostLink,
    /// What the host link offloads, as [`DeviceInfo::offloads`] says.
    offloads: u64,
    /// The host link as given: a tap's name, or `packet:IFACE`.
    tap_name: String,
    ring_addr: u64,
    rx_produced: Cell<u32>,
    tx_consumed: Cell<u32>,
    /// How many times the device has moved to another tap; the guest sees it in its receive
    /// ring's header.
    moves: Cell<u32>,
    counters: Counters,
}

/// Where a device's frames meet the host.
enum HostLink {
    /// A tap device, speaking the rings' virtio-net header and offloads.
    Tap(File),
    /// An AF_PACKET socket's rings on an existing interface (`packet:IFACE`), with the kernel's
    /// virtio-net header and offloads where it has them (plain frames otherwise).
    Packet(RefCell<PacketRing>),
}

/// What `--net` names after `packet:` to attach to an interface's AF_PACKET rings.
const PACKET_PREFIX: &str = "packet:";
/// What `--net` names after `fd:` to take over a tap descriptor the parent process opened.
const FD_PREFIX: &str = "fd:";

impl HostLink {
    /// Opens `spec`: `packet:IFACE`, `fd:N` (a tap inherited open) or a tap's name; returns the
    /// link and its offloads.
    fn open(spec: &str) -> io::Result<(HostLink, u64)> {
        const ALL: u64 = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6;
        if let Some(iface) = spec.strip_prefix(PACKET_PREFIX) {
            let ring = PacketRing::open(iface)?;
            let offloads = if ring.offloads() { ALL } else { 0 };
            return Ok((HostLink::Packet(RefCell::new(ring)), offloads));
        }
        let (tap, granted) = match spec.strip_prefix(FD_PREFIX) {
            Some(number) => {
                let fd = number.parse().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{spec:?}: fd:N takes a descriptor number"),
                    )
                })?;
                fata_tap::adopt_offloading(fd)?
            }
            None => fata_tap::open_offloading(spec)?,
        };
        let offloads = [
            (granted.csum, NET_OFFLOAD_CSUM),
            (granted.tso4, NET_OFFLOAD_TSO4),
            (granted.tso6, NET_OFFLOAD_TSO6),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |set, (_, bit)| set | bit);
        Ok((HostLink::Tap(tap), offloads))
    }

    /// The descriptor that is readable when frames wait.
    fn fd(&self) -> RawFd {
        match self {
            HostLink::Tap(tap) => tap.as_raw_fd(),
            HostLink::Packet(ring) => ring.borrow().as_raw_fd(),
        }
    }
}

/// A network device that cannot be set up: its host link cannot be opened, or no MAC address made.
#[derive(Debug, Error)]
#[error(
    "cannot set up network device {name} on {tap}: {source}\nhint: the monitor attaches to \
     the tap interface (creating it when it is missing), which needs root or CAP_NET_ADMIN and \
     /dev/net/tun; `ip tuntap add dev TAP mode tap` creates one ahead of time; `packet:IFACE` \
     attaches to the AF_PACKET rings of an interface that exists and is up (root or CAP_NET_RAW)"
)]
pub struct NetSetupError {
    /// The device's name.
    pub name: String,
    /// The tap interface.
    pub tap: String,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Network devices that cannot carry on a snapshot's.
#[derive(Debug, Error)]
pub enum NetRestoreError {
    /// A tap cannot be opened.
    #[error(transparent)]
    Open(#[from] NetSetupError),
    /// Not as many interfaces as the snapshot had.
    #[error(
        "the snapshot has {saved} network interfaces but {given} taps were given; give each of \
         its interfaces a tap, in the same order"
    )]
    Count {
        /// Interfaces in the snapshot.
        saved: usize,
        /// Taps given.
        given: usize,
    },
}

/// All network devices of a guest. Only the vCPU thread uses them.
pub struct Nets {
    devices: Vec<Device>,
    naps: Cell<u64>,
    /// The longest a nap may make the guest wait for a batch (zero: no naps).
    coalesce: Duration,
    /// When a `Yield` last returned.
    last_resume: Cell<Instant>,
    /// Frames received since then.
    received_since_resume: Cell<u64>,
    /// Frames per second arriving, a moving average over resumptions.
    arrival_rate: Cell<f64>,
    /// Whether frames went out since a `Yield` last handed the guest received frames.
    sent_since_input: Cell<bool>,
    sleeps: Cell<u64>,
    /// Whether the devices moved since a `Yield` last told the guest (see [`Nets::moved`]).
    moved: Cell<bool>,
}

impl Nets {
    /// Opens the taps for `configs`, whose names and number the configuration check passed
    /// (before the VM exists and before any confinement); a busy guest is resumed at most once
    /// per `coalesce`.
    pub fn open(configs: &[NetConfig], coalesce: Duration) -> Result<Nets, NetSetupError> {
        let mut devices = Vec::with_capacity(configs.len());
        for (handle, config) in configs.iter().enumerate() {
            let fail = |source| NetSetupError {
                name: config.name.clone(),
                tap: config.tap.clone(),
                source,
            };
            let (link, offloads) = HostLink::open(&config.tap).map_err(fail)?;
            let mac = match config.mac {
                Some(mac) => mac,
                None => fata_tap::random_mac().map_err(fail)?,
            };
            devices.push(Device {
                name: config.name.clone(),
                handle: handle as u32,
                mac,
                link,
                offloads,
                tap_name: config.tap.clone(),
                ring_addr: 0,
                rx_produced: Cell::new(0),
                tx_consumed: Cell::new(0),
                moves: Cell::new(0),
                counters: Counters::default(),
            });
        }
        Ok(Nets {
            devices,
            coalesce,
            last_resume: Cell::new(Instant::now()),
            received_since_resume: Cell::new(0),
            arrival_rate: Cell::new(0.0),
            sent_since_input: Cell::new(false),
            sleeps: Cell::new(0),
            naps: Cell::new(0),
            moved: Cell::new(false),
        })
    }

    /// Opens the taps for `configs` to carry on the interfaces of a snapshot, `states` in the
    /// same order (the taps may be others than the saved ones: the guest moved). Each interface
    /// keeps its saved name, MAC address, ring and the monitor's indices into it; the rings are in
    /// the restored guest RAM.
    pub(crate) fn restore(
        configs: &[NetConfig],
        coalesce: Duration,
        states: &[NetState],
    ) -> Result<Nets, NetRestoreError> {
        if configs.len() != states.len() {
            return Err(NetRestoreError::Count {
                saved: states.len(),
                given: configs.len(),
            });
        }
        let configs: Vec<NetConfig> = (configs.iter().zip(states))
            .map(|(config, state)| NetConfig {
                mac: Some(state.mac),
                ..config.clone()
            })
            .collect();
        let mut nets = Nets::open(&configs, coalesce)?;
        nets.resume(states);
        Ok(nets)
    }

    /// Takes up the saved state of each device, paired in order.
    fn resume(&mut self, states: &[NetState]) {
        for (device, state) in self.devices.iter_mut().zip(states) {
            device.name.clone_from(&state.name);
            device.mac = state.mac;
            device.ring_addr = state.ring_addr;
            device.rx_produced.set(state.rx_produced);
            device.tx_consumed.set(state.tx_consumed);
            device.moves.set(state.moves);
        }
    }

    /// The devices' state for a snapshot, in handle order; call it with the guest stopped.
    pub(crate) fn save(&self) -> Vec<NetState> {
        (self.devices.iter())
            .map(|d| NetState {
                name: d.name.clone(),
                tap: d.tap_name.clone(),
                mac: d.mac,
                ring_addr: d.ring_addr,
                rx_produced: d.rx_produced.get(),
                tx_consumed: d.tx_consumed.get(),
                moves: d.moves.get(),
            })
            .collect()
    }

    /// Whether there are no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Places the devices' ring memory just below `top` (the stack's bottom); returns the lowest
    /// ring address, where the heap must end.
    pub fn place(&mut self, top: u64) -> u64 {
        let len = net_ring_len(RX_SLOTS, TX_SLOTS).next_multiple_of(PAGE_SIZE);
        let mut next = top;
        for device in &mut self.devices {
            next = next.saturating_sub(len);
            device.ring_addr = next;
        }
        next
    }

    /// The boot info's device table.
    pub fn device_infos(&self) -> [DeviceInfo; MAX_DEVICES] {
        let mut infos = [DeviceInfo::EMPTY; MAX_DEVICES];
        for (info, device) in infos.iter_mut().zip(&self.devices) {
            let mut name = [0u8; 16];
            name[..device.name.len()].copy_from_slice(device.name.as_bytes());
            *info = DeviceInfo {
                name,
                kind: DeviceKind::Net as u32,
                handle: device.handle,
                ring_addr: GuestAddr(device.ring_addr),
                ring_len: net_ring_len(RX_SLOTS, TX_SLOTS),
                mac: device.mac,
                mtu: NET_MTU,
                rx_slots: RX_SLOTS,
                tx_slots: TX_SLOTS,
                doorbell: doorbell_address(device.handle),
                offloads: device.offloads,
            };
        }
        infos
    }

    /// What the first device's tap offloads, as `--stats` prints it: `csum tso4 tso6`, or
    /// `none`.
    pub fn offloads_granted(&self) -> String {
        let offloads = self.devices.first().map_or(0, |d| d.offloads);
        let names: Vec<&str> = [
            (NET_OFFLOAD_CSUM, "csum"),
            (NET_OFFLOAD_TSO4, "tso4"),
            (NET_OFFLOAD_TSO6, "tso6"),
        ]
        .iter()
        .filter(|(bit, _)| offloads & bit != 0)
        .map(|(_, name)| *name)
        .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(" ")
        }
    }

    /// The coalescing interval the devices are served with (zero: none).
    pub fn coalesce(&self) -> Duration {
        self.coalesce
    }

    /// The traffic so far, summed over the devices.
    pub fn stats(&self) -> NetStats {
        let mut s = NetStats {
            sleeps: self.sleeps.get(),
            naps: self.naps.get(),
            ..NetStats::default()
        };
        for d in &self.devices {
            let c = &d.counters;
            s.frames_in += c.frames_in.get();
            s.bytes_in += c.bytes_in.get();
            s.frames_out += c.frames_out.get();
            s.bytes_out += c.bytes_out.get();
            s.dropped_in += c.dropped_in.get();
            s.dropped_out += c.dropped_out.get();
            s.large_in += c.large_in.get();
            s.segmented_out += c.segmented_out.get();
        }
        s
    }

    /// Moves `device`'s frames: sends what the guest published and receives what the tap holds
    /// (in that order, unless `receive_first`).
    fn step(&self, ram: &GuestRam, device: &Device, receive_first: bool) -> Result<Work, Stop> {
        let ring = ram
            .slice(
                GuestAddr(device.ring_addr),
                net_ring_len(RX_SLOTS, TX_SLOTS),
            )
            .map_err(|e| Stop::Host("mapping a network ring", io::Error::other(e)))?;
        let mut port = Port {
            ring,
            link: &device.link,
            counters: &device.counters,
            rx_produced: device.rx_produced.get(),
            tx_consumed: device.tx_consumed.get(),
        };
        let work = port.step(receive_first).map_err(|defect| {
            Stop::Abi(AbiViolation::NetRing {
                handle: device.handle,
                defect,
            })
        })?;
        device.rx_produced.set(port.rx_produced);
        device.tx_consumed.set(port.tx_consumed);
        self.received_since_resume
            .set(self.received_since_resume.get() + u64::from(work.received));
        if work.sent > 0 {
            self.sent_since_input.set(true);
        }
        Ok(work)
    }

    /// A doorbell store reached the monitor: moves device `handle`'s frames. `Ok(false)` when
    /// there is no such device.
    pub fn flush(&self, ram: &GuestRam, handle: u64) -> Result<bool, Stop> {
        match self.devices.iter().find(|d| u64::from(d.handle) == handle) {
            Some(device) => self.step(ram, device, false).map(|_| true),
            None => Ok(false),
        }
    }

    /// The devices in `interest` that a `Yield` reports ready at once because they moved; the
    /// guest is told once.
    fn moved_ready(&self, interest: u64) -> u64 {
        if !self.moved.get() {
            return 0;
        }
        let ready = self
            .devices
            .iter()
            .fold(0, |set, d| set | (1u64 << d.handle))
            & interest;
        if ready != 0 {
            self.moved.set(false);
        }
        ready
    }

    /// The guest resumes: folds the frames received since the last resumption into the arrival
    /// rate (a quarter weight for the newest sample).
    fn resumed(&self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_resume.get()).as_secs_f64();
        if elapsed > 0.0 {
            let sample = self.received_since_resume.get() as f64 / elapsed;
            self.arrival_rate
                .set(self.arrival_rate.get() * 0.75 + sample * 0.25);
        }
        self.received_since_resume.set(0);
        self.last_resume.set(now);
    }

    /// How long after the last resumption a nap should end: the time [`COALESCE_BELOW`] frames
    /// take at the arrival rate, if that is within the coalescing limit; `None` otherwise (frames
    /// come too slowly for a batch to be worth the wait, or coalescing is off).
    fn batch_interval(&self) -> Option<Duration> {
        let rate = self.arrival_rate.get();
        if self.coalesce.is_zero() || rate <= 0.0 {
            return None;
        }
        let fill = Duration::try_from_secs_f64(f64::from(COALESCE_BELOW) / rate).ok()?;
        (fill <= self.coalesce).then_some(fill)
    }

    /// The devices in `interest` whose receive ring holds a frame.
    fn ready(&self, ram: &GuestRam, interest: u64) -> u64 {
        let mut ready = 0;
        for d in &self.devices {
            let bit = 1u64 << d.handle;
            if interest & bit == 0 {
                continue;
            }
            let consumed = ram
                .slice(GuestAddr(d.ring_addr + NET_RX_HEADER + CONSUMED), 4)
                .ok()
                .and_then(|s| s.load::<u32>(0, Ordering::Acquire).ok());
            if consumed.is_some_and(|consumed| consumed != d.rx_produced.get()) {
                ready |= bit;
            }
        }
        ready
    }

    /// The `Yield` hypercall: moves every device's frames and serves `others` (the block
    /// devices), then waits until a device in `interest` has a received frame or whatever
    /// `others` reports ready, or `timeout_ns` passes; returns the ready devices.
    pub fn wait(
        &self,
        ram: &GuestRam,
        others: &mut dyn Service,
        interest: u64,
        timeout_ns: u64,
    ) -> Result<u64, Stop> {
        let known = self
            .devices
            .iter()
            .fold(others.handles(), |set, d| set | (1 << d.handle));
        let interest = interest & known;
        if timeout_ns == YIELD_FOREVER && interest == 0 {
            return Err(Stop::Abi(AbiViolation::WaitsForever));
        }
        let deadline = match timeout_ns {
            YIELD_FOREVER => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        };
        let mut taps = [0 as RawFd; MAX_DEVICES];
        let mut taps_watched = 0;
        for d in self
            .devices
            .iter()
            .filter(|d| interest & (1 << d.handle) != 0)
        {
            taps[taps_watched] = d.link.fd();
            taps_watched += 1;
        }
        // Whether frames were already waiting when the guest yielded, having arrived before any
        // answer to what it was last given went out (the first pass reads the taps before it
        // sends): they come faster than the guest exits for them. A client waiting for each
        // answer sends its next question only after the answer left, so coalescing never slows
        // a request-response exchange down.
        let moved = self.moved_ready(interest);
        let mut behind = None;
        let mut napped = false;
        loop {
            // Reading first costs request-response throughput (the answers leave later), so only
            // a coalescing monitor does it.
            let receive_first = behind.is_none() && !self.coalesce.is_zero();
            let answered_before = self.sent_since_input.get();
            let mut received = 0;
            for device in &self.devices {
                received += self.step(ram, device, receive_first)?.received;
            }
            others.serve(ram)?;
            let ready = self.ready(ram, interest) | others.ready(ram, interest) | moved;
            let behind = *behind.get_or_insert(received > 0 && !answered_before);
            if behind && !napped && received < COALESCE_BELOW {
                // Frames keep coming: nap until a batch has arrived, so that one exit (tens of
                // microseconds here) serves it. An idle guest is not delayed.
                let since = self.last_resume.get().elapsed();
                if let Some(nap) = self
                    .batch_interval()
                    .and_then(|batch| batch.checked_sub(since))
                    .filter(|d| !d.is_zero())
                {
                    let nap = deadline.map_or(nap, |d| {
                        d.saturating_duration_since(Instant::now()).min(nap)
                    });
                    napped = true;
                    self.naps.set(self.naps.get() + 1);
                    wait_readable(&[], Some(nap))
                        .map_err(|e| Stop::Host("waiting for the network", e))?;
                    continue;
                }
            }
            if ready != 0 || crate::signal::interrupted() {
                self.resumed();
                self.sent_since_input.set(false);
                return Ok(ready);
            }
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => {
                        self.resumed();
                        return Ok(0);
                    }
                },
                None => None,
            };
            // A device of interest has an empty receive ring here, so its tap is worth watching;
            // the other devices say which of their descriptors are.
            let mut fds = taps;
            let watched = taps_watched + others.wait_fds(interest, &mut fds[taps_watched..]);
            wait_readable(&fds[..watched], left)
                .map_err(|e| Stop::Host("waiting for the devices", e))?;
            self.sleeps.set(self.sleeps.get() + 1);
        }
    }
}

/// What restoring and migrating a guest calls.
impl Nets {
    /// The guest now runs on other taps (restored from a snapshot, or migrated): bumps every
    /// device's move count, writes it into the device's receive ring header (`moves`, release),
    /// and makes the next `Yield` whose interest includes a network device return at once with
    /// the devices of interest ready, so that the guest's stack polls, sees the new count and
    /// announces itself on the new link.
    pub fn moved(&self, ram: &GuestRam) -> Result<(), Stop> {
        for device in &self.devices {
            let moves = device.moves.get().wrapping_add(1);
            ram.slice(GuestAddr(device.ring_addr + NET_RX_HEADER + MOVES), 4)
                .map_err(io::Error::other)
                .and_then(|s| {
                    s.store(moves, 0, Ordering::Release)
                        .map_err(io::Error::other)
                })
                .map_err(|e| Stop::Host("writing a network ring's move count", e))?;
            device.moves.set(moves);
        }
        self.moved.set(!self.devices.is_empty());
        Ok(())
    }
}

/// What one pass over a device's rings did.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    sent: u32,
    received: u32,
}

/// One pass's view of a device: the ring memory, checked once, and the monitor's own indices.
struct Port<'a, B: BitmapSlice> {
    ring: VolatileSlice<'a, B>,
    link: &'a HostLink,
    counters: &'a Counters,
    rx_produced: u32,
    tx_consumed: u32,
}

impl<B: BitmapSlice> Port<'_, B> {
    fn load(&self, offset: u64, order: Ordering) -> u32 {
        // Offsets are ABI constants inside the ring, which was checked to be `ring_len` bytes.
        self.ring.load::<u32>(offset as usize, order).unwrap_or(0)
    }

    fn store(&self, offset: u64, value: u32, order: Ordering) {
        let _ = self.ring.store(value, offset as usize, order);
    }

    /// Moves frames both ways; with `receive_first`, reads the tap before sending, so that what
    /// it finds arrived before this pass's frames went out.
    fn step(&mut self, receive_first: bool) -> Result<Work, RingDefect> {
        let mut work = Work::default();
        if receive_first {
            work.received = self.receive()?;
            work.sent = self.send()?;
        } else {
            work.sent = self.send()?;
            work.received = self.receive()?;
        }
        Ok(work)
    }

    /// Writes the guest's published transmit packets to the tap, one `write` each (virtio-net
    /// header and frame); returns how many.
    fn send(&mut self) -> Result<u32, RingDefect> {
        let produced = self.load(NET_TX_HEADER + PRODUCED, Ordering::Acquire);
        let pending = produced.wrapping_sub(self.tx_consumed);
        if pending > TX_SLOTS {
            return Err(RingDefect::TxIndex {
                produced,
                consumed: self.tx_consumed,
            });
        }
        let mut sent = 0;
        while self.tx_consumed != produced {
            let index = self.tx_consumed;
            let left = produced.wrapping_sub(index);
            let at = index % TX_SLOTS;
            let slot = net_tx_slot(RX_SLOTS, TX_SLOTS, index);
            let slots = if self.load(slot + FLAGS, Ordering::Relaxed) & NET_SLOT_WRAP != 0 {
                // The rest of the ring is skipped; the next packet is in its first slot.
                TX_SLOTS - at
            } else {
                let len = self.load(slot, Ordering::Relaxed);
                if !(NET_PACKET_MIN..=NET_PACKET_MAX).contains(&u64::from(len)) {
                    return Err(RingDefect::FrameLength { index, len });
                }
                let slots = net_packet_slots(u64::from(len));
                if at + slots > TX_SLOTS || slots > left {
                    return Err(RingDefect::PacketSpan { index, slots });
                }
                let packet = self
                    .ring
                    .subslice((slot + FRAME) as usize, len as usize)
                    .map_err(|_| RingDefect::FrameLength { index, len })?;
                let segmented = packet.load::<u8>(GSO_TYPE, Ordering::Relaxed).unwrap_or(0) != 0;
                if self.write_out(&packet) {
                    Counters::add(&self.counters.frames_out, 1);
                    Counters::add(&self.counters.bytes_out, u64::from(len) - NET_VNET_HDR_LEN);
                    if segmented {
                        Counters::add(&self.counters.segmented_out, 1);
                    }
                } else {
                    Counters::add(&self.counters.dropped_out, 1);
                }
                sent += 1;
                slots
            };
            if slots > left {
                return Err(RingDefect::PacketSpan { index, slots });
            }
            self.tx_consumed = index.wrapping_add(slots);
        }
        if let HostLink::Packet(ring) = self.link {
            // One system call sends the batch; a failure loses it as a congested wire would.
            let _ = ring.borrow_mut().flush();
        }
        if pending > 0 {
            self.store(
                NET_TX_HEADER + CONSUMED,
                self.tx_consumed,
                Ordering::Release,
            );
        }
        Ok(sent)
    }

    /// Hands one packet to the host link; `false` when it refused it. The kernel checks the
    /// virtio-net header (a bad one fails a tap's write or an AF_PACKET ring's send); an
    /// AF_PACKET ring takes header and frame into its transmit ring (after one flush, if the
    /// ring was full), and refuses a header asking for an offload where the kernel speaks none.
    fn write_out(&self, packet: &VolatileSlice<'_, B>) -> bool {
        match self.link {
            HostLink::Tap(tap) => {
                let mut tap = tap;
                tap.write_volatile(packet).is_ok()
            }
            HostLink::Packet(ring) => {
                let mut vnet = [0u8; NET_VNET_HDR_LEN as usize];
                let header = packet.subslice(0, vnet.len()).map(|h| h.copy_to(&mut vnet));
                let Ok(frame) = packet.offset(vnet.len()) else {
                    return false;
                };
                if header.is_err() {
                    return false;
                }
                let mut ring = ring.borrow_mut();
                let copy = |buf: &mut [u8]| {
                    frame.copy_to(buf);
                };
                ring.queue(&vnet, frame.len(), copy)
                    || (ring.flush().is_ok() && ring.queue(&vnet, frame.len(), copy))
            }
        }
    }

    /// Moves what the host link holds into free receive slots; returns how many packets. A
    /// packet never passes the ring's end: when the slots left before the end are too few, it
    /// goes to the ring's first slot and the slot where it would have started is marked
    /// [`NET_SLOT_WRAP`].
    fn receive(&mut self) -> Result<u32, RingDefect> {
        let consumed = self.load(NET_RX_HEADER + CONSUMED, Ordering::Acquire);
        let used = self.rx_produced.wrapping_sub(consumed);
        if used > RX_SLOTS {
            return Err(RingDefect::RxIndex {
                produced: self.rx_produced,
                consumed,
            });
        }
        let mut room = RX_SLOTS - used;
        let received = match self.link {
            HostLink::Tap(tap) => self.receive_tap(tap, &mut room),
            HostLink::Packet(ring) => {
                let (taken, dropped) = ring
                    .borrow_mut()
                    .receive(|vnet, frame| self.place_frame(vnet, frame, &mut room));
                Counters::add(&self.counters.dropped_in, dropped as u64);
                taken as u32
            }
        };
        if received > 0 {
            self.store(
                NET_RX_HEADER + PRODUCED,
                self.rx_produced,
                Ordering::Release,
            );
        }
        Ok(received)
    }

    /// Where a received packet of `slots` slots goes, with `room` free: the slots to skip first
    /// (a wrap) and the index it starts at; `None` without room.
    fn placement(&self, slots: u32, room: u32) -> Option<(u32, u32)> {
        let tail = RX_SLOTS - self.rx_produced % RX_SLOTS;
        let skip = if tail < slots { tail } else { 0 };
        (room >= skip + slots).then(|| (skip, self.rx_produced.wrapping_add(skip)))
    }

    /// Publishes-to-be a packet of `len` bytes at `index` after `skip` wrap slots: writes the
    /// slot headers, moves the monitor's index and counts it.
    fn placed(&mut self, skip: u32, index: u32, len: u64, room: &mut u32) {
        if skip > 0 {
            let wrap = net_rx_slot(RX_SLOTS, self.rx_produced);
            self.store(wrap, 0, Ordering::Relaxed);
            self.store(wrap + FLAGS, NET_SLOT_WRAP, Ordering::Relaxed);
        }
        let slot = net_rx_slot(RX_SLOTS, index);
        self.store(slot, len as u32, Ordering::Relaxed);
        self.store(slot + FLAGS, 0, Ordering::Relaxed);
        let slots = skip + net_packet_slots(len);
        self.rx_produced = self.rx_produced.wrapping_add(slots);
        *room -= slots;
        Counters::add(&self.counters.frames_in, 1);
        Counters::add(
            &self.counters.bytes_in,
            len.saturating_sub(NET_VNET_HDR_LEN),
        );
        if len > PLAIN_PACKET_MAX {
            Counters::add(&self.counters.large_in, 1);
        }
    }

    /// Reads packets from the tap, one `read` each, into room for the longest packet: when the
    /// slots left before the ring's end are too few, at the ring's first slot after a wrap.
    fn receive_tap(&mut self, tap: &File, room: &mut u32) -> u32 {
        let mut received = 0;
        // Bounded, so that a tap full of oversized frames cannot keep the thread here.
        for _ in 0..2 * RX_SLOTS {
            let Some((skip, index)) = self.placement(NET_PACKET_SLOTS_MAX, *room) else {
                break;
            };
            let slot = net_rx_slot(RX_SLOTS, index);
            let Ok(mut buf) = self
                .ring
                .subslice((slot + FRAME) as usize, NET_PACKET_MAX as usize)
            else {
                break;
            };
            match read_packet(tap, &mut buf) {
                Ok(0) => break,
                // A tap reports a packet's whole length even when the buffer was shorter.
                Ok(n) if n as u64 > NET_PACKET_MAX => Counters::add(&self.counters.dropped_in, 1),
                Ok(n) => {
                    self.placed(skip, index, n as u64, room);
                    received += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        received
    }

    /// Copies a frame and its virtio-net header from an AF_PACKET ring into the receive ring;
    /// `false` when it does not fit now.
    fn place_frame(&mut self, vnet: &[u8], frame: &[u8], room: &mut u32) -> bool {
        let len = NET_VNET_HDR_LEN + frame.len() as u64;
        let Some((skip, index)) = self.placement(net_packet_slots(len), *room) else {
            return false;
        };
        let at = (net_rx_slot(RX_SLOTS, index) + FRAME) as usize;
        let Ok(packet) = self.ring.subslice(at, len as usize) else {
            return false;
        };
        if packet.write_slice(vnet, 0).is_err() || packet.write_slice(frame, vnet.len()).is_err() {
            return false;
        }
        self.placed(skip, index, len, room);
        true
    }
}

/// Reads one packet from `tap` into `buf` and marks only the bytes read as written, for the
/// snapshots' dirty-page tracking. (vm-memory's `read_volatile` marks the whole buffer on a
/// failed read, and most reads of a non-blocking tap fail with `EAGAIN`: with 64 KiB buffers
/// that would make every idle pass dirty 16 pages.)
fn read_packet<B: BitmapSlice>(tap: &File, buf: &mut VolatileSlice<'_, B>) -> io::Result<usize> {
    let guard = buf.ptr_guard_mut();
    // SAFETY: the guard keeps `buf`'s memory (guest RAM, checked to lie inside it) mapped for
    // the call, and `read` writes at most `buf.len()` bytes there.
    let n = unsafe { libc::read(tap.as_raw_fd(), guard.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    buf.bitmap().mark_dirty(0, n.min(buf.len()));
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_sit_below_the_stack_page_aligned() {
        let mut nets = Nets::open(&[], Duration::ZERO).unwrap();
        assert_eq!(nets.place(31 << 20), 31 << 20);
        nets.devices.clear();
        assert!(nets.device_infos().iter().all(|d| *d == DeviceInfo::EMPTY));
    }

    #[test]
    fn received_frames_mark_their_slots_as_written_by_the_monitor() {
        use std::io::Write;
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0; 2];
        // SAFETY: `pipe2` fills the two descriptors, which the `OwnedFd`s below then own.
        let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) };
        assert_eq!(made, 0);
        // SAFETY: both descriptors are fresh and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (tap, mut sender) = (HostLink::Tap(File::from(read)), File::from(write));
        sender.write_all(&[0xaa; 60]).unwrap();
        let ram = GuestRam::new(4 << 20).unwrap();
        ram.take_dirty();
        let counters = Counters::default();
        let mut port = Port {
            ring: ram
                .slice(GuestAddr(0), net_ring_len(RX_SLOTS, TX_SLOTS))
                .unwrap(),
            link: &tap,
            counters: &counters,
            rx_produced: 0,
            tx_consumed: 0,
        };
        assert_eq!(port.receive().unwrap(), 1);
        let dirty = ram.take_dirty();
        let page = |addr: u64| dirty[(addr >> 18) as usize] & (1 << ((addr >> 12) % 64)) != 0;
        let slot = net_rx_slot(RX_SLOTS, 0);
        assert!(page(slot + FRAME), "the frame's slot");
        assert!(page(NET_RX_HEADER + PRODUCED), "the receive ring's header");
        assert!(
            !page(net_rx_slot(RX_SLOTS, 2) + FRAME),
            "a slot nothing reached"
        );
    }

    #[test]
    fn a_saved_interface_keeps_its_ring_indices_mac_and_moves() {
        let device = |name: &str, handle| Device {
            name: name.into(),
            handle,
            mac: [2, 0, 0, 0, 0, handle as u8],
            link: null_link(),
            offloads: 0,
            tap_name: format!("tap{handle}"),
            ring_addr: 0x10_0000 * u64::from(handle + 1),
            rx_produced: Cell::new(7 + handle),
            tx_consumed: Cell::new(u32::MAX - handle),
            moves: Cell::new(handle),
            counters: Counters::default(),
        };
        let mut nets = Nets::open(&[], Duration::ZERO).unwrap();
        nets.devices = vec![device("service", 0), device("admin", 1)];
        let saved = nets.save();
        assert_eq!(
            saved[1],
            NetState {
                name: "admin".into(),
                tap: "tap1".into(),
                mac: [2, 0, 0, 0, 0, 1],
                ring_addr: 0x20_0000,
                rx_produced: 8,
                tx_consumed: u32::MAX - 1,
                moves: 1,
            }
        );
        // Carried on over other taps, fresh devices take up the saved state.
        let mut other = Nets::open(&[], Duration::ZERO).unwrap();
        other.devices = vec![device("x", 5), device("y", 6)];
        other.resume(&saved);
        let mut back = other.save();
        for (state, tap) in back.iter_mut().zip(["tap0", "tap1"]) {
            assert_ne!(state.tap, tap, "the new taps");
            state.tap = tap.into();
        }
        assert_eq!(back, saved);
        let config = NetConfig {
            name: "service".into(),
            tap: "tap0".into(),
            mac: None,
        };
        assert!(matches!(
            Nets::restore(&[config], Duration::ZERO, &[]),
            Err(NetRestoreError::Count { saved: 0, given: 1 })
        ));
    }

    /// A guest-memory ring with the monitor's logic, no tap traffic.
    fn port_on<'a>(
        ram: &'a GuestRam,
        link: &'a HostLink,
        counters: &'a Counters,
    ) -> Port<'a, impl BitmapSlice> {
        Port {
            ring: ram
                .slice(GuestAddr(0), net_ring_len(RX_SLOTS, TX_SLOTS))
                .unwrap(),
            link,
            counters,
            rx_produced: 0,
            tx_consumed: 0,
        }
    }

    /// A host link over /dev/null: nothing to receive, everything sent is taken.
    fn null_link() -> HostLink {
        HostLink::Tap(null_file().try_clone().unwrap())
    }

    fn null_file() -> &'static File {
        static NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
        NULL.get_or_init(|| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/null")
                .unwrap()
        })
    }

    /// A service with no devices: the network devices alone.
    struct NoOthers;

    impl Service for NoOthers {
        fn handles(&self) -> u64 {
            0
        }
        fn serve(&mut self, _: &GuestRam) -> Result<(), Stop> {
            Ok(())
        }
        fn ready(&self, _: &GuestRam, _: u64) -> u64 {
            0
        }
        fn wait_fds(&self, _: u64, _: &mut [RawFd]) -> usize {
            0
        }
    }

    /// Two devices over /dev/null (nothing to receive, everything sent is taken), placed at the
    /// top of `ram`.
    fn two_devices(ram: &GuestRam) -> Nets {
        let mut nets = Nets::open(&[], Duration::ZERO).unwrap();
        for handle in 0..2 {
            nets.devices.push(Device {
                name: format!("net{handle}"),
                handle,
                mac: [2, 0, 0, 0, 0, handle as u8],
                link: null_link(),
                offloads: 0,
                tap_name: format!("null{handle}"),
                ring_addr: 0,
                rx_produced: Cell::new(0),
                tx_consumed: Cell::new(0),
                moves: Cell::new(0),
                counters: Counters::default(),
            });
        }
        nets.place(ram.size());
        nets
    }

    #[test]
    fn a_move_is_written_to_the_rings_and_wakes_the_next_yield_once() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let nets = two_devices(&ram);
        let header = |handle: u32| {
            let mut bytes = [0; 4];
            let ring = nets.devices[handle as usize].ring_addr;
            ram.read(GuestAddr(ring + NET_RX_HEADER + MOVES), &mut bytes)
                .unwrap();
            u32::from_le_bytes(bytes)
        };
        assert_eq!((header(0), header(1)), (0, 0));

        // A snapshot carried count 7 for the first device; restoring it moves both.
        nets.devices[0].moves.set(7);
        nets.moved(&ram).unwrap();
        assert_eq!((header(0), header(1)), (8, 1));
        let counts: Vec<u32> = nets.devices.iter().map(|d| d.moves.get()).collect();
        assert_eq!(counts, [8, 1]);

        // A guest yielding for something else is not told; the next yield for the first device
        // returns at once (no deadline, nothing received) with it ready, and only that one.
        let started = Instant::now();
        assert_eq!(nets.wait(&ram, &mut NoOthers, 0, 0).unwrap(), 0);
        assert_eq!(
            nets.wait(&ram, &mut NoOthers, 0b1, YIELD_FOREVER).unwrap(),
            0b1
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        // Told once: the next yield waits for its deadline.
        let started = Instant::now();
        assert_eq!(nets.wait(&ram, &mut NoOthers, 0b11, 20_000_000).unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn hostile_ring_values_are_defects_not_panics() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let put = |offset: u64, v: u32| ram.write(GuestAddr(offset), &v.to_le_bytes()).unwrap();
        let counters = Counters::default();
        let null = null_link();
        // Transmit index far ahead of the monitor's.
        put(NET_TX_HEADER + PRODUCED, 0x8000_0000);
        let mut port = port_on(&ram, &null, &counters);
        assert!(matches!(port.step(false), Err(RingDefect::TxIndex { .. })));
        // One packet longer than any, then ones too short.
        for len in [
            u32::MAX,
            NET_PACKET_MAX as u32 + 1,
            NET_PACKET_MIN as u32 - 1,
            0,
        ] {
            put(NET_TX_HEADER + PRODUCED, 1);
            put(net_tx_slot(RX_SLOTS, TX_SLOTS, 0), len);
            let mut port = port_on(&ram, &null, &counters);
            assert_eq!(
                port.step(false).unwrap_err(),
                RingDefect::FrameLength { index: 0, len }
            );
        }
        // A packet of 3 slots published as 2, and one that would run past the ring's end.
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, 0), 5000);
        put(NET_TX_HEADER + PRODUCED, 2);
        let mut port = port_on(&ram, &null, &counters);
        let span = RingDefect::PacketSpan { index: 0, slots: 3 };
        assert_eq!(port.step(false).unwrap_err(), span);
        let last = TX_SLOTS - 1;
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, last), 3000);
        put(NET_TX_HEADER + PRODUCED, last + 2);
        let mut port = port_on(&ram, &null, &counters);
        port.tx_consumed = last;
        let span = RingDefect::PacketSpan {
            index: last,
            slots: 2,
        };
        assert_eq!(port.step(false).unwrap_err(), span);
        // A wrap claiming more slots than were produced.
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, 1) + FLAGS, NET_SLOT_WRAP);
        put(NET_TX_HEADER + PRODUCED, 2);
        let mut port = port_on(&ram, &null, &counters);
        port.tx_consumed = 1;
        let span = RingDefect::PacketSpan {
            index: 1,
            slots: TX_SLOTS - 1,
        };
        assert_eq!(port.step(false).unwrap_err(), span);
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, 1) + FLAGS, 0);
        // Good packets go out (to /dev/null): a 60-byte one, a wrap at the ring's end and a
        // 5000-byte one in the first slots; the monitor's index moves past all of them.
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, last - 1), 60);
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, last) + FLAGS, NET_SLOT_WRAP);
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, 0), 5000);
        put(NET_TX_HEADER + PRODUCED, last - 1 + 1 + 1 + 3);
        let mut port = port_on(&ram, &null, &counters);
        port.tx_consumed = last - 1;
        let work = port.step(false).unwrap();
        assert_eq!(work.sent, 2);
        assert_eq!(
            port.load(NET_TX_HEADER + CONSUMED, Ordering::Relaxed),
            last + 4
        );
        // The guest claims to have consumed frames never produced.
        put(NET_RX_HEADER + CONSUMED, 5);
        assert!(matches!(port.step(false), Err(RingDefect::RxIndex { .. })));
    }
}
