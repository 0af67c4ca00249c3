//! The console, clock and entropy devices every platform has.

use alloc::string::String;
use core::fmt::{self, Write};

use fata_platform::{Clock, Console, Platform, Random};

use crate::Sys;

/// The platform's console (stdout on unix, the serial console on hvt).
#[derive(Debug, Clone, Copy, Default)]
pub struct SysConsole;

impl Console for SysConsole {
    fn write(&self, bytes: &[u8]) {
        Sys::console_write(bytes);
    }
}

/// The platform's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysClock;

impl Clock for SysClock {
    fn monotonic_ns(&self) -> u64 {
        Sys::monotonic_ns()
    }

    fn wall_clock_ns(&self) -> u64 {
        Sys::wall_clock_ns()
    }
}

/// The platform's entropy source.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysRandom;

impl Random for SysRandom {
    fn fill(&self, buf: &mut [u8]) {
        Sys::random_fill(buf);
    }
}

/// Formats `args` and writes them to the console in one piece; what `print!` and `println!` call.
pub fn print_fmt(args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(text) => Sys::console_write(text.as_bytes()),
        None => {
            let mut text = String::new();
            // Writing into a String cannot fail.
            let _ = text.write_fmt(args);
            Sys::console_write(text.as_bytes());
        }
    }
}
