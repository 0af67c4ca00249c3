//! Clocks from the TSC and the frequency the monitor measured.

use crate::boot;
use core::sync::atomic::{AtomicU64, Ordering};

/// The TSC at entry: the monotonic clock's zero.
static START_TSC: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter (allowed at CPL3: the monitor leaves CR4.TSD clear).
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Marks the monotonic clock's zero (called once, by the entry code).
#[cfg_attr(not(fata_target = "hvt"), allow(dead_code))]
pub fn start(tsc: u64) {
    START_TSC.store(tsc, Ordering::Relaxed);
}

/// Nanoseconds in `ticks` TSC ticks at `khz`.
fn ticks_to_ns(ticks: u64, khz: u64) -> u64 {
    if khz == 0 {
        return 0;
    }
    let ns = u128::from(ticks) * 1_000_000 / u128::from(khz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Nanoseconds since entry.
pub fn monotonic_ns() -> u64 {
    let khz = boot::info().map_or(0, |i| i.tsc_khz);
    ticks_to_ns(
        rdtsc().saturating_sub(START_TSC.load(Ordering::Relaxed)),
        khz,
    )
}

/// Nanoseconds since the Unix epoch: the host's clock at boot plus the TSC since then.
pub fn wall_clock_ns() -> u64 {
    boot::info().map_or(0, |i| {
        i.boot_wall_ns
            .saturating_add(ticks_to_ns(rdtsc().saturating_sub(i.boot_tsc), i.tsc_khz))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_convert_without_overflow() {
        assert_eq!(ticks_to_ns(2_000_000, 2_000_000), 1_000_000);
        assert_eq!(ticks_to_ns(3, 3_000_000), 1);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0), 0);
    }
}
