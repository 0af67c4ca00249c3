//! `fata run --target virtio`: boots the image with QEMU (`fata-qemu`), KVM where the host
//! allows it and TCG otherwise, with the same device options and exit statuses as hvt.

use std::io::Read;
use std::path::Path;
use std::process::{ExitCode, Stdio};

use crate::{EXIT_START, Failure, RunArgs, block_config, net_configs};

/// The status for a guest that reset without reporting one, as hvt's for a guest fault.
const EXIT_FAULT: u8 = 124;

/// Bytes from the host's generator.
fn random_bytes<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Failure::new(EXIT_START, format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes)
}

/// Boots `image` under QEMU and returns the app's exit status.
pub fn run(image: &Path, run: &RunArgs) -> Result<ExitCode, Failure> {
    if run.stats || run.name.is_some() || !run.kv.is_empty() {
        return Err(Failure::new(
            2,
            "--stats, --name and --kv apply to the hvt target only: leave them out on virtio",
        ));
    }
    let nets = net_configs(run)?
        .into_iter()
        .map(|net| {
            if net.tap.contains(':') {
                return Err(Failure::new(
                    2,
                    format!(
                        "--net {}={}: QEMU attaches a guest to a tap device by name only",
                        net.name, net.tap
                    ),
                ));
            }
            let mac = match net.mac {
                Some(mac) => mac,
                None => {
                    let mut mac = random_bytes::<6>()?;
                    // Unicast and locally administered, as hvt's monitor makes them.
                    mac[0] = (mac[0] & 0xfc) | 0x02;
                    mac
                }
            };
            Ok(fata_qemu::NetDevice {
                name: net.name,
                tap: net.tap,
                mac,
            })
        })
        .collect::<Result<_, Failure>>()?;
    let blocks = (run.block.iter())
        .map(|text| {
            let block = block_config(text)?;
            Ok(fata_qemu::BlockDevice {
                name: block.name,
                path: block.path,
                mode: match block.mode {
                    fata_monitor::BlockMode::ReadWrite => fata_qemu::BlockMode::ReadWrite,
                    fata_monitor::BlockMode::ReadOnly => fata_qemu::BlockMode::ReadOnly,
                    fata_monitor::BlockMode::CopyOnWrite => fata_qemu::BlockMode::CopyOnWrite,
                },
            })
        })
        .collect::<Result<_, Failure>>()?;
    let qemu = fata_qemu::find_qemu().map_err(|e| Failure::new(EXIT_START, e))?;
    let (accel, why) = fata_qemu::Accel::detect();
    let launch = fata_qemu::Launch {
        image: image.to_path_buf(),
        mem_bytes: run.mem.unwrap_or(fata_monitor::DEFAULT_MEM_BYTES),
        accel,
        nets,
        blocks,
        args: run.app_args.clone(),
        seed: random_bytes()?,
    };
    eprintln!(
        "fata: booting {} with QEMU ({accel}: {why})",
        image.display()
    );
    let status = launch
        .command(&qemu)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| Failure::new(EXIT_START, format!("cannot start {}: {e}", qemu.display())))?;
    match fata_qemu::app_status(status) {
        fata_qemu::Outcome::App(status) => Ok(ExitCode::from(status as u8)),
        fata_qemu::Outcome::Reset => Err(Failure::new(
            EXIT_FAULT,
            "the guest reset without an exit status (a triple fault): see its console above",
        )),
        fata_qemu::Outcome::QemuFailed => Err(Failure::new(
            EXIT_START,
            "QEMU could not boot the image (its message is above)",
        )),
        fata_qemu::Outcome::Signal(signal) => Ok(ExitCode::from(128 + signal as u8)),
    }
}
