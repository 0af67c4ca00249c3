//! Interrupt coalescing for the unix target (see [`fata_platform::COALESCE_BELOW`]).
//!
//! `yield_until` first looks for input without sleeping. Input already waiting when the app goes
//! idle means it arrives faster than the app wakes for it; then, unless the last wake-up already
//! brought a batch, the process naps until one coalescing interval after its last wake-up before it
//! collects what came meanwhile. Each wake-up then serves a batch (one `recvmmsg` of many
//! datagrams instead of one each), at most one interval later. An idle app, or one that answered
//! everything it got, sleeps in `epoll_pwait2` and wakes at once as before.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use fata_platform::{COALESCE_BELOW, ReadySet};

use crate::poller;

/// Items (datagrams, frames, reads, accepts) received since the app last woke.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// When `yield_until` last returned, in the platform's monotonic nanoseconds.
static LAST_WAKE_NS: AtomicU64 = AtomicU64::new(0);

/// The coalescing interval: `FATA_COALESCE_US`, which `fata run` sets; none without it.
fn interval_ns() -> u64 {
    static INTERVAL: OnceLock<u64> = OnceLock::new();
    *INTERVAL.get_or_init(|| {
        std::env::var("FATA_COALESCE_US")
            .ok()
            .and_then(|us| us.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(1000)
    })
}

/// Counts `count` items the app received.
pub(crate) fn received(count: usize) {
    RECEIVED.fetch_add(count.min(u32::MAX as usize) as u32, Ordering::Relaxed);
}

/// Waits for a device in `interest` or until `timeout_ns` passes (forever when `None`); `now`
/// reads the monotonic clock. Returns the devices in `interest` that came up.
pub(crate) fn wait(interest: ReadySet, timeout_ns: Option<u64>, now: fn() -> u64) -> ReadySet {
    let waiting = ReadySet(poller::wait(Some(0)).0 & interest.0);
    if timeout_ns == Some(0) {
        // A busy app's poll: not a wake-up.
        return waiting;
    }
    let ready = if waiting.is_empty() {
        poller::wait(timeout_ns)
    } else {
        let since = now().saturating_sub(LAST_WAKE_NS.load(Ordering::Relaxed));
        let nap = interval_ns()
            .saturating_sub(since)
            .min(timeout_ns.unwrap_or(u64::MAX));
        if nap > 0 && RECEIVED.load(Ordering::Relaxed) < COALESCE_BELOW {
            std::thread::sleep(Duration::from_nanos(nap));
            waiting.union(poller::wait(Some(0)))
        } else {
            waiting
        }
    };
    RECEIVED.store(0, Ordering::Relaxed);
    LAST_WAKE_NS.store(now(), Ordering::Relaxed);
    ReadySet(ready.0 & interest.0)
}
