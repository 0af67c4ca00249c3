//! The PVH boot protocol, as Fata's virtio and Xen guests use it.
//!
//! A VMM that boots an ELF by PVH (QEMU's `-kernel`, Firecracker, cloud-hypervisor, Xen's PVH
//! domains) looks for the `XEN_ELFNOTE_PHYS32_ENTRY` note, loads the segments at their physical
//! addresses and jumps to that entry in 32-bit protected mode, paging off, with `%ebx` holding
//! the physical address of an `hvm_start_info` structure (Xen's `arch-x86/hvm/start_info.h`).
//!
//! This crate holds both halves of that contract:
//! - [`start_info`]: the checked reader of `hvm_start_info`, its command line and memory map,
//!   which never trusts a length or address it reads (fuzzed as `pvh_start_info`);
//! - module `entry` (built with `--cfg fata_target="virtio"` or `"xen"`): the note and the 32-bit
//!   code that identity-maps the first 4 GiB with 2 MiB pages, enables SSE, enters long mode with a
//!   64-bit GDT, switches to a 1 MiB stack and calls the platform's
//!   `extern "C" fn fata_pvh_main(start_info_paddr: u64) -> !`.
//!
//! The guest runs at CPL0 from then on: the platform installs its own IDT and timer.
#![no_std]

#[cfg(any(fata_target = "virtio", fata_target = "xen"))]
mod entry;
pub mod start_info;

/// The selector of the 64-bit code segment the entry loads (the platform's IDT gates use it).
pub const CODE_SELECTOR: u16 = 0x08;
/// The selector of the data segment the entry loads into DS, ES and SS.
pub const DATA_SELECTOR: u16 = 0x10;
pub use start_info::{MemoryRegion, PhysMemory, StartInfo, StartInfoError};
