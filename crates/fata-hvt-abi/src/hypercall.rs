//! Hypercalls: the window the guest stores to, the [`Hypercall`] numbers and one `#[repr(C)]`
//! argument struct per hypercall, its fields marked *in* or *out*.

use crate::GuestAddr;
use crate::boot::MAX_MEM_BYTES;
use core::fmt;

/// Guest-physical base of the hypercall window: no RAM is behind it, so a store there exits to the
/// monitor. The guest's page tables map it user-writable and not executable.
pub const HYPERCALL_BASE: u64 = 0xFFFF_F000;

/// Size of the hypercall window: one 8-byte slot per hypercall number.
pub const HYPERCALL_WINDOW_SIZE: u64 = 0x1000;

const _: () = assert!(
    MAX_MEM_BYTES <= HYPERCALL_BASE,
    "RAM must stay below the hypercall window"
);

/// The address the guest stores an argument struct's guest-physical address to, to make hypercall
/// `nr`. The store must be exactly 8 bytes wide.
pub const fn hypercall_address(nr: Hypercall) -> u64 {
    HYPERCALL_BASE + (nr as u32 as u64) * 8
}

/// The most bytes one [`Hypercall::ConsoleWrite`] may carry (64 KiB). A longer write is an ABI
/// violation that ends the guest; the guest platform splits long output into chunks.
pub const CONSOLE_WRITE_MAX: u64 = 64 * 1024;

/// [`YieldArgs::timeout_ns`] value meaning "no deadline: wait until a device is ready".
pub const YIELD_FOREVER: u64 = u64::MAX;

/// A hypercall number: the slot index in the hypercall window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Hypercall {
    /// End the guest with a status. Arguments: [`ExitArgs`]. Never returns. Frozen across versions.
    Exit = 1,
    /// Write bytes to the console (the monitor's stdout). Arguments: [`ConsoleWriteArgs`].
    ConsoleWrite = 2,
    /// Move every network device's frames (send the published transmit frames, fill the receive
    /// rings) and take every block device's published requests, then block until a device in the
    /// interest set is ready (a network device: its receive ring holds a frame; a block device:
    /// its completion ring holds a completion the guest has not consumed) or the timeout passes;
    /// a timeout of 0 only moves frames and requests.
    /// Arguments: [`YieldArgs`].
    Yield = 3,
    /// Reserved: network devices need no hypercall (their rings and doorbells work without one);
    /// monitors end the guest with an ABI violation.
    Net = 4,
    /// Reserved: block devices need no hypercall (their rings are served at every `Yield` and
    /// doorbell store); monitors end the guest with an ABI violation.
    Block = 5,
}

impl Hypercall {
    /// The hypercall with number `nr`, if there is one.
    pub const fn from_u32(nr: u32) -> Option<Hypercall> {
        Some(match nr {
            1 => Hypercall::Exit,
            2 => Hypercall::ConsoleWrite,
            3 => Hypercall::Yield,
            4 => Hypercall::Net,
            5 => Hypercall::Block,
            _ => return None,
        })
    }
}

impl fmt::Display for Hypercall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hypercall::Exit => "exit",
            Hypercall::ConsoleWrite => "console write",
            Hypercall::Yield => "yield",
            Hypercall::Net => "net (reserved)",
            Hypercall::Block => "block (reserved)",
        })
    }
}

/// Arguments of [`Hypercall::Exit`]. Frozen across versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExitArgs {
    /// In: the exit status; the monitor's process exits with it (truncated to 0..=255 by the OS).
    pub status: i32,
    /// Padding, zero.
    pub pad: u32,
}

/// Arguments of [`Hypercall::ConsoleWrite`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConsoleWriteArgs {
    /// In: guest-physical address of the bytes.
    pub data: GuestAddr,
    /// In: number of bytes, at most [`CONSOLE_WRITE_MAX`].
    pub len: u64,
}

/// Arguments of [`Hypercall::Yield`].
///
/// The timeout is relative so that guest and monitor need not share a clock: the guest converts its
/// TSC deadline to nanoseconds from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct YieldArgs {
    /// In: how long to wait at most, in nanoseconds; [`YIELD_FOREVER`] for no deadline, 0 to poll.
    pub timeout_ns: u64,
    /// In: the device handles to wait for, one bit per handle (bit `h` is handle `h`).
    pub interest: u64,
    /// Out: the handles in `interest` that are ready when the call returns (may be empty).
    pub ready: u64,
}
