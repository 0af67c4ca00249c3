//! Waiting for devices, with interrupt coalescing (see [`fata_platform::COALESCE_BELOW`]).
//!
//! With an interval set, the process naps under load so that each wake-up serves a batch (one
//! `recvmmsg` of many datagrams instead of one each). "Under load" means input is found waiting
//! when the app goes idle, or arrived before the app's first answer since it last woke went out
//! (its first send of each cycle, [`sending`], looks: one `epoll_pwait2` that does not sleep).
//! Then, unless the last wake-up already brought a batch, `yield_until` naps and collects what
//! came meanwhile. The nap adapts to the arrival rate, as the hvt monitor's does: it ends when a
//! batch of [`COALESCE_BELOW`] items should have arrived since the last wake-up, and there is none
//! when that takes longer than the interval, which is the longest a nap may make input wait. An
//! idle app sleeps in `epoll_pwait2` and wakes at once.
//!
//! The app drains its sockets itself, so input found waiting may also be a fast client's next
//! question, sent after the app's answer. Napping cannot batch such a client: a nap that brings
//! at most one item turns napping off for the next [`BACKOFF_WAKES`] wake-ups, as a network
//! card's adaptive moderation lowers its rate when each interrupt brings one packet.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use fata_platform::{COALESCE_BELOW, ReadySet};

use crate::poller;

/// Items (datagrams, frames, reads, accepts) received since the app last woke.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// Whether the app has sent anything since it last woke.
static SENT: AtomicBool = AtomicBool::new(false);
/// Whether input was found waiting before the app's first send since it last woke.
static BEHIND: AtomicBool = AtomicBool::new(false);
/// Readiness seen by a look that did not deliver it (outside the interest of the time, or taken
/// by [`sending`]); delivered by the next wait that is interested.
static PENDING: AtomicU64 = AtomicU64::new(0);
/// Whether the last wake-up followed a nap.
static NAPPED: AtomicBool = AtomicBool::new(false);
/// Wake-ups left before napping may resume after a nap that brought at most one item.
static BACKOFF: AtomicU32 = AtomicU32::new(0);
/// How many wake-ups a useless nap turns napping off for.
const BACKOFF_WAKES: u32 = 64;
/// When `yield_until` last returned, in the platform's monotonic nanoseconds.
static LAST_WAKE_NS: AtomicU64 = AtomicU64::new(0);
/// Items per second arriving, a moving average over wake-ups (the bits of an `f64`).
static RATE: AtomicU64 = AtomicU64::new(0);

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

/// Folds the items received between two wake-ups `since_ns` apart into the arrival rate (a
/// quarter weight for the newest sample).
fn note_rate(received: u32, since_ns: u64) {
    if since_ns == 0 {
        return;
    }
    let sample = f64::from(received) * 1e9 / since_ns as f64;
    let rate = f64::from_bits(RATE.load(Ordering::Relaxed)) * 0.75 + sample * 0.25;
    RATE.store(rate.to_bits(), Ordering::Relaxed);
}

/// How long after the last wake-up a nap should end: the time [`COALESCE_BELOW`] items take at
/// the arrival rate, if that is within the interval; 0 (no nap) otherwise.
fn batch_interval_ns() -> u64 {
    let rate = f64::from_bits(RATE.load(Ordering::Relaxed));
    if rate <= 0.0 {
        return 0;
    }
    let fill = f64::from(COALESCE_BELOW) * 1e9 / rate;
    if fill <= interval_ns() as f64 {
        fill as u64
    } else {
        0
    }
}

/// Counts `count` items the app received.
pub(crate) fn received(count: usize) {
    RECEIVED.fetch_add(count.min(u32::MAX as usize) as u32, Ordering::Relaxed);
}

/// Called before every send: the first one since the app woke looks whether input is waiting.
pub(crate) fn sending() {
    if interval_ns() == 0 || SENT.swap(true, Ordering::Relaxed) {
        return;
    }
    let look = poller::wait(Some(0));
    PENDING.fetch_or(look.ready.0, Ordering::Relaxed);
    if look.input {
        BEHIND.store(true, Ordering::Relaxed);
    }
}

/// Notes devices found ready before the wait (block devices holding finished requests): the next
/// wait reports them, at once if it is interested in them.
pub(crate) fn ready_already(ready: ReadySet) {
    PENDING.fetch_or(ready.0, Ordering::Relaxed);
}

/// Waits for a device in `interest` or until `timeout_ns` passes (forever when `None`); `now`
/// reads the monotonic clock. Returns the devices in `interest` that came up.
pub(crate) fn wait(interest: ReadySet, timeout_ns: Option<u64>, now: fn() -> u64) -> ReadySet {
    let pending = ReadySet(PENDING.swap(0, Ordering::Relaxed));
    if interval_ns() == 0 {
        // No coalescing: one wait, which does not sleep if something is pending already.
        let timeout = if pending.0 & interest.0 != 0 {
            Some(0)
        } else {
            timeout_ns
        };
        return deliver(pending.union(poller::wait(timeout).ready), interest);
    }
    let first = poller::wait(Some(0));
    let mut seen = pending.union(first.ready);
    if timeout_ns == Some(0) {
        // A busy app's poll: not a wake-up.
        return deliver(seen, interest);
    }
    let received = RECEIVED.load(Ordering::Relaxed);
    let napped_before = NAPPED.swap(false, Ordering::Relaxed);
    let backoff = if napped_before && received <= 1 {
        BACKOFF_WAKES
    } else {
        BACKOFF.load(Ordering::Relaxed).saturating_sub(1)
    };
    BACKOFF.store(backoff, Ordering::Relaxed);
    if (seen.0 & interest.0) == 0 {
        seen = seen.union(poller::wait(timeout_ns).ready);
    } else {
        let behind = BEHIND.load(Ordering::Relaxed) || first.input;
        let since = now().saturating_sub(LAST_WAKE_NS.load(Ordering::Relaxed));
        let nap = batch_interval_ns()
            .saturating_sub(since)
            .min(timeout_ns.unwrap_or(u64::MAX));
        // A wake-up that brought a batch by itself needs no nap; one that brought a batch because
        // it followed a nap says nothing about that.
        let batch = received >= COALESCE_BELOW && !napped_before;
        if behind && backoff == 0 && nap > 0 && !batch {
            std::thread::sleep(Duration::from_nanos(nap));
            NAPPED.store(true, Ordering::Relaxed);
            seen = seen.union(poller::wait(Some(0)).ready);
        }
    }
    RECEIVED.store(0, Ordering::Relaxed);
    SENT.store(false, Ordering::Relaxed);
    BEHIND.store(false, Ordering::Relaxed);
    let woke = now();
    note_rate(
        received,
        woke.saturating_sub(LAST_WAKE_NS.swap(woke, Ordering::Relaxed)),
    );
    deliver(seen, interest)
}

/// Returns the part of `seen` in `interest`; keeps the rest for a later wait.
fn deliver(seen: ReadySet, interest: ReadySet) -> ReadySet {
    PENDING.fetch_or(seen.0 & !interest.0, Ordering::Relaxed);
    ReadySet(seen.0 & interest.0)
}
