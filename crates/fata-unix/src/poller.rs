//! One epoll instance for every device of the process, so `yield_until` waits in a single
//! `epoll_pwait2` call and collects host-socket readiness in the same call.
//!
//! Tap devices are watched level-triggered under a device token (their readiness bit); host
//! sockets edge-triggered under their socket id, whose events are kept for
//! [`take_socket_events`] and reported to the executor as the host-socket device's bit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use fata_platform::{ReadySet, SocketId};

/// Tokens with this bit set name a device by its readiness bit; others are socket ids.
const DEVICE_TOKEN: u64 = 1 << 63;
/// Events fetched per wait.
const EVENT_BATCH: usize = 256;

static EPOLL: OnceLock<OwnedFd> = OnceLock::new();
/// Sockets reported ready and not yet taken by the host-socket device.
static SOCKET_EVENTS: Mutex<Vec<SocketId>> = Mutex::new(Vec::new());
/// The readiness bit of the host-socket device.
static SOCKETS_BIT: AtomicU64 = AtomicU64::new(0);

fn epoll() -> io::Result<RawFd> {
    if let Some(fd) = EPOLL.get() {
        return Ok(fd.as_raw_fd());
    }
    // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor that
    // nothing else owns, so OwnedFd may take it.
    let fd = unsafe {
        let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        OwnedFd::from_raw_fd(fd)
    };
    Ok(EPOLL.get_or_init(|| fd).as_raw_fd())
}

fn add(fd: RawFd, token: u64, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: token };
    // SAFETY: both descriptors are open and `event` is a valid epoll_event for the call.
    let rc = unsafe { libc::epoll_ctl(epoll()?, libc::EPOLL_CTL_ADD, fd, &mut event) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Watches a device's descriptor for input, reported as `bit` (level-triggered).
pub(crate) fn watch_device(fd: RawFd, bit: ReadySet) -> io::Result<()> {
    add(
        fd,
        DEVICE_TOKEN | u64::from(bit.0.trailing_zeros()),
        libc::EPOLLIN as u32,
    )
}

/// Says which readiness bit stands for host-socket events.
pub(crate) fn set_sockets_bit(bit: ReadySet) {
    SOCKETS_BIT.store(bit.0, Ordering::Relaxed);
}

/// Watches a host socket (edge-triggered: every arrival is reported once).
pub(crate) fn watch_socket(fd: RawFd, socket: SocketId) -> io::Result<()> {
    let events = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
    add(fd, socket & !DEVICE_TOKEN, events as u32)
}

/// Calls `on_ready` with each socket reported ready since the last call.
pub(crate) fn take_socket_events(on_ready: &mut dyn FnMut(SocketId)) {
    let events = std::mem::take(&mut *SOCKET_EVENTS.lock().unwrap_or_else(|e| e.into_inner()));
    events.into_iter().for_each(on_ready);
}

/// What one wait saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wake {
    /// The readiness bits that came up, host-socket events included.
    pub ready: ReadySet,
    /// Whether any of the events was input (data, a connection, a hang-up), not just room to send.
    pub input: bool,
}

/// Waits up to `timeout_ns` (forever when `None`) for any watched descriptor.
pub(crate) fn wait(timeout_ns: Option<u64>) -> Wake {
    let Ok(epfd) = epoll() else {
        return Wake::default();
    };
    let timeout = timeout_ns.map(|wait| libc::timespec {
        tv_sec: (wait / 1_000_000_000) as libc::time_t,
        tv_nsec: (wait % 1_000_000_000) as libc::c_long,
    });
    let timeout_ptr = timeout.as_ref().map_or(std::ptr::null(), |t| t as *const _);
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENT_BATCH];
    // SAFETY: `events` has room for EVENT_BATCH entries, the count passed; `timeout_ptr` is null
    // or points at `timeout`, which outlives the call; a null sigmask keeps the current one.
    let n = unsafe {
        libc::epoll_pwait2(
            epfd,
            events.as_mut_ptr(),
            EVENT_BATCH as i32,
            timeout_ptr,
            std::ptr::null(),
        )
    };
    let mut wake = Wake::default();
    if n <= 0 {
        return wake;
    }
    let input = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    let mut sockets = SOCKET_EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    for event in &events[..n as usize] {
        wake.input |= event.events & input != 0;
        if event.u64 & DEVICE_TOKEN != 0 {
            wake.ready = wake.ready.union(ReadySet::single((event.u64 & 63) as u32));
        } else {
            sockets.push(event.u64);
            wake.ready = wake
                .ready
                .union(ReadySet(SOCKETS_BIT.load(Ordering::Relaxed)));
        }
    }
    wake
}
