//! Time: the TSC for the monotonic clock, its frequency from the hypervisor's CPUID leaf or
//! measured against the PIT's channel 0, and the wall clock from the CMOS real-time clock at boot.
//!
//! QEMU's TCG counts the TSC at the host's TSC rate and its PIT at real time, so the measurement
//! is right under emulation too. The CMOS clock has one-second resolution: the wall clock is the
//! second it showed at boot plus the TSC since then.

use crate::port::{inb, outb};
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_KHZ: AtomicU64 = AtomicU64::new(0);
static START_TSC: AtomicU64 = AtomicU64::new(0);
static BOOT_WALL_NS: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; every x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC frequency, in kHz.
pub fn tsc_khz() -> u64 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// Frequencies the hypervisor states in CPUID leaf 0x40000010 (TSC and local APIC timer, in
/// kHz), which KVM, VMware and QEMU with an invariant TSC provide.
pub fn hypervisor_frequencies() -> Option<(u64, u64)> {
    let hypervisor = core::arch::x86_64::__cpuid(1).ecx & (1 << 31) != 0;
    if !hypervisor {
        return None;
    }
    // The hypervisor bit says leaves from 0x40000000 exist.
    let max = core::arch::x86_64::__cpuid(0x4000_0000).eax;
    if max < 0x4000_0010 {
        return None;
    }
    let leaf = core::arch::x86_64::__cpuid(0x4000_0010);
    (leaf.eax != 0 && leaf.ebx != 0).then_some((u64::from(leaf.eax), u64::from(leaf.ebx)))
}

/// The PIT's input clock, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Reads the PIT's channel 0 counter (latched, so the two bytes belong together).
fn pit_count() -> u16 {
    outb(0x43, 0x00);
    let low = inb(0x40);
    let high = inb(0x40);
    u16::from_le_bytes([low, high])
}

/// Runs the PIT's channel 0 as a free-running counter and measures how many TSC ticks pass
/// while it counts `pit_ticks` of its own; `before` runs as the measurement starts, `after` as
/// it ends. Channel 0 is used, not the speaker's channel 2, because its gate is always open and
/// a VMM without a PC speaker (QEMU's microvm) has no port 0x61 to open channel 2's.
/// Returns `None` when the counter does not move (a VMM without a PIT).
pub fn tsc_over_pit(pit_ticks: u64, before: impl FnOnce(), after: impl FnOnce()) -> Option<u64> {
    // Channel 0, low then high byte, mode 2 (rate generator), binary, period 65536.
    outb(0x43, 0x34);
    outb(0x40, 0);
    outb(0x40, 0);
    before();
    let start = rdtsc();
    let mut last = pit_count();
    let mut counted = 0;
    while counted < pit_ticks {
        let now = pit_count();
        counted += u64::from(last.wrapping_sub(now));
        last = now;
        // A PIT that has not moved in what would be a second on a 10 GHz CPU is not there.
        if counted == 0 && rdtsc() - start > 10_000_000_000 {
            return None;
        }
    }
    let ticks = rdtsc() - start;
    after();
    Some(ticks * pit_ticks / counted)
}

/// Marks the monotonic clock's zero and stores the TSC frequency and the wall clock at boot.
pub fn start(start_tsc: u64, tsc_khz: u64) {
    START_TSC.store(start_tsc, Ordering::Relaxed);
    TSC_KHZ.store(tsc_khz.max(1), Ordering::Relaxed);
    let wall = cmos_seconds().map_or(0, |s| s.saturating_mul(1_000_000_000));
    BOOT_WALL_NS.store(wall.saturating_sub(monotonic_ns()), Ordering::Relaxed);
}

/// Nanoseconds in `ticks` TSC ticks at `khz`.
pub fn ticks_to_ns(ticks: u64, khz: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000 / u128::from(khz.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// TSC ticks in `ns` nanoseconds.
pub fn ns_to_ticks(ns: u64) -> u64 {
    let ticks = u128::from(ns) * u128::from(tsc_khz()) / 1_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Nanoseconds since boot.
pub fn monotonic_ns() -> u64 {
    ticks_to_ns(
        rdtsc().saturating_sub(START_TSC.load(Ordering::Relaxed)),
        tsc_khz(),
    )
}

/// Nanoseconds since the Unix epoch.
pub fn wall_clock_ns() -> u64 {
    BOOT_WALL_NS
        .load(Ordering::Relaxed)
        .saturating_add(monotonic_ns())
}

fn cmos(register: u8) -> u8 {
    // Bit 7 of the index keeps NMIs disabled, as firmware leaves them.
    outb(0x70, 0x80 | register);
    inb(0x71)
}

/// The CMOS clock as seconds since the epoch, read between two updates; `None` without one.
fn cmos_seconds() -> Option<u64> {
    let read = || {
        for _ in 0..1_000_000 {
            if cmos(0x0a) & 0x80 == 0 {
                break;
            }
        }
        [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(cmos)
    };
    let mut fields = read();
    // Read until two reads agree, so an update between the reads cannot tear the value.
    for _ in 0..4 {
        let again = read();
        if again == fields {
            break;
        }
        fields = again;
    }
    let status_b = cmos(0x0b);
    Some(civil_seconds(fields, status_b)).filter(|&s| s > 0)
}

/// Seconds since the epoch from the CMOS fields (second, minute, hour, day, month, year,
/// century) and status register B (bit 2: binary rather than BCD; bit 1: 24-hour clock).
fn civil_seconds(fields: [u8; 7], status_b: u8) -> u64 {
    let binary = status_b & 0x04 != 0;
    let decode = |v: u8| {
        if binary {
            u64::from(v)
        } else {
            u64::from(v >> 4) * 10 + u64::from(v & 15)
        }
    };
    let [second, minute, hour, day, month, year, century] = fields;
    let pm = hour & 0x80 != 0;
    let mut hour = decode(hour & 0x7f);
    if status_b & 0x02 == 0 {
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let century = match decode(century) {
        19..=99 => decode(century),
        _ => 20,
    };
    let (year, month, day) = (century * 100 + decode(year), decode(month), decode(day));
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return 0;
    }
    days_since_epoch(year, month, day) * 86_400 + hour * 3600 + decode(minute) * 60 + decode(second)
}

/// Days from 1970-01-01 to the date (Howard Hinnant's `days_from_civil`).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmos_fields_become_epoch_seconds() {
        // 2026-12-02 18:39:59 in BCD, 24-hour clock, century register 0x20.
        let bcd = [0x59, 0x39, 0x18, 0x02, 0x12, 0x26, 0x20];
        assert_eq!(civil_seconds(bcd, 0x02), 1_796_236_799);
        // The same in binary with a 12-hour clock (6 PM).
        let binary = [59, 39, 0x80 | 6, 2, 12, 26, 20];
        assert_eq!(civil_seconds(binary, 0x04), 1_796_236_799);
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(civil_seconds([0; 7], 0), 0);
    }

    #[test]
    fn ticks_convert() {
        assert_eq!(ticks_to_ns(3_000_000, 3_000_000), 1_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }
}
