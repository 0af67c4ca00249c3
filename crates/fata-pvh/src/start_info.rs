//! The checked reader of `hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`).
//!
//! The structure, its command line and its memory map are read through [`PhysMemory`], which
//! answers whether an address range can be read at all; every length and count read from the
//! structure is bounded before use, so a wrong or hostile start info is an error, never a wild
//! read or a panic.

use core::fmt;

/// `hvm_start_info.magic`: `"xEn3"` with the top bit cleared.
pub const MAGIC: u32 = 0x336e_c578;

/// The most memory-map entries kept; later ones are ignored (QEMU passes fewer than ten).
pub const MAX_REGIONS: usize = 32;

/// The longest command line read, in bytes, without its NUL.
pub const CMDLINE_MAX: usize = 4096;

/// `hvm_memmap_table_entry.type` of usable RAM (the E820 type).
pub const RAM: u32 = 1;

/// Bytes of `hvm_start_info` up to and including the memory map fields (version 1).
const START_INFO_LEN: usize = 56;
/// Bytes of one `hvm_memmap_table_entry`.
const MEMMAP_ENTRY_LEN: usize = 24;

/// Reads guest-physical memory for the parser.
pub trait PhysMemory {
    /// Fills `buf` from `paddr`, or fails if any byte of the range is not readable memory.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), StartInfoError>;
}

/// Why a start info could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartInfoError {
    /// An address the structure names is outside readable memory.
    Unreadable(u64),
    /// The magic number is wrong: the VMM did not boot this image by PVH.
    BadMagic(u32),
    /// The command line has no NUL within [`CMDLINE_MAX`] bytes.
    CmdlineTooLong,
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::Unreadable(at) => {
                write!(f, "the PVH start info points outside memory ({at:#x})")
            }
            StartInfoError::BadMagic(magic) => write!(
                f,
                "no PVH start info (magic {magic:#x}): boot this image with a VMM's PVH loader, such as QEMU's -kernel"
            ),
            StartInfoError::CmdlineTooLong => write!(
                f,
                "the command line is longer than {CMDLINE_MAX} bytes: pass fewer arguments"
            ),
        }
    }
}

/// One entry of the memory map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type; [`RAM`] is usable memory.
    pub kind: u32,
}

impl MemoryRegion {
    /// The first byte past the region (saturating).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// What the start info says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfo {
    /// The structure's version (1 carries a memory map).
    pub version: u32,
    /// Physical address of the NUL-terminated command line, 0 when there is none.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, 0 when the VMM gives none.
    pub rsdp_paddr: u64,
    regions: [MemoryRegion; MAX_REGIONS],
    region_count: usize,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl StartInfo {
    /// Reads the start info at `paddr`.
    pub fn read(memory: &impl PhysMemory, paddr: u64) -> Result<StartInfo, StartInfoError> {
        let mut header = [0; START_INFO_LEN];
        // Version 0 ends before the memory map: read its 40 bytes first, the rest if version 1.
        memory.read(paddr, &mut header[..40])?;
        let magic = u32_at(&header, 0);
        if magic != MAGIC {
            return Err(StartInfoError::BadMagic(magic));
        }
        let version = u32_at(&header, 4);
        let mut info = StartInfo {
            version,
            cmdline_paddr: u64_at(&header, 24),
            rsdp_paddr: u64_at(&header, 32),
            regions: [MemoryRegion::default(); MAX_REGIONS],
            region_count: 0,
        };
        if version == 0 {
            return Ok(info);
        }
        let rest = paddr
            .checked_add(40)
            .ok_or(StartInfoError::Unreadable(paddr))?;
        memory.read(rest, &mut header[40..])?;
        let memmap = u64_at(&header, 40);
        let entries = (u32_at(&header, 48) as usize).min(MAX_REGIONS);
        for index in 0..entries {
            let at = (index as u64 * MEMMAP_ENTRY_LEN as u64)
                .checked_add(memmap)
                .ok_or(StartInfoError::Unreadable(memmap))?;
            let mut entry = [0; MEMMAP_ENTRY_LEN];
            memory.read(at, &mut entry)?;
            info.regions[index] = MemoryRegion {
                addr: u64_at(&entry, 0),
                size: u64_at(&entry, 8),
                kind: u32_at(&entry, 16),
            };
        }
        info.region_count = entries;
        Ok(info)
    }

    /// The memory map, in the VMM's order.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// The RAM region that holds `addr`, if the map has one.
    pub fn ram_holding(&self, addr: u64) -> Option<MemoryRegion> {
        self.regions()
            .iter()
            .copied()
            .find(|r| r.kind == RAM && r.addr <= addr && addr < r.end())
    }

    /// Copies the command line into `buf` and returns it, without its NUL; empty when there is
    /// none.
    pub fn cmdline<'b>(
        &self,
        memory: &impl PhysMemory,
        buf: &'b mut [u8; CMDLINE_MAX],
    ) -> Result<&'b [u8], StartInfoError> {
        if self.cmdline_paddr == 0 {
            return Ok(&[]);
        }
        for (index, byte) in buf.iter_mut().enumerate() {
            let at = self
                .cmdline_paddr
                .checked_add(index as u64)
                .ok_or(StartInfoError::Unreadable(self.cmdline_paddr))?;
            let mut one = [0];
            memory.read(at, &mut one)?;
            if one[0] == 0 {
                return Ok(&buf[..index]);
            }
            *byte = one[0];
        }
        Err(StartInfoError::CmdlineTooLong)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    /// Memory that starts at `base`.
    struct Bytes {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMemory for Bytes {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), StartInfoError> {
            let start = paddr
                .checked_sub(self.base)
                .ok_or(StartInfoError::Unreadable(paddr))? as usize;
            let part = self
                .bytes
                .get(start..start + buf.len())
                .ok_or(StartInfoError::Unreadable(paddr))?;
            buf.copy_from_slice(part);
            Ok(())
        }
    }

    fn start_info(version: u32, cmdline: &[u8], regions: &[(u64, u64, u32)]) -> Bytes {
        let base = 0x6000;
        let mut bytes = Vec::new();
        bytes.extend(MAGIC.to_le_bytes());
        bytes.extend(version.to_le_bytes());
        bytes.extend([0; 8]);
        bytes.extend(0u64.to_le_bytes());
        bytes.extend((base + 0x100u64).to_le_bytes());
        bytes.extend(0xe0000u64.to_le_bytes());
        bytes.extend((base + 0x200u64).to_le_bytes());
        bytes.extend((regions.len() as u32).to_le_bytes());
        bytes.resize(0x100, 0);
        bytes.extend(cmdline);
        bytes.resize(0x200, 0);
        for &(addr, size, kind) in regions {
            bytes.extend(addr.to_le_bytes());
            bytes.extend(size.to_le_bytes());
            bytes.extend(kind.to_le_bytes());
            bytes.extend([0; 4]);
        }
        Bytes { base, bytes }
    }

    #[test]
    fn reads_what_qemu_passes() {
        let memory = start_info(
            1,
            b"fata.arg=--count fata.arg=4\0",
            &[
                (0, 0x9fc00, RAM),
                (0x100000, 0x1f00000, RAM),
                (0xfeff_c000, 0x4000, 2),
            ],
        );
        let info = StartInfo::read(&memory, 0x6000).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.rsdp_paddr, 0xe0000);
        assert_eq!(info.regions().len(), 3);
        assert_eq!(info.ram_holding(0x100000).unwrap().end(), 0x2000000);
        assert_eq!(info.ram_holding(0xfeff_c000), None);
        let mut buf = [0; CMDLINE_MAX];
        assert_eq!(
            info.cmdline(&memory, &mut buf).unwrap(),
            b"fata.arg=--count fata.arg=4"
        );
    }

    #[test]
    fn refuses_what_is_not_a_start_info() {
        let mut memory = start_info(1, b"\0", &[]);
        assert_eq!(
            StartInfo::read(&memory, 0x5000),
            Err(StartInfoError::Unreadable(0x5000))
        );
        memory.bytes[0] = 0;
        assert!(matches!(
            StartInfo::read(&memory, 0x6000),
            Err(StartInfoError::BadMagic(_))
        ));
    }

    #[test]
    fn bounds_the_command_line_and_the_map() {
        let mut memory = start_info(1, b"\0", &[]);
        let info = StartInfo::read(&memory, 0x6000).unwrap();
        let mut buf = [0; CMDLINE_MAX];
        // A command line without its NUL: too long, or running off the end of memory.
        memory.bytes.truncate(0x100);
        memory.bytes.resize(0x100 + CMDLINE_MAX + 1, b'a');
        assert_eq!(
            info.cmdline(&memory, &mut buf),
            Err(StartInfoError::CmdlineTooLong)
        );
        memory.bytes.truncate(0x180);
        assert!(matches!(
            info.cmdline(&memory, &mut buf),
            Err(StartInfoError::Unreadable(_))
        ));
        let mut huge = start_info(1, b"\0", &[]);
        huge.bytes[48..52].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(StartInfo::read(&huge, 0x6000).is_err());
        let version0 = start_info(0, b"\0", &[(0, 1, RAM)]);
        assert!(
            StartInfo::read(&version0, 0x6000)
                .unwrap()
                .regions()
                .is_empty()
        );
    }
}
