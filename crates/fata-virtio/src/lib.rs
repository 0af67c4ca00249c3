//! Fata's virtio guest platform: what a unikernel links to boot on QEMU and other standard VMMs.
//!
//! The image is a PVH ELF (`fata-pvh` provides the note and the entry into long mode). This crate
//! implements [`fata_platform::Platform`] as [`Virtio`] on what such a VMM emulates: the console
//! on COM1, the monotonic clock from the TSC (frequency from the hypervisor's CPUID leaf or
//! measured against the PIT), the wall clock from the CMOS clock, entropy from RDRAND, idling in
//! `hlt` until the local APIC timer or a device interrupt, the exit status through QEMU's
//! `isa-debug-exit` port, and the app's arguments from the kernel command line
//! (`fata-virtio-abi`).
//!
//! Built with `--cfg fata_target="virtio"` it also provides the runtime a freestanding image
//! needs (module `rt`): the Rust side of the entry, the talc allocator over the RAM after the
//! image, and the panic handler (status 101). Without that cfg the crate is an ordinary library,
//! so host builds and tests of the workspace still compile it.
//!
//! The guest runs at CPL0 with interrupts disabled except while it halts.
#![cfg_attr(not(test), no_std)]
// Without the cfg the entry (module `rt`) is not built, so what only it calls looks unused.
#![cfg_attr(not(fata_target = "virtio"), allow(dead_code))]

extern crate alloc;

mod boot;
mod clock;
mod interrupts;
mod port;
mod random;
#[cfg(fata_target = "virtio")]
mod rt;
mod serial;

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use fata_platform::{Device, Platform, ReadySet};

/// The port of QEMU's `isa-debug-exit` device, as `fata run` configures it: writing `V` makes
/// QEMU exit with status `2V + 1`.
pub const DEBUG_EXIT_PORT: u16 = 0x501;

/// The status a guest reports when it cannot go on (a CPU exception, an unusable start info),
/// the same as the hvt monitor's for a guest fault.
pub const FAULT_STATUS: i32 = 124;

/// The highest app status the exit port carries; higher ones are reported as this.
pub const MAX_STATUS: i32 = 126;

/// Set by the first `take_devices`: later calls get nothing.
static DEVICES_TAKEN: AtomicBool = AtomicBool::new(false);

/// Prints `fata: WHAT` on the console and ends the guest with [`FAULT_STATUS`].
pub fn fail(what: core::fmt::Arguments<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(serial::Writer, "fata: {what}");
    exit(FAULT_STATUS)
}

/// Ends the guest with `status`: through the exit port where there is one, else by a triple
/// fault, which a VMM run with `-no-reboot` (or libvirt's `on_reboot=destroy`) ends as a
/// power-off.
pub fn exit(status: i32) -> ! {
    port::outb(DEBUG_EXIT_PORT, (status.clamp(0, MAX_STATUS) + 1) as u8);
    let empty = [0u64; 2];
    // SAFETY: loading an empty IDT and raising an exception ends the CPU's execution (a triple
    // fault): nothing runs after this.
    unsafe { core::arch::asm!("lidt [{}]", "int3", in(reg) &empty, options(noreturn)) }
}

/// The virtio platform. The `fata` runtime uses it when built with `--cfg fata_target="virtio"`.
pub struct Virtio;

impl Platform for Virtio {
    fn monotonic_ns() -> u64 {
        clock::monotonic_ns()
    }

    fn wall_clock_ns() -> u64 {
        clock::wall_clock_ns()
    }

    fn console_write(bytes: &[u8]) {
        serial::write(bytes);
    }

    fn random_fill(buf: &mut [u8]) {
        random::fill(buf);
    }

    fn yield_until(_interest: ReadySet, deadline_ns: Option<u64>) -> ReadySet {
        let deadline_tsc = deadline_ns.map(|deadline| {
            let left = deadline.saturating_sub(clock::monotonic_ns());
            clock::rdtsc().saturating_add(clock::ns_to_ticks(left))
        });
        interrupts::halt(deadline_tsc);
        ReadySet::EMPTY
    }

    fn exit(status: i32) -> ! {
        exit(status)
    }

    fn args() -> Vec<String> {
        boot::cmdline().map_or_else(Vec::new, |c| c.args.clone())
    }

    fn take_devices() -> Vec<Device> {
        if DEVICES_TAKEN.swap(true, Ordering::Relaxed) {
            return Vec::new();
        }
        Vec::new()
    }
}
