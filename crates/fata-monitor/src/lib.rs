//! Fata's KVM monitor: runs an hvt unikernel image as a one-vCPU virtual machine.
//!
//! This is the host side of the hvt target and the trust boundary between a guest and the host. It
//! shares only `fata-hvt-abi` with the guest. [`run`] goes through these steps:
//!
//! 1. validate the ELF image ([`elf::parse_image`]: a pure function with one error per defect);
//! 2. lay out guest memory ([`layout`]): the image phys == virt at 1 MiB, identity page tables with
//!    per-segment permissions, a GDT with DPL3 segments and a TSS, the boot info and the arguments;
//! 3. create the VM ([`vm`]): the vCPU starts at the entry point at CPL3 with paging, long mode and
//!    SSE already on;
//! 4. confine the thread with a seccomp allow-list ([`seccomp`]);
//! 5. run the vCPU loop, decoding each exit ([`exit::decode`], pure) and serving hypercalls
//!    ([`hypercall`]), until the guest exits, faults or breaks the ABI.
//!
//! Every guest address and length passes through one checked accessor, [`memory::GuestRam::slice`].
//! A hostile guest ends the run with an [`Error`]; it never panics the monitor or reaches host
//! memory outside its RAM.
//!
//! # Exit codes
//! The guest's exit status becomes the process's. The monitor's own failures map to codes
//! 118-125 through [`Error::exit_code`]:
//!
//! | code | meaning |
//! |---|---|
//! | 118 | host I/O failed while the guest ran |
//! | 119 | invalid configuration (memory size, arguments too long) |
//! | 120 | the image file cannot be read |
//! | 121 | the image is not a valid hvt unikernel |
//! | 122 | KVM is not available (`/dev/kvm` missing, no permission, cannot create a VM) |
//! | 123 | a KVM call failed while setting up the VM |
//! | 124 | the guest faulted (RIP and RSP printed) |
//! | 125 | the guest broke the hvt ABI |

pub mod elf;
mod error;
pub mod exit;
pub mod hypercall;
pub mod layout;
pub mod memory;
pub mod seccomp;
pub mod vm;

pub use error::{AbiViolation, Error, FaultKind};

use elf::ImageError;
use fata_hvt_abi::{ABI_VERSION, BootInfo, CONSOLE_WRITE_MAX};
use hypercall::{Counts, Handler};
use memory::GuestRam;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The default guest memory: 32 MiB.
pub const DEFAULT_MEM_BYTES: u64 = 32 << 20;

/// How to run a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes of guest RAM: a multiple of 2 MiB, 4 MiB to 3 GiB. Default [`DEFAULT_MEM_BYTES`].
    pub mem_bytes: u64,
    /// The app's arguments (without a program name), passed NUL-separated in the boot info.
    pub args: Vec<String>,
    /// Print exit counts and timings to stderr when the guest ends.
    pub stats: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_bytes: DEFAULT_MEM_BYTES,
            args: Vec::new(),
            stats: false,
        }
    }
}

/// How a guest ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestExit {
    /// The status the guest passed to its exit hypercall.
    pub status: i32,
}

/// Runs the image at `image` with its console on the monitor's stdout.
///
/// Confines the calling thread with the seccomp allow-list for the rest of its life: call it from
/// the thread that will only report the result and exit.
pub fn run(image: &Path, config: &Config) -> Result<GuestExit, Error> {
    run_with_console(image, config, &mut std::io::stdout())
}

/// As [`run`], writing the guest's console to `console`.
pub fn run_with_console(
    image: &Path,
    config: &Config,
    console: &mut dyn Write,
) -> Result<GuestExit, Error> {
    let start = Instant::now();
    let stack_bottom = layout::stack_bottom(config.mem_bytes)?;
    let bytes = read_image(image, config.mem_bytes)?;
    let parsed = elf::parse_image(&bytes, stack_bottom).map_err(|source| Error::Image {
        path: image.into(),
        source,
    })?;

    let ram = GuestRam::new(config.mem_bytes).map_err(|source| Error::VmSetup {
        what: "mapping guest memory",
        source,
    })?;
    layout::load_image(&ram, &bytes, &parsed)?;
    layout::write_tables(&ram, &parsed)?;
    let cmdline_len = layout::write_args(&ram, &config.args)?;
    let mut vm = vm::Vm::new(&ram, parsed.entry, config.mem_bytes)?;
    let clock = vm.boot_clock()?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::VmSetup {
        what: "reading the host's random source",
        source: std::io::Error::other(e),
    })?;
    let info = BootInfo {
        abi_version: ABI_VERSION,
        mem_size: config.mem_bytes,
        kernel_end: parsed.end,
        stack_bottom,
        tsc_khz: clock.tsc_khz,
        boot_tsc: clock.tsc,
        boot_wall_ns: clock.wall_ns,
        cmdline_addr: layout::CMDLINE_ADDR,
        cmdline_len,
        argc: config.args.len() as u64,
        seed,
        ..BootInfo::default()
    };
    layout::write_boot_info(&ram, &info)?;

    let mut handler = Handler {
        ram: &ram,
        console,
        buffer: Vec::with_capacity(CONSOLE_WRITE_MAX as usize),
        counts: Counts::default(),
        first_call: None,
    };
    seccomp::confine().map_err(|e| Error::VmSetup {
        what: "installing the seccomp filter",
        source: std::io::Error::other(e),
    })?;
    let setup = start.elapsed();
    let mut exits = 0;
    let result = vm.run(&mut handler, &mut exits);
    if config.stats {
        let c = handler.counts;
        let first = handler
            .first_call
            .map_or(0.0, |t| (t - start).as_secs_f64() * 1e3);
        eprintln!(
            "fata-monitor: {exits} exits (console {}, {} bytes; yield {}); setup {:.3} ms, first \
             hypercall {first:.3} ms, total {:.3} ms after start",
            c.console,
            c.console_bytes,
            c.yields,
            setup.as_secs_f64() * 1e3,
            start.elapsed().as_secs_f64() * 1e3,
        );
    }
    drop(vm);
    result.map(|status| GuestExit { status })
}

fn read_image(path: &Path, mem_bytes: u64) -> Result<Vec<u8>, Error> {
    let read_err = |source| Error::ReadImage {
        path: path.into(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read_err)?.len();
    if len > mem_bytes {
        let source = ImageError::FileTooLarge {
            len,
            limit: mem_bytes,
        };
        return Err(Error::Image {
            path: path.into(),
            source,
        });
    }
    std::fs::read(path).map_err(read_err)
}
