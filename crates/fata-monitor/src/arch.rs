//! The x86-64 entry state of an hvt guest: the GDT the guest sees and the registers KVM loads,
//! both derived from the same descriptors (`fata-x86`), so they cannot disagree.
//!
//! The guest starts in 64-bit mode at CPL3 with paging, long mode, NX and SSE on: CS and the data
//! segments are DPL3 entries of [`gdt`], TR its TSS, there is no IDT (an exception ends the guest
//! as a triple fault, which the monitor reports), IF and IOPL are clear.

use fata_x86::{
    CR0_ET, CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP, CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, EFER_LMA,
    EFER_LME, EFER_NXE, Segment, USER_CODE64, USER_DATA, gdt_entry, tss_entry,
};
use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};

/// The GDT's entries: null, code, data, then the two halves of the TSS descriptor.
pub const GDT_ENTRIES: usize = 5;
const CODE: usize = 1;
const DATA: usize = 2;
const TSS: usize = 3;
/// The GDT's limit, for GDTR.
const GDT_LIMIT: u16 = (GDT_ENTRIES * 8 - 1) as u16;
/// Bit 1 of RFLAGS is reserved and reads as one; IF and IOPL stay clear (no interrupts, no ports).
const RFLAGS_RESERVED: u64 = 1 << 1;

/// Where the monitor put the tables the entry state points at (guest-physical addresses).
#[derive(Debug, Clone, Copy)]
pub struct Tables {
    /// The GDT, as [`gdt`] makes it.
    pub gdt: u64,
    /// The TSS.
    pub tss: u64,
    /// The TSS's size minus one.
    pub tss_limit: u32,
    /// The top-level page table (CR3).
    pub pml4: u64,
}

/// The GDT the monitor writes at `tables.gdt`: DPL3 64-bit code, DPL3 data, a busy TSS.
pub fn gdt(tables: &Tables) -> [u64; GDT_ENTRIES] {
    let [tss_low, tss_high] = tss_entry(tables.tss, tables.tss_limit);
    [
        0,
        gdt_entry(USER_CODE64, 0, 0xfffff),
        gdt_entry(USER_DATA, 0, 0xfffff),
        tss_low,
        tss_high,
    ]
}

/// A KVM segment register loaded from a decoded descriptor, selected by `selector`.
fn kvm_segment_from(segment: Segment, selector: u16) -> kvm_segment {
    kvm_segment {
        base: segment.base,
        limit: segment.limit,
        selector,
        type_: segment.type_,
        present: segment.present,
        dpl: segment.dpl,
        db: segment.db,
        s: segment.code_or_data,
        l: segment.long,
        g: segment.granular,
        avl: segment.avl,
        unusable: u8::from(segment.present == 0),
        padding: 0,
    }
}

/// The segment register for GDT entry `index` of `table`, with a requested privilege level equal
/// to the entry's DPL.
fn kvm_segment_from_gdt(table: &[u64; GDT_ENTRIES], index: usize) -> kvm_segment {
    let segment = Segment::from_gdt(table[index]);
    kvm_segment_from(segment, (index as u16) << 3 | u16::from(segment.dpl))
}

/// Sets the special registers of the entry state: segments from [`gdt`], GDTR, no IDT, paging
/// from `tables.pml4`, long mode and SSE.
pub fn set_entry_sregs(sregs: &mut kvm_sregs, tables: &Tables) {
    let table = gdt(tables);
    let data = kvm_segment_from_gdt(&table, DATA);
    sregs.cs = kvm_segment_from_gdt(&table, CODE);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    let tss = Segment::from_system_descriptor([table[TSS], table[TSS + 1]]);
    sregs.tr = kvm_segment_from(tss, (TSS as u16) << 3);
    sregs.ldt = kvm_segment {
        unusable: 1,
        present: 0,
        ..sregs.tr
    };
    sregs.gdt.base = tables.gdt;
    sregs.gdt.limit = GDT_LIMIT;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = tables.pml4;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
}

/// The general registers of the entry state: at `entry` with the stack at `stack_top` and the
/// boot info's address in RDI.
pub fn entry_regs(entry: u64, stack_top: u64, boot_info: u64) -> kvm_regs {
    kvm_regs {
        rip: entry,
        rsp: stack_top,
        rdi: boot_info,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: Tables = Tables {
        gdt: 0x1000,
        tss: 0x1080,
        tss_limit: 0x67,
        pml4: 0x3000,
    };

    #[test]
    fn registers_come_from_the_gdt_the_guest_sees() {
        let mut sregs = kvm_sregs::default();
        set_entry_sregs(&mut sregs, &TABLES);
        // The values the monitor has always loaded, now derived from the table.
        assert_eq!(
            (sregs.cs.selector, sregs.cs.type_, sregs.cs.dpl),
            (0x0b, 0xb, 3)
        );
        assert_eq!(
            (sregs.cs.l, sregs.cs.db, sregs.cs.g, sregs.cs.s),
            (1, 0, 1, 1)
        );
        assert_eq!((sregs.cs.base, sregs.cs.limit), (0, 0xffff_ffff));
        assert_eq!(
            (sregs.ss.selector, sregs.ss.type_, sregs.ss.db, sregs.ss.l),
            (0x13, 3, 1, 0)
        );
        assert_eq!(sregs.ds, sregs.ss);
        assert_eq!(
            (sregs.tr.selector, sregs.tr.base, sregs.tr.limit),
            (0x18, 0x1080, 0x67)
        );
        assert_eq!(
            (sregs.tr.type_, sregs.tr.s, sregs.tr.dpl, sregs.tr.present),
            (0xb, 0, 0, 1)
        );
        assert_eq!((sregs.ldt.unusable, sregs.gdt.limit), (1, 39));
        assert_eq!((sregs.gdt.base, sregs.cr3), (0x1000, 0x3000));
        assert_eq!(gdt(&TABLES)[CODE], 0x00af_fb00_0000_ffff);
        assert_eq!(gdt(&TABLES)[DATA], 0x00cf_f300_0000_ffff);
    }
}
