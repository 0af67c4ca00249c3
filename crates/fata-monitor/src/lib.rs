//! Fata's KVM monitor: runs an hvt unikernel image as a one-vCPU virtual machine.
//!
//! This is the host side of the hvt target and the trust boundary between a guest and the host. It
//! shares only `fata-hvt-abi` with the guest. [`run`] goes through these steps:
//!
//! 1. validate the ELF image ([`elf::parse_image`]: a pure function with one error per defect);
//! 2. lay out guest memory ([`layout`]): the image phys == virt at 1 MiB, identity page tables with
//!    per-segment permissions, a GDT with DPL3 segments and a TSS, the boot info and the arguments;
//!    Each key-value store ([`kv`]) is a host directory read into a region of guest RAM that the
//!    page tables map read-only;
//! 3. create the VM ([`vm`]): the vCPU starts at the entry point at CPL3 with paging, long mode and
//!    SSE already on;
//! 4. confine the thread with a seccomp allow-list ([`seccomp`]);
//! 5. run the vCPU loop, decoding each exit ([`exit::decode`], pure) and serving hypercalls
//!    ([`hypercall`]), until the guest exits, faults or breaks the ABI. Network devices ([`net`])
//!    are served on the guest's exits: each `Yield` moves frames between the taps and the rings in
//!    guest RAM before it sleeps.
//!
//! Every guest address and length passes through one checked accessor, [`memory::GuestRam::slice`].
//! A hostile guest ends the run with an [`Error`]; it never panics the monitor or reaches host
//! memory outside its RAM.
//!
//! # Exit codes
//! The guest's exit status becomes the process's. The monitor's own failures map to codes
//! 116-125 through [`Error::exit_code`]:
//!
//! | code | meaning |
//! |---|---|
//! | 116 | a key-value store cannot be set up (unreadable or unsuitable files, too large) |
//! | 117 | a network device cannot be set up (tap, device names) |
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
pub mod kv;
pub mod layout;
pub mod memory;
pub mod net;
pub mod seccomp;
pub mod vm;

pub use error::{AbiViolation, Error, FaultKind, RingDefect};
pub use kv::KvConfig;
pub use net::NetConfig;

use elf::ImageError;
use fata_hvt_abi::{ABI_VERSION, BootInfo, CONSOLE_WRITE_MAX, LOAD_ADDR};
use hypercall::{Counts, Handler};
use kv::Kvs;
use memory::GuestRam;
use net::Nets;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};
use vmm_sys_util::signal::register_signal_handler;

/// The default guest memory: 32 MiB.
pub const DEFAULT_MEM_BYTES: u64 = 32 << 20;

/// How to run a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes of guest RAM: a multiple of 2 MiB, 4 MiB to 3 GiB. Default [`DEFAULT_MEM_BYTES`].
    pub mem_bytes: u64,
    /// The app's arguments (without a program name), passed NUL-separated in the boot info.
    pub args: Vec<String>,
    /// Print exit counts, traffic and timings to stderr when the guest ends.
    pub stats: bool,
    /// Network interfaces, each backed by a tap device (at most `MAX_DEVICES`).
    pub nets: Vec<NetConfig>,
    /// Read-only key-value stores, each a host directory (with the network interfaces, at most
    /// `MAX_DEVICES`).
    pub kvs: Vec<KvConfig>,
    /// While frames arrive faster than the guest exits for them, resume it at most once per this
    /// interval, so that one exit serves a batch (interrupt coalescing, see
    /// [`fata_platform::COALESCE_BELOW`]); zero, the default, resumes it at once.
    pub net_coalesce: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_bytes: DEFAULT_MEM_BYTES,
            args: Vec::new(),
            stats: false,
            nets: Vec::new(),
            kvs: Vec::new(),
            net_coalesce: Duration::ZERO,
        }
    }
}

/// How a guest ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestExit {
    /// The status the guest passed to its exit hypercall.
    pub status: i32,
}

/// The signal that asked the monitor to stop (SIGINT or SIGTERM), 0 while none has.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(num, Ordering::SeqCst);
}

/// The signal that asked the monitor to stop, if one did.
pub(crate) fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Runs the image at `image` with its console on the monitor's stdout.
///
/// SIGINT and SIGTERM end the guest as [`Error::Stopped`] (after `--stats` are printed) instead
/// of killing the process. Confines the calling thread with the seccomp allow-list for the rest of
/// its life: call it from the thread that will only report the result and exit.
pub fn run(image: &Path, config: &Config) -> Result<GuestExit, Error> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(signal, on_stop_signal).map_err(|e| Error::VmSetup {
            what: "handling SIGINT and SIGTERM",
            source: e.into(),
        })?;
    }
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
    let mut nets = Nets::open(&config.nets, config.net_coalesce)?;
    let net_names: Vec<&str> = config.nets.iter().map(|n| n.name.as_str()).collect();
    let mut kvs = Kvs::scan(&config.kvs, &net_names)?;
    let rings_bottom = nets.place(stack_bottom);
    if rings_bottom <= LOAD_ADDR {
        return Err(Error::Config(layout::LayoutError::RingsTooLarge {
            mem: config.mem_bytes,
        }));
    }
    let bytes = read_image(image, config.mem_bytes)?;
    let parsed = elf::parse_image(&bytes, rings_bottom).map_err(|source| Error::Image {
        path: image.into(),
        source,
    })?;
    let heap_end = kvs.place(rings_bottom, parsed.end, config.mem_bytes)?;

    let ram = GuestRam::new(config.mem_bytes).map_err(|source| Error::VmSetup {
        what: "mapping guest memory",
        source,
    })?;
    layout::load_image(&ram, &bytes, &parsed)?;
    layout::write_tables(&ram, &parsed, &kvs.read_only())?;
    kvs.write(&ram)?;
    let cmdline_len = layout::write_args(&ram, &config.args)?;
    let mut vm = vm::Vm::new(&ram, parsed.entry, config.mem_bytes)?;
    let clock = vm.boot_clock()?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::VmSetup {
        what: "reading the host's random source",
        source: std::io::Error::other(e),
    })?;
    let mut devices = nets.device_infos();
    kvs.device_infos(&mut devices);
    let info = BootInfo {
        abi_version: ABI_VERSION,
        device_count: (config.nets.len() + kvs.len()) as u32,
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
        devices,
        heap_end,
        ..BootInfo::default()
    };
    layout::write_boot_info(&ram, &info)?;

    let mut handler = Handler {
        ram: &ram,
        nets: &nets,
        console,
        buffer: Vec::with_capacity(CONSOLE_WRITE_MAX as usize),
        counts: Counts::default(),
        first_call: None,
    };
    let mut exits = 0;
    let mut setup = Duration::ZERO;
    let result = seccomp::confine()
        .map_err(|e| Error::VmSetup {
            what: "installing the seccomp filter",
            source: std::io::Error::other(e),
        })
        .and_then(|()| {
            setup = start.elapsed();
            vm.run(&mut handler, &mut exits)
        });
    if config.stats {
        let c = handler.counts;
        let first = handler
            .first_call
            .map_or(0.0, |t| (t - start).as_secs_f64() * 1e3);
        eprintln!(
            "fata-monitor: {exits} exits (console {}, {} bytes; yield {}, {} of them polls); setup {:.3} ms, first \
             hypercall {first:.3} ms, total {:.3} ms after start",
            c.console,
            c.console_bytes,
            c.yields,
            c.polls,
            setup.as_secs_f64() * 1e3,
            start.elapsed().as_secs_f64() * 1e3,
        );
        if !kvs.is_empty() {
            let (files, bytes) = kvs.totals();
            eprintln!(
                "fata-monitor: kv: {} stores, {files} files, {bytes} bytes in {} bytes of read-only \
                 guest RAM",
                kvs.len(),
                kvs.bytes(),
            );
        }
        if !nets.is_empty() {
            let n = nets.stats();
            let frames = n.frames_in + n.frames_out;
            eprintln!(
                "fata-monitor: net: {} frames in ({} bytes), {} frames out ({} bytes); {:.1} \
                 frames per exit; {} sleeps in yield, {} coalescing naps, {} doorbell exits; \
                 dropped {} in, {} out",
                n.frames_in,
                n.bytes_in,
                n.frames_out,
                n.bytes_out,
                frames as f64 / exits.max(1) as f64,
                n.sleeps,
                n.naps,
                c.doorbell_exits,
                n.dropped_in,
                n.dropped_out,
            );
        }
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
