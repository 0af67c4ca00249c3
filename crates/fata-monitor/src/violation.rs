//! Why serving one of the guest's exits ended the run: the ways a guest can break the hvt ABI
//! ([`AbiViolation`], [`RingDefect`]) and [`Stop`], what the exit handlers return.
//!
//! The network and block devices, the hypercall handlers and the vCPU loop all stop a run for the
//! same two reasons, so they share this module rather than importing each other's errors.

use crate::memory::OutOfRam;
use fata_hvt_abi::{CONSOLE_WRITE_MAX, Hypercall, NET_PACKET_MAX, NET_PACKET_MIN};
use thiserror::Error;

/// A way the guest broke the hvt ABI. The monitor ends the guest; it never continues past one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AbiViolation {
    /// A store to the hypercall window with a number that is not a hypercall.
    #[error("unknown hypercall number {0}")]
    UnknownHypercall(u64),
    /// A hypercall this monitor reserves for a later ABI version.
    #[error("hypercall {0} is reserved in this ABI version")]
    Reserved(Hypercall),
    /// A hypercall store that was not one aligned 8-byte write.
    #[error(
        "a {len}-byte store to {addr:#x} is not a hypercall (it takes one aligned 8-byte store)"
    )]
    BadStore {
        /// The address stored to.
        addr: u64,
        /// The store's width in bytes.
        len: usize,
    },
    /// A read from the hypercall window or from an address with no memory.
    #[error("the guest read {addr:#x}, which has no memory behind it")]
    BadRead {
        /// The address read.
        addr: u64,
    },
    /// A store to an address with no memory, outside the hypercall window.
    #[error("the guest wrote {addr:#x}, which has no memory behind it")]
    NoMemory {
        /// The address written.
        addr: u64,
    },
    /// Port I/O, which is not part of the ABI.
    #[error("port I/O to port {0:#x} is not part of the hvt ABI")]
    PortIo(u16),
    /// A hypercall argument or buffer outside guest RAM.
    #[error("{call} hypercall: {source}")]
    Memory {
        /// The hypercall.
        call: Hypercall,
        /// The bad range.
        source: OutOfRam,
    },
    /// A console write longer than the ABI allows.
    #[error("console write of {0} bytes exceeds the {CONSOLE_WRITE_MAX}-byte limit")]
    ConsoleTooLong(u64),
    /// A yield with no deadline and nothing that could wake the guest.
    #[error("the guest waits forever with no device that could wake it")]
    WaitsForever,
    /// A network ring the guest left in a state the ABI forbids.
    #[error("network device {handle}: {defect}")]
    NetRing {
        /// The device's handle.
        handle: u32,
        /// What is wrong with its rings.
        defect: RingDefect,
    },
    /// A block device's rings the guest left in a state the ABI forbids.
    #[error("block device {handle}: {defect}")]
    BlockRing {
        /// The device's handle.
        handle: u32,
        /// What is wrong with its rings.
        defect: RingDefect,
    },
}

/// What is wrong with a network or block ring the guest wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RingDefect {
    /// A transmit slot's length is outside the packet limits.
    #[error(
        "transmit slot {index} holds a packet of {len} bytes; packets are {NET_PACKET_MIN} to \
         {NET_PACKET_MAX} bytes"
    )]
    FrameLength {
        /// The slot's index (counted since boot).
        index: u32,
        /// The length the guest wrote.
        len: u32,
    },
    /// A transmit packet or wrap runs past the slots produced or past the ring's end.
    #[error(
        "transmit slot {index} starts {slots} slots of a packet or wrap, past the slots \
         produced or the ring's end"
    )]
    PacketSpan {
        /// The slot's index (counted since boot).
        index: u32,
        /// The slots it would take.
        slots: u32,
    },
    /// The transmit ring's `produced` index is more than a ring ahead of the monitor's `consumed`.
    #[error(
        "the transmit ring says {produced} frames were produced, but {consumed} were consumed and the ring is smaller than the difference"
    )]
    TxIndex {
        /// The guest's index.
        produced: u32,
        /// The monitor's index.
        consumed: u32,
    },
    /// The receive ring's `consumed` index is ahead of the monitor's `produced`.
    #[error(
        "the receive ring says {consumed} frames were consumed, but only {produced} were produced"
    )]
    RxIndex {
        /// The monitor's index.
        produced: u32,
        /// The guest's index.
        consumed: u32,
    },
    /// A block request ring's `requests_produced` is more than a ring ahead of the monitor's
    /// `requests_consumed`.
    #[error(
        "the request ring says {produced} requests were produced, but {consumed} were taken and \
         the ring is smaller than the difference"
    )]
    RequestIndex {
        /// The guest's index.
        produced: u32,
        /// The monitor's index.
        consumed: u32,
    },
    /// A block completion ring's `completions_consumed` moved back, or past the monitor's
    /// `completions_produced`.
    #[error(
        "the completion ring says {consumed} completions were consumed, but only {produced} were \
         produced (or the index moved back)"
    )]
    CompletionIndex {
        /// The monitor's index.
        produced: u32,
        /// The guest's index.
        consumed: u32,
    },
    /// More block requests are outstanding (published, their completions not yet consumed) than
    /// the ring has slots.
    #[error(
        "{outstanding} requests are outstanding (published, their completions not consumed), but \
         the ring has only {slots} slots"
    )]
    Outstanding {
        /// Requests published minus completions consumed.
        outstanding: u32,
        /// The ring's slots.
        slots: u32,
    },
}

/// Why serving an exit (a hypercall, a doorbell, moving frames) ended the run.
#[derive(Debug)]
pub enum Stop {
    /// The guest broke the ABI.
    Abi(AbiViolation),
    /// A host call failed: what the monitor was doing, and the error.
    Host(&'static str, std::io::Error),
}

impl From<AbiViolation> for Stop {
    fn from(violation: AbiViolation) -> Stop {
        Stop::Abi(violation)
    }
}
