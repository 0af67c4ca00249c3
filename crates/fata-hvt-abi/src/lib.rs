//! The hvt ABI: the whole contract between a Fata unikernel and its KVM monitor.
//!
//! This crate is the lowest layer of the hvt target and the only code the guest platform
//! (`fata-hvt`) and the monitor (`fata-monitor`) share. It has no dependencies and no `unsafe`.
//!
//! # The contract in short
//! - **Image.** A static x86-64 ELF executable linked at [`LOAD_ADDR`], with a `PT_NOTE` carrying an
//!   [`AbiNote`] that names the [`ABI_VERSION`] it was built for. The monitor refuses any other version.
//! - **Entry.** The guest starts at its ELF entry point in 64-bit mode at CPL3 with paging on
//!   (identity map), SSE enabled, `RSP` at the top of RAM and `RDI` holding the guest-physical address
//!   of a read-only [`BootInfo`].
//! - **Hypercalls.** The guest fills the argument struct of a [`Hypercall`] in its own memory and
//!   stores the struct's guest-physical address, as one 8-byte store, to [`hypercall_address`]. That
//!   window has no memory behind it, so the store traps to the monitor, which reads the struct, writes
//!   back the fields marked *out*, and resumes the guest after the store.
//!
//! Every struct is `#[repr(C)]` with explicit padding, little-endian; [`Codec`] gives the monitor a
//! safe byte-level view built from the same field offsets, and the tests pin every size and offset.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;
use core::mem::{offset_of, size_of};

/// The ABI version. Both sides check it: the monitor reads it from the image's [`AbiNote`] and
/// refuses a mismatch; the guest compares [`BootInfo::abi_version`] and exits with
/// [`ABI_MISMATCH_STATUS`] on a mismatch.
///
/// Bump rule: any change to a layout, a hypercall number, a constant in this crate or the meaning of
/// a field bumps the version. Only additions that an older peer provably never sees (filling a
/// `reserved` field that the other side ignores when zero) may keep it. Three things never change, so
/// that a mismatch can always be reported: [`BootInfo::abi_version`] at offset 0, the number of
/// [`Hypercall::Exit`] and the layout of [`ExitArgs`].
pub const ABI_VERSION: u32 = 1;

/// Guest-physical (= virtual) address where the image's first segment may start: 1 MiB.
/// Everything below belongs to the monitor (page tables, GDT, boot info, command line).
pub const LOAD_ADDR: u64 = 0x10_0000;

/// The guest page size the monitor maps images with; ELF segments must not share a page.
pub const PAGE_SIZE: u64 = 4096;

/// The largest RAM a guest may have (3 GiB): guest memory stays below the hypercall window.
pub const MAX_MEM_BYTES: u64 = 0xC000_0000;

/// The stack the monitor reserves at the top of RAM; the guest's heap ends at
/// [`BootInfo::stack_bottom`], below it.
pub const STACK_SIZE: u64 = 1 << 20;

/// Guest-physical base of the hypercall window: no RAM is behind it, so a store there exits to the
/// monitor. The guest's page tables map it user-writable and not executable.
pub const HYPERCALL_BASE: u64 = 0xFFFF_F000;

/// Size of the hypercall window: one 8-byte slot per hypercall number.
pub const HYPERCALL_WINDOW_SIZE: u64 = 0x1000;

const _: () = assert!(
    MAX_MEM_BYTES <= HYPERCALL_BASE,
    "RAM must stay below the hypercall window"
);

/// The address the guest stores an argument struct's guest-physical address to, to make hypercall
/// `nr`. The store must be exactly 8 bytes wide.
pub const fn hypercall_address(nr: Hypercall) -> u64 {
    HYPERCALL_BASE + (nr as u32 as u64) * 8
}

/// The most bytes one [`Hypercall::ConsoleWrite`] may carry (64 KiB). A longer write is an ABI
/// violation that ends the guest; the guest platform splits long output into chunks.
pub const CONSOLE_WRITE_MAX: u64 = 64 * 1024;

/// The most bytes of app arguments the monitor passes (the NUL-terminated strings together).
pub const CMDLINE_MAX: u64 = 64 * 1024;

/// Number of entries in [`BootInfo::devices`].
pub const MAX_DEVICES: usize = 8;

/// [`YieldArgs::timeout_ns`] value meaning "no deadline: wait until a device is ready".
pub const YIELD_FOREVER: u64 = u64::MAX;

/// The exit status a guest reports when [`BootInfo::abi_version`] is not the version it was built
/// for (the monitor's note check normally catches this first).
pub const ABI_MISMATCH_STATUS: i32 = 0x7f00_0001;

/// A hypercall number: the slot index in the hypercall window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Hypercall {
    /// End the guest with a status. Arguments: [`ExitArgs`]. Never returns. Frozen across versions.
    Exit = 1,
    /// Write bytes to the console (the monitor's stdout). Arguments: [`ConsoleWriteArgs`].
    ConsoleWrite = 2,
    /// Block until a device in the interest set is ready or the timeout passes.
    /// Arguments: [`YieldArgs`].
    Yield = 3,
    /// Reserved for the network device rings of the next ABI version; version 1 monitors end the
    /// guest with an ABI violation.
    Net = 4,
    /// Reserved for block devices of the next ABI version; version 1 monitors end the guest with an
    /// ABI violation.
    Block = 5,
}

impl Hypercall {
    /// The hypercall with number `nr`, if there is one.
    pub const fn from_u32(nr: u32) -> Option<Hypercall> {
        Some(match nr {
            1 => Hypercall::Exit,
            2 => Hypercall::ConsoleWrite,
            3 => Hypercall::Yield,
            4 => Hypercall::Net,
            5 => Hypercall::Block,
            _ => return None,
        })
    }
}

impl fmt::Display for Hypercall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hypercall::Exit => "exit",
            Hypercall::ConsoleWrite => "console write",
            Hypercall::Yield => "yield",
            Hypercall::Net => "net (reserved)",
            Hypercall::Block => "block (reserved)",
        })
    }
}

/// Arguments of [`Hypercall::Exit`]. Frozen across versions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExitArgs {
    /// In: the exit status; the monitor's process exits with it (truncated to 0..=255 by the OS).
    pub status: i32,
    /// Padding, zero.
    pub pad: u32,
}

/// Arguments of [`Hypercall::ConsoleWrite`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConsoleWriteArgs {
    /// In: guest-physical address of the bytes.
    pub data: u64,
    /// In: number of bytes, at most [`CONSOLE_WRITE_MAX`].
    pub len: u64,
}

/// Arguments of [`Hypercall::Yield`].
///
/// The timeout is relative so that guest and monitor need not share a clock: the guest converts its
/// TSC deadline to nanoseconds from now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct YieldArgs {
    /// In: how long to wait at most, in nanoseconds; [`YIELD_FOREVER`] for no deadline, 0 to poll.
    pub timeout_ns: u64,
    /// In: the device handles to wait for, one bit per handle (bit `h` is handle `h`).
    pub interest: u64,
    /// Out: the handles in `interest` that are ready when the call returns (may be empty).
    pub ready: u64,
}

/// What a [`DeviceInfo`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum DeviceKind {
    /// An unused entry.
    None = 0,
    /// A network interface (rings arrive with the next ABI version).
    Net = 1,
    /// A block device (arrives with the next ABI version).
    Block = 2,
}

impl DeviceKind {
    /// The kind with number `n`, if there is one.
    pub const fn from_u32(n: u32) -> Option<DeviceKind> {
        Some(match n {
            0 => DeviceKind::None,
            1 => DeviceKind::Net,
            2 => DeviceKind::Block,
            _ => return None,
        })
    }
}

/// One device the host configured. In ABI version 1 the monitor configures none; the fields after
/// `handle` are reserved for the rings of the next version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct DeviceInfo {
    /// The name the host gave the device (`--net service=tap0` gives `service`), UTF-8, NUL-padded.
    pub name: [u8; 16],
    /// A [`DeviceKind`] number.
    pub kind: u32,
    /// The device's handle: its bit in [`YieldArgs::interest`] and `ready`.
    pub handle: u32,
    /// Reserved: guest-physical address of the device's shared ring; zero in version 1.
    pub ring_addr: u64,
    /// Reserved: size in bytes of the device's shared ring; zero in version 1.
    pub ring_len: u64,
    /// Reserved for device parameters (MAC, MTU, capacity); zero in version 1.
    pub reserved: [u64; 4],
}

impl DeviceInfo {
    /// An unused entry.
    pub const EMPTY: DeviceInfo = DeviceInfo {
        name: [0; 16],
        kind: DeviceKind::None as u32,
        handle: 0,
        ring_addr: 0,
        ring_len: 0,
        reserved: [0; 4],
    };
}

impl Default for DeviceInfo {
    fn default() -> Self {
        DeviceInfo::EMPTY
    }
}

/// What the monitor tells the guest at entry. It lives in guest memory below [`LOAD_ADDR`], mapped
/// read-only; `RDI` holds its address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BootInfo {
    /// The monitor's [`ABI_VERSION`]. Frozen at offset 0.
    pub abi_version: u32,
    /// Number of used entries at the start of `devices`.
    pub device_count: u32,
    /// Bytes of RAM, guest-physical `0..mem_size`.
    pub mem_size: u64,
    /// First guest-physical address past the image (page-aligned): the heap starts here.
    pub kernel_end: u64,
    /// Lowest address of the stack at the top of RAM: the heap ends here.
    pub stack_bottom: u64,
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// The guest's TSC value at the moment `wall_clock_ns` was read.
    pub boot_tsc: u64,
    /// Host wall clock (nanoseconds since the Unix epoch, UTC) at `boot_tsc`.
    pub boot_wall_ns: u64,
    /// Guest-physical address of the app arguments: `argc` strings, each ending in a NUL byte.
    pub cmdline_addr: u64,
    /// Total bytes at `cmdline_addr`, NULs included (at most [`CMDLINE_MAX`]).
    pub cmdline_len: u64,
    /// Number of app arguments (the program name is not one of them).
    pub argc: u64,
    /// 32 bytes from the host's random source, to seed the guest's generator.
    pub seed: [u8; 32],
    /// The configured devices; entries at `device_count` and after are [`DeviceInfo::EMPTY`].
    pub devices: [DeviceInfo; MAX_DEVICES],
    /// Reserved for additions; zero.
    pub reserved: [u64; 8],
}

/// The ELF note type of an [`AbiNote`].
pub const NOTE_TYPE_ABI: u32 = 1;

/// The ELF note name of an [`AbiNote`], NUL included.
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

/// One field type the [`Codec`] structs are made of, encoded little-endian.
trait Field: Sized {
    fn put(&self, out: &mut [u8]);
    fn get(bytes: &[u8]) -> Self;
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, out: &mut [u8]) {
                out[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            fn get(bytes: &[u8]) -> Self {
                let mut raw = [0u8; size_of::<$t>()];
                raw.copy_from_slice(&bytes[..size_of::<$t>()]);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}
int_field!(u32, i32, u64);

impl<const N: usize> Field for [u8; N] {
    fn put(&self, out: &mut [u8]) {
        out[..N].copy_from_slice(self);
    }
    fn get(bytes: &[u8]) -> Self {
        let mut raw = [0u8; N];
        raw.copy_from_slice(&bytes[..N]);
        raw
    }
}

impl<T: Field + Copy + Default, const N: usize> Field for [T; N] {
    fn put(&self, out: &mut [u8]) {
        for (i, item) in self.iter().enumerate() {
            item.put(&mut out[i * size_of::<T>()..]);
        }
    }
    fn get(bytes: &[u8]) -> Self {
        let mut items = [T::default(); N];
        for (i, item) in items.iter_mut().enumerate() {
            *item = T::get(&bytes[i * size_of::<T>()..]);
        }
        items
    }
}

/// The byte image of an ABI struct, as it lies in guest memory (little-endian, `#[repr(C)]` offsets).
///
/// The monitor reads and writes guest memory as bytes and converts with this trait, so it never
/// reinterprets guest bytes as Rust values.
pub trait Codec: Sized {
    /// `size_of::<Self>()`.
    const SIZE: usize;
    /// Writes the struct's bytes into `out[..SIZE]`. Panics if `out` is shorter.
    fn encode(&self, out: &mut [u8]);
    /// Reads the struct from `bytes[..SIZE]`. Panics if `bytes` is shorter.
    fn decode(bytes: &[u8]) -> Self;
}

macro_rules! codec {
    ($name:ident { $($field:ident: $t:ty),* $(,)? }) => {
        impl Field for $name {
            fn put(&self, out: &mut [u8]) {
                $( Field::put(&self.$field, &mut out[offset_of!($name, $field)..]); )*
            }
            fn get(bytes: &[u8]) -> Self {
                $name { $( $field: <$t as Field>::get(&bytes[offset_of!($name, $field)..]), )* }
            }
        }
        impl Codec for $name {
            const SIZE: usize = size_of::<$name>();
            fn encode(&self, out: &mut [u8]) {
                Field::put(self, &mut out[..Self::SIZE]);
            }
            fn decode(bytes: &[u8]) -> Self {
                <$name as Field>::get(&bytes[..Self::SIZE])
            }
        }
    };
}

codec!(ExitArgs {
    status: i32,
    pad: u32
});
codec!(ConsoleWriteArgs {
    data: u64,
    len: u64
});
codec!(YieldArgs {
    timeout_ns: u64,
    interest: u64,
    ready: u64
});
codec!(DeviceInfo {
    name: [u8; 16],
    kind: u32,
    handle: u32,
    ring_addr: u64,
    ring_len: u64,
    reserved: [u64; 4],
});
codec!(BootInfo {
    abi_version: u32,
    device_count: u32,
    mem_size: u64,
    kernel_end: u64,
    stack_bottom: u64,
    tsc_khz: u64,
    boot_tsc: u64,
    boot_wall_ns: u64,
    cmdline_addr: u64,
    cmdline_len: u64,
    argc: u64,
    seed: [u8; 32],
    devices: [DeviceInfo; MAX_DEVICES],
    reserved: [u64; 8],
});
codec!(AbiNote {
    namesz: u32,
    descsz: u32,
    kind: u32,
    name: [u8; 8],
    version: u32
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(size_of::<ExitArgs>(), 8);
        assert_eq!(offset_of!(ExitArgs, status), 0);
        assert_eq!(size_of::<ConsoleWriteArgs>(), 16);
        assert_eq!(offset_of!(ConsoleWriteArgs, len), 8);
        assert_eq!(size_of::<YieldArgs>(), 24);
        assert_eq!(offset_of!(YieldArgs, interest), 8);
        assert_eq!(offset_of!(YieldArgs, ready), 16);
        assert_eq!(size_of::<DeviceInfo>(), 72);
        assert_eq!(offset_of!(DeviceInfo, kind), 16);
        assert_eq!(offset_of!(DeviceInfo, handle), 20);
        assert_eq!(offset_of!(DeviceInfo, ring_addr), 24);
        assert_eq!(offset_of!(DeviceInfo, reserved), 40);
        assert_eq!(offset_of!(BootInfo, abi_version), 0);
        assert_eq!(offset_of!(BootInfo, mem_size), 8);
        assert_eq!(offset_of!(BootInfo, tsc_khz), 32);
        assert_eq!(offset_of!(BootInfo, boot_wall_ns), 48);
        assert_eq!(offset_of!(BootInfo, cmdline_addr), 56);
        assert_eq!(offset_of!(BootInfo, argc), 72);
        assert_eq!(offset_of!(BootInfo, seed), 80);
        assert_eq!(offset_of!(BootInfo, devices), 112);
        assert_eq!(offset_of!(BootInfo, reserved), 112 + 8 * 72);
        assert_eq!(size_of::<BootInfo>(), 112 + 8 * 72 + 64);
        assert_eq!(size_of::<AbiNote>(), 24);
        assert_eq!(offset_of!(AbiNote, version), 20);
    }

    #[test]
    fn hypercall_numbers_are_pinned() {
        assert_eq!(hypercall_address(Hypercall::Exit), HYPERCALL_BASE + 8);
        assert_eq!(Hypercall::ConsoleWrite as u32, 2);
        assert_eq!(Hypercall::Yield as u32, 3);
        for nr in 0..64 {
            if let Some(call) = Hypercall::from_u32(nr) {
                assert_eq!(call as u32, nr);
                assert!(hypercall_address(call) < HYPERCALL_BASE + HYPERCALL_WINDOW_SIZE);
            }
        }
    }

    #[test]
    fn codec_round_trips_at_the_repr_c_offsets() {
        let mut info = BootInfo {
            abi_version: ABI_VERSION,
            mem_size: 32 << 20,
            tsc_khz: 2_000_000,
            argc: 2,
            seed: [7; 32],
            ..BootInfo::default()
        };
        info.devices[1].name[0] = b'n';
        info.devices[1].ring_len = 0x1234;
        let mut bytes = [0u8; BootInfo::SIZE];
        info.encode(&mut bytes);
        assert_eq!(&bytes[0..4], &ABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[32..40], &2_000_000u64.to_le_bytes());
        let ring_len_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, ring_len);
        assert_eq!(
            &bytes[ring_len_at..ring_len_at + 8],
            &0x1234u64.to_le_bytes()
        );
        assert_eq!(BootInfo::decode(&bytes), info);

        let args = YieldArgs {
            timeout_ns: 5,
            interest: 1,
            ready: 0,
        };
        let mut raw = [0u8; YieldArgs::SIZE];
        args.encode(&mut raw);
        assert_eq!(YieldArgs::decode(&raw), args);

        let mut note = [0u8; AbiNote::SIZE];
        AbiNote::CURRENT.encode(&mut note);
        assert_eq!(&note[12..17], &NOTE_NAME);
        assert_eq!(AbiNote::decode(&note), AbiNote::CURRENT);
    }
}
