//! Network devices: a tap device per interface, rings in guest RAM, one I/O thread each.
//!
//! The guest and the device's I/O thread share two single-producer rings per device (layout in
//! `fata-hvt-abi`): the guest publishes frames on the transmit ring and the I/O thread writes them to
//! the tap; the I/O thread reads frames from the tap into the receive ring and the guest takes them.
//! Neither side exits or makes a system call per frame:
//!
//! - the I/O thread polls both rings and the tap while there is work, spins ~50 us after the last
//!   frame, then sleeps on the tap, its doorbell eventfd and the stop eventfd, having set the ring's
//!   `waiting` flag (set flag, fence, check the ring again, sleep);
//! - the guest stores to its doorbell only when it sees `waiting` after publishing; KVM turns that
//!   store into an eventfd signal (KVM_IOEVENTFD) without an exit to the monitor;
//! - when the guest is idle it makes one `Yield` hypercall; the vCPU thread ([`Nets::wait`]) sleeps
//!   on the wake eventfd until a receive ring of interest holds a frame or the deadline passes, and
//!   the I/O thread signals it after publishing frames while it sleeps.
//!
//! Every index and length the guest writes is checked before it is used; the ring memory is reached
//! through one bounds-checked view taken from [`GuestRam::slice`]. A ring the guest broke ends the
//! run with an [`AbiViolation::NetRing`]; the I/O thread stops touching it at once.

use crate::error::{AbiViolation, Error, RingDefect};
use crate::memory::{Gpa, GuestRam};
use crate::seccomp;
use fata_hvt_abi::{
    DeviceInfo, DeviceKind, MAX_DEVICES, NET_FRAME_MAX, NET_FRAME_MIN, NET_MTU, NET_RX_HEADER,
    NET_TX_HEADER, NetRingHeader, NetSlotHeader, PAGE_SIZE, YIELD_FOREVER, doorbell_address,
    net_ring_len, net_rx_slot, net_tx_slot,
};
use std::fs::File;
use std::io;
use std::mem::offset_of;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, ReadVolatile, VolatileSlice, WriteVolatile};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Receive slots per device.
pub const RX_SLOTS: u32 = 256;
/// Transmit slots per device.
pub const TX_SLOTS: u32 = 256;
/// How long an I/O thread keeps polling after its last frame before it sleeps. Long enough to
/// catch the guest's answer to a frame it just received (waking the vCPU takes tens of
/// microseconds here), which saves a wakeup and a doorbell per request: measured 80-100 us per TCP
/// round trip at 50 us against 100-120 us at 20 us; throughput is the same.
const SPIN: Duration = Duration::from_micros(50);

const PRODUCED: u64 = offset_of!(NetRingHeader, produced) as u64;
const CONSUMED: u64 = offset_of!(NetRingHeader, consumed) as u64;
const WAITING: u64 = offset_of!(NetRingHeader, waiting) as u64;
const FRAME: u64 = size_of::<NetSlotHeader>() as u64;

/// One network interface of the guest, as the command line gives it (`--net NAME=TAP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The name the guest looks the device up by (`service` by default in the CLI).
    pub name: String,
    /// The host tap interface; the monitor attaches to it, creating it if it does not exist.
    pub tap: String,
    /// The guest's MAC address; a random locally administered one when `None`.
    pub mac: Option<[u8; 6]>,
}

/// Traffic counters of one device, written by its I/O thread.
#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped_in: AtomicU64,
    dropped_out: AtomicU64,
    wakeups: AtomicU64,
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
    /// Frames the tap refused (interface down, queue full).
    pub dropped_out: u64,
    /// Times an I/O thread woke from sleep (doorbell, tap or stop).
    pub wakeups: u64,
}

/// One configured device.
struct Device {
    name: String,
    handle: u32,
    mac: [u8; 6],
    tap: File,
    /// Signalled by the guest's doorbell store (through KVM_IOEVENTFD) or by the monitor.
    doorbell: EventFd,
    ring_addr: u64,
    counters: Counters,
}

/// Why an I/O thread stopped the run.
#[derive(Debug)]
pub enum Failure {
    /// The guest broke a ring.
    Abi(AbiViolation),
    /// A host call failed.
    Host(&'static str, io::Error),
}

/// All network devices of a guest and what their I/O threads share with the vCPU thread.
pub struct Nets {
    devices: Vec<Device>,
    /// Set by the vCPU thread while it sleeps in `Yield`.
    vcpu_waiting: AtomicBool,
    /// Wakes the vCPU thread from `Yield`.
    wake: EventFd,
    /// Readable once the run is over: the I/O threads return.
    stop: EventFd,
    stopping: AtomicBool,
    failed: AtomicBool,
    failure: Mutex<Option<Failure>>,
}

impl Nets {
    /// Opens the taps and eventfds for `configs` (before the VM exists and before any confinement).
    pub fn open(configs: &[NetConfig]) -> Result<Nets, Error> {
        if configs.len() > MAX_DEVICES {
            return Err(Error::Net {
                name: configs[MAX_DEVICES].name.clone(),
                tap: configs[MAX_DEVICES].tap.clone(),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("at most {MAX_DEVICES} devices are supported"),
                ),
            });
        }
        let event = |what| move |source| Error::VmSetup { what, source };
        let mut devices = Vec::with_capacity(configs.len());
        for (handle, config) in configs.iter().enumerate() {
            let fail = |source| Error::Net {
                name: config.name.clone(),
                tap: config.tap.clone(),
                source,
            };
            let bad_name = |what: &str| {
                fail(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    what.replace("NAME", &config.name),
                ))
            };
            if config.name.is_empty() || config.name.len() > 15 || config.name.contains('\0') {
                return Err(bad_name(
                    "the device name NAME must be 1 to 15 bytes without NUL",
                ));
            }
            if configs[..handle].iter().any(|c| c.name == config.name) {
                return Err(bad_name("two devices are named NAME"));
            }
            let tap = fata_tap::open(&config.tap).map_err(fail)?;
            let mac = match config.mac {
                Some(mac) => mac,
                None => fata_tap::random_mac().map_err(fail)?,
            };
            devices.push(Device {
                name: config.name.clone(),
                handle: handle as u32,
                mac,
                tap,
                doorbell: EventFd::new(EFD_NONBLOCK).map_err(event("creating an eventfd"))?,
                ring_addr: 0,
                counters: Counters::default(),
            });
        }
        Ok(Nets {
            devices,
            vcpu_waiting: AtomicBool::new(false),
            wake: EventFd::new(EFD_NONBLOCK).map_err(event("creating an eventfd"))?,
            stop: EventFd::new(EFD_NONBLOCK).map_err(event("creating an eventfd"))?,
            stopping: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        })
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
                ring_addr: device.ring_addr,
                ring_len: net_ring_len(RX_SLOTS, TX_SLOTS),
                mac: device.mac,
                mtu: NET_MTU,
                rx_slots: RX_SLOTS,
                tx_slots: TX_SLOTS,
                doorbell: doorbell_address(device.handle),
                reserved: 0,
            };
        }
        infos
    }

    /// The `(doorbell address, eventfd)` pairs to register with KVM.
    pub fn doorbells(&self) -> impl Iterator<Item = (u64, &EventFd)> {
        self.devices
            .iter()
            .map(|d| (doorbell_address(d.handle), &d.doorbell))
    }

    /// Rings device `handle`'s doorbell from the monitor: the path a doorbell store takes when it
    /// reaches the monitor as an exit. `false` when there is no such device.
    pub fn ring(&self, handle: u64) -> bool {
        match self.devices.iter().find(|d| u64::from(d.handle) == handle) {
            Some(device) => {
                let _ = device.doorbell.write(1);
                true
            }
            None => false,
        }
    }

    /// Spawns one I/O thread per device in `scope`. Each confines itself with the I/O allow-list
    /// before it touches the rings. Call [`Nets::stop`] before the scope ends.
    pub fn spawn<'scope>(
        &'scope self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        ram: &'scope GuestRam,
    ) -> Result<(), Error> {
        for device in &self.devices {
            std::thread::Builder::new()
                .name(format!("net-{}", device.name))
                .spawn_scoped(scope, move || self.serve(ram, device))
                .map_err(|source| Error::VmSetup {
                    what: "starting a network I/O thread",
                    source,
                })?;
        }
        Ok(())
    }

    /// Tells the I/O threads to return.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.write(1);
    }

    /// Whether an I/O thread has stopped the run (cheap: one atomic load).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Why an I/O thread stopped the run, once.
    pub fn take_failure(&self) -> Option<Failure> {
        self.failure.lock().ok()?.take()
    }

    fn fail(&self, failure: Failure) {
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(failure);
        }
        self.failed.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
    }

    /// The traffic so far, summed over the devices.
    pub fn stats(&self) -> NetStats {
        let mut s = NetStats::default();
        for d in &self.devices {
            let c = &d.counters;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s.frames_in += get(&c.frames_in);
            s.bytes_in += get(&c.bytes_in);
            s.frames_out += get(&c.frames_out);
            s.bytes_out += get(&c.bytes_out);
            s.dropped_in += get(&c.dropped_in);
            s.dropped_out += get(&c.dropped_out);
            s.wakeups += get(&c.wakeups);
        }
        s
    }

    /// The devices in `interest` whose receive ring holds a frame.
    fn ready(&self, ram: &GuestRam, interest: u64) -> u64 {
        let mut ready = 0;
        for d in &self.devices {
            let bit = 1u64 << d.handle;
            if interest & bit == 0 {
                continue;
            }
            let index = |field| {
                ram.slice(Gpa(d.ring_addr + NET_RX_HEADER + field), 4)
                    .ok()
                    .and_then(|s| s.load::<u32>(0, Ordering::Acquire).ok())
                    .unwrap_or(0)
            };
            if index(PRODUCED) != index(CONSUMED) {
                ready |= bit;
            }
        }
        ready
    }

    /// The `Yield` hypercall: waits until a device in `interest` has a received frame or
    /// `timeout_ns` passes; returns the ready devices.
    pub fn wait(&self, ram: &GuestRam, interest: u64, timeout_ns: u64) -> Result<u64, Failure> {
        let known = self
            .devices
            .iter()
            .fold(0u64, |set, d| set | (1 << d.handle));
        let interest = interest & known;
        if timeout_ns == YIELD_FOREVER && interest == 0 {
            return Err(Failure::Abi(AbiViolation::WaitsForever));
        }
        let deadline = match timeout_ns {
            YIELD_FOREVER => None,
            ns => Instant::now().checked_add(Duration::from_nanos(ns)),
        };
        loop {
            let ready = self.ready(ram, interest);
            if ready != 0 || self.failed() || crate::stop_signal().is_some() {
                return Ok(ready);
            }
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(0),
                },
                None => None,
            };
            self.vcpu_waiting.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let ready = self.ready(ram, interest);
            if ready == 0 && !self.failed() {
                let slept = wait_readable(&[self.wake.as_raw_fd()], left);
                self.vcpu_waiting.store(false, Ordering::SeqCst);
                slept.map_err(|e| Failure::Host("waiting for the network", e))?;
                let _ = self.wake.read();
            } else {
                self.vcpu_waiting.store(false, Ordering::SeqCst);
            }
        }
    }

    /// The I/O thread of `device`: moves frames until the run stops or the guest breaks a ring.
    fn serve(&self, ram: &GuestRam, device: &Device) {
        // SIGINT and SIGTERM go to the vCPU thread, which ends the run.
        for signal in [libc::SIGINT, libc::SIGTERM] {
            let _ = vmm_sys_util::signal::block_signal(signal);
        }
        if let Err(e) = seccomp::confine_io() {
            self.fail(Failure::Host(
                "confining a network I/O thread",
                io::Error::other(e),
            ));
            return;
        }
        let len = net_ring_len(RX_SLOTS, TX_SLOTS);
        let ring = match ram.slice(Gpa(device.ring_addr), len) {
            Ok(ring) => ring,
            Err(e) => {
                self.fail(Failure::Host("mapping a network ring", io::Error::other(e)));
                return;
            }
        };
        let mut port = Port {
            ring,
            tap: &device.tap,
            counters: &device.counters,
            rx_produced: 0,
            tx_consumed: 0,
        };
        let mut last_work = Instant::now();
        while !self.stopping.load(Ordering::Relaxed) {
            let work = match port.step() {
                Ok(work) => work,
                Err(defect) => {
                    self.fail(Failure::Abi(AbiViolation::NetRing {
                        handle: device.handle,
                        defect,
                    }));
                    return;
                }
            };
            if work.received > 0 {
                fence(Ordering::SeqCst);
                if self.vcpu_waiting.load(Ordering::SeqCst) {
                    let _ = self.wake.write(1);
                }
            }
            if work.moved() {
                last_work = Instant::now();
                continue;
            }
            if last_work.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            // Sleep: announce it, then look once more (the guest checks `waiting` after it moves
            // an index, so one of the two sides sees the other).
            port.set_waiting(work.rx_full, 1);
            fence(Ordering::SeqCst);
            if port.guest_moved(work.rx_full) {
                port.set_waiting(work.rx_full, 0);
                continue;
            }
            let mut fds = vec![device.doorbell.as_raw_fd(), self.stop.as_raw_fd()];
            if !work.rx_full {
                fds.push(device.tap.as_raw_fd());
            }
            let slept = wait_readable(&fds, None);
            port.set_waiting(true, 0);
            if let Err(e) = slept {
                self.fail(Failure::Host("waiting for the tap", e));
                return;
            }
            let _ = device.doorbell.read();
            device.counters.wakeups.fetch_add(1, Ordering::Relaxed);
            last_work = Instant::now();
        }
    }
}

/// What one pass over a device's rings did.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    sent: u32,
    received: u32,
    /// The receive ring was full: the thread must not wait for the tap.
    rx_full: bool,
}

impl Work {
    fn moved(self) -> bool {
        self.sent > 0 || self.received > 0
    }
}

/// An I/O thread's view of one device: the ring memory, checked once, and its own indices (never
/// read back from guest memory).
struct Port<'a, B: BitmapSlice> {
    ring: VolatileSlice<'a, B>,
    tap: &'a File,
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

    fn set_waiting(&self, rx_too: bool, value: u32) {
        self.store(NET_TX_HEADER + WAITING, value, Ordering::SeqCst);
        if rx_too {
            self.store(NET_RX_HEADER + WAITING, value, Ordering::SeqCst);
        }
    }

    /// Whether the guest published transmit frames, or (when `rx_full`) freed receive slots.
    fn guest_moved(&self, rx_full: bool) -> bool {
        let tx = self.load(NET_TX_HEADER + PRODUCED, Ordering::SeqCst) != self.tx_consumed;
        let rx = rx_full
            && self
                .rx_produced
                .wrapping_sub(self.load(NET_RX_HEADER + CONSUMED, Ordering::SeqCst))
                < RX_SLOTS;
        tx || rx
    }

    /// Sends the guest's published frames, then receives what the tap has into free slots.
    fn step(&mut self) -> Result<Work, RingDefect> {
        let mut work = Work::default();
        let produced = self.load(NET_TX_HEADER + PRODUCED, Ordering::Acquire);
        let pending = produced.wrapping_sub(self.tx_consumed);
        if pending > TX_SLOTS {
            return Err(RingDefect::TxIndex {
                produced,
                consumed: self.tx_consumed,
            });
        }
        for _ in 0..pending {
            let slot = net_tx_slot(RX_SLOTS, TX_SLOTS, self.tx_consumed);
            let len = self.load(slot, Ordering::Relaxed);
            if !(NET_FRAME_MIN..=NET_FRAME_MAX).contains(&u64::from(len)) {
                return Err(RingDefect::FrameLength {
                    index: self.tx_consumed,
                    len,
                });
            }
            let frame = self
                .ring
                .subslice((slot + FRAME) as usize, len as usize)
                .map_err(|_| RingDefect::FrameLength {
                    index: self.tx_consumed,
                    len,
                })?;
            let mut tap = self.tap;
            match tap.write_volatile(&frame) {
                Ok(_) => {
                    self.counters.frames_out.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_out
                        .fetch_add(u64::from(len), Ordering::Relaxed);
                }
                Err(_) => {
                    self.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.tx_consumed = self.tx_consumed.wrapping_add(1);
        }
        if pending > 0 {
            self.store(
                NET_TX_HEADER + CONSUMED,
                self.tx_consumed,
                Ordering::Release,
            );
            work.sent = pending;
        }

        let consumed = self.load(NET_RX_HEADER + CONSUMED, Ordering::Acquire);
        let used = self.rx_produced.wrapping_sub(consumed);
        if used > RX_SLOTS {
            return Err(RingDefect::RxIndex {
                produced: self.rx_produced,
                consumed,
            });
        }
        let mut room = RX_SLOTS - used;
        // Bounded, so that a tap full of oversized frames cannot keep the thread here.
        for _ in 0..2 * RX_SLOTS {
            if room == 0 {
                break;
            }
            let slot = net_rx_slot(RX_SLOTS, self.rx_produced);
            let Ok(mut buf) = self
                .ring
                .subslice((slot + FRAME) as usize, NET_FRAME_MAX as usize)
            else {
                break;
            };
            let mut tap = self.tap;
            match tap.read_volatile(&mut buf) {
                Ok(0) => break,
                // A tap reports a frame's whole length even when the buffer was shorter.
                Ok(n) if n as u64 > NET_FRAME_MAX => {
                    self.counters.dropped_in.fetch_add(1, Ordering::Relaxed);
                }
                Ok(n) => {
                    self.store(slot, n as u32, Ordering::Relaxed);
                    self.rx_produced = self.rx_produced.wrapping_add(1);
                    room -= 1;
                    work.received += 1;
                    self.counters.frames_in.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_in
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(vm_memory::VolatileMemoryError::IOError(e))
                    if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if work.received > 0 {
            self.store(
                NET_RX_HEADER + PRODUCED,
                self.rx_produced,
                Ordering::Release,
            );
        }
        work.rx_full = room == 0;
        Ok(work)
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit). A signal ends the
/// wait early without an error.
fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<()> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(t.subsec_nanos() as i32),
    });
    let spec_ptr = spec
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::timespec);
    // SAFETY: `polls` holds `polls.len()` initialised pollfd structs the kernel writes `revents`
    // into; `spec_ptr` is null or points at `spec`, which outlives the call; no signal mask.
    let rc = unsafe {
        libc::ppoll(
            polls.as_mut_ptr(),
            polls.len() as libc::nfds_t,
            spec_ptr,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_sit_below_the_stack_page_aligned() {
        let mut nets = Nets::open(&[]).unwrap();
        assert_eq!(nets.place(31 << 20), 31 << 20);
        nets.devices.clear();
        assert!(nets.device_infos().iter().all(|d| *d == DeviceInfo::EMPTY));
    }

    #[test]
    fn bad_device_names_are_refused_before_any_tap_is_opened() {
        let config = |name: &str| NetConfig {
            name: name.into(),
            tap: "tap-never".into(),
            mac: None,
        };
        for names in [vec![""], vec!["sixteen-bytes-xx"], vec!["a", "a"]] {
            let configs: Vec<_> = names.iter().map(|n| config(n)).collect();
            let err = Nets::open(&configs).err().unwrap();
            assert_eq!(err.exit_code(), 117, "{err}");
        }
    }

    /// A guest-memory ring with the I/O thread's logic, no tap traffic.
    fn port_on<'a>(ram: &'a GuestRam, tap: &'static File) -> Port<'a, impl BitmapSlice> {
        static COUNTERS: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();
        Port {
            ring: ram.slice(Gpa(0), net_ring_len(RX_SLOTS, TX_SLOTS)).unwrap(),
            tap,
            counters: COUNTERS.get_or_init(Counters::default),
            rx_produced: 0,
            tx_consumed: 0,
        }
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

    #[test]
    fn hostile_ring_values_are_defects_not_panics() {
        let ram = GuestRam::new(4 << 20).unwrap();
        let put = |offset: u64, v: u32| ram.write(Gpa(offset), &v.to_le_bytes()).unwrap();
        // Transmit index far ahead of the monitor's.
        put(NET_TX_HEADER + PRODUCED, 0x8000_0000);
        let mut port = port_on(&ram, null_file());
        assert!(matches!(port.step(), Err(RingDefect::TxIndex { .. })));
        // One frame with a length past the slot, then one too short.
        for len in [u32::MAX, NET_FRAME_MAX as u32 + 1, 13, 0] {
            put(NET_TX_HEADER + PRODUCED, 1);
            put(net_tx_slot(RX_SLOTS, TX_SLOTS, 0), len);
            let mut port = port_on(&ram, null_file());
            assert_eq!(
                port.step().unwrap_err(),
                RingDefect::FrameLength { index: 0, len }
            );
        }
        // A good frame goes out (to /dev/null); the monitor's index moves.
        put(net_tx_slot(RX_SLOTS, TX_SLOTS, 0), 60);
        let mut port = port_on(&ram, null_file());
        let work = port.step().unwrap();
        assert_eq!(work.sent, 1);
        assert_eq!(port.load(NET_TX_HEADER + CONSUMED, Ordering::Relaxed), 1);
        // The guest claims to have consumed frames never produced.
        put(NET_RX_HEADER + CONSUMED, 5);
        assert!(matches!(port.step(), Err(RingDefect::RxIndex { .. })));
    }
}
