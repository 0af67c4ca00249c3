//! x86-64 segment descriptors and control-register bits: what a 64-bit entry state is made of.
//!
//! The hvt monitor writes a GDT into guest memory and gives KVM the same segments as registers;
//! a PVH guest builds its own GDT. Both build descriptors with [`gdt_entry`] and read them back
//! with [`Segment::from_gdt`], so the table the guest sees and the registers the CPU holds come
//! from one set of entries and cannot disagree. No dependencies, no `unsafe`, `no_std`.
#![no_std]
#![forbid(unsafe_code)]

/// Access byte: the descriptor is present.
pub const PRESENT: u16 = 1 << 7;
/// Access byte: a code or data segment (not a system descriptor).
pub const CODE_OR_DATA: u16 = 1 << 4;
/// Access byte: descriptor privilege level 3.
pub const DPL3: u16 = 3 << 5;
/// Access byte, type: code, execute/read, accessed.
pub const TYPE_CODE: u16 = 0xb;
/// Access byte, type: data, read/write, accessed.
pub const TYPE_DATA: u16 = 0x3;
/// Access byte, type of a system descriptor: a busy 64-bit TSS (the loaded TR must be busy).
pub const TYPE_TSS_BUSY: u16 = 0xb;
/// Flags nibble: a 64-bit code segment.
pub const LONG: u16 = 1 << 13;
/// Flags nibble: 32-bit default operand size.
pub const DB: u16 = 1 << 14;
/// Flags nibble: the limit counts 4 KiB pages.
pub const GRANULAR: u16 = 1 << 15;

/// The flags of a DPL3 64-bit code segment.
pub const USER_CODE64: u16 = PRESENT | CODE_OR_DATA | DPL3 | TYPE_CODE | LONG | GRANULAR;
/// The flags of a DPL3 data segment.
pub const USER_DATA: u16 = PRESENT | CODE_OR_DATA | DPL3 | TYPE_DATA | DB | GRANULAR;
/// The flags of a DPL0 64-bit code segment (a PVH guest's own kernel code).
pub const KERNEL_CODE64: u16 = PRESENT | CODE_OR_DATA | TYPE_CODE | LONG | GRANULAR;
/// The flags of a DPL0 data segment.
pub const KERNEL_DATA: u16 = PRESENT | CODE_OR_DATA | TYPE_DATA | DB | GRANULAR;

/// CR0: protected mode.
pub const CR0_PE: u64 = 1;
/// CR0: monitor coprocessor (`wait` honours TS).
pub const CR0_MP: u64 = 1 << 1;
/// CR0: extension type (always one on modern CPUs).
pub const CR0_ET: u64 = 1 << 4;
/// CR0: native x87 error reporting.
pub const CR0_NE: u64 = 1 << 5;
/// CR0: supervisor writes honour read-only pages.
pub const CR0_WP: u64 = 1 << 16;
/// CR0: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4: physical address extension (required for long mode).
pub const CR4_PAE: u64 = 1 << 5;
/// CR4: the OS saves SSE state with FXSAVE (SSE enabled).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4: the OS handles SIMD floating-point exceptions.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// EFER: long mode enabled.
pub const EFER_LME: u64 = 1 << 8;
/// EFER: long mode active.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER: no-execute page protection.
pub const EFER_NXE: u64 = 1 << 11;

/// A GDT entry (8 bytes) from its access byte and flags nibble (`flags`: the access byte in bits
/// 0-7, the flags nibble in bits 12-15, as the descriptor lays them out), a 32-bit base and a
/// 20-bit limit. The layout is the CPU's (Intel SDM vol. 3, 3.4.5).
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (flags as u64, base as u64, limit as u64);
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The two GDT entries (16 bytes) of a busy 64-bit TSS at `base` with byte limit `limit`.
pub const fn tss_entry(base: u64, limit: u32) -> [u64; 2] {
    [
        gdt_entry(PRESENT | TYPE_TSS_BUSY, base as u32, limit),
        base >> 32,
    ]
}

/// A descriptor's fields, decoded: what a hypervisor loads into a segment register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The base address.
    pub base: u64,
    /// The limit in bytes (scaled by 4 KiB pages when `granular`).
    pub limit: u32,
    /// The 4-bit type.
    pub type_: u8,
    /// A code or data segment (1), or a system descriptor (0).
    pub code_or_data: u8,
    /// The privilege level.
    pub dpl: u8,
    /// Present.
    pub present: u8,
    /// The bit available to software.
    pub avl: u8,
    /// 64-bit code.
    pub long: u8,
    /// 32-bit default operand size.
    pub db: u8,
    /// The limit counts pages.
    pub granular: u8,
}

impl Segment {
    /// Decodes a GDT entry.
    pub const fn from_gdt(entry: u64) -> Segment {
        let raw_limit = (((entry >> 32) & 0x000f_0000) | (entry & 0xffff)) as u32;
        let granular = bit(entry, 55);
        Segment {
            base: ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff),
            limit: if granular == 1 {
                (raw_limit << 12) | 0xfff
            } else {
                raw_limit
            },
            type_: ((entry >> 40) & 0xf) as u8,
            code_or_data: bit(entry, 44),
            dpl: ((entry >> 45) & 3) as u8,
            present: bit(entry, 47),
            avl: bit(entry, 52),
            long: bit(entry, 53),
            db: bit(entry, 54),
            granular,
        }
    }

    /// Decodes the two entries of a 64-bit system descriptor (a TSS), whose base has 64 bits.
    pub const fn from_system_descriptor(entries: [u64; 2]) -> Segment {
        let mut segment = Segment::from_gdt(entries[0]);
        segment.base |= (entries[1] & 0xffff_ffff) << 32;
        segment
    }
}

/// Bit `n` of `entry`.
const fn bit(entry: u64, n: u32) -> u8 {
    ((entry >> n) & 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_cpu_layout() {
        assert_eq!(gdt_entry(USER_CODE64, 0, 0xfffff), 0x00af_fb00_0000_ffff);
        assert_eq!(gdt_entry(USER_DATA, 0, 0xfffff), 0x00cf_f300_0000_ffff);
        let code = Segment::from_gdt(gdt_entry(USER_CODE64, 0, 0xfffff));
        assert_eq!(
            (code.type_, code.dpl, code.present, code.long, code.db),
            (0xb, 3, 1, 1, 0)
        );
        assert_eq!(
            (code.limit, code.granular, code.code_or_data),
            (u32::MAX, 1, 1)
        );
        let data = Segment::from_gdt(gdt_entry(USER_DATA, 0x1234_5678, 0xabcde));
        assert_eq!(
            (data.base, data.type_, data.db, data.long),
            (0x1234_5678, 3, 1, 0)
        );
        assert_eq!(data.limit, (0xabcde << 12) | 0xfff);
    }

    #[test]
    fn tss_descriptors_carry_a_64_bit_base() {
        let entries = tss_entry(0x1_2345_1080, 0x67);
        assert_eq!(entries[0] & 0xffff, 0x67);
        assert_eq!((entries[0] >> 40) & 0xff, 0x8b);
        let tss = Segment::from_system_descriptor(entries);
        assert_eq!((tss.base, tss.limit), (0x1_2345_1080, 0x67));
        assert_eq!(
            (tss.type_, tss.code_or_data, tss.dpl, tss.present),
            (0xb, 0, 0, 1)
        );
        assert_eq!(tss.granular, 0);
        // The monitor's TSS below 4 GiB, as the old hand-written descriptor had it.
        let low = tss_entry(0x1080, 0x67);
        assert_eq!(low, [0x0000_8b00_1080_0067, 0]);
    }
}
