//! Fata's KVM monitor: runs an hvt unikernel image as a one-vCPU virtual machine.
//!
//! This is the host side of the hvt target and the trust boundary between a guest and the host. It
//! shares only `fata-hvt-abi` with the guest. [`run`] goes through these steps:
//!
//! 1. validate the ELF image ([`parse_image`]: a pure function with one error per defect);
//! 2. lay out guest memory (`layout`): the image phys == virt at 1 MiB, identity page tables with
//!    per-segment permissions, a GDT with DPL3 segments and a TSS, the boot info and the arguments;
//!    Each key-value store (`kv`) is a host directory or FAT image read into a region of guest
//!    RAM that the page tables map read-only;
//! 3. create the VM (`vm`, with the
//!    entry state in `arch`): the vCPU starts at the entry point at CPL3 with paging, long mode and
//!    SSE already on;
//! 4. confine the thread with a seccomp allow-list (`seccomp`);
//! 5. run the vCPU loop, decoding each exit (`exit::decode`, pure) and serving hypercalls
//!    (`hypercall`), until the guest exits, faults or breaks the ABI. Network devices (`net`)
//!    and block devices (`block`) are served on the guest's exits: each `Yield` moves frames
//!    between the taps and the rings in guest RAM, and takes block requests and publishes their
//!    completions, before it sleeps (`poll`).
//!
//! Every guest address and length passes through one checked accessor, `memory::GuestRam::slice`.
//! A hostile guest ends the run with an [`Error`]; it never panics the monitor or reaches host
//! memory outside its RAM.
//!
//! # Exit codes
//! The guest's exit status becomes the process's. The monitor's own failures map to the codes of
//! [`EXIT_CODES`] through [`Error::exit_code`]; docs/hvt.md carries the same table.
//!
//! # API
//! Everything but [`run`], [`run_with_console`], their [`Config`] and errors, the ELF
//! validator (for the fuzz target and tests) and the manifest reader (for `fata run`) is private
//! to the crate: VM setup is only sound in the order `run` does it.

mod arch;
mod arrival;
mod block;
mod config;
mod control;
mod elf;
mod error;
mod exit;
mod hypercall;
mod kv;
mod layout;
mod lifecycle;
mod mailbox;
mod memory;
mod net;
mod poll;
mod seccomp;
mod signal;
mod snapshot;
mod violation;
mod vm;

pub use arrival::{ArrivalConfig, Origin};
pub use block::{BlockSetupError, SLOTS as BLOCK_SLOTS};
pub use config::{BlockConfig, Config, DEFAULT_MEM_BYTES, DeviceError, KvConfig, NetConfig};
pub use elf::{Image, ImageError, MAX_SEGMENTS, Segment, parse_image, read_manifest};
pub use error::{EXIT_CODES, Error, FaultKind};
pub use fata_blockfile::Mode as BlockMode;
pub use kv::{KvError, StoreError};
pub use layout::LayoutError;
pub use memory::OutOfRam;
pub use net::{NetSetupError, RX_SLOTS as NET_RX_SLOTS, TX_SLOTS as NET_TX_SLOTS};
pub use violation::{AbiViolation, RingDefect};

use block::Blocks;
use control::Facts;
use fata_hvt_abi::{ABI_VERSION, BootInfo, CONSOLE_WRITE_MAX, LOAD_ADDR};
use fata_snapshot::RunSettings;
use hypercall::{Counts, Handler};
use kv::Kvs;
use lifecycle::Ending;
use mailbox::Mailbox;
use memory::GuestRam;
use net::Nets;
use snapshot::Saver;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vm::Vm;
use vmm_sys_util::eventfd::EventFd;

/// How a guest's run here ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestExit {
    /// The status the guest passed to its exit hypercall (0 when it went elsewhere).
    pub status: i32,
    /// Where the guest went, when it did not exit but left: saved by `fata snapshot --stop`, or
    /// moved by `fata migrate`.
    pub note: Option<String>,
}

/// Runs the image at `image` with its console on the monitor's stdout.
///
/// SIGINT and SIGTERM end the guest as [`Error::Stopped`] (after `--stats` are printed) instead
/// of killing the process. Confines the calling thread with the seccomp allow-list for the rest of
/// its life: call it from the thread that will only report the result and exit.
pub fn run(image: &Path, config: &Config) -> Result<GuestExit, Error> {
    signal::catch_stop_signals().map_err(|source| Error::VmSetup {
        what: "handling SIGINT and SIGTERM",
        source,
    })?;
    run_with_console(image, config, &mut std::io::stdout())
}

/// Carries on a guest from a snapshot or a migration, with its console on the monitor's stdout:
/// the devices of `config` where it names them, else those the guest had. Signals and
/// confinement as [`run`].
pub fn arrive(origin: &Origin, config: &ArrivalConfig) -> Result<GuestExit, Error> {
    signal::catch_stop_signals().map_err(|source| Error::VmSetup {
        what: "handling SIGINT and SIGTERM",
        source,
    })?;
    arrive_with_console(origin, config, &mut std::io::stdout())
}

/// As [`arrive`], writing the guest's console to `console`.
pub fn arrive_with_console(
    origin: &Origin,
    config: &ArrivalConfig,
    console: &mut dyn Write,
) -> Result<GuestExit, Error> {
    let start = Instant::now();
    signal::catch_kick().map_err(|source| Error::VmSetup {
        what: "handling the control thread's kick",
        source,
    })?;
    let mut arrived = match origin {
        Origin::Snapshot(dir) => arrival::from_snapshot(dir)?,
        Origin::Listen(listen) => arrival::from_migration(listen)?,
    };
    let opened = arrival::open_devices(&arrived.snapshot, config).and_then(|devices| {
        let server = match &config.name {
            Some(name) => fata_control::Server::bind(name)?,
            None => fata_control::Server::bind(&arrived.snapshot.name)
                .or_else(|_| fata_control::Server::bind_numbered(&arrived.snapshot.name))?,
        };
        Ok((devices, server))
    });
    let ((nets, mut blocks, kvs), server) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            if let Some(sender) = &mut arrived.sender {
                arrival::answer_sender(sender, false);
            }
            return Err(e);
        }
    };
    let snapshot = &arrived.snapshot;
    let vm = arrival::vm(&arrived.ram, snapshot)?;
    nets.moved(&arrived.ram).map_err(Error::from_stop)?;
    if let Some(sender) = &mut arrived.sender {
        arrival::answer_sender(sender, true);
    }
    let info = fata_control::Info {
        name: server.name().to_string(),
        image: snapshot.image.path.clone(),
        pid: std::process::id(),
        mem_bytes: snapshot.mem_bytes,
        rss_bytes: 0,
        uptime_ms: 0,
        state: fata_control::GuestState::Running,
        devices: arrival::device_infos(snapshot, config),
        origin: arrived.origin.clone(),
    };
    let hosting = Hosting {
        ram: &arrived.ram,
        nets: &nets,
        blocks: &mut blocks,
        kvs: &kvs,
        vm,
        server,
        info,
        image: PathBuf::from(&snapshot.image.path),
        parent: arrived.parent.clone(),
        settings: snapshot.run.clone(),
        stats: config.stats,
        start,
    };
    host(hosting, console)
}

/// As [`run`], writing the guest's console to `console`.
pub fn run_with_console(
    image: &Path,
    config: &Config,
    console: &mut dyn Write,
) -> Result<GuestExit, Error> {
    let start = Instant::now();
    config.check_devices()?;
    signal::catch_kick().map_err(|source| Error::VmSetup {
        what: "handling the control thread's kick",
        source,
    })?;
    // The name first: a name in use is the cheapest thing to refuse.
    let server = match &config.name {
        Some(name) => fata_control::Server::bind(name)?,
        None => fata_control::Server::bind_numbered(&default_name(image))?,
    };
    let mut guest = Guest::load(image, config)?;
    let vm = Vm::new(&guest.ram, guest.entry, config.mem_bytes)?;
    guest.write_boot_info(&vm, config)?;
    let info = guest.info(server.name(), image, config);
    let settings = RunSettings {
        net_coalesce_us: config.net_coalesce.as_micros() as u64,
        writable: guest.blocks.writable().to_vec(),
    };
    let hosting = Hosting {
        ram: &guest.ram,
        nets: &guest.nets,
        blocks: &mut guest.blocks,
        kvs: &guest.kvs,
        vm,
        server,
        info,
        image: image.to_path_buf(),
        parent: None,
        settings,
        stats: config.stats,
        start,
    };
    host(hosting, console)
}

/// A guest ready to run here: its RAM and devices, the VM over them, its control socket, and
/// what `fata ps` and its snapshots say of it.
struct Hosting<'ram> {
    ram: &'ram GuestRam,
    nets: &'ram Nets,
    blocks: &'ram mut Blocks,
    kvs: &'ram Kvs,
    vm: Vm<'ram>,
    server: fata_control::Server,
    info: fata_control::Info,
    image: PathBuf,
    /// The snapshot this run's first diff builds on (the one it was restored from).
    parent: Option<fata_snapshot::Parent>,
    settings: RunSettings,
    stats: bool,
    start: Instant,
}

/// Runs a guest to its end: the control thread serves its socket, the calling thread confines
/// itself and drives the vCPU.
fn host(hosting: Hosting<'_>, console: &mut dyn Write) -> Result<GuestExit, Error> {
    let Hosting {
        ram,
        nets,
        blocks,
        kvs,
        mut vm,
        server,
        info,
        image,
        parent,
        settings,
        stats,
        start,
    } = hosting;
    let name = server.name().to_string();
    let facts = Facts {
        info,
        started: start,
    };
    let saver = Saver {
        ram,
        dirty: vm.dirty_log(),
        image,
        last: std::sync::Mutex::new(None),
    };
    if let Some(parent) = parent {
        saver.dirty.start()?;
        *saver.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(parent);
    }
    let mailbox = Mailbox::for_this_thread();
    let done = EventFd::new(libc::EFD_NONBLOCK).map_err(|source| Error::VmSetup {
        what: "creating the control thread's eventfd",
        source,
    })?;
    let mut handler = Handler {
        ram,
        nets,
        blocks,
        console,
        buffer: Vec::with_capacity(CONSOLE_WRITE_MAX as usize),
        counts: Counts::default(),
        first_call: None,
    };
    let mut exits = 0;
    let mut setup = Duration::ZERO;
    let result = std::thread::scope(|scope| {
        let (mailbox, facts, saver, done) = (&mailbox, &facts, &saver, &done);
        // Started before the seccomp filter, so not confined by it (see `control`).
        scope.spawn(move || {
            signal::leave_stop_signals_to_the_vcpu_thread();
            control::serve(server, mailbox, facts, saver, done)
        });
        let result = seccomp::confine()
            .map_err(|e| Error::VmSetup {
                what: "installing the seccomp filter",
                source: std::io::Error::other(e),
            })
            .and_then(|()| {
                setup = start.elapsed();
                let mut run = lifecycle::Run {
                    vm: &mut vm,
                    handler: &mut handler,
                    kvs,
                    name: &name,
                    settings: &settings,
                };
                lifecycle::drive(&mut run, mailbox, &mut exits)
            });
        // Ends the control thread, which removes the socket. A failed write leaves it waiting
        // for a request, and the process exiting ends it.
        let _ = done.write(1);
        result
    });
    let (counts, first_call) = (handler.counts, handler.first_call);
    if stats {
        let timings = Timings {
            start,
            setup,
            first_call,
        };
        print_stats((nets, &*handler.blocks, kvs), &counts, exits, &timings);
    }
    result.map(|ending| match ending {
        Ending::Exit(status) => GuestExit { status, note: None },
        Ending::Left(note) => GuestExit {
            status: 0,
            note: Some(note),
        },
    })
}

/// The name a guest runs under when `--name` is not given: the image's file name without its
/// extension, reduced to the characters a name may have.
fn default_name(image: &Path) -> String {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' | '.' => c,
            _ => '-',
        })
        .collect();
    let name = name.trim_start_matches(['.', '-']);
    if name.is_empty() {
        "guest".to_string()
    } else {
        name.to_string()
    }
}

/// A guest laid out in its RAM, devices open, before its VM exists.
struct Guest {
    /// Declared before `ram`, so dropped first: the host may still be reading or writing guest
    /// RAM for a block request until the devices are gone.
    blocks: Blocks,
    ram: GuestRam,
    nets: Nets,
    kvs: Kvs,
    /// The image's entry point.
    entry: u64,
    /// The first page past the image.
    kernel_end: u64,
    /// Where the stack starts.
    stack_bottom: u64,
    /// Where the heap ends.
    heap_end: u64,
    /// Bytes of app arguments written.
    cmdline_len: u64,
}

impl Guest {
    /// Opens the devices, validates the image and lays everything out in fresh guest RAM: the
    /// stack at the top, the network rings, the block rings and the key-value regions below it,
    /// the image at [`LOAD_ADDR`], page tables and arguments below that. Devices get handles in
    /// that order too: network interfaces, block devices, stores.
    fn load(image: &Path, config: &Config) -> Result<Guest, Error> {
        let stack_bottom = layout::stack_bottom(config.mem_bytes)?;
        let mut nets = Nets::open(&config.nets, config.net_coalesce)?;
        let mut blocks = Blocks::open(&config.blocks, config.nets.len() as u32)?;
        let mut kvs = Kvs::scan(&config.kvs, config.nets.len() + config.blocks.len())?;
        let rings_bottom = blocks.place(nets.place(stack_bottom));
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
        blocks
            .write_headers(&ram)
            .map_err(|e| Error::Config(e.into()))?;
        // What a block request's buffer may lie in: memory the guest may write, which holds no
        // ring, key-value region, page table or boot info.
        let mut writable: Vec<(u64, u64)> = (parsed.segments.iter())
            .filter(|s| s.writable)
            .map(|s| (s.addr, s.end()))
            .collect();
        writable.push((parsed.end, heap_end));
        writable.push((stack_bottom, config.mem_bytes));
        blocks.set_writable(writable);
        let cmdline_len = layout::write_args(&ram, &config.args)?;
        Ok(Guest {
            blocks,
            ram,
            nets,
            kvs,
            entry: parsed.entry,
            kernel_end: parsed.end,
            stack_bottom,
            heap_end,
            cmdline_len,
        })
    }

    /// What `fata ps` shows of this guest, but for what changes as it runs.
    fn info(&self, name: &str, image: &Path, config: &Config) -> fata_control::Info {
        let device = |kind: &str, name: &str, host: String| fata_control::DeviceInfo {
            kind: kind.to_string(),
            name: name.to_string(),
            host,
        };
        let mut devices: Vec<_> = (config.nets.iter())
            .map(|n| device("net", &n.name, n.tap.clone()))
            .collect();
        devices.extend(
            (config.blocks.iter()).map(|b| device("block", &b.name, b.path.display().to_string())),
        );
        devices.extend(
            (config.kvs.iter()).map(|k| device("kv", &k.name, k.dir.display().to_string())),
        );
        fata_control::Info {
            name: name.to_string(),
            image: image.display().to_string(),
            pid: std::process::id(),
            mem_bytes: self.ram.size(),
            rss_bytes: 0,
            uptime_ms: 0,
            state: fata_control::GuestState::Running,
            devices,
            origin: "boot".to_string(),
        }
    }

    /// Writes the boot info, with the clock as `vm` sees it and a fresh random seed.
    fn write_boot_info(&self, vm: &Vm<'_>, config: &Config) -> Result<(), Error> {
        let clock = vm.boot_clock()?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| Error::VmSetup {
            what: "reading the host's random source",
            source: std::io::Error::other(e),
        })?;
        let mut devices = self.nets.device_infos();
        self.blocks.device_infos(&mut devices);
        self.kvs.device_infos(&mut devices);
        let info = BootInfo {
            abi_version: ABI_VERSION,
            device_count: (config.nets.len() + self.blocks.len() + self.kvs.len()) as u32,
            mem_size: config.mem_bytes,
            kernel_end: self.kernel_end,
            stack_bottom: self.stack_bottom,
            tsc_khz: clock.tsc_khz,
            boot_tsc: clock.tsc,
            boot_wall_ns: clock.wall_ns,
            cmdline_addr: fata_hvt_abi::GuestAddr(layout::CMDLINE_ADDR),
            cmdline_len: self.cmdline_len,
            argc: config.args.len() as u64,
            seed,
            devices,
            heap_end: self.heap_end,
            ..BootInfo::default()
        };
        layout::write_boot_info(&self.ram, &info)?;
        Ok(())
    }
}

/// When the run started, how long setup took, and when the guest made its first hypercall.
struct Timings {
    start: Instant,
    setup: Duration,
    first_call: Option<Instant>,
}

/// `--stats`: exits, console, key-value, network and block counters, and timings, on stderr.
fn print_stats(devices: (&Nets, &Blocks, &Kvs), c: &Counts, exits: u64, timings: &Timings) {
    let (nets, blocks, kvs) = devices;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let first = timings.first_call.map_or(0.0, |t| ms(t - timings.start));
    eprintln!(
        "fata-monitor: {exits} exits (console {}, {} bytes; yield {}, {} of them polls); setup {:.3} ms, first \
         hypercall {first:.3} ms, total {:.3} ms after start",
        c.console,
        c.console_bytes,
        c.yields,
        c.polls,
        ms(timings.setup),
        ms(timings.start.elapsed()),
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
            "fata-monitor: net: {} frames in ({} bytes, {} merged by the host), {} frames out \
             ({} bytes, {} for the host to segment); offloads {}; {:.1} frames per exit; {} \
             sleeps in yield, {} coalescing naps ({}), {} doorbell exits; dropped {} in, {} out",
            n.frames_in,
            n.bytes_in,
            n.large_in,
            n.frames_out,
            n.bytes_out,
            n.segmented_out,
            nets.offloads_granted(),
            frames as f64 / exits.max(1) as f64,
            n.sleeps,
            n.naps,
            match nets.coalesce().as_micros() {
                0 => "no coalescing".to_string(),
                us => format!("interval {us} us"),
            },
            c.doorbell_exits,
            n.dropped_in,
            n.dropped_out,
        );
    }
    if !blocks.is_empty() {
        let b = blocks.stats();
        eprintln!(
            "fata-monitor: block: {} requests ({} reads, {} writes, {} flushes, {} discards); \
             {} bytes read, {} bytes written; {:.1} requests per exit, at most {} in flight; {} \
             refused as malformed, {} failed on the host; {} io_uring_enter calls, {} direct; {} \
             journal commits, {} sectors recovered at open",
            b.requests,
            b.reads,
            b.writes,
            b.flushes,
            b.discards,
            b.bytes_read,
            b.bytes_written,
            b.requests as f64 / exits.max(1) as f64,
            b.most_in_flight,
            b.refused,
            b.failed,
            b.enters,
            b.direct,
            b.journal_commits,
            b.recovered_sectors,
        );
    }
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
