//! The contract between Fata's runtime and a target.
//!
//! This crate sits below everything else an app touches. It defines
//! - the **device traits** an app programs against ([`Console`], [`Clock`], [`Random`], [`Net`],
//!   [`Block`], [`Kv`]), re-exported by the `fata` crate;
//! - the **[`Platform`] trait** that each target (`fata-unix`, `fata-hvt`) implements once: clocks,
//!   console, entropy, `yield_until(deadline)`, exit, arguments and the configured devices.
//!
//! The `fata` crate picks exactly one platform at build time and builds its executor on top of it, so
//! the same app source runs as a Linux process and as a unikernel.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::SocketAddr;
use core::task::Waker;

/// Interrupt coalescing, on every target. With an interval set (`fata run --coalesce-us N`, or
/// the app's `[package.metadata.fata] coalesce-us`), input that arrives faster than the app wakes
/// for it makes the target wake the app at most once per interval, so that one wake-up (a VM exit
/// on hvt: tens of microseconds on a nested host) serves a batch. It does not delay an idle app,
/// a client that waits for each answer (each target says how it tells), or a wake-up after one
/// that brought at least this many received items (frames, datagrams, reads): that is a batch
/// already. The hvt monitor states the same rule in its ABI (`fata_hvt_abi::COALESCE_BELOW`); the
/// guest platform checks at compile time that the two agree.
pub const COALESCE_BELOW: u32 = 16;

/// What a device call can fail with. Small and `Copy` so it costs nothing on the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// Nothing to do right now (no frame waiting, ring full): wait for readiness and retry.
    WouldBlock,
    /// An argument is out of range or malformed (a length that is not a whole number of sectors).
    InvalidArgument,
    /// The request reaches past the end of the device.
    OutOfRange,
    /// The device is read-only.
    ReadOnly,
    /// The key or entry does not exist.
    NotFound,
    /// The device does not do this.
    Unsupported,
    /// The host reported an I/O failure.
    Io,
    /// The host has no room left for the data.
    NoSpace,
    /// The address or port is already in use.
    AddressInUse,
    /// The peer refused the connection.
    ConnectionRefused,
    /// The peer reset the connection.
    ConnectionReset,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceError::WouldBlock => "operation would block",
            DeviceError::InvalidArgument => "invalid argument",
            DeviceError::OutOfRange => "request is past the end of the device",
            DeviceError::ReadOnly => "device is read-only",
            DeviceError::NotFound => "not found",
            DeviceError::Unsupported => "not supported by this device",
            DeviceError::Io => "I/O error on the host",
            DeviceError::NoSpace => "no space left on the host",
            DeviceError::AddressInUse => "address already in use",
            DeviceError::ConnectionRefused => "connection refused",
            DeviceError::ConnectionReset => "connection reset by peer",
        })
    }
}

impl core::error::Error for DeviceError {}

/// A set of device readiness bits, one per device handle (as Solo5's `solo5_handle_set_t`).
///
/// A platform gives each device that can become ready (a network interface) one bit; `yield_until`
/// returns the bits of the devices that have input waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadySet(pub u64);

impl ReadySet {
    /// The empty set.
    pub const EMPTY: ReadySet = ReadySet(0);

    /// The set holding only device `handle` (0..64).
    pub const fn single(handle: u32) -> ReadySet {
        ReadySet(1u64 << (handle & 63))
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the two sets share a bit.
    pub const fn intersects(self, other: ReadySet) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of two sets.
    pub const fn union(self, other: ReadySet) -> ReadySet {
        ReadySet(self.0 | other.0)
    }
}

/// Text output: the unikernel's serial console, a process's stdout.
pub trait Console {
    /// Writes all of `bytes`; console output is never lost or reordered.
    fn write(&self, bytes: &[u8]);
}

/// Time as the platform measures it.
pub trait Clock {
    /// Nanoseconds on a monotonic clock that starts near zero at boot and never goes back.
    fn monotonic_ns(&self) -> u64;
    /// Nanoseconds since the Unix epoch (UTC) according to the host; may jump.
    fn wall_clock_ns(&self) -> u64;
}

/// Entropy for keys, ports and DNS IDs.
pub trait Random {
    /// Fills `buf` with unpredictable bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// Bytes of the virtio-net header (`struct virtio_net_hdr_v1`, little-endian) before every frame
/// of a device that has [`Net::offloads`].
pub const VNET_HDR_LEN: usize = 12;

/// The longest frame of a device that has [`Net::offloads`]: a 64 KiB IP packet with an
/// Ethernet header and a VLAN tag.
pub const OFFLOAD_FRAME_MAX: usize = 65536 + 18;

/// What the host does for a device's frames, through the virtio-net header before each of them
/// (see [`Net::offloads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Frames either way may leave TCP and UDP checksums to fill
    /// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`), and arrive saying they were checked
    /// (`VIRTIO_NET_HDR_F_DATA_VALID`).
    pub csum: bool,
    /// Frames either way may be TCP/IPv4 segments of up to 64 KiB, cut to `gso_size` pieces
    /// where the link needs it (`VIRTIO_NET_HDR_GSO_TCPV4`).
    pub tso4: bool,
    /// The same for TCP/IPv6 (`VIRTIO_NET_HDR_GSO_TCPV6`).
    pub tso6: bool,
}

/// An Ethernet interface that moves frames in batches.
///
/// Receiving hands out up to `max` frames in one call; transmitting queues frames that `flush` hands
/// to the host together, so a unikernel pays one exit per batch rather than one per frame.
pub trait Net {
    /// The interface's MAC address.
    fn mac(&self) -> [u8; 6];
    /// The largest Ethernet payload (without the 14-byte header) a frame may carry.
    fn mtu(&self) -> usize;
    /// The readiness bit(s) that `yield_until` sets when frames are waiting.
    fn readiness(&self) -> ReadySet;
    /// Calls `on_frame` with each waiting frame, at most `max` of them; returns how many it handed
    /// out, 0 when none was waiting.
    fn receive(
        &mut self,
        max: usize,
        on_frame: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, DeviceError>;
    /// Queues one frame of `len` bytes that `fill` writes in place. `WouldBlock` when the transmit
    /// queue is full: flush and retry.
    fn transmit(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> Result<(), DeviceError>;
    /// Hands all queued frames to the host.
    fn flush(&mut self) -> Result<(), DeviceError>;
    /// Whether `transmit` has room for a frame now. A stack asks before building a frame, so a
    /// full queue holds data back (to be sent on a later poll) instead of losing it. Devices whose
    /// queue never fills keep the default.
    fn can_transmit(&self) -> bool {
        true
    }
    /// Asks the device to wake `waker` once a frame is waiting (at once if one already is). This
    /// is how a device that lives in memory, such as fata-net's `Loopback`, wakes its stack: it
    /// has no readiness bit for `yield_until` to report. Devices the platform watches keep the
    /// default, which does nothing.
    fn register_receive_waker(&mut self, _waker: &Waker) {}
    /// How many times the interface has moved to another host link (a restore from a snapshot,
    /// a migration), counted by whoever moved it; 0 since boot on a device that never moves.
    /// A stack announces its addresses on the new link when the count changes, because the
    /// switches and the peers' neighbour caches still point to the old one. A process's tap, or
    /// a device in memory, never moves under its stack, so they keep the default.
    fn moves(&self) -> u32 {
        0
    }
    /// `Some` when every frame either way begins with a [`VNET_HDR_LEN`]-byte virtio-net header
    /// and may be up to [`OFFLOAD_FRAME_MAX`] bytes long (a tap opened with `IFF_VNET_HDR`), with
    /// the checksum and segmentation work the host does for them; `None` (the default) for bare
    /// Ethernet frames of at most `mtu() + 18` bytes.
    fn offloads(&self) -> Option<Offloads> {
        None
    }
}

/// Memory for block requests: whole sectors, page-aligned (the host's direct I/O wants aligned
/// buffers, and a page-aligned guest buffer is page-aligned on the host too).
///
/// A request owns its buffer until it completes, so a buffer can never be freed or reused while a
/// device still writes into it, whatever happens to the future that waits for it.
pub struct BlockBuffer {
    pages: Vec<Page>,
    len: usize,
}

/// One page of a [`BlockBuffer`].
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(4096))]
struct Page([u8; BlockBuffer::ALIGN]);

impl BlockBuffer {
    /// The alignment of every buffer's first byte.
    pub const ALIGN: usize = 4096;

    /// A buffer of `len` zero bytes.
    pub fn new(len: usize) -> BlockBuffer {
        BlockBuffer {
            pages: alloc::vec![Page([0; BlockBuffer::ALIGN]); len.div_ceil(BlockBuffer::ALIGN)],
            len,
        }
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_slice(bytes: &[u8]) -> BlockBuffer {
        let mut buffer = BlockBuffer::new(bytes.len());
        buffer.as_mut_slice().copy_from_slice(bytes);
        buffer
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.pages)[..self.len]
    }

    /// The bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.pages)[..self.len]
    }
}

impl fmt::Debug for BlockBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockBuffer({} bytes)", self.len)
    }
}

/// What a block device is: its sectors and what it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockGeometry {
    /// Bytes per sector (512 on every target today).
    pub sector_size: u32,
    /// Number of sectors.
    pub sectors: u64,
    /// Whether writes and discards are refused.
    pub read_only: bool,
    /// The most bytes one read, write or discard may cover.
    pub request_max: u64,
    /// The most requests that may be in flight at once; `submit` answers `WouldBlock` past it.
    pub queue_depth: u32,
}

/// What a [`BlockRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOp {
    /// Fill the buffer from the sectors at `sector`.
    Read,
    /// Write the buffer to the sectors at `sector`. A `grouped` write reaches the device only at
    /// the next flush, together with every other grouped write since the previous one: after a
    /// crash, all of them or none are there. Reads see it at once.
    Write {
        /// Whether the write waits for the next flush (see above).
        grouped: bool,
    },
    /// Complete after every request submitted before it, with every write submitted before it
    /// durable.
    Flush,
    /// The sectors from `sector` on, `sectors` of them, are no longer needed: they read back as
    /// zeros and the host may free their space.
    Discard {
        /// How many sectors.
        sectors: u64,
    },
}

/// One request to a block device. Reads and writes carry their buffer, a whole number of
/// sectors; flushes and discards carry none.
#[derive(Debug)]
pub struct BlockRequest {
    /// Any value; the completion carries it back.
    pub tag: u64,
    /// What to do.
    pub op: BlockOp,
    /// The first sector (ignored by a flush).
    pub sector: u64,
    /// The buffer of a read or write.
    pub buffer: Option<BlockBuffer>,
}

/// A request that finished, with its buffer back.
#[derive(Debug)]
pub struct BlockCompletion {
    /// The request's tag.
    pub tag: u64,
    /// How it ended.
    pub result: Result<(), DeviceError>,
    /// The buffer the request carried.
    pub buffer: Option<BlockBuffer>,
}

/// A block device: fixed-size sectors, many requests in flight, each finishing on its own.
///
/// Requests are queued with [`Block::submit`] and start together when the platform next waits
/// (`yield_until`: one exit on hvt, one `io_uring_enter` on unix), or at once after
/// [`Block::start`]. The device's readiness bit is set while finished requests wait for
/// [`Block::complete`].
pub trait Block {
    /// The device's sectors and limits.
    fn geometry(&self) -> BlockGeometry;
    /// The readiness bit(s) that `yield_until` sets when finished requests wait.
    fn readiness(&self) -> ReadySet;
    /// Queues a request. A request that can never succeed (past the end, a write on a read-only
    /// device, a buffer that is not whole sectors) is queued too and completes with its error.
    /// `WouldBlock`, with the request handed back, when `queue_depth` requests are in flight.
    fn submit(&mut self, request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)>;
    /// Starts the queued requests now rather than at the platform's next wait.
    fn start(&mut self) {}
    /// Calls `on_done` with each finished request; returns how many it handed out.
    fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize;
}

/// A read-only key-value store: a directory on unix, data carried in the image on hvt.
pub trait Kv {
    /// Every key in the store, sorted.
    fn list(&self) -> Result<Vec<String>, DeviceError>;
    /// The size in bytes of the value under `key`.
    fn size(&self, key: &str) -> Result<u64, DeviceError>;
    /// Reads from the value under `key` at `offset` into `buf`; returns the bytes read (0 at the end).
    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DeviceError>;
    /// The whole value under `key`.
    fn get(&self, key: &str) -> Result<Vec<u8>, DeviceError> {
        let size = usize::try_from(self.size(key)?).map_err(|_| DeviceError::OutOfRange)?;
        let mut value = alloc::vec![0; size];
        let mut done = 0;
        while done < size {
            let n = self.read(key, done as u64, &mut value[done..])?;
            if n == 0 {
                break;
            }
            done += n;
        }
        value.truncate(done);
        Ok(value)
    }
}

/// Names one socket of a [`HostSockets`] device.
pub type SocketId = u64;

/// The host's own TCP/IP stack, for the unix target's "socket" networking: non-blocking socket
/// calls that answer [`DeviceError::WouldBlock`] when they would wait, and one readiness bit that
/// says some socket may have become ready; [`HostSockets::take_ready`] says which.
pub trait HostSockets {
    /// The readiness bit `yield_until` sets when a socket may have become ready.
    fn readiness(&self) -> ReadySet;
    /// Calls `on_ready` with each socket that became readable, writable or closed since the last
    /// call.
    fn take_ready(&mut self, on_ready: &mut dyn FnMut(SocketId));
    /// A TCP listener on `addr`.
    fn tcp_listen(&mut self, addr: SocketAddr, backlog: u32) -> Result<SocketId, DeviceError>;
    /// The next connection waiting on `listener`, with the peer's address.
    fn tcp_accept(&mut self, listener: SocketId) -> Result<(SocketId, SocketAddr), DeviceError>;
    /// Starts connecting to `addr`; the socket becomes writable once connected.
    fn tcp_connect(&mut self, addr: SocketAddr) -> Result<SocketId, DeviceError>;
    /// Whether a connection started by `tcp_connect` is established; `WouldBlock` while it is not.
    fn tcp_connected(&mut self, socket: SocketId) -> Result<(), DeviceError>;
    /// Reads received bytes; `Ok(0)` when the peer closed its side.
    fn tcp_recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<usize, DeviceError>;
    /// Queues bytes to send; returns how many were taken.
    fn tcp_send(&mut self, socket: SocketId, buf: &[u8]) -> Result<usize, DeviceError>;
    /// Closes the sending side (FIN).
    fn tcp_shutdown(&mut self, socket: SocketId) -> Result<(), DeviceError>;
    /// Bytes sent but not yet acknowledged by the peer.
    fn tcp_unacked(&mut self, socket: SocketId) -> Result<usize, DeviceError>;
    /// A UDP socket bound to `addr`.
    fn udp_bind(&mut self, addr: SocketAddr) -> Result<SocketId, DeviceError>;
    /// The next datagram and its sender.
    fn udp_recv_from(
        &mut self,
        socket: SocketId,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), DeviceError>;
    /// Sends one datagram.
    fn udp_send_to(
        &mut self,
        socket: SocketId,
        buf: &[u8],
        to: SocketAddr,
    ) -> Result<(), DeviceError>;
    /// Receives up to `max` waiting datagrams in one go, calling `on_datagram` with each and its
    /// sender; `WouldBlock` when none is waiting. The default receives one at a time.
    fn udp_recv_many(
        &mut self,
        socket: SocketId,
        max: usize,
        on_datagram: &mut dyn FnMut(&[u8], SocketAddr),
    ) -> Result<usize, DeviceError> {
        let mut buf = [0u8; 4096];
        let mut count = 0;
        while count < max {
            match self.udp_recv_from(socket, &mut buf) {
                Ok((len, from)) => on_datagram(&buf[..len], from),
                Err(DeviceError::WouldBlock) if count > 0 => break,
                Err(e) => return Err(e),
            }
            count += 1;
        }
        Ok(count)
    }
    /// Sends several datagrams in one go; returns how many were sent (the rest would block).
    /// The default sends one at a time.
    fn udp_send_many(
        &mut self,
        socket: SocketId,
        datagrams: &[(&[u8], SocketAddr)],
    ) -> Result<usize, DeviceError> {
        for (sent, (data, to)) in datagrams.iter().enumerate() {
            match self.udp_send_to(socket, data, *to) {
                Ok(()) => {}
                Err(DeviceError::WouldBlock) if sent > 0 => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
        Ok(datagrams.len())
    }
    /// The socket's own address.
    fn local_addr(&self, socket: SocketId) -> Result<SocketAddr, DeviceError>;
    /// The connected peer's address.
    fn peer_addr(&self, socket: SocketId) -> Result<SocketAddr, DeviceError>;
    /// Closes the socket and forgets it.
    fn close(&mut self, socket: SocketId);
}

/// A device the host configured for the app, with the name it was given (`--net service=tap0`).
pub enum Device {
    /// A network interface.
    Net(String, Box<dyn Net>),
    /// A block device.
    Block(String, Box<dyn Block>),
    /// A read-only key-value store.
    Kv(String, Box<dyn Kv>),
    /// The host's TCP/IP stack (unix only).
    Sockets(String, Box<dyn HostSockets>),
}

/// What a target provides to the runtime. Exactly one implementation is linked into an app.
///
/// All functions are associated (no `self`): a program has one platform, set up before `main`.
pub trait Platform {
    /// Prepares the platform before the app runs (signal handling, panic reporting). Called once.
    fn init() {}
    /// Nanoseconds on the monotonic clock.
    fn monotonic_ns() -> u64;
    /// Nanoseconds since the Unix epoch.
    fn wall_clock_ns() -> u64;
    /// Writes to the console.
    fn console_write(bytes: &[u8]);
    /// Fills `buf` with entropy.
    fn random_fill(buf: &mut [u8]);
    /// Blocks until a device in `interest` has input or the monotonic clock reaches `deadline_ns`
    /// (forever when `None`), then returns the devices that are ready. May return early and empty.
    fn yield_until(interest: ReadySet, deadline_ns: Option<u64>) -> ReadySet;
    /// Ends the program with `status` (0 is success).
    fn exit(status: i32) -> !;
    /// The app's arguments, without the program name.
    fn args() -> Vec<String>;
    /// The devices the host configured; the first call takes them all, later calls get none.
    fn take_devices() -> Vec<Device>;
}
