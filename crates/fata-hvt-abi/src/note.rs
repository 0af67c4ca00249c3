//! The ELF notes an image carries: the ABI version it was built for ([`AbiNote`]) and the manifest
//! of the devices and settings its app declares ([`NOTE_TYPE_MANIFEST`]).

use crate::ABI_VERSION;

/// The ELF note type of an [`AbiNote`].
pub const NOTE_TYPE_ABI: u32 = 1;

/// The ELF note name of every Fata note, NUL included.
pub const NOTE_NAME: [u8; 5] = *b"Fata\0";

/// The ELF note the guest carries in a `PT_NOTE` segment (section `.note.fata`) to say which ABI it
/// was built for: standard note header, name [`NOTE_NAME`] padded to 8 bytes, descriptor = version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct AbiNote {
    /// Length of the name, NUL included: 5.
    pub namesz: u32,
    /// Length of the descriptor: 4.
    pub descsz: u32,
    /// [`NOTE_TYPE_ABI`].
    pub kind: u32,
    /// [`NOTE_NAME`] padded with NULs to a multiple of 4.
    pub name: [u8; 8],
    /// The [`ABI_VERSION`] the image was built for.
    pub version: u32,
}

impl AbiNote {
    /// The note for this crate's [`ABI_VERSION`].
    pub const CURRENT: AbiNote = AbiNote {
        namesz: NOTE_NAME.len() as u32,
        descsz: 4,
        kind: NOTE_TYPE_ABI,
        name: *b"Fata\0\0\0\0",
        version: ABI_VERSION,
    };
}

/// The ELF note type of an image's manifest: the devices its app declares and its settings.
///
/// `fata build` writes it from the app's `[package.metadata.fata]` and `fata run` reads it before
/// boot, to refuse a command line that leaves out a declared device or gives an undeclared one and
/// to apply the app's own settings (Solo5's manifest note plays the same part). It sits beside the
/// [`AbiNote`] in `.note.fata` (same [`NOTE_NAME`]); unix executables carry the same note in a
/// `PT_NOTE` segment of their own. The monitor does not need it to boot an image, so an image
/// without one (built before manifests existed) still runs.
///
/// The descriptor, little-endian, [`manifest_len`] bytes for `device_count` devices:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | [`ManifestHeader::version`] = [`MANIFEST_VERSION`] |
/// | 4 | 4 | [`ManifestHeader::device_count`], at most [`MANIFEST_DEVICES_MAX`] |
/// | 8 | 8 | [`ManifestHeader::coalesce_us`] |
/// | 16 | 24 each | `device_count` [`ManifestDevice`] entries |
///
/// A reader refuses any other length, version, kind or an unknown flag: a newer format
/// gets a new [`MANIFEST_VERSION`], which an older `fata` reports as built by a newer one.
pub const NOTE_TYPE_MANIFEST: u32 = 2;

/// The version of the manifest descriptor's layout ([`NOTE_TYPE_MANIFEST`]). It is the manifest's
/// own: a reader refuses a version it does not know, and the ABI version does not change with it.
pub const MANIFEST_VERSION: u32 = 1;

/// [`ManifestDevice::flags`] bit: the app runs without the device too (apps/www takes a store
/// with its site only when it serves one from a disk image), so `fata run` does not require it.
pub const MANIFEST_OPTIONAL: u32 = 1;

/// The most devices a manifest declares: as many as the boot info holds.
pub const MANIFEST_DEVICES_MAX: usize = crate::MAX_DEVICES;

/// The start of a manifest descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ManifestHeader {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// How many [`ManifestDevice`] entries follow.
    pub device_count: u32,
    /// The app's coalescing interval in microseconds (`coalesce-us`): while packets arrive
    /// faster than the app wakes for them, wake it at most once per interval; 0 wakes it at once.
    pub coalesce_us: u64,
}

/// One device an app declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct ManifestDevice {
    /// A [`DeviceKind`](crate::DeviceKind) number other than `None`.
    pub kind: u32,
    /// [`MANIFEST_OPTIONAL`] or zero; no other bit is defined.
    pub flags: u32,
    /// The name the app takes the device by, UTF-8, NUL-padded (as [`DeviceInfo::name`](crate::DeviceInfo::name)).
    pub name: [u8; 16],
}

/// The length of a manifest descriptor declaring `devices` devices.
pub const fn manifest_len(devices: usize) -> usize {
    size_of::<ManifestHeader>() + devices * size_of::<ManifestDevice>()
}
