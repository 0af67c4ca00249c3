//! A guest that arrives instead of booting: from a snapshot directory (`fata restore`) or over a
//! migration's connection (`fata receive`). Both end as a [`Snapshot`] and RAM that holds the
//! guest; the devices are opened on this host (the taps and files given, else the ones the
//! guest had), the vCPU set back with its clock moved on, and the network told it moved.

use crate::block::Blocks;
use crate::config::{BlockConfig, NetConfig};
use crate::error::Error;
use crate::kv::Kvs;
use crate::memory::GuestRam;
use crate::net::Nets;
use crate::snapshot::Chain;
use crate::vm::Vm;
use fata_hvt_abi::{ABI_VERSION, GuestAddr};
use fata_snapshot::{DeviceState, Message, Parent, Receiver, Snapshot};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a guest arrives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A snapshot directory.
    Snapshot(PathBuf),
    /// The `HOST:PORT` to wait at for one migration.
    Listen(String),
}

/// The devices and options of an arriving guest; what is not given is what it had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArrivalConfig {
    /// The name to run under; by default the name it had (and a number when that is taken).
    pub name: Option<String>,
    /// Taps for its network interfaces, by name.
    pub nets: Vec<NetConfig>,
    /// Files for its block devices, by name: each as large as the one it had.
    pub blocks: Vec<BlockConfig>,
    /// Print the monitor's counters when the guest ends.
    pub stats: bool,
}

/// A guest that arrived and its devices, ready for a VM.
pub struct Arrived {
    /// The guest's memory.
    pub ram: GuestRam,
    /// Its vCPU and devices.
    pub snapshot: Snapshot,
    /// Where it came from, for `fata ps`.
    pub origin: String,
    /// The snapshot it came from, which a diff taken of this run builds on.
    pub parent: Option<Parent>,
    /// The migration's sender, waiting for word that the guest runs here.
    pub sender: Option<TcpStream>,
}

/// Reads the snapshot in `dir` (and the chain it builds on) into fresh guest RAM.
pub fn from_snapshot(dir: &Path) -> Result<Arrived, Error> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let chain = Chain::read(&dir)?;
    check(chain.last())?;
    let ram = chain.load()?;
    let state = dir.join(fata_snapshot::STATE_FILE);
    let crc = std::fs::read(&state)
        .ok()
        .and_then(|bytes| fata_snapshot::state_crc(&bytes).ok())
        .unwrap_or(0);
    Ok(Arrived {
        snapshot: chain.last().clone(),
        ram,
        origin: format!("snapshot {}", dir.display()),
        parent: Some(Parent {
            dir: dir.display().to_string(),
            state_crc: crc,
        }),
        sender: None,
    })
}

/// Waits at `listen` for one migration and receives its guest.
pub fn from_migration(listen: &str) -> Result<Arrived, Error> {
    let failed = |what: &'static str| {
        move |source: std::io::Error| Error::Migration(format!("{what}: {source}"))
    };
    let listener = TcpListener::bind(listen).map_err(|e| {
        Error::Migration(format!(
            "cannot listen at {listen}: {e}; give a free HOST:PORT of this machine"
        ))
    })?;
    let local = listener
        .local_addr()
        .map_err(failed("reading the address"))?;
    eprintln!("fata: waiting for a guest at {local} (`fata migrate NAME --to {local}`)");
    let (stream, peer) = listener
        .accept()
        .map_err(failed("accepting a connection"))?;
    stream
        .set_nodelay(true)
        .map_err(failed("setting up the connection"))?;
    let started = Instant::now();
    let mut receiver = Receiver::start(std::io::BufReader::with_capacity(
        1 << 20,
        stream
            .try_clone()
            .map_err(failed("setting up the connection"))?,
    ))?;
    let mem = receiver.hello().mem_bytes;
    eprintln!("fata: receiving a guest of {} MiB from {peer}", mem >> 20);
    let ram = GuestRam::new(mem).map_err(|source| Error::VmSetup {
        what: "mapping guest memory",
        source,
    })?;
    let mut pages = 0u64;
    let snapshot = loop {
        match receiver.read_message()? {
            Message::Pages { offset, bytes } => {
                // The receiver checked the run against the memory size the hello gave.
                ram.write(GuestAddr(offset), &bytes)
                    .map_err(|e| Error::Migration(e.to_string()))?;
                pages += bytes.len() as u64 / fata_hvt_abi::PAGE_SIZE;
            }
            Message::State(snapshot) => break *snapshot,
        }
    };
    check(&snapshot)?;
    eprintln!(
        "fata: received {pages} pages ({:.1} MiB) and the guest's state in {:.0} ms",
        (pages * fata_hvt_abi::PAGE_SIZE) as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(Arrived {
        ram,
        snapshot,
        origin: format!("migration from {peer}"),
        parent: None,
        sender: Some(stream),
    })
}

/// Refuses a snapshot this monitor cannot carry on.
fn check(snapshot: &Snapshot) -> Result<(), Error> {
    if snapshot.abi_version != ABI_VERSION {
        return Err(Error::Unrestorable(format!(
            "the guest was built for hvt ABI {} and this monitor runs ABI {ABI_VERSION}: restore \
             it with the Fata version that took it",
            snapshot.abi_version
        )));
    }
    Ok(())
}

/// The devices of `snapshot`, opened on this host: `config`'s taps and files where it names
/// them, else those the guest had.
pub fn open_devices(
    snapshot: &Snapshot,
    config: &ArrivalConfig,
) -> Result<(Nets, Blocks, Kvs), Error> {
    let mut nets = Vec::new();
    let mut blocks = Vec::new();
    let mut kvs = Vec::new();
    for device in &snapshot.devices {
        match device {
            DeviceState::Net(n) => nets.push(n.clone()),
            DeviceState::Block(b) => blocks.push(b.clone()),
            DeviceState::Kv(k) => kvs.push(k.clone()),
        }
    }
    for name in config.nets.iter().map(|n| &n.name) {
        if !nets.iter().any(|n| &n.name == name) {
            return Err(Error::Unrestorable(unknown(
                "network interface",
                name,
                snapshot,
            )));
        }
    }
    for name in config.blocks.iter().map(|b| &b.name) {
        if !blocks.iter().any(|b| &b.name == name) {
            return Err(Error::Unrestorable(unknown("block device", name, snapshot)));
        }
    }
    let net_configs: Vec<NetConfig> = (nets.iter())
        .map(|n| {
            let given = config.nets.iter().find(|c| c.name == n.name);
            NetConfig {
                name: n.name.clone(),
                tap: given.map_or(n.tap.clone(), |c| c.tap.clone()),
                mac: Some(n.mac),
            }
        })
        .collect();
    let block_configs: Vec<BlockConfig> = (blocks.iter())
        .map(|b| match config.blocks.iter().find(|c| c.name == b.name) {
            Some(given) => given.clone(),
            None => BlockConfig {
                name: b.name.clone(),
                path: PathBuf::from(&b.path),
                mode: match b.mode.as_str() {
                    "ro" => crate::BlockMode::ReadOnly,
                    "cow" => crate::BlockMode::CopyOnWrite,
                    _ => crate::BlockMode::ReadWrite,
                },
            },
        })
        .collect();
    let coalesce = Duration::from_micros(snapshot.run.net_coalesce_us);
    let nets = Nets::restore(&net_configs, coalesce, &nets)
        .map_err(|e| Error::Unrestorable(e.to_string()))?;
    let mut restored_blocks = Blocks::restore(&block_configs, net_configs.len() as u32, &blocks)
        .map_err(|e| Error::Unrestorable(e.to_string()))?;
    restored_blocks.set_writable(snapshot.run.writable.clone());
    let kvs = Kvs::restore(&kvs, net_configs.len() + block_configs.len());
    let blocks = restored_blocks;
    Ok((nets, blocks, kvs))
}

/// The message for a `--net` or `--block` that names no device of the guest.
fn unknown(kind: &str, name: &str, snapshot: &Snapshot) -> String {
    let names: Vec<&str> = (snapshot.devices.iter())
        .map(|d| match d {
            DeviceState::Net(n) => n.name.as_str(),
            DeviceState::Block(b) => b.name.as_str(),
            DeviceState::Kv(k) => k.name.as_str(),
        })
        .collect();
    format!(
        "the guest has no {kind} named {name} (its devices: {}); name one of those",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// How long the guest stood still: from the snapshot until now, never negative.
pub fn frozen_for(snapshot: &Snapshot) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now.saturating_sub(snapshot.taken_wall_ns)
}

/// Tells a migration's sender the guest runs here (or not).
pub fn answer_sender(sender: &mut TcpStream, arrived: bool) {
    let answer = if arrived {
        fata_snapshot::ARRIVED
    } else {
        fata_snapshot::FAILED
    };
    // A sender that went away learns nothing; the guest runs here all the same.
    let _ = sender.write_all(&[answer]);
}

/// The VM for an arrived guest.
pub fn vm<'ram>(ram: &'ram GuestRam, snapshot: &Snapshot) -> Result<Vm<'ram>, Error> {
    let (vm, tsc) = Vm::restore(ram, &snapshot.vcpu, frozen_for(snapshot))?;
    if tsc.ahead_ns.unsigned_abs() > 1_000_000_000 {
        eprintln!(
            "fata: the guest's clock runs {:.1} s ahead of the time it stood still (this host's \
             TSC cannot be set back)",
            tsc.ahead_ns as f64 / 1e9
        );
    }
    Ok(vm)
}

/// What `fata ps` shows of the arrived guest's devices.
pub fn device_infos(snapshot: &Snapshot, config: &ArrivalConfig) -> Vec<fata_control::DeviceInfo> {
    let info = |kind: &str, name: &str, host: String| fata_control::DeviceInfo {
        kind: kind.to_string(),
        name: name.to_string(),
        host,
    };
    (snapshot.devices.iter())
        .map(|device| match device {
            DeviceState::Net(n) => {
                let tap = config.nets.iter().find(|c| c.name == n.name);
                info("net", &n.name, tap.map_or(n.tap.clone(), |c| c.tap.clone()))
            }
            DeviceState::Block(b) => {
                let file = config.blocks.iter().find(|c| c.name == b.name);
                let host = file.map_or(b.path.clone(), |c| c.path.display().to_string());
                info("block", &b.name, host)
            }
            DeviceState::Kv(k) => info("kv", &k.name, k.source.clone()),
        })
        .collect()
}
