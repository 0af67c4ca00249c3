//! What the monitor puts in guest memory before the first instruction: the image, identity page
//! tables, the GDT and TSS, the boot info and the app's arguments.
//!
//! Low memory (below [`LOAD_ADDR`]) belongs to the monitor:
//!
//! | guest-physical | contents | guest access |
//! |---|---|---|
//! | `0x0000` | nothing: page 0 stays unmapped to catch null pointers | none |
//! | `0x1000` | GDT, then TSS at `0x1080` | supervisor only |
//! | `0x2000` | [`BootInfo`] | read-only |
//! | `0x3000..0x80000` | page tables | not mapped |
//! | `0x80000..0x90000` | app arguments | read-only |
//!
//! Above, the image's pages get exactly their segment's permissions (R, R-X or RW, 4 KiB pages); the
//! heap, the network rings and the stack are read-write and not executable (2 MiB pages past the
//! image); key-value regions are read-only and not executable (2 MiB pages where a region covers
//! a whole one, 4 KiB pages at its edges); the hypercall window is mapped writable so that stores
//! to it reach the monitor.

use crate::arch::{self, Tables};
use crate::elf::Image;
use crate::memory::{GuestRam, OutOfRam};
use fata_hvt_abi::GuestAddr;
use fata_hvt_abi::{
    BootInfo, CMDLINE_MAX, HYPERCALL_BASE, LOAD_ADDR, MAX_MEM_BYTES, PAGE_SIZE, STACK_SIZE,
};
use fata_hvt_codec::Codec;
use thiserror::Error;

/// Guest-physical address of the GDT.
pub const GDT_ADDR: u64 = 0x1000;
/// Guest-physical address of the TSS.
pub const TSS_ADDR: u64 = 0x1080;
/// Size of a 64-bit TSS minus one.
pub const TSS_LIMIT: u32 = 0x67;
/// Guest-physical address of the boot info.
pub const BOOT_INFO_ADDR: u64 = 0x2000;
/// Guest-physical address of the top-level page table (CR3).
pub const PML4_ADDR: u64 = 0x3000;
/// Where the tables the vCPU's entry state points at lie.
pub const TABLES: Tables = Tables {
    gdt: GDT_ADDR,
    tss: TSS_ADDR,
    tss_limit: TSS_LIMIT,
    pml4: PML4_ADDR,
};
const TABLES_END: u64 = 0x8_0000;
/// Guest-physical address of the app arguments.
pub const CMDLINE_ADDR: u64 = 0x8_0000;

/// Smallest RAM the monitor accepts.
pub const MIN_MEM_BYTES: u64 = 4 << 20;

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const ACCESSED: u64 = 1 << 5;
const DIRTY: u64 = 1 << 6;
const HUGE: u64 = 1 << 7;
const NO_EXECUTE: u64 = 1 << 63;
const TABLE: u64 = PRESENT | WRITABLE | USER | ACCESSED;
const DATA: u64 = PRESENT | WRITABLE | USER | ACCESSED | DIRTY | NO_EXECUTE;
const READ_ONLY: u64 = PRESENT | USER | ACCESSED | NO_EXECUTE;
const MIB2: u64 = 2 << 20;
const GIB: u64 = 1 << 30;

/// Why the guest's memory cannot be laid out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LayoutError {
    /// The memory size is not usable.
    #[error(
        "guest memory of {0} bytes is not usable: it must be a multiple of 2 MiB between 4 MiB and \
         3 GiB"
    )]
    BadMemSize(u64),
    /// The device rings leave no room for the image and heap.
    #[error("{mem} bytes of guest memory cannot hold the device rings and the image; raise --mem")]
    RingsTooLarge {
        /// The memory size.
        mem: u64,
    },
    /// The app's arguments do not fit.
    #[error("the app's arguments take {0} bytes, more than the {CMDLINE_MAX} allowed")]
    ArgsTooLong(u64),
    /// The image needs more page tables than the monitor keeps room for.
    #[error("the image is too large to map ({0:#x} bytes); keep it under 128 MiB")]
    ImageTooLarge(u64),
    /// A write fell outside RAM (cannot happen for a validated image and memory size).
    #[error(transparent)]
    OutOfRam(#[from] OutOfRam),
}

/// Checks a memory size and returns where the stack starts (the image must end below it).
pub fn stack_bottom(mem_bytes: u64) -> Result<u64, LayoutError> {
    if !(MIN_MEM_BYTES..=MAX_MEM_BYTES).contains(&mem_bytes) || !mem_bytes.is_multiple_of(MIB2) {
        return Err(LayoutError::BadMemSize(mem_bytes));
    }
    Ok(mem_bytes - STACK_SIZE)
}

/// Copies the image's segments into RAM (the rest of each segment stays zero: RAM starts zeroed).
pub fn load_image(ram: &GuestRam, file: &[u8], image: &Image) -> Result<(), LayoutError> {
    for s in &image.segments {
        // The parser checked that the file range is inside `file`.
        let from = s.file_offset as usize;
        ram.write(GuestAddr(s.addr), &file[from..from + s.file_size as usize])?;
    }
    Ok(())
}

/// Writes the GDT, the TSS and the identity page tables. `read_only` lists page-aligned
/// `(start, end)` ranges above the image that the guest may read but not write (key-value regions).
pub fn write_tables(
    ram: &GuestRam,
    image: &Image,
    read_only: &[(u64, u64)],
) -> Result<(), LayoutError> {
    ram.write(GuestAddr(GDT_ADDR), &words(&arch::gdt(&TABLES)))?;
    // The I/O bitmap offset (at byte 102) points past the TSS: no port is allowed.
    ram.write(
        GuestAddr(TSS_ADDR + 102),
        &(TSS_LIMIT as u16 + 1).to_le_bytes(),
    )?;

    let mut next = PML4_ADDR;
    let mut alloc = || -> Result<u64, LayoutError> {
        next += PAGE_SIZE;
        if next >= TABLES_END {
            return Err(LayoutError::ImageTooLarge(image.end));
        }
        Ok(next)
    };
    let mem = ram.size();
    let mut pml4 = [0u64; 512];
    let mut pdpt = [0u64; 512];
    let pdpt_addr = alloc()?;
    pml4[0] = pdpt_addr | TABLE;
    for gib in 0..4 {
        let base = gib * GIB;
        let window = (base..base + GIB).contains(&HYPERCALL_BASE);
        if base >= mem && !window {
            continue;
        }
        let mut pd = [0u64; 512];
        for (i, entry) in pd.iter_mut().enumerate() {
            let addr = base + i as u64 * MIB2;
            let end = addr + MIB2;
            let inside_read_only = read_only.iter().any(|&(s, e)| s <= addr && end <= e);
            let overlaps_read_only = read_only.iter().any(|&(s, e)| s < end && addr < e);
            if addr < image.end || (overlaps_read_only && !inside_read_only) {
                let pt_addr = alloc()?;
                ram.write(
                    GuestAddr(pt_addr),
                    &words(&page_table(addr, image, read_only)),
                )?;
                *entry = pt_addr | TABLE;
            } else if inside_read_only {
                *entry = addr | READ_ONLY | HUGE;
            } else if addr < mem || (addr..addr + MIB2).contains(&HYPERCALL_BASE) {
                *entry = addr | DATA | HUGE;
            }
        }
        let pd_addr = alloc()?;
        ram.write(GuestAddr(pd_addr), &words(&pd))?;
        pdpt[gib as usize] = pd_addr | TABLE;
    }
    ram.write(GuestAddr(pdpt_addr), &words(&pdpt))?;
    ram.write(GuestAddr(PML4_ADDR), &words(&pml4))?;
    Ok(())
}

/// The 4 KiB entries for the 2 MiB at `base`, which holds (part of) the image, the monitor's pages
/// or the edge of a read-only region.
fn page_table(base: u64, image: &Image, read_only: &[(u64, u64)]) -> [u64; 512] {
    let mut pt = [0u64; 512];
    for (i, entry) in pt.iter_mut().enumerate() {
        let addr = base + i as u64 * PAGE_SIZE;
        let flags = if addr == GDT_ADDR & !(PAGE_SIZE - 1) {
            PRESENT | WRITABLE | ACCESSED | DIRTY | NO_EXECUTE
        } else if addr == BOOT_INFO_ADDR
            || (CMDLINE_ADDR..CMDLINE_ADDR + CMDLINE_MAX).contains(&addr)
        {
            PRESENT | USER | ACCESSED | NO_EXECUTE
        } else if addr < LOAD_ADDR {
            0
        } else if let Some(s) = image
            .segments
            .iter()
            .find(|s| (s.addr & !(PAGE_SIZE - 1)..s.end()).contains(&addr))
        {
            let mut flags = PRESENT | USER | ACCESSED | DIRTY;
            if s.writable {
                flags |= WRITABLE;
            }
            if !s.executable {
                flags |= NO_EXECUTE;
            }
            flags
        } else if read_only.iter().any(|&(s, e)| (s..e).contains(&addr)) {
            READ_ONLY
        } else if addr >= image.end {
            DATA
        } else {
            0 // a gap between segments
        };
        if flags != 0 {
            *entry = addr | flags;
        }
    }
    pt
}

fn words(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// Writes the app arguments as NUL-terminated strings; returns their total length.
pub fn write_args(ram: &GuestRam, args: &[String]) -> Result<u64, LayoutError> {
    let mut bytes = Vec::new();
    for arg in args {
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(0);
    }
    if bytes.len() as u64 > CMDLINE_MAX {
        return Err(LayoutError::ArgsTooLong(bytes.len() as u64));
    }
    ram.write(GuestAddr(CMDLINE_ADDR), &bytes)?;
    Ok(bytes.len() as u64)
}

/// Writes the boot info.
pub fn write_boot_info(ram: &GuestRam, info: &BootInfo) -> Result<(), LayoutError> {
    let mut raw = [0u8; BootInfo::SIZE];
    info.encode(&mut raw);
    ram.write(GuestAddr(BOOT_INFO_ADDR), &raw)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::Segment;

    fn read_u64(ram: &GuestRam, addr: u64) -> u64 {
        let mut b = [0u8; 8];
        ram.read(GuestAddr(addr), &mut b).unwrap();
        u64::from_le_bytes(b)
    }

    /// Walks the page tables the way the CPU does; returns the leaf entry for `addr`.
    fn walk(ram: &GuestRam, addr: u64) -> Option<u64> {
        let mut table = PML4_ADDR;
        for shift in [39, 30, 21, 12] {
            let entry = read_u64(ram, table + ((addr >> shift) & 511) * 8);
            if entry & PRESENT == 0 {
                return None;
            }
            if shift == 12 || entry & HUGE != 0 {
                return Some(entry);
            }
            table = entry & 0x000f_ffff_ffff_f000;
        }
        None
    }

    #[test]
    fn page_tables_map_each_region_as_intended() {
        let ram = GuestRam::new(32 << 20).unwrap();
        let seg = |addr, size, writable, executable| Segment {
            addr,
            file_offset: 0,
            file_size: 0,
            mem_size: size,
            writable,
            executable,
        };
        let image = Image {
            entry: LOAD_ADDR,
            segments: vec![
                seg(LOAD_ADDR, 0x3000, false, true),
                seg(LOAD_ADDR + 0x3000, 0x1000, false, false),
                seg(LOAD_ADDR + 0x5000, 0x2100, true, false),
            ],
            end: LOAD_ADDR + 0x8000,
        };
        // A read-only region from 21 MiB + 8 KiB to 26 MiB: 4 KiB pages at its first edge, a whole
        // 2 MiB page inside, a 2 MiB page boundary at its end.
        let (ro_start, ro_end) = ((21 << 20) + 0x2000, 26 << 20);
        write_tables(&ram, &image, &[(ro_start, ro_end)]).unwrap();
        assert_eq!(walk(&ram, 0), None, "page 0 must stay unmapped");
        assert_eq!(
            walk(&ram, PML4_ADDR),
            None,
            "page tables must not be mapped"
        );
        let gdt = walk(&ram, GDT_ADDR).unwrap();
        assert_eq!(gdt & USER, 0, "GDT is supervisor-only");
        let boot = walk(&ram, BOOT_INFO_ADDR).unwrap();
        assert_eq!(
            boot & (USER | WRITABLE),
            USER,
            "boot info is user read-only"
        );
        let text = walk(&ram, LOAD_ADDR + 0x2fff).unwrap();
        assert_eq!(text & (WRITABLE | NO_EXECUTE | USER), USER);
        let rodata = walk(&ram, LOAD_ADDR + 0x3000).unwrap();
        assert_eq!(rodata & (WRITABLE | NO_EXECUTE), NO_EXECUTE);
        assert_eq!(walk(&ram, LOAD_ADDR + 0x4000), None, "gap between segments");
        let data = walk(&ram, LOAD_ADDR + 0x7000).unwrap();
        assert_eq!(data & (WRITABLE | NO_EXECUTE), WRITABLE | NO_EXECUTE);
        let heap = walk(&ram, 16 << 20).unwrap();
        assert_eq!(
            heap & (HUGE | WRITABLE | NO_EXECUTE | USER),
            HUGE | WRITABLE | NO_EXECUTE | USER
        );
        assert!(walk(&ram, (32 << 20) - 8).is_some(), "top of the stack");
        let below = walk(&ram, ro_start - 8).unwrap();
        assert_eq!(
            below & (HUGE | WRITABLE),
            WRITABLE,
            "heap beside the region"
        );
        for addr in [ro_start, (22 << 20) - 8, 22 << 20, 24 << 20, ro_end - 8] {
            let ro = walk(&ram, addr).unwrap();
            assert_eq!(
                ro & (PRESENT | USER | WRITABLE | NO_EXECUTE),
                PRESENT | USER | NO_EXECUTE,
                "read-only at {addr:#x}"
            );
        }
        assert_eq!(walk(&ram, 24 << 20).unwrap() & HUGE, HUGE);
        assert_eq!(walk(&ram, ro_start).unwrap() & HUGE, 0);
        let after = walk(&ram, ro_end).unwrap();
        assert_eq!(after & WRITABLE, WRITABLE, "writable after the region");
        assert_eq!(walk(&ram, 32 << 20), None, "nothing past RAM");
        let window = walk(&ram, HYPERCALL_BASE).unwrap();
        assert_eq!(window & (WRITABLE | USER), WRITABLE | USER);
        assert_eq!(window & 0x000f_ffff_ffe0_0000, HYPERCALL_BASE & !(MIB2 - 1));
    }

    #[test]
    fn memory_sizes_are_checked() {
        assert!(stack_bottom(32 << 20).is_ok());
        assert!(stack_bottom(3 << 20).is_err());
        assert!(stack_bottom((32 << 20) + 4096).is_err());
        assert!(stack_bottom(MAX_MEM_BYTES + MIB2).is_err());
    }
}
