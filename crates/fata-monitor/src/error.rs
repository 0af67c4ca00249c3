//! Everything that can end a run other than the guest's own exit, with the process exit code each
//! maps to ([`EXIT_CODES`]). Each step's module owns its error; this enum wraps them with what the
//! monitor was doing.

use crate::block::BlockSetupError;
use crate::config::DeviceError;
use crate::elf::ImageError;
use crate::kv::StoreError;
use crate::layout::LayoutError;
use crate::net::NetSetupError;
use crate::violation::AbiViolation;
use std::path::PathBuf;
use thiserror::Error;

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
    /// The devices the configuration names cannot be given to the guest (names, count).
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// A network device cannot be set up.
    #[error(transparent)]
    Net(#[from] NetSetupError),
    /// A block device cannot be set up.
    #[error(transparent)]
    Block(#[from] BlockSetupError),
    /// A key-value store cannot be set up.
    #[error(transparent)]
    Kv(#[from] StoreError),
    /// The control socket cannot be created (the name is taken, the run directory unusable).
    #[error(transparent)]
    Control(#[from] fata_control::BindError),
    /// A snapshot cannot be read: missing, truncated, corrupt, or not a snapshot.
    #[error(transparent)]
    Snapshot(#[from] fata_snapshot::SnapshotError),
    /// A snapshot (or a migrated guest) is whole, but this monitor cannot carry it on here.
    #[error("cannot carry the guest on: {0}")]
    Unrestorable(String),
    /// A migration failed on the receiving side.
    #[error("{0}")]
    Migration(String),
    /// `fata stop` stopped the guest.
    #[error("stopped by `fata stop`")]
    StopRequested,
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

impl From<fata_snapshot::StreamError> for Error {
    fn from(e: fata_snapshot::StreamError) -> Error {
        Error::Migration(e.to_string())
    }
}

impl Error {
    /// The error for a device failure outside a hypercall (an ABI violation has no RIP here).
    pub(crate) fn from_stop(stop: crate::violation::Stop) -> Error {
        match stop {
            crate::violation::Stop::Abi(violation) => Error::Abi { violation, rip: 0 },
            crate::violation::Stop::Host(what, source) => Error::HostIo { what, source },
        }
    }

    /// The process exit code for this error: a row of [`EXIT_CODES`], or 128 + N when signal N
    /// (SIGINT, SIGTERM) stopped the guest.
    pub fn exit_code(&self) -> i32 {
        i32::from(match self {
            Error::Stopped { signal } => return 128 + signal,
            Error::StopRequested => return 128 + libc::SIGTERM,
            Error::Control(_) => EXIT_CONTROL,
            Error::Snapshot(_) | Error::Unrestorable(_) => EXIT_SNAPSHOT,
            Error::Migration(_) => EXIT_MIGRATION,
            Error::Block(_) => EXIT_BLOCK,
            Error::Kv(_) => EXIT_KV,
            Error::Devices(_) | Error::Net(_) => EXIT_NET,
            Error::HostIo { .. } => EXIT_HOST_IO,
            Error::Config(LayoutError::ImageTooLarge(_)) => EXIT_IMAGE,
            Error::Config(_) => EXIT_CONFIG,
            Error::ReadImage { .. } => EXIT_READ_IMAGE,
            Error::Image { .. } => EXIT_IMAGE,
            Error::KvmUnavailable(_) => EXIT_NO_KVM,
            Error::VmSetup { .. } => EXIT_VM_SETUP,
            Error::GuestFault { .. } => EXIT_FAULT,
            Error::Abi { .. } => EXIT_ABI,
        })
    }
}

const EXIT_MIGRATION: u8 = 112;
const EXIT_CONTROL: u8 = 113;
const EXIT_SNAPSHOT: u8 = 114;
const EXIT_BLOCK: u8 = 115;
const EXIT_KV: u8 = 116;
const EXIT_NET: u8 = 117;
const EXIT_HOST_IO: u8 = 118;
const EXIT_CONFIG: u8 = 119;
const EXIT_READ_IMAGE: u8 = 120;
const EXIT_IMAGE: u8 = 121;
const EXIT_NO_KVM: u8 = 122;
const EXIT_VM_SETUP: u8 = 123;
const EXIT_FAULT: u8 = 124;
const EXIT_ABI: u8 = 125;

/// The exit codes of the monitor's own failures and what each means: the one place they are
/// written. Guests choose their own statuses (0-255); the monitor uses this block near the top,
/// and 128 + N when signal N stopped the guest. docs/hvt.md carries the same table, which a test
/// checks against this one.
pub const EXIT_CODES: &[(u8, &str)] = &[
    (
        EXIT_MIGRATION,
        "`fata receive` could not take a guest in: nothing listens there, the connection broke, \
         or the sender is not a Fata monitor (the message says which)",
    ),
    (
        EXIT_CONTROL,
        "the control socket cannot be created: a running guest has the `--name`, or the run \
         directory cannot be written (set FATA_RUN_DIR)",
    ),
    (
        EXIT_BLOCK,
        "a block device cannot be opened: missing or unreadable file, not a file or block device, in \
         use by another program, no io_uring (the message says what to do)",
    ),
    (
        EXIT_KV,
        "a key-value store cannot be set up: unreadable file or directory, a damaged FAT \
         image, a name that is not UTF-8, too large for `--mem` (the message says what fits)",
    ),
    (
        EXIT_NET,
        "a network device cannot be set up, or the devices' names or number are unusable",
    ),
    (EXIT_HOST_IO, "host I/O failed while the guest ran"),
    (
        EXIT_CONFIG,
        "bad configuration (memory size, arguments too long)",
    ),
    (EXIT_READ_IMAGE, "the image file cannot be read"),
    (
        EXIT_IMAGE,
        "the file is not a valid hvt image (the message says which check failed)",
    ),
    (
        EXIT_NO_KVM,
        "KVM is not available: `/dev/kvm` missing, no permission, or a VM cannot be created",
    ),
    (EXIT_VM_SETUP, "a KVM call failed while setting the VM up"),
    (
        EXIT_FAULT,
        "the guest faulted: RIP and RSP are printed with a hint",
    ),
    (
        EXIT_ABI,
        "the guest broke the hvt ABI (bad pointer, unknown hypercall, ...): RIP and a hint",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_carry_the_exit_code_table() {
        let docs = include_str!("../../../docs/hvt.md");
        for (code, meaning) in EXIT_CODES {
            let row = format!("| {code} | {meaning} |");
            assert!(docs.contains(&row), "docs/hvt.md lacks the row\n{row}");
        }
        let codes: Vec<u8> = EXIT_CODES.iter().map(|(code, _)| *code).collect();
        assert!(
            codes.windows(2).all(|w| w[0] < w[1]),
            "one row per code, in order"
        );
    }

    #[test]
    fn every_error_maps_to_a_documented_code() {
        let errors = [
            Error::Config(LayoutError::BadMemSize(1)),
            Error::Config(LayoutError::ImageTooLarge(1)),
            Error::KvmUnavailable(String::new()),
            Error::HostIo {
                what: "test",
                source: std::io::Error::other("test"),
            },
            Error::GuestFault {
                kind: FaultKind::Shutdown,
                rip: 0,
                rsp: 0,
            },
            Error::Abi {
                violation: AbiViolation::WaitsForever,
                rip: 0,
            },
            Error::Devices(DeviceError::TooMany(9)),
            Error::Control(fata_control::NameError::Unusable(String::new()).into()),
        ];
        for error in errors {
            let code = error.exit_code();
            assert!(
                EXIT_CODES.iter().any(|(c, _)| i32::from(*c) == code),
                "{error} exits with {code}, which EXIT_CODES does not list"
            );
        }
        assert_eq!(Error::Stopped { signal: 15 }.exit_code(), 143);
        assert_eq!(Error::StopRequested.exit_code(), 143);
    }
}
