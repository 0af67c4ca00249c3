//! The devices and settings an app declares, and the bytes that carry them in its image.
//!
//! An app lists the devices it takes in its `Cargo.toml` (`[package.metadata.fata.devices]`,
//! read by `fata-build`); `fata build` writes them, with the app's settings, into the image as the
//! manifest note (`fata_hvt_abi::NOTE_TYPE_MANIFEST`, whose layout that crate documents), and
//! `fata run` reads them back before it starts the app and [`Manifest::check`]s the command line
//! against them. The same note is in unix executables, so both targets refuse the same mistakes.
//!
//! [`Manifest::parse`] reads bytes from a file that may be anything: it checks every field, never
//! panics and allocates only the (at most [`MANIFEST_DEVICES_MAX`]) names; the fuzz target
//! `fuzz/fuzz_targets/manifest.rs` holds it to that.

use core::fmt;

use fata_hvt_abi::{
    DeviceKind, MANIFEST_DEVICES_MAX, MANIFEST_OPTIONAL, MANIFEST_VERSION, ManifestDevice,
    ManifestHeader, NOTE_NAME, NOTE_TYPE_MANIFEST, manifest_len,
};
use thiserror::Error;

use crate::{DEFAULT_BLOCK, DEFAULT_KV, DEFAULT_NET, SpecError, check_name, check_unique};

/// A kind of device an app can declare and a command line can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A network interface (`--net`).
    Net,
    /// A block device (`--block`).
    Block,
    /// A read-only key-value store (`--kv`).
    Kv,
}

impl Kind {
    /// Every kind, in the order messages list them.
    pub const ALL: [Kind; 3] = [Kind::Net, Kind::Block, Kind::Kv];

    /// The key that lists devices of this kind under `[package.metadata.fata.devices]`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Block => "block",
            Kind::Kv => "kv",
        }
    }

    /// The `fata run` option that gives a device of this kind.
    pub fn option(self) -> &'static str {
        match self {
            Kind::Net => "--net",
            Kind::Block => "--block",
            Kind::Kv => "--kv",
        }
    }

    /// What backs a device of this kind on the command line, as its help writes it.
    pub fn value(self) -> &'static str {
        match self {
            Kind::Net => "TAP",
            Kind::Block => "FILE",
            Kind::Kv => "DIR",
        }
    }

    /// The name a command line gives a device of this kind that it does not name.
    pub fn default_name(self) -> &'static str {
        match self {
            Kind::Net => DEFAULT_NET,
            Kind::Block => DEFAULT_BLOCK,
            Kind::Kv => DEFAULT_KV,
        }
    }

    /// The kind's number in the ABI (`fata_hvt_abi::DeviceKind`).
    pub fn number(self) -> u32 {
        (match self {
            Kind::Net => DeviceKind::Net,
            Kind::Block => DeviceKind::Block,
            Kind::Kv => DeviceKind::Kv,
        }) as u32
    }

    /// The kind with ABI number `number`, if an app can declare it.
    pub fn from_number(number: u32) -> Option<Kind> {
        match DeviceKind::from_u32(number)? {
            DeviceKind::Net => Some(Kind::Net),
            DeviceKind::Block => Some(Kind::Block),
            DeviceKind::Kv => Some(Kind::Kv),
            DeviceKind::None => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Net => "network interface",
            Kind::Block => "block device",
            Kind::Kv => "key-value store",
        })
    }
}

/// A device by kind and name: one an app declares, or one a command line gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device {
    /// What kind of device it is.
    pub kind: Kind,
    /// The name the app takes it by.
    pub name: String,
}

impl Device {
    /// A device of `kind` named `name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> Device {
        Device {
            kind,
            name: name.into(),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} {:?}", self.kind, self.name)
    }
}

/// Why a manifest cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// Shorter than its header.
    #[error("the manifest is {0} bytes, shorter than its 16-byte header")]
    Truncated(usize),
    /// A layout this reader does not know.
    #[error(
        "the manifest has version {0}, this fata reads version {MANIFEST_VERSION}: build the \
         image with this Fata version"
    )]
    Version(u32),
    /// More devices than an app may have.
    #[error("{0} devices are declared, more than the {MANIFEST_DEVICES_MAX} an app may have")]
    TooMany(u64),
    /// The length does not match the device count.
    #[error("the manifest is {len} bytes, but {devices} devices take {expected}")]
    Length {
        /// The descriptor's length.
        len: usize,
        /// The device count it claims.
        devices: usize,
        /// The length that count needs.
        expected: usize,
    },
    /// A device of no kind an app can declare.
    #[error("device {index} has kind {kind}, which is not net (1), block (2) or kv (3)")]
    Kind {
        /// The device's position.
        index: usize,
        /// Its kind number.
        kind: u32,
    },
    /// Flags this reader does not know.
    #[error("device {0} has flags this fata does not know: build the image with this Fata version")]
    Reserved(usize),
    /// An optional device that is not declared.
    #[error("{0:?} is named optional but not declared: list it under net, block or kv too")]
    UnknownOptional(String),
    /// A name that is not NUL-padded UTF-8.
    #[error("device {0}'s name is not UTF-8 padded with NULs")]
    NameBytes(usize),
    /// A name that is unusable or repeated.
    #[error(transparent)]
    Name(#[from] SpecError),
}

/// The devices an app declares and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    devices: Vec<Device>,
    /// The names of the declared devices the app can run without.
    optional: Vec<String>,
    coalesce_us: u64,
}

impl Manifest {
    /// A manifest declaring `devices`, each with its own usable name (devices of every kind
    /// share one namespace), at most [`MANIFEST_DEVICES_MAX`] of them, and the coalescing interval
    /// `coalesce_us` (0: none).
    pub fn new(devices: Vec<Device>, coalesce_us: u64) -> Result<Manifest, ManifestError> {
        if devices.len() > MANIFEST_DEVICES_MAX {
            return Err(ManifestError::TooMany(devices.len() as u64));
        }
        check_unique(devices.iter().map(|d| d.name.as_str()))?;
        Ok(Manifest {
            devices,
            optional: Vec::new(),
            coalesce_us,
        })
    }

    /// The same manifest, with the declared devices called `names` made optional: `check` does
    /// not require them.
    pub fn with_optional<S: Into<String>>(
        mut self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<Manifest, ManifestError> {
        for name in names {
            let name = name.into();
            if !self.devices.iter().any(|d| d.name == name) {
                return Err(ManifestError::UnknownOptional(name));
            }
            if !self.optional.contains(&name) {
                self.optional.push(name);
            }
        }
        Ok(self)
    }

    /// Whether the app runs without `device`.
    pub fn is_optional(&self, device: &Device) -> bool {
        self.optional.contains(&device.name)
    }

    /// The declared devices, in the order the app lists them.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// The app's coalescing interval in microseconds (0: wake it at once for every packet).
    pub fn coalesce_us(&self) -> u64 {
        self.coalesce_us
    }

    /// The note's descriptor: the layout `fata_hvt_abi::NOTE_TYPE_MANIFEST` documents.
    pub fn to_descriptor(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(manifest_len(self.devices.len()));
        bytes.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(self.devices.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&self.coalesce_us.to_le_bytes());
        for device in &self.devices {
            bytes.extend_from_slice(&device.kind.number().to_le_bytes());
            let flags = if self.is_optional(device) {
                MANIFEST_OPTIONAL
            } else {
                0
            };
            bytes.extend_from_slice(&flags.to_le_bytes());
            let mut name = [0u8; NAME_FIELD];
            // `new` checked the name: at most NAME_MAX (15) bytes, so a NUL always follows it.
            name[..device.name.len()].copy_from_slice(device.name.as_bytes());
            bytes.extend_from_slice(&name);
        }
        bytes
    }

    /// The whole ELF note, as it sits in `.note.fata`: `namesz`, `descsz`, type
    /// `NOTE_TYPE_MANIFEST`, the name `Fata` NUL-padded to 8 bytes, then the descriptor (a
    /// multiple of 8 bytes, so the note needs no padding after it).
    pub fn to_note(&self) -> Vec<u8> {
        let descriptor = self.to_descriptor();
        let mut note = Vec::with_capacity(20 + descriptor.len());
        note.extend_from_slice(&(NOTE_NAME.len() as u32).to_le_bytes());
        note.extend_from_slice(&(descriptor.len() as u32).to_le_bytes());
        note.extend_from_slice(&NOTE_TYPE_MANIFEST.to_le_bytes());
        let mut name = [0u8; 8];
        name[..NOTE_NAME.len()].copy_from_slice(&NOTE_NAME);
        note.extend_from_slice(&name);
        note.extend_from_slice(&descriptor);
        note
    }

    /// Reads a note's descriptor, checking every field: its version, its length against its
    /// device count, each kind, reserved field and name, and that no two names are the same.
    pub fn parse(descriptor: &[u8]) -> Result<Manifest, ManifestError> {
        let word = |at: usize| -> Option<u32> {
            let bytes = descriptor.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes(bytes.try_into().ok()?))
        };
        let header = size_of::<ManifestHeader>();
        let (Some(version), Some(count), Some(low), Some(high)) =
            (word(0), word(4), word(8), word(12))
        else {
            return Err(ManifestError::Truncated(descriptor.len()));
        };
        if version != MANIFEST_VERSION {
            return Err(ManifestError::Version(version));
        }
        let count = count as usize;
        if count > MANIFEST_DEVICES_MAX {
            return Err(ManifestError::TooMany(count as u64));
        }
        let expected = manifest_len(count);
        if descriptor.len() != expected {
            return Err(ManifestError::Length {
                len: descriptor.len(),
                devices: count,
                expected,
            });
        }
        let mut devices = Vec::with_capacity(count);
        let mut optional = Vec::new();
        for (index, entry) in descriptor[header..]
            .chunks_exact(size_of::<ManifestDevice>())
            .enumerate()
        {
            let (kind, rest) = entry.split_at(4);
            let (flags, name) = rest.split_at(4);
            let kind = u32::from_le_bytes(kind.try_into().unwrap_or_default());
            let kind = Kind::from_number(kind).ok_or(ManifestError::Kind { index, kind })?;
            let flags = u32::from_le_bytes(flags.try_into().unwrap_or_default());
            if flags & !MANIFEST_OPTIONAL != 0 {
                return Err(ManifestError::Reserved(index));
            }
            let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            let (text, padding) = name.split_at(len);
            if padding.iter().any(|&b| b != 0) {
                return Err(ManifestError::NameBytes(index));
            }
            let text = core::str::from_utf8(text).map_err(|_| ManifestError::NameBytes(index))?;
            check_name(text)?;
            if flags & MANIFEST_OPTIONAL != 0 {
                optional.push(String::from(text));
            }
            devices.push(Device::new(kind, text));
        }
        let coalesce_us = u64::from(low) | u64::from(high) << 32;
        Manifest::new(devices, coalesce_us)?.with_optional(optional)
    }

    /// Checks the devices a command line gives against the declared ones: every declared device
    /// must be given (unless it is optional) and every given one declared, with the same kind and
    /// name.
    ///
    /// `host_sockets` says the target serves an app whose network interface is not given with the
    /// host's own sockets (unix, through `fata-net`), so there a declared network interface may be
    /// left out.
    pub fn check(&self, given: &[Device], host_sockets: bool) -> Result<(), Mismatch> {
        let missing: Vec<Device> = self
            .devices
            .iter()
            .filter(|d| {
                let stood_in = host_sockets && d.kind == Kind::Net;
                !given.contains(d) && !stood_in && !self.is_optional(d)
            })
            .cloned()
            .collect();
        let undeclared: Vec<Device> = given
            .iter()
            .filter(|d| !self.devices.contains(d))
            .cloned()
            .collect();
        if missing.is_empty() && undeclared.is_empty() {
            return Ok(());
        }
        Err(Mismatch {
            missing,
            undeclared,
            declared: self.devices.clone(),
        })
    }
}

/// The bytes of a name in a [`ManifestDevice`].
const NAME_FIELD: usize = size_of::<ManifestDevice>() - core::mem::offset_of!(ManifestDevice, name);

/// Devices a command line leaves out or gives beyond what the app declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Declared but not given.
    pub missing: Vec<Device>,
    /// Given but not declared.
    pub undeclared: Vec<Device>,
    /// What the app declares, for the message.
    pub declared: Vec<Device>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            let options: Vec<String> = self
                .missing
                .iter()
                .map(|d| format!("{} {}={}", d.kind.option(), d.name, d.kind.value()))
                .collect();
            write!(
                f,
                "the app takes {}, not given: give {} with {}",
                list(&self.missing),
                if self.missing.len() == 1 {
                    "it"
                } else {
                    "them"
                },
                options.join(" ")
            )?;
        }
        if !self.undeclared.is_empty() {
            if !self.missing.is_empty() {
                f.write_str("; and ")?;
            }
            let declared = if self.declared.is_empty() {
                "no devices".to_string()
            } else {
                list(&self.declared)
            };
            let mut declarations: Vec<String> = Vec::new();
            for kind in Kind::ALL {
                let names: Vec<String> = self
                    .undeclared
                    .iter()
                    .filter(|d| d.kind == kind)
                    .map(|d| format!("{:?}", d.name))
                    .collect();
                if !names.is_empty() {
                    declarations.push(format!("{} = [{}]", kind.key(), names.join(", ")));
                }
            }
            write!(
                f,
                "the app does not take {} (it declares {declared}): leave {} out, or declare {} \
                 in the app's Cargo.toml ([package.metadata.fata.devices] {}) and rebuild it",
                list(&self.undeclared),
                if self.undeclared.len() == 1 {
                    "it"
                } else {
                    "them"
                },
                if self.undeclared.len() == 1 {
                    "it"
                } else {
                    "them"
                },
                declarations.join(", "),
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// `the A "x"`, `the A "x" and the B "y"`, `the A "x", the B "y" and the C "z"`.
fn list(devices: &[Device]) -> String {
    let items: Vec<String> = devices.iter().map(Device::to_string).collect();
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> Manifest {
        Manifest::new(
            vec![
                Device::new(Kind::Net, "service"),
                Device::new(Kind::Kv, "files"),
            ],
            1000,
        )
        .unwrap()
    }

    #[test]
    fn a_manifest_round_trips_through_its_bytes() {
        let manifest = dns();
        let bytes = manifest.to_descriptor();
        assert_eq!(bytes.len(), manifest_len(2));
        assert_eq!(
            &bytes[..16],
            &[1, 0, 0, 0, 2, 0, 0, 0, 0xe8, 3, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(&bytes[16..24], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..40], b"service\0\0\0\0\0\0\0\0\0");
        assert_eq!(&bytes[40..44], &[3, 0, 0, 0]);
        assert_eq!(Manifest::parse(&bytes), Ok(manifest.clone()));
        let empty = Manifest::default();
        assert_eq!(Manifest::parse(&empty.to_descriptor()), Ok(empty));
        let long =
            Manifest::new(vec![Device::new(Kind::Block, "fifteen-bytes-x")], u64::MAX).unwrap();
        assert_eq!(Manifest::parse(&long.to_descriptor()), Ok(long));

        let note = manifest.to_note();
        assert_eq!(&note[..12], &[5, 0, 0, 0, 64, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&note[12..20], b"Fata\0\0\0\0");
        assert_eq!(&note[20..], &bytes[..]);
        assert_eq!(note.len() % 4, 0);
    }

    #[test]
    fn every_defect_is_refused() {
        let good = dns().to_descriptor();
        let with = |at: usize, value: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(value);
            Manifest::parse(&bytes)
        };
        for len in 0..16 {
            assert_eq!(
                Manifest::parse(&good[..len]),
                Err(ManifestError::Truncated(len))
            );
        }
        assert_eq!(with(0, &[2]), Err(ManifestError::Version(2)));
        assert_eq!(with(4, &[9]), Err(ManifestError::TooMany(9)));
        assert_eq!(
            with(4, &[0xff, 0xff, 0xff, 0xff]),
            Err(ManifestError::TooMany(u32::MAX as u64))
        );
        assert!(matches!(
            with(4, &[3]),
            Err(ManifestError::Length { devices: 3, .. })
        ));
        assert!(matches!(
            Manifest::parse(&good[..good.len() - 1]),
            Err(ManifestError::Length { .. })
        ));
        assert!(matches!(
            Manifest::parse(&[&good[..], &[0; 24]].concat()),
            Err(ManifestError::Length { .. })
        ));
        assert_eq!(
            with(16, &[0]),
            Err(ManifestError::Kind { index: 0, kind: 0 })
        );
        assert_eq!(
            with(40, &[4]),
            Err(ManifestError::Kind { index: 1, kind: 4 })
        );
        assert_eq!(with(20, &[2]), Err(ManifestError::Reserved(0)));
        assert!(
            with(20, &[1])
                .unwrap()
                .is_optional(&Device::new(Kind::Net, "service"))
        );
        assert_eq!(with(24 + 9, b"x"), Err(ManifestError::NameBytes(0)));
        assert_eq!(with(24, &[0xff]), Err(ManifestError::NameBytes(0)));
        assert_eq!(with(24, &[0]), Err(ManifestError::NameBytes(0)));
        assert_eq!(
            with(24, &[0; 16]),
            Err(ManifestError::Name(SpecError::BadName(String::new())))
        );
        assert_eq!(
            with(24, b"a=b\0\0\0\0\0"),
            Err(ManifestError::Name(SpecError::BadName("a=b".into())))
        );
        assert_eq!(
            with(24, b"sixteen-bytes-xx"),
            Err(ManifestError::Name(SpecError::BadName(
                "sixteen-bytes-xx".into()
            ))),
            "sixteen bytes leave no NUL: more than NAME_MAX"
        );
        assert_eq!(
            with(48, b"service\0"),
            Err(ManifestError::Name(SpecError::Repeated("service".into())))
        );
        let message = with(0, &[7]).unwrap_err().to_string();
        assert!(
            message.contains("build the image with this Fata"),
            "{message}"
        );
    }

    #[test]
    fn new_checks_names_and_count() {
        let nine = (0..9)
            .map(|i| Device::new(Kind::Kv, format!("kv{i}")))
            .collect();
        assert_eq!(Manifest::new(nine, 0), Err(ManifestError::TooMany(9)));
        assert_eq!(
            Manifest::new(
                vec![Device::new(Kind::Net, "a"), Device::new(Kind::Kv, "a")],
                0
            ),
            Err(ManifestError::Name(SpecError::Repeated("a".into())))
        );
        assert!(Manifest::new(vec![Device::new(Kind::Net, "sixteen-bytes-xx")], 0).is_err());
    }

    #[test]
    fn the_command_line_must_give_what_is_declared_and_nothing_else() {
        let dns = dns();
        let service = Device::new(Kind::Net, "service");
        let files = Device::new(Kind::Kv, "files");
        assert_eq!(dns.check(&[files.clone(), service.clone()], false), Ok(()));

        let missing = dns.check(core::slice::from_ref(&files), false).unwrap_err();
        assert_eq!(missing.missing, vec![service.clone()]);
        assert!(missing.undeclared.is_empty());
        assert_eq!(
            missing.to_string(),
            "the app takes the network interface \"service\", not given: give it with \
             --net service=TAP"
        );
        // On unix the host's sockets stand in for a network interface that is not given.
        assert_eq!(dns.check(core::slice::from_ref(&files), true), Ok(()));
        assert!(dns.check(core::slice::from_ref(&service), true).is_err());

        let extra = Device::new(Kind::Kv, "extra");
        let undeclared = dns
            .check(&[service.clone(), files.clone(), extra.clone()], false)
            .unwrap_err();
        assert!(undeclared.missing.is_empty());
        assert_eq!(undeclared.undeclared, [extra]);
        let message = undeclared.to_string();
        assert!(
            message.starts_with(
                "the app does not take the key-value store \"extra\" (it declares the network \
                 interface \"service\" and the key-value store \"files\")"
            ),
            "{message}"
        );
        assert!(
            message.contains("[package.metadata.fata.devices] kv = [\"extra\"]"),
            "{message}"
        );

        // The same name as another kind is both missing and undeclared.
        let wrong_kind = dns
            .check(&[Device::new(Kind::Block, "files"), service.clone()], false)
            .unwrap_err();
        assert_eq!(wrong_kind.missing, vec![files.clone()]);
        assert_eq!(wrong_kind.undeclared, [Device::new(Kind::Block, "files")]);
        let message = wrong_kind.to_string();
        assert!(
            message.contains("--kv files=DIR; and the app does not take the block"),
            "{message}"
        );

        let none = Manifest::default();
        assert_eq!(none.check(&[], false), Ok(()));
        let message = none
            .check(
                &[Device::new(Kind::Kv, "data"), Device::new(Kind::Kv, "b")],
                false,
            )
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("(it declares no devices): leave them out"),
            "{message}"
        );
        assert!(message.contains("kv = [\"data\", \"b\"]"), "{message}");
    }

    #[test]
    fn kinds_match_the_abi() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(Kind::from_number(0), None);
        assert_eq!(Kind::from_number(4), None);
        assert_eq!(Kind::Kv.default_name(), DEFAULT_KV);
        assert_eq!(
            NAME_FIELD,
            crate::NAME_MAX + 1,
            "a name always ends with a NUL"
        );
    }
}
