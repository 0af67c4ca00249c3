//! What an app receives: its arguments and the devices the host configured.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::str::FromStr;

use fata_platform::{Block, Device, HostSockets, Kv, Net};

use crate::console::{SysClock, SysConsole, SysRandom};
use crate::error::Error;

/// The app's arguments and devices, handed to `main`.
pub struct Env {
    args: Vec<String>,
    devices: Vec<Device>,
}

impl Env {
    /// An environment with these arguments (program name excluded) and devices.
    pub fn new(args: Vec<String>, devices: Vec<Device>) -> Env {
        Env { args, devices }
    }

    /// The arguments given after `--` on the `fata run` command line.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The value of option `name` (`--count 4` or `--count=4`), parsed; `Ok(None)` when absent.
    pub fn arg<T: FromStr>(&self, name: &str) -> Result<Option<T>, Error> {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            let value = if arg == name {
                args.next()
                    .ok_or_else(|| Error::msg(format!("{name} needs a value")))?
            } else if let Some(value) = arg
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
            {
                value
            } else {
                continue;
            };
            return value
                .parse()
                .map(Some)
                .map_err(|_| Error::msg(format!("{name}: cannot understand the value {value:?}")));
        }
        Ok(None)
    }

    /// Whether the flag `name` is present.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|arg| arg == name)
    }

    /// The console.
    pub fn console(&self) -> SysConsole {
        SysConsole
    }

    /// The clocks.
    pub fn clock(&self) -> SysClock {
        SysClock
    }

    /// The entropy source.
    pub fn random(&self) -> SysRandom {
        SysRandom
    }

    /// Takes the network interface called `name` (`--net NAME=TAP`; the default name is `service`).
    pub fn take_net(&mut self, name: &str) -> Result<Box<dyn Net>, Error> {
        self.take(name, "network interface", "--net", |d| match d {
            Device::Net(n, net) if n == name => Ok(net),
            other => Err(other),
        })
    }

    /// Takes the block device called `name` (`--block NAME=FILE`; the default name is `storage`).
    pub fn take_block(&mut self, name: &str) -> Result<Box<dyn Block>, Error> {
        self.take(name, "block device", "--block", |d| match d {
            Device::Block(n, block) if n == name => Ok(block),
            other => Err(other),
        })
    }

    /// Takes the key-value store called `name` (`--kv NAME=DIR`; the default name is `data`).
    pub fn take_kv(&mut self, name: &str) -> Result<Box<dyn Kv>, Error> {
        self.take(name, "key-value store", "--kv", |d| match d {
            Device::Kv(n, kv) if n == name => Ok(kv),
            other => Err(other),
        })
    }

    /// Takes the host's own TCP/IP stack (unix only; `fata-net` uses it when the app has no
    /// network interface).
    pub fn take_host_sockets(&mut self) -> Result<Box<dyn HostSockets>, Error> {
        self.take_first(|d| match d {
            Device::Sockets(_, sockets) => Ok(sockets),
            other => Err(other),
        })
        .ok_or_else(|| Error::msg("this target has no host TCP/IP stack: give the app --net TAP"))
    }

    fn take<T>(
        &mut self,
        name: &str,
        kind: &str,
        option: &str,
        matches: impl Fn(Device) -> Result<T, Device>,
    ) -> Result<T, Error> {
        self.take_first(matches).ok_or_else(|| {
            Error::msg(format!(
                "no {kind} called {name:?}: give one with `fata run {option} {name}=...`"
            ))
        })
    }

    /// Removes and returns the first device `matches` accepts.
    fn take_first<T>(&mut self, matches: impl Fn(Device) -> Result<T, Device>) -> Option<T> {
        let mut found = None;
        for device in core::mem::take(&mut self.devices) {
            match found {
                None => match matches(device) {
                    Ok(taken) => found = Some(taken),
                    Err(device) => self.devices.push(device),
                },
                Some(_) => self.devices.push(device),
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn env(args: &[&str]) -> Env {
        Env::new(args.iter().map(|s| s.to_string()).collect(), Vec::new())
    }

    #[test]
    fn options_parse_in_both_spellings() {
        let e = env(&["--count", "4", "--interval-ms=10", "--verbose"]);
        assert_eq!(e.arg::<u32>("--count").unwrap(), Some(4));
        assert_eq!(e.arg::<u64>("--interval-ms").unwrap(), Some(10));
        assert_eq!(e.arg::<u32>("--missing").unwrap(), None);
        assert!(e.flag("--verbose"));
        assert!(env(&["--count", "four"]).arg::<u32>("--count").is_err());
        assert!(env(&["--count"]).arg::<u32>("--count").is_err());
    }

    #[test]
    fn missing_devices_say_how_to_add_them() {
        let mut e = env(&[]);
        let message = e.take_net("service").err().unwrap().to_string();
        assert!(message.contains("--net service="), "{message}");
    }
}
