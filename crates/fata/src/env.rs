//! What an app receives: its arguments and the devices the host configured.
//!
//! An app declares the options it takes ([`Opt`]) in `#[fata::main(options = [...])]`, together
//! with those of the libraries that read its arguments (`fata_net::OPTIONS`). [`Env::new`] checks
//! the arguments against them before `main` runs, so an unknown option, a single-valued option
//! given twice, a missing value or a stray word ends the program with the app's usage instead of
//! being ignored. Reading an option the app does not declare is a bug in the app and panics.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::str::FromStr;

use fata_platform::{Device, HostSockets, Kv, Net};

use crate::block::BlockDevice;

use crate::console::{SysClock, SysConsole, SysRandom};
use crate::error::Error;

/// One option an app takes: its name, whether it takes a value and may be repeated, and a line
/// of help for the usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    name: &'static str,
    value: Option<&'static str>,
    repeatable: bool,
    help: &'static str,
}

impl Opt {
    /// A flag, present or not (`--no-memo`); read with [`Env::flag`].
    pub const fn flag(name: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            value: None,
            repeatable: false,
            help,
        }
    }

    /// An option with one value (`--port N`, `--port=N`), given at most once; read with
    /// [`Env::arg`]. `value` names the value in the usage.
    pub const fn value(name: &'static str, value: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            value: Some(value),
            repeatable: false,
            help,
        }
    }

    /// An option with a value that may be given many times (`--zone A --zone B`); read with
    /// [`Env::arg_all`].
    pub const fn repeatable(name: &'static str, value: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            value: Some(value),
            repeatable: true,
            help,
        }
    }

    /// The option's name, with its dashes.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// The app's arguments and devices, handed to `main`.
pub struct Env {
    args: Vec<String>,
    /// The options given, in order: the declaration and the value (`None` for a flag).
    given: Vec<(&'static Opt, Option<String>)>,
    program: &'static str,
    options: &'static [&'static [Opt]],
    devices: Vec<Device>,
}

impl Env {
    /// An environment for the program `program` taking `options`, with these arguments (program
    /// name excluded) and devices. Fails with a message and the usage when the arguments do not
    /// fit the options; panics when an option is declared twice.
    pub fn new(
        program: &'static str,
        options: &'static [&'static [Opt]],
        args: Vec<String>,
        devices: Vec<Device>,
    ) -> Result<Env, Error> {
        let declared = || options.iter().flat_map(|list| list.iter());
        for (at, opt) in declared().enumerate() {
            if declared().skip(at + 1).any(|other| other.name == opt.name) {
                panic!("option {} is declared twice", opt.name);
            }
        }
        let mut env = Env {
            args: Vec::new(),
            given: Vec::new(),
            program,
            options,
            devices,
        };
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let (name, inline) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word.as_str(), None),
            };
            if !name.starts_with("--") || name == "--" {
                return Err(env.usage_error(format!(
                    "unexpected argument {word:?}: every argument is an option (--NAME)"
                )));
            }
            let Some(opt) = declared().find(|opt| opt.name == name) else {
                return Err(env.usage_error(format!("unknown option {name}")));
            };
            let value = match (opt.value, inline) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(env.usage_error(format!("{name} takes no value")));
                }
                (Some(_), Some(value)) => Some(String::from(value)),
                (Some(placeholder), None) => match words.next() {
                    Some(value) if !value.starts_with("--") => Some(value.clone()),
                    _ => {
                        return Err(
                            env.usage_error(format!("{name} needs a value: {name} {placeholder}"))
                        );
                    }
                },
            };
            if !opt.repeatable && env.given.iter().any(|(given, _)| given.name == name) {
                return Err(env.usage_error(format!("{name} is given more than once")));
            }
            env.given.push((opt, value));
        }
        env.args = args;
        Ok(env)
    }

    /// The arguments given after `--` on the `fata run` command line.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The value of option `name` (`--count 4` or `--count=4`), parsed; `Ok(None)` when absent.
    /// Panics unless `name` is declared with [`Opt::value`].
    #[track_caller]
    pub fn arg<T: FromStr>(&self, name: &str) -> Result<Option<T>, Error> {
        self.declared(name, "Opt::value", |opt| {
            opt.value.is_some() && !opt.repeatable
        });
        self.values(name)
            .next()
            .map(|value| self.parse(name, value))
            .transpose()
    }

    /// Every value of the repeatable option `name`, parsed, in the order given (empty when
    /// absent). Panics unless `name` is declared with [`Opt::repeatable`].
    #[track_caller]
    pub fn arg_all<T: FromStr>(&self, name: &str) -> Result<Vec<T>, Error> {
        self.declared(name, "Opt::repeatable", |opt| opt.repeatable);
        self.values(name)
            .map(|value| self.parse(name, value))
            .collect()
    }

    /// Whether the flag `name` is present. Panics unless `name` is declared with [`Opt::flag`].
    #[track_caller]
    pub fn flag(&self, name: &str) -> bool {
        self.declared(name, "Opt::flag", |opt| opt.value.is_none());
        self.given.iter().any(|(opt, _)| opt.name == name)
    }

    /// The usage: the program's options, one a line with its help (`--name VALUE...` for a
    /// repeatable one).
    pub fn usage(&self) -> String {
        usage(self.program, self.options)
    }

    /// The usage of `program`, when `args` ask for it (`--help` or `-h`, which an app does not
    /// declare itself): what start-up prints before it ends the program with status 0.
    pub fn help(
        program: &'static str,
        options: &'static [&'static [Opt]],
        args: &[String],
    ) -> Option<String> {
        let declares = options
            .iter()
            .flat_map(|list| list.iter())
            .any(|o| o.name == "--help");
        (!declares && args.iter().any(|a| a == "--help" || a == "-h"))
            .then(|| usage(program, options))
    }

    /// Panics, at the app's line, unless `name` is declared in the way `fits` accepts.
    #[track_caller]
    fn declared(&self, name: &str, constructor: &str, fits: impl Fn(&Opt) -> bool) {
        match self
            .options
            .iter()
            .flat_map(|list| list.iter())
            .find(|opt| opt.name == name)
        {
            Some(opt) if fits(opt) => {}
            Some(opt) => panic!(
                "option {name} is read with the wrong call: it is declared as {opt:?}, \
                 and this call reads an option declared with {constructor}"
            ),
            None => panic!(
                "option {name} is read but not declared: add fata::{constructor}({name:?}, ...) \
                 to #[fata::main(options = [...])] (with the options of the libraries that \
                 read arguments, such as fata_net::OPTIONS)"
            ),
        }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.given
            .iter()
            .filter(move |(opt, _)| opt.name == name)
            .filter_map(|(_, value)| value.as_deref())
    }

    fn parse<T: FromStr>(&self, name: &str, value: &str) -> Result<T, Error> {
        value
            .parse()
            .map_err(|_| self.usage_error(format!("{name}: cannot understand the value {value:?}")))
    }

    /// An error that says `what` is wrong with the arguments, followed by the usage.
    fn usage_error(&self, what: String) -> Error {
        Error::msg(format!("{what}\n{}", self.usage()))
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
    pub fn take_block(&mut self, name: &str) -> Result<BlockDevice, Error> {
        self.take(name, "block device", "--block", |d| match d {
            Device::Block(n, block) if n == name => Ok(BlockDevice::new(block)),
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

/// The usage of `program` with `options` (see [`Env::usage`]).
fn usage(program: &str, options: &[&[Opt]]) -> String {
    let declared: Vec<&Opt> = options.iter().flat_map(|list| list.iter()).collect();
    let spell = |opt: &Opt| match opt.value {
        Some(value) if opt.repeatable => format!("{} {value}...", opt.name),
        Some(value) => format!("{} {value}", opt.name),
        None => String::from(opt.name),
    };
    let width = declared
        .iter()
        .map(|opt| spell(opt).len())
        .max()
        .unwrap_or(0);
    let mut usage = format!("usage: {program}");
    if declared.is_empty() {
        usage.push_str(" (it takes no options)");
    } else {
        usage.push_str(" [OPTIONS]");
    }
    for opt in declared {
        let _ = write!(usage, "\n  {:width$}  {}", spell(opt), opt.help);
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const APP: &[Opt] = &[
        Opt::value("--count", "N", "how many lines"),
        Opt::value("--interval-ms", "MS", "the pause between lines"),
        Opt::flag("--verbose", "say more"),
        Opt::repeatable("--zone", "FILE", "a zone to serve"),
    ];
    const LIBRARY: &[Opt] = &[Opt::value("--ipv4", "ADDR/PREFIX", "the address")];
    const OPTIONS: &[&[Opt]] = &[APP, LIBRARY];

    fn env(args: &[&str]) -> Result<Env, Error> {
        Env::new(
            "test",
            OPTIONS,
            args.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
        )
    }

    fn error(args: &[&str]) -> String {
        env(args)
            .err()
            .expect("the arguments are refused")
            .to_string()
    }

    #[test]
    fn help_is_the_usage_unless_the_app_takes_help_itself() {
        let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let usage = Env::help("hello", OPTIONS, &args(&["--count", "4", "--help"])).unwrap();
        assert!(usage.starts_with("usage: hello [OPTIONS]\n"), "{usage}");
        assert!(Env::help("hello", OPTIONS, &args(&["-h"])).is_some());
        assert_eq!(Env::help("hello", OPTIONS, &args(&["--count", "4"])), None);
        const OWN: &[&[Opt]] = &[&[Opt::flag("--help", "the app's own help")]];
        assert_eq!(Env::help("hello", OWN, &args(&["--help"])), None);
    }

    #[test]
    fn options_parse_in_both_spellings() {
        let e = env(&["--count", "4", "--interval-ms=10", "--verbose"]).unwrap();
        assert_eq!(e.arg::<u32>("--count").unwrap(), Some(4));
        assert_eq!(e.arg::<u64>("--interval-ms").unwrap(), Some(10));
        assert_eq!(e.arg::<u32>("--ipv4").unwrap(), None);
        assert!(e.flag("--verbose"));
        assert_eq!(e.args().len(), 4);
        let bad = env(&["--count", "four"]).unwrap().arg::<u32>("--count");
        let message = bad.err().unwrap().to_string();
        assert!(
            message.starts_with("--count: cannot understand the value \"four\"\nusage: test"),
            "{message}"
        );
        assert!(!env(&[]).unwrap().flag("--verbose"));
    }

    #[test]
    fn a_repeatable_option_gives_every_value_in_order() {
        let e = env(&["--zone", "a", "--count", "1", "--zone=b", "--zone", "c"]).unwrap();
        assert_eq!(e.arg_all::<String>("--zone").unwrap(), ["a", "b", "c"]);
        assert!(
            env(&[])
                .unwrap()
                .arg_all::<String>("--zone")
                .unwrap()
                .is_empty()
        );
        let bad = env(&["--zone", "a"]).unwrap().arg_all::<u8>("--zone");
        assert!(bad.is_err());
    }

    #[test]
    fn an_unknown_option_is_refused_with_the_usage() {
        let message = error(&["--count", "1", "--tls-cert", "cert.pem"]);
        let mut lines = message.lines();
        assert_eq!(lines.next(), Some("unknown option --tls-cert"));
        assert_eq!(lines.next(), Some("usage: test [OPTIONS]"));
        let usage: Vec<&str> = lines.collect();
        assert_eq!(usage.len(), 5, "{message}");
        assert!(usage[0].starts_with("  --count N  "), "{message}");
        assert!(usage[3].starts_with("  --zone FILE...  "), "{message}");
        assert!(usage[4].contains("--ipv4 ADDR/PREFIX"), "{message}");
        assert!(error(&["--tls-cert=x"]).starts_with("unknown option --tls-cert\n"));
    }

    #[test]
    fn a_single_valued_option_given_twice_is_refused() {
        let message = error(&["--count", "1", "--count=2"]);
        assert!(
            message.starts_with("--count is given more than once\n"),
            "{message}"
        );
        assert!(error(&["--verbose", "--verbose"]).starts_with("--verbose is given more"));
        assert!(error(&["--ipv4", "10.0.0.2/24", "--ipv4", "10.0.0.3/24"]).contains("--ipv4"));
    }

    #[test]
    fn missing_values_stray_words_and_values_on_flags_are_refused() {
        assert!(error(&["--count"]).starts_with("--count needs a value: --count N\n"));
        assert!(error(&["--count", "--verbose"]).starts_with("--count needs a value"));
        assert!(error(&["--verbose=yes"]).starts_with("--verbose takes no value\n"));
        assert!(error(&["4"]).starts_with("unexpected argument \"4\""));
        assert!(error(&["-v"]).starts_with("unexpected argument \"-v\""));
        assert!(error(&["--"]).starts_with("unexpected argument \"--\""));
    }

    #[test]
    fn an_app_without_options_takes_no_arguments() {
        let message = Env::new(
            "bare",
            &[],
            alloc::vec!["--port".into(), "1".into()],
            Vec::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(
            message,
            "unknown option --port\nusage: bare (it takes no options)"
        );
    }

    #[test]
    #[should_panic(expected = "option --port is read but not declared")]
    fn reading_an_undeclared_option_is_a_bug_in_the_app() {
        let _ = env(&[]).unwrap().arg::<u16>("--port");
    }

    #[test]
    #[should_panic(expected = "option --zone is read with the wrong call")]
    fn reading_a_repeatable_option_as_single_is_a_bug_in_the_app() {
        let _ = env(&[]).unwrap().arg::<String>("--zone");
    }

    #[test]
    #[should_panic(expected = "option --count is declared twice")]
    fn declaring_an_option_twice_is_a_bug_in_the_app() {
        const TWICE: &[&[Opt]] = &[APP, &[Opt::flag("--count", "again")]];
        let _ = Env::new("test", TWICE, Vec::new(), Vec::new());
    }

    #[test]
    fn missing_devices_say_how_to_add_them() {
        let mut e = env(&[]).unwrap();
        let message = e.take_net("service").err().unwrap().to_string();
        assert!(message.contains("--net service="), "{message}");
    }
}
