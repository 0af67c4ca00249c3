//! Fata's unix target: the [`Platform`] hooks and devices over Linux.
//!
//! An app built without `--cfg fata_target="hvt"` links this crate and runs as an ordinary process:
//! the console is stdout, clocks are `clock_gettime`, `yield_until` is one `epoll_pwait2(2)` over
//! every device's file descriptor, a network interface is a tap device, a block device is a file
//! served through io_uring (fata-blockfile; its requests start when the platform waits), a
//! key-value store is a directory or a FAT image file, and the host's own TCP/IP stack is a
//! [`HostSockets`](fata_platform::HostSockets) device.
//!
//! Devices come from environment variables that `fata run --target unix` sets from its options, one
//! variable per kind, each a comma-separated list of `NAME=VALUE`:
//! `FATA_NET="service=tap0"`, `FATA_BLOCK="storage=disk.img,gold=base.img:cow"` (a block device's
//! file may end in `:ro` or `:cow`), `FATA_KV="data=./site"`.

mod block;
mod coalesce;
mod kv;
mod poller;
mod sockets;
mod tap;

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fata_device_spec::{DEFAULT_BLOCK, DEFAULT_KV, DEFAULT_NET};
use fata_platform::{Device, Platform, ReadySet};

pub use block::FileBlock;
pub use kv::{DirKv, FatKv};
pub use sockets::Sockets;
pub use tap::Tap;

/// The unix platform: one per process.
pub struct Unix;

/// The instant the monotonic clock counts from.
fn boot() -> Instant {
    static BOOT: OnceLock<Instant> = OnceLock::new();
    *BOOT.get_or_init(Instant::now)
}

impl Platform for Unix {
    fn init() {
        boot();
        // SAFETY: setting SIGPIPE to SIG_IGN is async-signal-safe and affects no Rust state; a write
        // to a closed socket then fails with EPIPE instead of killing the process.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        std::panic::set_hook(Box::new(|info| {
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "an unknown location".into());
            let message = info
                .payload_as_str()
                .unwrap_or("(a panic payload that is not a string)");
            let _ = std::io::stdout().flush();
            eprintln!("panicked at {location}:\n{message}");
            // A panic ends the program, as it does on hvt where panics abort.
            std::process::exit(101);
        }));
    }

    fn monotonic_ns() -> u64 {
        u64::try_from(boot().elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_clock_ns() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn console_write(bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // Console output has nowhere else to go; a closed stdout is not worth ending the app for.
        let _ = out.write_all(bytes).and_then(|()| out.flush());
    }

    fn random_fill(buf: &mut [u8]) {
        getrandom::fill(buf).expect("the kernel's getrandom(2) failed");
    }

    fn yield_until(interest: ReadySet, deadline_ns: Option<u64>) -> ReadySet {
        // Block requests queued since the last wait go to the kernel now, one batch per device;
        // devices holding finished requests are ready already.
        coalesce::ready_already(block::start_all());
        let timeout = deadline_ns.map(|deadline| deadline.saturating_sub(Self::monotonic_ns()));
        // Devices outside `interest` stay ready (taps are level-triggered, socket events are kept).
        coalesce::wait(interest, timeout, Self::monotonic_ns)
    }

    fn exit(status: i32) -> ! {
        let _ = std::io::stdout().flush();
        std::process::exit(status)
    }

    fn args() -> Vec<String> {
        std::env::args().skip(1).collect()
    }

    fn take_devices() -> Vec<Device> {
        static TAKEN: OnceLock<()> = OnceLock::new();
        if TAKEN.set(()).is_err() {
            return Vec::new();
        }
        match open_devices() {
            Ok(devices) => devices,
            Err(message) => {
                eprintln!("fata: {message}");
                Self::exit(2)
            }
        }
    }
}

/// The `[NAME=]VALUE` specs of one device variable (comma-separated), parsed by the rule every
/// target shares, with `default_name` for a spec without a name.
fn device_specs(variable: &str, default_name: &str) -> Result<Vec<(String, String)>, String> {
    std::env::var(variable)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|text| {
            fata_device_spec::parse(text, default_name)
                .map(|spec| (spec.name, spec.value))
                .map_err(|e| format!("{variable}: {e}"))
        })
        .collect()
}

/// Opens every device named in the environment; device names must be usable and unique across
/// kinds, as on hvt.
fn open_devices() -> Result<Vec<Device>, String> {
    let nets = device_specs("FATA_NET", DEFAULT_NET)?;
    let blocks = device_specs("FATA_BLOCK", DEFAULT_BLOCK)?;
    let kvs = device_specs("FATA_KV", DEFAULT_KV)?;
    let names = nets
        .iter()
        .chain(&blocks)
        .chain(&kvs)
        .map(|(name, _)| name.as_str());
    fata_device_spec::check_unique(names).map_err(|e| e.to_string())?;
    let mut devices = Vec::new();
    for (index, (name, tap_name)) in nets.into_iter().enumerate() {
        let bit = ReadySet::single(index as u32);
        let tap = Tap::open(&tap_name, bit)
            .map_err(|e| format!("cannot open tap device {tap_name:?}: {e} (does it exist, and may this user open /dev/net/tun?)"))?;
        poller::watch_device(tap.fd(), bit)
            .map_err(|e| format!("cannot watch tap device {tap_name:?}: {e}"))?;
        devices.push(Device::Net(name, Box::new(tap)));
    }
    // The host's own stack is always there, for apps given no network interface.
    let bit = ReadySet::single(devices.len() as u32);
    poller::set_sockets_bit(bit);
    let sockets = Sockets::new(bit);
    devices.push(Device::Sockets("host".into(), Box::new(sockets)));
    for (name, value) in blocks {
        let (path, mode) =
            fata_device_spec::block_mode(&value).map_err(|e| format!("FATA_BLOCK: {e}"))?;
        let bit = ReadySet::single(devices.len() as u32);
        let block = FileBlock::open(path.as_ref(), mode, bit)
            .map_err(|e| format!("block device {name}: {e}"))?;
        poller::watch_device(block.fd(), bit)
            .map_err(|e| format!("cannot watch block device {name}: {e}"))?;
        if block.recovered() > 0 {
            eprintln!(
                "fata: block device {name}: recovered {} sectors of an interrupted flush from {}",
                block.recovered(),
                fata_blockfile::journal_path(path.as_ref()).display()
            );
        }
        devices.push(Device::Block(name, Box::new(block)));
    }
    for (name, path) in kvs {
        let path = std::path::Path::new(&path);
        let kv: Box<dyn fata_platform::Kv> = if path.is_file() {
            Box::new(FatKv::open(path).map_err(|e| format!("key-value store {name}: {e}"))?)
        } else {
            Box::new(DirKv::open(path).map_err(|e| {
                format!(
                    "cannot open key-value directory {:?}: {e} (give a directory or a FAT image)",
                    path.display().to_string()
                )
            })?)
        };
        devices.push(Device::Kv(name, kv));
    }
    Ok(devices)
}
