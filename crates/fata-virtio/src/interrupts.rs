//! The IDT, the local APIC timer and halting until it or a device fires.
//!
//! Interrupts are enabled only inside [`halt`], for the one `hlt` instruction (`sti; hlt` cannot
//! be split: `sti` holds interrupts off until after the next instruction), so a handler never
//! interrupts Rust code. That is why the handlers may run on the current stack even though the
//! precompiled `core` uses the red zone: the `asm!` around `hlt` is not `nostack`, so the compiler
//! keeps nothing below the stack pointer there. The timer and device handlers only acknowledge
//! the local APIC; whoever halted looks at the clock and the devices itself.
//! CPU exceptions print what happened and end the guest with the monitor's guest-fault status.

use crate::{clock, fail};
use core::sync::atomic::{AtomicU64, Ordering};

/// The local APIC timer's vector.
pub const TIMER_VECTOR: u8 = 0x30;
/// The vector every device interrupt uses: a wake-up, nothing more.
pub const DEVICE_VECTOR: u8 = 0x31;
const SPURIOUS_VECTOR: u8 = 0xff;

/// The local APIC's registers (the architectural default; checked against IA32_APIC_BASE).
const LAPIC_BASE: u64 = 0xfee0_0000;
const LAPIC_TPR: u64 = 0x80;
const LAPIC_EOI: u64 = 0xb0;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_LVT_TIMER: u64 = 0x320;
const LAPIC_TIMER_INITIAL: u64 = 0x380;
const LAPIC_TIMER_CURRENT: u64 = 0x390;
const LAPIC_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

/// Local APIC timer ticks per millisecond (divide by 1).
static APIC_KHZ: AtomicU64 = AtomicU64::new(0);

fn lapic_write(register: u64, value: u32) {
    // SAFETY: the local APIC's registers are identity-mapped MMIO at LAPIC_BASE; 32-bit aligned
    // stores to them have no effect on guest memory.
    unsafe { ((LAPIC_BASE + register) as *mut u32).write_volatile(value) }
}

fn lapic_read(register: u64) -> u32 {
    // SAFETY: as for `lapic_write`.
    unsafe { ((LAPIC_BASE + register) as *const u32).read_volatile() }
}

/// One IDT entry: a 64-bit interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    kind: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    const EMPTY: Gate = Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        kind: 0,
        offset_mid: 0,
        offset_high: 0,
        reserved: 0,
    };

    fn to(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: fata_pvh::CODE_SELECTOR,
            ist: 0,
            kind: 0x8e,
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

/// Written once by `init` before interrupts or exceptions can use it.
static IDT: spin::Once<Idt> = spin::Once::new();

#[repr(C, packed)]
struct IdtPointer {
    limit: u16,
    base: u64,
}

unsafe extern "C" {
    /// The 32 exception entry points, in vector order (defined below in assembly).
    static fata_exception_table: [u64; 32];
    fn fata_irq_eoi();
    fn fata_irq_spurious();
}

// Exception stubs push a zero where the CPU pushes no error code, then the vector, so the common
// path sees one layout: vector, error code, RIP, CS, RFLAGS, RSP, SS.
core::arch::global_asm!(
    ".pushsection .text.fata_interrupts,\"ax\",@progbits",
    ".irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31",
    "fata_exception_\\n:",
    "    push 0",
    "    push \\n",
    "    jmp fata_exception_common",
    ".endr",
    ".irp n, 8,10,11,12,13,14,17,21,29,30",
    "fata_exception_\\n:",
    "    push \\n",
    "    jmp fata_exception_common",
    ".endr",
    "fata_exception_common:",
    "    mov rdi, [rsp]",
    "    mov rsi, [rsp + 8]",
    "    mov rdx, [rsp + 16]",
    "    and rsp, -16",
    "    call {fatal}",
    "    ud2",
    ".globl fata_irq_eoi",
    "fata_irq_eoi:",
    "    push rax",
    "    mov eax, {eoi}",
    "    mov dword ptr [rax], 0",
    "    pop rax",
    "    iretq",
    ".globl fata_irq_spurious",
    "fata_irq_spurious:",
    "    iretq",
    ".popsection",
    ".pushsection .rodata.fata_exception_table,\"a\",@progbits",
    ".balign 8",
    ".globl fata_exception_table",
    "fata_exception_table:",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31",
    "    .quad fata_exception_\\n",
    ".endr",
    ".popsection",
    fatal = sym fatal_exception,
    eoi = const LAPIC_BASE + LAPIC_EOI,
);

const EXCEPTION_NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor overrun",
    "invalid TSS",
    "segment not present",
    "stack fault",
    "general protection",
    "page fault",
    "reserved",
    "x87 error",
    "alignment check",
    "machine check",
    "SIMD error",
    "virtualization",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security",
    "reserved",
];

extern "C" fn fatal_exception(vector: u64, error: u64, rip: u64) -> ! {
    let name = EXCEPTION_NAMES.get(vector as usize).copied().unwrap_or("?");
    let cr2: u64;
    // SAFETY: reading CR2 at CPL0 has no side effects.
    unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
    fail(format_args!(
        "the guest took CPU exception {vector} ({name}) at RIP {rip:#x}, error code {error:#x}, CR2 {cr2:#x}"
    ))
}

/// Loads the IDT, masks the legacy PICs and enables the local APIC with its timer masked.
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::EMPTY; 256];
        // SAFETY: the table is a static the assembly above defines and never changes.
        let exceptions = unsafe { &fata_exception_table };
        for (gate, &handler) in gates.iter_mut().zip(exceptions) {
            *gate = Gate::to(handler);
        }
        gates[usize::from(TIMER_VECTOR)] =
            Gate::to(fata_irq_eoi as unsafe extern "C" fn() as usize as u64);
        gates[usize::from(DEVICE_VECTOR)] =
            Gate::to(fata_irq_eoi as unsafe extern "C" fn() as usize as u64);
        gates[usize::from(SPURIOUS_VECTOR)] =
            Gate::to(fata_irq_spurious as unsafe extern "C" fn() as usize as u64);
        Idt(gates)
    });
    let pointer = IdtPointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: idt as *const Idt as u64,
    };
    // SAFETY: the IDT is a static that lives for the whole run and every present gate points to
    // a handler above; interrupts stay disabled (IF clear) until `halt`.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack)) };
    // The 8259 PICs: every line masked, so only the I/O APIC delivers device interrupts.
    crate::port::outb(0x21, 0xff);
    crate::port::outb(0xa1, 0xff);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, 0x100 | u32::from(SPURIOUS_VECTOR));
    lapic_write(LAPIC_TIMER_DIVIDE, 0xb);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
}

/// Measures the TSC and the local APIC timer against the PIT, or takes the hypervisor's word
/// for both; returns the TSC frequency in kHz.
pub fn calibrate() -> u64 {
    if let Some((tsc_khz, apic_khz)) = clock::hypervisor_frequencies() {
        APIC_KHZ.store(apic_khz, Ordering::Relaxed);
        return tsc_khz;
    }
    // 5 ms of PIT time: the TSC rate to a fraction of a percent, at a small cost to boot time.
    const PIT_TICKS: u64 = clock::PIT_HZ / 200;
    let mut apic_left = 0;
    let tsc_ticks = clock::tsc_over_pit(
        PIT_TICKS,
        || lapic_write(LAPIC_TIMER_INITIAL, u32::MAX),
        || apic_left = lapic_read(LAPIC_TIMER_CURRENT),
    )
    .unwrap_or_else(|| {
        fail(format_args!(
            "the VMM gives no way to measure time (no PIT, no CPUID leaf 0x40000010): run QEMU with its PIT (microvm's pit=on)"
        ))
    });
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    // Both counts span the same window: 1/200 s.
    APIC_KHZ.store(u64::from(u32::MAX - apic_left) / 5, Ordering::Relaxed);
    tsc_ticks / 5
}

/// Halts until an interrupt: the timer, armed for `deadline_tsc` when given, or a device.
/// Returns at once if the deadline has passed.
pub fn halt(deadline_tsc: Option<u64>) {
    if let Some(deadline) = deadline_tsc {
        let now = clock::rdtsc();
        if now >= deadline {
            return;
        }
        let ticks = u128::from(deadline - now) * u128::from(APIC_KHZ.load(Ordering::Relaxed))
            / u128::from(clock::tsc_khz().max(1));
        let count = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
        lapic_write(LAPIC_LVT_TIMER, u32::from(TIMER_VECTOR));
        lapic_write(LAPIC_TIMER_INITIAL, count);
    }
    // SAFETY: enables interrupts for exactly the `hlt`; the handlers (above) touch only the
    // local APIC and return here, where `cli` disables them again. Not `nostack`, so no data
    // lives in the red zone while a handler pushes its frame.
    unsafe { core::arch::asm!("sti", "hlt", "cli") };
    lapic_write(LAPIC_TIMER_INITIAL, 0);
}
