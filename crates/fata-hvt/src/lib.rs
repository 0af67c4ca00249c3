//! Fata's hvt guest platform: what a unikernel links to run under `fata-monitor`.
//!
//! This is the lowest layer inside the guest. It implements [`fata_platform::Platform`] as
//! [`Hvt`] over the hvt ABI (`fata-hvt-abi`): console, clocks from the TSC, entropy, blocking
//! `yield`, exit, the app's arguments from the boot info, network devices over shared rings
//! ([`net::HvtNet`]), block devices over request and completion rings ([`block::HvtBlock`]) and
//! read-only key-value stores read in place ([`kv::HvtKv`]).
//!
//! Built with `--cfg fata_target="hvt"` it also provides the runtime a freestanding image needs
//! (module `rt`): `_start` (and, through `fata-freestanding`, the `memcpy` family), the panic handler (prints
//! `panicked at FILE:LINE:COL:` and the message, exits with status 101), the talc global
//! allocator over the RAM between the image and the stack, and the ABI note. `_start` calls the
//! app's C symbol `main() -> i32` and exits with its return value. Without that cfg the crate is an
//! ordinary library, so host builds and tests of the workspace still compile it.
//!
//! The guest runs at CPL3 with SSE already enabled by the monitor; it takes no interrupts.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod args;
pub mod block;
mod boot;
mod clock;
pub mod hypercall;
pub mod kv;
pub mod net;
mod random;
#[cfg(fata_target = "hvt")]
mod rt;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use fata_hvt_abi::YIELD_FOREVER;
use fata_platform::{Device, Platform, ReadySet};

const _: () = assert!(
    fata_hvt_abi::COALESCE_BELOW == fata_platform::COALESCE_BELOW,
    "the monitor coalesces by the same rule as every other target"
);

/// Set by the first `take_devices`: later calls get nothing.
static DEVICES_TAKEN: AtomicBool = AtomicBool::new(false);

/// The hvt platform. The `fata` runtime uses it when built with `--cfg fata_target="hvt"`.
pub struct Hvt;

impl Platform for Hvt {
    fn monotonic_ns() -> u64 {
        clock::monotonic_ns()
    }

    fn wall_clock_ns() -> u64 {
        clock::wall_clock_ns()
    }

    fn console_write(bytes: &[u8]) {
        hypercall::console_write(bytes);
    }

    fn random_fill(buf: &mut [u8]) {
        random::fill(buf);
    }

    fn yield_until(interest: ReadySet, deadline_ns: Option<u64>) -> ReadySet {
        // Frames or block completions already waiting: answer without an exit, unless block
        // requests wait to be taken, which only an exit does (a poll, then). Otherwise exit even
        // for a deadline already past: the monitor moves frames and block requests only on
        // exits, so this is how a busy executor's periodic zero-deadline poll sends what it
        // queued and sees what arrived.
        let ready = net::ready(interest.0) | block::ready(interest.0);
        let untaken = block::untaken();
        if ready != 0 && !untaken {
            return ReadySet(ready);
        }
        let timeout = match deadline_ns {
            _ if ready != 0 => 0,
            None => YIELD_FOREVER,
            Some(deadline) => deadline
                .saturating_sub(clock::monotonic_ns())
                .min(YIELD_FOREVER - 1),
        };
        ReadySet(hypercall::yield_for(timeout, interest.0))
    }

    fn exit(status: i32) -> ! {
        hypercall::exit(status)
    }

    fn args() -> Vec<String> {
        boot::info().map_or_else(Vec::new, |info| args::parse(boot::cmdline(info), info.argc))
    }

    fn take_devices() -> Vec<Device> {
        if DEVICES_TAKEN.swap(true, Ordering::Relaxed) {
            return Vec::new();
        }
        let nets = net::devices().iter().map(|rings| {
            let net: Box<dyn fata_platform::Net> = Box::new(net::HvtNet::new(rings.clone()));
            Device::Net(rings.name.clone(), net)
        });
        let blocks = block::devices().iter().map(|rings| {
            let block: Box<dyn fata_platform::Block> =
                Box::new(block::HvtBlock::new(rings.clone()));
            Device::Block(rings.name.clone(), block)
        });
        let kvs = kv::devices().into_iter().map(|(name, store)| {
            let kv: Box<dyn fata_platform::Kv> = Box::new(store);
            Device::Kv(name, kv)
        });
        nets.chain(blocks).chain(kvs).collect()
    }
}
