//! Boots a Fata virtio image with QEMU, as `fata run --target virtio` does.
//!
//! - [`Accel::detect`] picks KVM where the host's KVM runs a guest kernel natively and TCG
//!   otherwise: on a nested `kvm_pvm` host, code at CPL0 (all of a PVH guest) is emulated an
//!   instruction at a time and QEMU's own emulator is far faster.
//! - [`Launch`] turns an image, its memory, its network and block devices and the app's
//!   arguments into a QEMU command line on `-M microvm` (virtio-mmio): `-kernel` boots it by PVH,
//!   the devices get the names the app knows them by (a MAC per network interface on the kernel
//!   command line, the virtio-blk serial for a disk), and QEMU's `isa-debug-exit` device carries
//!   the app's exit status out.
//! - [`app_status`] reads that status back from QEMU's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The QEMU program Fata runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// What cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// QEMU is not installed.
    #[error(
        "{QEMU} is not installed: install it with `apt install qemu-system-x86` (the test and demo scripts do)"
    )]
    NoQemu,
    /// A network interface needs a MAC address and has none.
    #[error("network interface {0:?} has no MAC address")]
    NoMac(String),
}

/// Finds QEMU on `PATH`.
pub fn find_qemu() -> Result<PathBuf, Error> {
    which::which(QEMU).map_err(|_| Error::NoQemu)
}

/// How QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// The host's KVM.
    Kvm,
    /// QEMU's own emulator.
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

impl Accel {
    /// The accelerator this host allows, and why.
    pub fn detect() -> (Accel, &'static str) {
        Accel::choose(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            Path::new("/sys/module/kvm_pvm").exists(),
        )
    }

    fn choose(kvm_opens: bool, kvm_is_pvm: bool) -> (Accel, &'static str) {
        match (kvm_opens, kvm_is_pvm) {
            (false, _) => (Accel::Tcg, "no usable /dev/kvm"),
            (true, true) => (
                Accel::Tcg,
                "this host's KVM is kvm_pvm, which emulates guest kernel code; QEMU's TCG is faster",
            ),
            (true, false) => (Accel::Kvm, "/dev/kvm is usable"),
        }
    }

    fn cpu(self) -> &'static str {
        match self {
            // `max` has RDRAND under TCG; `host` passes the host's CPU through under KVM.
            Accel::Tcg => "max",
            Accel::Kvm => "host",
        }
    }
}

/// A network interface of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// The name the app knows it by.
    pub name: String,
    /// The host's tap device.
    pub tap: String,
    /// Its MAC address, which is how the guest tells it from the others.
    pub mac: [u8; 6],
}

/// How a block device's file may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockMode {
    /// Reads and writes reach the file.
    ReadWrite,
    /// Writes are refused.
    ReadOnly,
    /// Writes are kept by QEMU and never reach the file.
    CopyOnWrite,
}

/// A disk of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The name the app knows it by (the disk's virtio-blk serial, at most 20 bytes).
    pub name: String,
    /// The raw image or block device.
    pub path: PathBuf,
    /// How it may change.
    pub mode: BlockMode,
}

/// Everything QEMU needs to boot one image.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The PVH image (`NAME.virtio`).
    pub image: PathBuf,
    /// Guest RAM in bytes.
    pub mem_bytes: u64,
    /// The accelerator.
    pub accel: Accel,
    /// Network interfaces.
    pub nets: Vec<NetDevice>,
    /// Disks.
    pub blocks: Vec<BlockDevice>,
    /// The app's arguments.
    pub args: Vec<String>,
    /// Seeds the guest's generator if its CPU has no RDRAND.
    pub seed: [u8; 32],
}

/// The port `fata-virtio` writes the exit status to (its `DEBUG_EXIT_PORT`).
const DEBUG_EXIT_PORT: u16 = 0x501;

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

impl Launch {
    /// The kernel command line: the device names and the app's arguments
    /// (`fata-virtio-abi` describes it).
    pub fn kernel_cmdline(&self) -> String {
        let mut tokens = Vec::new();
        for net in &self.nets {
            tokens.push(format!("fata.net={}/{}", net.name, mac_text(net.mac)));
        }
        let seed: String = self.seed.iter().map(|b| format!("{b:02x}")).collect();
        tokens.push(format!("fata.seed={seed}"));
        for arg in &self.args {
            tokens.push(format!("fata.arg={}", fata_virtio_abi::percent_encode(arg)));
        }
        tokens.join(" ")
    }

    /// The QEMU command that boots the image with its console on stdout.
    pub fn command(&self, qemu: &Path) -> Command {
        let mut command = Command::new(qemu);
        command
            .args([
                "-M",
                "microvm,x-option-roms=off,rtc=on,pit=on,auto-kernel-cmdline=on",
            ])
            .args(["-accel", &self.accel.to_string()])
            .args(["-cpu", self.accel.cpu()])
            .args(["-m", &format!("{}M", self.mem_bytes.div_ceil(1 << 20))])
            .args([
                "-smp",
                "1",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .arg("-no-reboot")
            .args([
                "-chardev",
                "stdio,id=console,signal=on",
                "-serial",
                "chardev:console",
            ])
            .args([
                "-device",
                &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=1"),
            ])
            .arg("-kernel")
            .arg(&self.image)
            .args(["-append", &self.kernel_cmdline()]);
        for (index, net) in self.nets.iter().enumerate() {
            command
                .args([
                    "-netdev",
                    &format!(
                        "tap,id=net{index},ifname={},script=no,downscript=no",
                        net.tap
                    ),
                ])
                .args([
                    "-device",
                    &format!(
                        "virtio-net-device,netdev=net{index},mac={}",
                        mac_text(net.mac)
                    ),
                ]);
        }
        for (index, block) in self.blocks.iter().enumerate() {
            let mode = match block.mode {
                BlockMode::ReadWrite => "",
                BlockMode::ReadOnly => ",readonly=on",
                BlockMode::CopyOnWrite => ",snapshot=on",
            };
            let mut drive = std::ffi::OsString::from("file=");
            // QEMU's option syntax doubles a comma inside a value.
            drive.push(block.path.as_os_str().to_string_lossy().replace(',', ",,"));
            drive.push(format!(",if=none,id=disk{index},format=raw{mode}"));
            command.arg("-drive").arg(drive).args([
                "-device",
                &format!("virtio-blk-device,drive=disk{index},serial={}", block.name),
            ]);
        }
        command
    }
}

/// What QEMU's exit says about the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The app ended with this status (through the exit port).
    App(i32),
    /// The guest reset or powered off without reporting a status (a triple fault).
    Reset,
    /// QEMU itself failed (its message is on stderr).
    QemuFailed,
    /// A signal ended QEMU.
    Signal(i32),
}

/// Reads QEMU's exit status: `isa-debug-exit` makes QEMU exit with `2V + 1` for the value `V`
/// the guest wrote, and the guest writes its status plus one, so QEMU's own failure (status 1)
/// cannot be mistaken for an app's.
pub fn app_status(status: ExitStatus) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::Reset,
        (Some(code), _) if code >= 3 && code % 2 == 1 => Outcome::App((code - 3) / 2),
        (Some(_), _) => Outcome::QemuFailed,
        (None, Some(signal)) => Outcome::Signal(signal),
        (None, None) => Outcome::QemuFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn kvm_is_chosen_only_where_it_runs_kernel_code_natively() {
        assert_eq!(Accel::choose(true, false).0, Accel::Kvm);
        assert_eq!(Accel::choose(true, true).0, Accel::Tcg);
        assert_eq!(Accel::choose(false, false).0, Accel::Tcg);
    }

    #[test]
    fn exit_statuses_decode() {
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(app_status(exited(3)), Outcome::App(0));
        assert_eq!(app_status(exited(5)), Outcome::App(1));
        assert_eq!(app_status(exited(205)), Outcome::App(101));
        assert_eq!(app_status(exited(1)), Outcome::QemuFailed);
        assert_eq!(app_status(exited(0)), Outcome::Reset);
        assert_eq!(app_status(ExitStatus::from_raw(15)), Outcome::Signal(15));
    }

    #[test]
    fn the_command_line_names_devices_and_carries_arguments() {
        let launch = Launch {
            image: "/i/www.virtio".into(),
            mem_bytes: 32 << 20,
            accel: Accel::Tcg,
            nets: vec![NetDevice {
                name: "service".into(),
                tap: "tap0".into(),
                mac: [2, 0, 0, 0, 0, 1],
            }],
            blocks: vec![BlockDevice {
                name: "storage".into(),
                path: "/d/a,b.img".into(),
                mode: BlockMode::CopyOnWrite,
            }],
            args: vec!["--ipv4".into(), "10.0.0.2/24".into(), "a b".into()],
            seed: [0; 32],
        };
        let cmdline = launch.kernel_cmdline();
        assert!(cmdline.starts_with("fata.net=service/02:00:00:00:00:01 fata.seed=00"));
        assert!(cmdline.ends_with("fata.arg=--ipv4 fata.arg=10.0.0.2/24 fata.arg=a%20b"));
        let parsed = fata_virtio_abi::parse(cmdline.as_bytes()).unwrap();
        assert_eq!(parsed.args, launch.args);
        let command = launch.command(Path::new("qemu"));
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args.contains(&"file=/d/a,,b.img,if=none,id=disk0,format=raw,snapshot=on".into()));
        assert!(args.contains(&"virtio-blk-device,drive=disk0,serial=storage".into()));
        assert!(args.contains(&"virtio-net-device,netdev=net0,mac=02:00:00:00:00:01".into()));
    }
}
