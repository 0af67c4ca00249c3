//! Everything that can end a run other than the guest's own exit, with the process exit code each
//! maps to.

use crate::elf::ImageError;
use crate::kv::KvError;
use crate::layout::LayoutError;
use crate::memory::OutOfRam;
use fata_hvt_abi::{CONSOLE_WRITE_MAX, Hypercall, NET_FRAME_MAX, NET_FRAME_MIN};
use std::path::PathBuf;
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
}

/// What is wrong with a network ring the guest wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RingDefect {
    /// A transmit slot's length is outside the frame limits.
    #[error(
        "transmit slot {index} holds a frame of {len} bytes; frames are {NET_FRAME_MIN} to \
         {NET_FRAME_MAX} bytes"
    )]
    FrameLength {
        /// The slot's index (counted since boot).
        index: u32,
        /// The length the guest wrote.
        len: u32,
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
}

/// How the guest's CPU stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FaultKind {
    /// A triple fault: an exception with no IDT to handle it (page fault, #GP, #UD, ...).
    #[error("the guest took an exception (triple fault)")]
    Shutdown,
    /// KVM could not emulate an instruction.
    #[error("KVM reported an internal error (an instruction it cannot run)")]
    InternalError,
    /// KVM could not enter the guest.
    #[error("KVM could not enter the guest (hardware reason {0:#x})")]
    FailEntry(u64),
    /// Any other exit the ABI does not use.
    #[error("unexpected exit: {0}")]
    Unexpected(&'static str),
}

/// Why [`run`](crate::run) did not return the guest's exit status. [`Error::exit_code`] gives the
/// process exit code for each case.
#[derive(Debug, Error)]
pub enum Error {
    /// The configuration cannot be used.
    #[error("invalid configuration: {0}")]
    Config(#[from] LayoutError),
    /// The image file cannot be read.
    #[error("cannot read the image {path}: {source}")]
    ReadImage {
        /// The image path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The image is not a valid hvt unikernel.
    #[error("{path} is not a valid hvt image: {source}")]
    Image {
        /// The image path.
        path: PathBuf,
        /// What is wrong.
        source: ImageError,
    },
    /// `/dev/kvm` is missing or unusable.
    #[error("KVM is not available: {0}")]
    KvmUnavailable(String),
    /// A KVM call failed while setting up the VM.
    #[error(
        "cannot set up the VM: {what} failed: {source}\nhint: this is a problem on the host, not in the \
             image; `dmesg` may say more"
    )]
    VmSetup {
        /// The step that failed.
        what: &'static str,
        /// The error from the kernel.
        source: std::io::Error,
    },
    /// The guest's CPU stopped on a fault.
    #[error(
        "guest fault: {kind} at RIP {rip:#x}, RSP {rsp:#x}\nhint: look the RIP up in the linked \
         ELF that `fata build` keeps beside NAME.hvt (`addr2line -fe NAME {rip:#x}`); an RSP \
         near the heap means a stack overflow, a fault near address 0 a null pointer"
    )]
    GuestFault {
        /// What happened.
        kind: FaultKind,
        /// The guest's instruction pointer.
        rip: u64,
        /// The guest's stack pointer.
        rsp: u64,
    },
    /// The guest broke the ABI.
    #[error(
        "the guest broke the hvt ABI at RIP {rip:#x}: {violation}\nhint: images built with \
         fata-hvt do not do this; rebuild the image with this Fata version, and look the RIP up \
         (`addr2line -fe NAME {rip:#x}` on the ELF beside NAME.hvt) if it makes hypercalls of \
         its own"
    )]
    Abi {
        /// What it did.
        violation: AbiViolation,
        /// The guest's instruction pointer after the offending access.
        rip: u64,
    },
    /// A network device cannot be set up.
    #[error(
        "cannot set up network device {name} on tap {tap}: {source}\nhint: the monitor attaches to \
         the tap interface (creating it when it is missing), which needs root or CAP_NET_ADMIN and \
         /dev/net/tun; `ip tuntap add dev {tap} mode tap` creates one ahead of time"
    )]
    Net {
        /// The device's name.
        name: String,
        /// The tap interface.
        tap: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key-value store cannot be set up.
    #[error("cannot set up key-value store {name} from {}: {source}", dir.display())]
    Kv {
        /// The store's name.
        name: String,
        /// The directory behind it.
        dir: PathBuf,
        /// Why.
        source: KvError,
    },
    /// SIGINT or SIGTERM stopped the guest.
    #[error("stopped by signal {signal}")]
    Stopped {
        /// The signal's number.
        signal: i32,
    },
    /// A host call failed while the guest ran (console output, KVM_RUN).
    #[error("host I/O failed: {what}: {source}")]
    HostIo {
        /// What the monitor was doing.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// The process exit code for this error. Guests choose their own statuses (0-255); the monitor's
    /// own failures use this block near the top:
    ///
    /// | code | meaning |
    /// |---|---|
    /// | 116 | a key-value store cannot be set up (unreadable or unsuitable files, too large) |
    /// | 117 | a network device cannot be set up (tap, device names) |
    /// | 118 | host I/O failed while the guest ran |
    /// | 119 | invalid configuration (memory size, arguments too long) |
    /// | 120 | the image file cannot be read |
    /// | 121 | the image is not a valid hvt unikernel |
    /// | 122 | KVM is not available (`/dev/kvm` missing, no permission, cannot create a VM) |
    /// | 123 | a KVM call failed while setting up the VM |
    /// | 124 | the guest faulted (RIP and RSP printed) |
    /// | 125 | the guest broke the hvt ABI |
    /// | 128 + N | signal N (SIGINT, SIGTERM) stopped the guest |
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Stopped { signal } => 128 + signal,
            Error::Kv { .. } => 116,
            Error::Net { .. } => 117,
            Error::HostIo { .. } => 118,
            Error::Config(LayoutError::ImageTooLarge(_)) => 121,
            Error::Config(_) => 119,
            Error::ReadImage { .. } => 120,
            Error::Image { .. } => 121,
            Error::KvmUnavailable(_) => 122,
            Error::VmSetup { .. } => 123,
            Error::GuestFault { .. } => 124,
            Error::Abi { .. } => 125,
        }
    }
}
