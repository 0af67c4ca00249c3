//! The byte codec of the hvt ABI: every `fata-hvt-abi` struct to and from the bytes it occupies in
//! guest memory (little-endian, at its `#[repr(C)]` offsets).
//!
//! The monitor reads and writes guest memory only as bytes through its checked accessor and
//! converts with [`Codec`], so it never reinterprets guest bytes as Rust values; tests build guest
//! memory images with it. It is logic, not contract, so it lives beside the ABI crate rather than
//! in it. Each impl is generated from the struct's field list with `offset_of!`, so a field that
//! moves in the ABI moves here too, and the round-trip tests compare against the ABI's pinned
//! offsets.
#![no_std]
#![forbid(unsafe_code)]

use core::mem::{offset_of, size_of};
use fata_hvt_abi::{
    AbiNote, BlockCompletion, BlockRequest, BlockRingHeader, BootInfo, ConsoleWriteArgs,
    DeviceInfo, ExitArgs, GuestAddr, KvEntry, KvHeader, MAX_DEVICES, YieldArgs,
};

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
int_field!(u16, u32, i32, u64);

impl Field for GuestAddr {
    fn put(&self, out: &mut [u8]) {
        self.0.put(out);
    }
    fn get(bytes: &[u8]) -> Self {
        GuestAddr(u64::get(bytes))
    }
}

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

codec!(BlockRingHeader {
    requests_produced: u32,
    pad0: [u32; 15],
    requests_consumed: u32,
    pad1: [u32; 15],
    completions_produced: u32,
    pad2: [u32; 15],
    completions_consumed: u32,
    pad3: [u32; 15],
    sector_size: u32,
    flags: u32,
    sectors: u64,
    request_max: u64,
    reserved: [u64; 5],
});
codec!(BlockRequest {
    tag: u64,
    op: u32,
    flags: u32,
    sector: u64,
    len: u64,
    buffer: GuestAddr,
    reserved: [u64; 3],
});
codec!(BlockCompletion {
    tag: u64,
    status: u32,
    reserved: u32,
});
codec!(ExitArgs {
    status: i32,
    pad: u32
});
codec!(ConsoleWriteArgs {
    data: GuestAddr,
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
    ring_addr: GuestAddr,
    ring_len: u64,
    mac: [u8; 6],
    mtu: u16,
    rx_slots: u32,
    tx_slots: u32,
    doorbell: GuestAddr,
    offloads: u64,
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
    cmdline_addr: GuestAddr,
    cmdline_len: u64,
    argc: u64,
    seed: [u8; 32],
    devices: [DeviceInfo; MAX_DEVICES],
    heap_end: u64,
    reserved: [u64; 7],
});
codec!(KvHeader {
    count: u32,
    reserved: u32
});
codec!(KvEntry {
    key_offset: u64,
    key_len: u64,
    value_offset: u64,
    value_len: u64
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
    use fata_hvt_abi::{ABI_VERSION, NOTE_NAME};

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
        info.devices[1].ring_addr = GuestAddr(0x5000);
        info.cmdline_addr = GuestAddr(0x8_0000);
        info.devices[1].mac = [2, 0, 0, 0, 0, 9];
        info.devices[1].mtu = 1500;
        info.devices[1].tx_slots = 64;
        info.heap_end = 0x1e0_0000;
        let mut bytes = [0u8; BootInfo::SIZE];
        info.encode(&mut bytes);
        assert_eq!(&bytes[0..4], &ABI_VERSION.to_le_bytes());
        assert_eq!(&bytes[32..40], &2_000_000u64.to_le_bytes());
        let ring_len_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, ring_len);
        assert_eq!(
            &bytes[ring_len_at..ring_len_at + 8],
            &0x1234u64.to_le_bytes()
        );
        let mac_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, mac);
        assert_eq!(&bytes[mac_at..mac_at + 8], &[2, 0, 0, 0, 0, 9, 0xdc, 0x05]);
        assert_eq!(BootInfo::decode(&bytes), info);
        let ring_addr_at = offset_of!(BootInfo, devices) + 72 + offset_of!(DeviceInfo, ring_addr);
        assert_eq!(
            &bytes[ring_addr_at..ring_addr_at + 8],
            &0x5000u64.to_le_bytes()
        );

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

        let request = BlockRequest {
            tag: 9,
            op: 2,
            flags: 1,
            sector: 77,
            len: 4096,
            buffer: GuestAddr(0x20_0000),
            reserved: [0; 3],
        };
        let mut raw = [0u8; BlockRequest::SIZE];
        request.encode(&mut raw);
        assert_eq!(&raw[16..24], &77u64.to_le_bytes());
        assert_eq!(&raw[32..40], &0x20_0000u64.to_le_bytes());
        assert_eq!(BlockRequest::decode(&raw), request);
        let done = BlockCompletion {
            tag: 9,
            status: 3,
            reserved: 0,
        };
        let mut raw = [0u8; BlockCompletion::SIZE];
        done.encode(&mut raw);
        assert_eq!(&raw[8..12], &3u32.to_le_bytes());
        assert_eq!(BlockCompletion::decode(&raw), done);
        let mut header = BlockRingHeader::decode(&[0u8; BlockRingHeader::SIZE]);
        header.completions_consumed = 5;
        header.sectors = 1 << 40;
        let mut raw = [0u8; BlockRingHeader::SIZE];
        header.encode(&mut raw);
        assert_eq!(&raw[192..196], &5u32.to_le_bytes());
        assert_eq!(&raw[264..272], &(1u64 << 40).to_le_bytes());
        assert_eq!(BlockRingHeader::decode(&raw), header);
    }
}
