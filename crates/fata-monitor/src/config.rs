//! How to run a guest: memory, arguments and devices, and the one check of the devices' names and
//! number before anything is opened.

use fata_blockfile::Mode;
use fata_device_spec::SpecError;
use fata_hvt_abi::MAX_DEVICES;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

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
    /// Network interfaces, each backed by a tap device.
    pub nets: Vec<NetConfig>,
    /// Block devices, each a host file or block device node.
    pub blocks: Vec<BlockConfig>,
    /// Read-only key-value stores, each a host directory. With the network interfaces and the
    /// block devices, at most `MAX_DEVICES` devices, every one with its own name.
    pub kvs: Vec<KvConfig>,
    /// While frames arrive faster than the guest exits for them, resume it at most once per this
    /// interval, so that one exit serves a batch (interrupt coalescing, see
    /// [`fata_hvt_abi::COALESCE_BELOW`]); zero, the default, resumes it at once.
    pub net_coalesce: Duration,
    /// The name the guest runs under, which its control socket carries (`fata run --name`);
    /// `None`: the image's file name and the smallest free number, as `dns-1`.
    pub name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_bytes: DEFAULT_MEM_BYTES,
            args: Vec::new(),
            stats: false,
            nets: Vec::new(),
            blocks: Vec::new(),
            kvs: Vec::new(),
            net_coalesce: Duration::ZERO,
            name: None,
        }
    }
}

/// One network interface of the guest, as the command line gives it (`--net NAME=TAP`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The name the guest looks the device up by (`service` by default in the CLI).
    pub name: String,
    /// The host tap interface; the monitor attaches to it, creating it if it does not exist.
    pub tap: String,
    /// The guest's MAC address; a random locally administered one when `None`.
    pub mac: Option<[u8; 6]>,
}

/// One block device as the command line gives it (`--block NAME=FILE[:ro|:cow]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// The name the guest looks the device up by (`storage` by default in the CLI).
    pub name: String,
    /// The host file (or block device node) behind it; its size in whole sectors is the device's.
    pub path: PathBuf,
    /// Read-write, read-only, or copy-on-write (writes stay in the monitor's memory).
    pub mode: Mode,
}

/// One key-value store as the command line gives it (`--kv NAME=DIR` or `--kv NAME=IMG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    /// The name the guest looks the store up by (`data` by default in the CLI).
    pub name: String,
    /// The directory whose regular files become the store's keys and values, or a FAT image
    /// file whose files do.
    pub dir: PathBuf,
}

/// Why the devices a configuration names cannot be given to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// More devices than the boot info holds.
    #[error(
        "{0} devices were given, but at most {MAX_DEVICES} (network interfaces, block devices and \
         stores together) are supported"
    )]
    TooMany(usize),
    /// A name is unusable or repeated.
    #[error(transparent)]
    Name(#[from] SpecError),
}

impl Config {
    /// Checks the devices' number and names (the rule every target shares,
    /// `fata_device_spec`): the only place the monitor checks them.
    pub(crate) fn check_devices(&self) -> Result<(), DeviceError> {
        let count = self.nets.len() + self.blocks.len() + self.kvs.len();
        if count > MAX_DEVICES {
            return Err(DeviceError::TooMany(count));
        }
        let names = (self.nets.iter().map(|n| n.name.as_str()))
            .chain(self.blocks.iter().map(|b| b.name.as_str()))
            .chain(self.kvs.iter().map(|k| k.name.as_str()));
        fata_device_spec::check_unique(names)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str) -> NetConfig {
        NetConfig {
            name: name.into(),
            tap: "tap0".into(),
            mac: None,
        }
    }

    #[test]
    fn device_names_and_counts_are_checked_once_for_every_kind() {
        let kv = |name: &str| KvConfig {
            name: name.into(),
            dir: "/".into(),
        };
        let config = |nets: Vec<NetConfig>, kvs: Vec<KvConfig>| Config {
            nets,
            kvs,
            ..Config::default()
        };
        let block = |name: &str| BlockConfig {
            name: name.into(),
            path: "/dev/null".into(),
            mode: Mode::ReadOnly,
        };
        let with_blocks = |names: &[&str]| Config {
            blocks: names.iter().map(|n| block(n)).collect(),
            ..config(vec![net("service")], vec![kv("data")])
        };
        assert!(with_blocks(&["storage", "cache"]).check_devices().is_ok());
        for repeated in ["service", "data", "cache"] {
            assert_eq!(
                with_blocks(&["cache", repeated]).check_devices(),
                Err(SpecError::Repeated(repeated.into()).into())
            );
        }
        assert!(with_blocks(&["sixteen-bytes-xx"]).check_devices().is_err());
        let names: Vec<String> = (0..7).map(|i| format!("b{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            with_blocks(&names).check_devices(),
            Err(DeviceError::TooMany(9))
        );
        assert!(
            config(vec![net("service")], vec![kv("data")])
                .check_devices()
                .is_ok()
        );
        let same = config(vec![net("data")], vec![kv("data")]).check_devices();
        assert_eq!(same, Err(SpecError::Repeated("data".into()).into()));
        let error = crate::Error::from(same.unwrap_err());
        assert_eq!(error.exit_code(), 117, "{error}");
        assert!(config(vec![net("")], vec![]).check_devices().is_err());
        assert!(
            config(vec![net("sixteen-bytes-xx")], vec![])
                .check_devices()
                .is_err()
        );
        let nets = (0..9).map(|i| net(&format!("n{i}"))).collect();
        assert_eq!(
            config(nets, vec![]).check_devices(),
            Err(DeviceError::TooMany(9))
        );
    }
}
