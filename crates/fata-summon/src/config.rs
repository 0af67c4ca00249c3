//! The configuration: one TOML file naming the zone, where the daemon answers, and each service.
//!
//! ```toml
//! zone = "svc.test"            # services are NAME.svc.test
//! listen = "127.0.0.1:53"      # where DNS is answered (UDP)
//! host = "10.80.0.1"           # the host's address on every service's tap
//! ttl = 0                      # of the answers (default 0: every connection looks up again)
//!
//! [[service]]
//! name = "www"
//! snapshot = "/var/lib/fata/www"   # or image = "www.hvt", with args, mem and kv (below)
//! address = "10.80.1.2/16"         # the service's own; the host's address must be on-link
//! port = 80                        # it is ready when it accepts a TCP connection here
//! idle-timeout = 30                # seconds without a lookup or a frame (default 60)
//!
//! [[service]]
//! name = "ns1"
//! image = "dns.hvt"
//! args = ["--zone", "example.zone"]  # the app's own; the daemon adds --ipv4 ADDRESS
//! kv = ["files=zones"]               # as fata run --kv; relative paths from this file's folder
//! mem = "32M"
//! address = "10.80.1.3/16"
//! port = 53
//! start-timeout = 5                  # seconds before its lookups get SERVFAIL (default 5)
//! tap = "ns1"                        # default fsumN, N its place in the file from 0
//! mac = "02:00:00:00:00:07"          # default 02:fa and the address's four bytes
//! block = ["storage=disk.img:ro"]    # as fata run --block
//! ```
//!
//! Every mistake is an error that names its line: unknown keys, a missing image, a name or an
//! address used twice, a host address the service cannot reach.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fata_dns::Name;
use serde::Deserialize;
use toml::Spanned;

/// The daemon's whole configuration, checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// The zone's apex, as written (without a final dot).
    pub zone: String,
    /// Where DNS is answered.
    pub listen: SocketAddr,
    /// The host's address on every service's tap.
    pub host: Ipv4Addr,
    /// The TTL of the answers, in seconds.
    pub ttl: u32,
    /// The services, in the file's order.
    pub services: Vec<Service>,
    /// The configuration's directory: relative paths in it, `block`, `kv` and `args` included,
    /// are taken from there (monitors start in it).
    pub base: PathBuf,
}

/// What a service starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An hvt image, booted anew (`fata run`), with the app's arguments.
    Image {
        /// The image.
        path: PathBuf,
        /// The app's arguments; the daemon adds `--ipv4 ADDRESS`.
        args: Vec<String>,
        /// Guest memory, as `fata run --mem` takes it.
        mem: Option<String>,
        /// Key-value stores, as `fata run --kv` takes them (a snapshot carries its own).
        kv: Vec<String>,
        /// The guest's MAC address, the same at every boot, so that the host's neighbour entry
        /// from the last run still holds (a snapshot keeps the MAC it had).
        mac: [u8; 6],
    },
    /// A snapshot directory (`fata snapshot NAME -o DIR`), restored (`fata restore`); the
    /// service's address is the one it had when the snapshot was taken.
    Snapshot(PathBuf),
}

/// One service of the zone.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its label in the zone: NAME.ZONE.
    pub name: String,
    /// What it starts from.
    pub source: Source,
    /// Its IPv4 address and prefix length.
    pub address: Ipv4Addr,
    /// The prefix length of its address.
    pub prefix: u8,
    /// The TCP port that answers once it is ready.
    pub port: u16,
    /// Its tap (default `fsumN`, N its place in the file from 0).
    pub tap: String,
    /// Block devices, as `fata run --block` and `fata restore --block` take them.
    pub block: Vec<String>,
    /// How long it may see no lookup and no frame before it is stopped.
    pub idle_timeout: Duration,
    /// How long it may take to start before its lookups are answered SERVFAIL.
    pub start_timeout: Duration,
}

/// A configuration refused: the line (from 1) where the mistake is, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The line of the mistake.
    pub line: Option<usize>,
    /// What is wrong, and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    zone: Spanned<String>,
    listen: Spanned<String>,
    host: Spanned<String>,
    #[serde(default)]
    ttl: u32,
    #[serde(default, rename = "service")]
    services: Vec<Spanned<RawService>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawService {
    name: Spanned<String>,
    image: Option<Spanned<String>>,
    snapshot: Option<Spanned<String>>,
    address: Spanned<String>,
    port: u16,
    tap: Option<Spanned<String>>,
    mem: Option<Spanned<String>>,
    args: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    block: Vec<String>,
    kv: Option<Spanned<Vec<String>>>,
    mac: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<f64>>,
    start_timeout: Option<Spanned<f64>>,
}

/// The default idle timeout, in seconds.
const IDLE_TIMEOUT_DEFAULT: f64 = 60.0;
/// The default start timeout, in seconds.
const START_TIMEOUT_DEFAULT: f64 = 5.0;

/// Reads and checks the configuration at `path`; relative paths in it are taken from the file's
/// directory. The error names the file and the line.
pub fn load(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| match e.line {
        Some(line) => format!("{}:{line}: {}", path.display(), e.message),
        None => format!("{}: {}", path.display(), e.message),
    })
}

/// Checks the configuration `text`, with relative paths taken from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
    // The line a span starts on: one more than the line breaks before it.
    let line_at = |span: Range<usize>| {
        let before = &text.as_bytes()[..span.start.min(text.len())];
        before.iter().filter(|&&b| b == b'\n').count() + 1
    };
    let fail = |span: Range<usize>, message: String| ConfigError {
        line: Some(line_at(span)),
        message,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
        line: e.span().map(line_at),
        message: e.message().trim_end().to_string(),
    })?;
    let zone = raw.zone.get_ref().trim_end_matches('.').to_string();
    Name::from_ascii(&zone).map_err(|e| {
        fail(
            raw.zone.span(),
            format!("zone {zone:?} is not a domain name ({e})"),
        )
    })?;
    let listen: SocketAddr = raw.listen.get_ref().parse().map_err(|_| {
        fail(
            raw.listen.span(),
            format!(
                "listen {:?} is not an address and port, such as 127.0.0.1:53",
                raw.listen.get_ref()
            ),
        )
    })?;
    let host: Ipv4Addr = raw.host.get_ref().parse().map_err(|_| {
        fail(
            raw.host.span(),
            format!(
                "host {:?} is not an IPv4 address, such as 10.80.0.1",
                raw.host.get_ref()
            ),
        )
    })?;
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut taps: HashMap<String, usize> = HashMap::new();
    let mut services = Vec::with_capacity(raw.services.len());
    for (index, spanned) in raw.services.iter().enumerate() {
        let line = line_at(spanned.span());
        let at = |span: Range<usize>| line_at(span);
        let raw = spanned.get_ref();
        let name = raw.name.get_ref().to_ascii_lowercase();
        if !is_label(&name) {
            return Err(fail(
                raw.name.span(),
                format!(
                    "service name {name:?} is not one DNS label (1 to 63 letters, digits and \
                     hyphens, not starting or ending with a hyphen)"
                ),
            ));
        }
        if let Some(first) = names.insert(name.clone(), at(raw.name.span())) {
            return Err(fail(
                raw.name.span(),
                format!("service {name:?} is named twice (first on line {first})"),
            ));
        }
        let (address, prefix) = parse_cidr(raw.address.get_ref()).ok_or_else(|| {
            fail(
                raw.address.span(),
                format!(
                    "address {:?} is not ADDR/PREFIX, such as 10.80.1.2/16",
                    raw.address.get_ref()
                ),
            )
        })?;
        if address == host || !same_subnet(address, host, prefix) {
            return Err(fail(
                raw.address.span(),
                format!(
                    "address {}/{prefix} cannot reach the host's {host} on its link: give the \
                     service an address of its own in the host's subnet",
                    address
                ),
            ));
        }
        if let Some(first) = addresses.insert(address, at(raw.address.span())) {
            return Err(fail(
                raw.address.span(),
                format!("address {address} is given twice (first on line {first})"),
            ));
        }
        let tap = match &raw.tap {
            Some(tap) => {
                let name = tap.get_ref();
                if name.is_empty() || name.len() >= 16 || name.contains(['/', ' ', '\0']) {
                    return Err(fail(
                        tap.span(),
                        format!("tap {name:?} is not an interface name of 1 to 15 bytes"),
                    ));
                }
                name.clone()
            }
            None => format!("fsum{index}"),
        };
        if let Some(first) = taps.insert(tap.clone(), line) {
            return Err(ConfigError {
                line: Some(line),
                message: format!("tap {tap} is used twice (first on line {first})"),
            });
        }
        let resolve = |path: &str| base.join(path);
        let source = match (&raw.image, &raw.snapshot) {
            (Some(image), None) => {
                let mac = match &raw.mac {
                    Some(mac) => parse_mac(mac.get_ref()).ok_or_else(|| {
                        fail(
                            mac.span(),
                            format!(
                                "mac {:?} is not a MAC address like 02:00:00:00:00:01",
                                mac.get_ref()
                            ),
                        )
                    })?,
                    None => {
                        let [a, b, c, d] = address.octets();
                        [0x02, 0xfa, a, b, c, d]
                    }
                };
                let path = resolve(image.get_ref());
                if !path.is_file() {
                    return Err(fail(
                        image.span(),
                        format!(
                            "image {} does not exist (`fata build --target hvt APP` makes one)",
                            path.display()
                        ),
                    ));
                }
                Source::Image {
                    path,
                    args: raw
                        .args
                        .as_ref()
                        .map_or_else(Vec::new, |a| a.get_ref().clone()),
                    mem: raw.mem.as_ref().map(|m| m.get_ref().clone()),
                    kv: raw
                        .kv
                        .as_ref()
                        .map_or_else(Vec::new, |k| k.get_ref().clone()),
                    mac,
                }
            }
            (None, Some(snapshot)) => {
                let path = resolve(snapshot.get_ref());
                if !path.join("state").is_file() {
                    return Err(fail(
                        snapshot.span(),
                        format!(
                            "snapshot {} has no state file (`fata snapshot NAME -o DIR` makes one)",
                            path.display()
                        ),
                    ));
                }
                let extra = [
                    (
                        "args",
                        raw.args.is_some(),
                        raw.args.as_ref().map_or(0..0, |a| a.span()),
                    ),
                    (
                        "mem",
                        raw.mem.is_some(),
                        raw.mem.as_ref().map_or(0..0, |m| m.span()),
                    ),
                    (
                        "kv",
                        raw.kv.is_some(),
                        raw.kv.as_ref().map_or(0..0, |k| k.span()),
                    ),
                    (
                        "mac",
                        raw.mac.is_some(),
                        raw.mac.as_ref().map_or(0..0, |m| m.span()),
                    ),
                ];
                if let Some((key, _, span)) = extra.into_iter().find(|(_, given, _)| *given) {
                    return Err(fail(
                        span,
                        format!(
                            "service {name:?}: {key} is for images; a snapshot keeps what it had"
                        ),
                    ));
                }
                Source::Snapshot(path)
            }
            (Some(_), Some(snapshot)) => {
                return Err(fail(
                    snapshot.span(),
                    format!("service {name:?} names both an image and a snapshot: keep one"),
                ));
            }
            (None, None) => {
                return Err(ConfigError {
                    line: Some(line),
                    message: format!(
                        "service {name:?} needs an image = \"...\" or a snapshot = \"...\""
                    ),
                });
            }
        };
        let seconds = |value: &Option<Spanned<f64>>, default: f64, key: &str| {
            let Some(value) = value else {
                return Ok(Duration::from_secs_f64(default));
            };
            let secs = *value.get_ref();
            if secs.is_finite() && secs > 0.0 && secs < 1e9 {
                Ok(Duration::from_secs_f64(secs))
            } else {
                Err(fail(
                    value.span(),
                    format!("{key} {secs} is not a number of seconds above 0"),
                ))
            }
        };
        services.push(Service {
            name,
            source,
            address,
            prefix,
            port: raw.port,
            tap,
            block: raw.block.clone(),
            idle_timeout: seconds(&raw.idle_timeout, IDLE_TIMEOUT_DEFAULT, "idle-timeout")?,
            start_timeout: seconds(&raw.start_timeout, START_TIMEOUT_DEFAULT, "start-timeout")?,
        });
    }
    Ok(Config {
        zone,
        listen,
        host,
        ttl: raw.ttl,
        services,
        base: base.to_path_buf(),
    })
}

/// Whether `name` is one DNS label a host name may have.
fn is_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A unicast MAC address written as six hexadecimal pairs separated by colons.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    (parts.next().is_none() && mac[0] & 1 == 0).then_some(mac)
}

/// `ADDR/PREFIX`, with a prefix of 1 to 32.
fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (1..=32)
        .contains(&prefix)
        .then_some((address.parse().ok()?, prefix))
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX << (32 - u32::from(prefix));
    u32::from(a) & mask == u32::from(b) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_image(body: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("www.hvt"), b"image").unwrap();
        let result = parse(body, dir.path());
        (dir, result)
    }

    const HEAD: &str = "zone = \"svc.test.\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.80.0.1\"\n";

    #[test]
    fn a_good_configuration_has_defaults_and_resolved_paths() {
        let text = format!(
            "{HEAD}[[service]]\nname = \"WWW\"\nimage = \"www.hvt\"\naddress = \"10.80.1.2/16\"\n\
             port = 80\nargs = [\"--verbose\"]\nmem = \"64M\"\n\n[[service]]\nname = \"b\"\n\
             image = \"www.hvt\"\naddress = \"10.80.1.3/16\"\nport = 53\ntap = \"bt\"\n\
             idle-timeout = 0.5\n"
        );
        let (dir, config) = with_image(&text);
        let config = config.unwrap();
        assert_eq!(config.zone, "svc.test");
        assert_eq!(config.ttl, 0);
        let www = &config.services[0];
        assert_eq!(www.name, "www");
        assert_eq!(www.tap, "fsum0");
        assert_eq!(www.idle_timeout, Duration::from_secs(60));
        assert_eq!(
            www.source,
            Source::Image {
                path: dir.path().join("www.hvt"),
                args: vec!["--verbose".into()],
                mem: Some("64M".into()),
                kv: Vec::new(),
                mac: [0x02, 0xfa, 10, 80, 1, 2],
            }
        );
        assert_eq!(config.services[1].tap, "bt");
        assert_eq!(config.services[1].idle_timeout, Duration::from_millis(500));
    }

    #[test]
    fn mistakes_name_their_line() {
        let service = |extra: &str| {
            format!(
                "{HEAD}[[service]]\nname = \"www\"\nimage = \"www.hvt\"\n\
                 address = \"10.80.1.2/16\"\nport = 80\n{extra}"
            )
        };
        let cases = [
            (service("colour = \"red\"\n"), 9, "unknown field `colour`"),
            (
                service(
                    "[[service]]\nname = \"www\"\nimage = \"www.hvt\"\naddress = \"10.80.1.3/16\"\nport = 1\n",
                ),
                10,
                "named twice (first on line 5)",
            ),
            (
                service(
                    "[[service]]\nname = \"b\"\nimage = \"www.hvt\"\naddress = \"10.80.1.2/16\"\nport = 1\n",
                ),
                12,
                "given twice (first on line 7)",
            ),
            (
                HEAD.to_string()
                    + "[[service]]\nname = \"www\"\nimage = \"nope.hvt\"\naddress = \"10.80.1.2/16\"\nport = 80\n",
                6,
                "does not exist",
            ),
            (
                HEAD.to_string()
                    + "[[service]]\nname = \"www\"\nimage = \"www.hvt\"\naddress = \"10.9.1.2/16\"\nport = 80\n",
                7,
                "cannot reach the host's 10.80.0.1",
            ),
            (
                HEAD.to_string()
                    + "[[service]]\nname = \"w_w\"\nimage = \"www.hvt\"\naddress = \"10.80.1.2/16\"\nport = 80\n",
                5,
                "not one DNS label",
            ),
            (
                HEAD.to_string()
                    + "[[service]]\nname = \"www\"\naddress = \"10.80.1.2/16\"\nport = 80\n",
                4,
                "needs an image",
            ),
            (service("idle-timeout = -1\n"), 9, "above 0"),
            (
                service("mac = \"01:00:00:00:00:01\"\n"),
                9,
                "not a MAC address",
            ),
            (
                "zone = \"svc.test\"\nlisten = \"localhost\"\nhost = \"10.80.0.1\"\n".into(),
                2,
                "not an address and port",
            ),
            (
                "zone = \"svc.test\"\nlisten = \n".into(),
                2,
                "string values",
            ),
        ];
        for (text, line, words) in cases {
            let (_dir, result) = with_image(&text);
            let error = result.expect_err(&text);
            assert!(error.message.contains(words), "{error} for\n{text}");
            assert_eq!(error.line, Some(line), "{error} for\n{text}");
        }
    }
}
