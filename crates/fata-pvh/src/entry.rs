//! The PVH note and the 32-bit entry into long mode.
//!
//! Written in assembly because it runs before there is a stack, paging or 64-bit mode: nothing
//! Rust generates can run there. Everything it builds (page tables, GDT, stack) lives in this
//! image's `.bss` and `.rodata`, so the VMM has to provide nothing but the entry registers.

use crate::{CODE_SELECTOR, DATA_SELECTOR};
use fata_x86::{
    CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, EFER_LME,
    KERNEL_CODE64, KERNEL_DATA, gdt_entry,
};

/// Bytes of the stack the entry switches to before calling Rust.
const STACK_SIZE: usize = 1 << 20;

/// How many 2 MiB pages the identity map covers: 4 GiB, which holds RAM below the PCI hole and
/// the MMIO of the local APIC, the I/O APIC, virtio-mmio and PCI ECAM.
const MAPPED_2M_PAGES: usize = 2048;

/// The identity map: one PML4, one PDPT and four page directories, written by the entry code.
#[repr(C, align(4096))]
struct PageTables {
    pml4: [u64; 512],
    pdpt: [u64; 512],
    directories: [u64; MAPPED_2M_PAGES],
}

/// The stack Rust starts on.
#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

// SAFETY (of the `static mut`s): only the entry assembly touches them, once, before any Rust
// code runs; Rust never forms a reference to either.
static mut PAGE_TABLES: PageTables = PageTables {
    pml4: [0; 512],
    pdpt: [0; 512],
    directories: [0; MAPPED_2M_PAGES],
};
static mut STACK: Stack = Stack([0; STACK_SIZE]);

/// The GDT: null, 64-bit code (`CODE_SELECTOR`), data (`DATA_SELECTOR`).
static GDT: [u64; 3] = [
    0,
    gdt_entry(KERNEL_CODE64, 0, 0xfffff),
    gdt_entry(KERNEL_DATA, 0, 0xfffff),
];

/// The operand of `lgdt`: limit, then base (read as 32 bits in protected mode; the GDT is below
/// 4 GiB, so the upper half is zero).
#[repr(C, packed)]
struct GdtPointer {
    limit: u16,
    base: &'static [u64; 3],
}

static GDT_POINTER: GdtPointer = GdtPointer {
    limit: (core::mem::size_of::<[u64; 3]>() - 1) as u16,
    base: &GDT,
};

/// Page-table entry bits: present, writable, and (in a directory) a 2 MiB page.
const PRESENT_WRITABLE: u32 = 0x3;
const HUGE: u32 = 0x80;

core::arch::global_asm!(
    // XEN_ELFNOTE_PHYS32_ENTRY (18): the 32-bit physical entry address. The section is a real
    // note (@note) so the link script can put it in a PT_NOTE the VMM reads.
    ".pushsection .note.Xen,\"a\",@note",
    ".balign 4",
    ".long 4, 4, 18",
    ".asciz \"Xen\"",
    ".balign 4",
    ".long fata_pvh_start32",
    ".popsection",

    ".pushsection .text.fata_pvh_start32,\"ax\",@progbits",
    ".code32",
    ".globl fata_pvh_start32",
    ".type fata_pvh_start32,@function",
    "fata_pvh_start32:",
    "    cli",
    "    cld",
    "    mov esi, ebx",
    // Page directories: entry i maps 2 MiB page i.
    "    lea edi, [{tables} + 8192]",
    "    xor ecx, ecx",
    "2:  mov eax, ecx",
    "    shl eax, 21",
    "    or eax, {huge_rw}",
    "    mov [edi + ecx * 8], eax",
    "    mov dword ptr [edi + ecx * 8 + 4], 0",
    "    inc ecx",
    "    cmp ecx, {pages}",
    "    jne 2b",
    // The PDPT points to the four directories, the PML4 to the PDPT.
    "    lea edi, [{tables} + 4096]",
    "    xor ecx, ecx",
    "3:  mov eax, ecx",
    "    shl eax, 12",
    "    lea eax, [eax + {tables} + 8192 + {rw}]",
    "    mov [edi + ecx * 8], eax",
    "    mov dword ptr [edi + ecx * 8 + 4], 0",
    "    inc ecx",
    "    cmp ecx, {pages} / 512",
    "    jne 3b",
    "    lea eax, [{tables} + 4096 + {rw}]",
    "    mov [{tables}], eax",
    "    mov dword ptr [{tables} + 4], 0",
    // PAE and SSE, the page tables, long mode, then paging.
    "    mov eax, cr4",
    "    or eax, {cr4}",
    "    mov cr4, eax",
    "    lea eax, [{tables}]",
    "    mov cr3, eax",
    "    mov ecx, 0xc0000080",
    "    rdmsr",
    "    or eax, {efer}",
    "    wrmsr",
    "    mov eax, cr0",
    "    and eax, ~4",
    "    or eax, {cr0}",
    "    mov cr0, eax",
    "    lgdt [{gdt_pointer}]",
    "    push {code}",
    "    lea eax, [4f]",
    "    push eax",
    "    retf",
    ".code64",
    "4:  mov eax, {data}",
    "    mov ds, eax",
    "    mov es, eax",
    "    mov ss, eax",
    "    xor eax, eax",
    "    mov fs, eax",
    "    mov gs, eax",
    "    lea rsp, [{stack} + {stack_size}]",
    "    xor ebp, ebp",
    "    mov edi, esi",
    "    call fata_pvh_main",
    "    ud2",
    ".size fata_pvh_start32, . - fata_pvh_start32",
    ".popsection",
    tables = sym PAGE_TABLES,
    stack = sym STACK,
    stack_size = const STACK_SIZE,
    gdt_pointer = sym GDT_POINTER,
    pages = const MAPPED_2M_PAGES,
    huge_rw = const HUGE | PRESENT_WRITABLE,
    rw = const PRESENT_WRITABLE,
    cr4 = const CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT,
    efer = const EFER_LME,
    cr0 = const CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG,
    code = const CODE_SELECTOR,
    data = const DATA_SELECTOR,
);
