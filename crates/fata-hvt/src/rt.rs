//! The freestanding runtime of an hvt image: entry point, allocator, panic handler, the symbols
//! the precompiled `core` expects from a C library, and the ABI note. Compiled only with
//! `--cfg fata_target="hvt"`: on any other build these symbols would clash with the host's.

use crate::{boot, clock, hypercall};
use core::fmt::{self, Write};
use fata_hvt_abi::{ABI_MISMATCH_STATUS, ABI_VERSION, AbiNote, BootInfo};
use talc::TalcLock;
use talc::source::Manual;

/// Tells the monitor which ABI this image speaks (kept by `KEEP(*(.note.fata))` in link.ld).
#[used]
#[unsafe(link_section = ".note.fata")]
static ABI_NOTE: AbiNote = AbiNote::CURRENT;

#[global_allocator]
static ALLOCATOR: TalcLock<spin::mutex::SpinMutex<()>, Manual> = TalcLock::new(Manual);

unsafe extern "C" {
    /// The app's entry point; `#[fata::main]` generates it.
    fn main() -> i32;
}

// The monitor enters here at CPL3 with RDI = boot info and RSP = top of RAM. Align the stack as
// the SysV ABI expects at a call, clear the frame pointer for backtraces, and call Rust.
core::arch::global_asm!(
    ".section .text._start,\"ax\",@progbits",
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "    xor ebp, ebp",
    "    and rsp, -16",
    "    call {entry}",
    "    ud2",
    entry = sym entry,
);

extern "C" fn entry(boot_info: *const BootInfo) -> ! {
    clock::start(clock::rdtsc());
    // SAFETY: the monitor passes the address of a `BootInfo` it wrote into mapped guest memory and
    // never changes afterwards; the struct is plain integers, valid for any bytes.
    let info = unsafe { boot_info.read() };
    if info.abi_version != ABI_VERSION {
        hypercall::exit(ABI_MISMATCH_STATUS);
    }
    boot::set(info);
    let heap_size = info.heap_end.saturating_sub(info.kernel_end) as usize;
    // SAFETY: `kernel_end..heap_end` is RAM the monitor mapped read-write for the guest and that
    // holds neither the image, the device rings nor the stack; nothing else uses it.
    unsafe {
        ALLOCATOR
            .lock()
            .claim(info.kernel_end as *mut u8, heap_size)
    };
    // SAFETY: `main` is the app's entry point, a plain C function with no preconditions.
    let status = unsafe { main() };
    hypercall::exit(status)
}

/// Collects console output in a buffer so a panic message costs one or two exits, not one per
/// fragment.
struct Buffered {
    buf: [u8; 512],
    len: usize,
}

impl Buffered {
    fn flush(&mut self) {
        hypercall::console_write(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = Buffered {
        buf: [0; 512],
        len: 0,
    };
    let _ = match info.location() {
        Some(at) => writeln!(
            out,
            "panicked at {}:{}:{}:",
            at.file(),
            at.line(),
            at.column()
        ),
        None => writeln!(out, "panicked:"),
    };
    let _ = writeln!(out, "{}", info.message());
    out.flush();
    hypercall::exit(101)
}

// The precompiled `core` keeps landing pads that name these; with `panic=abort` they never run.
/// Unwinding is not supported: ends the guest as a panic does.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    hypercall::exit(101)
}

/// Never called with `panic=abort`; present so the image links.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// The C library functions LLVM emits calls to. The copies use `rep movsb`/`rep stosb` (fast on
// current CPUs) and the comparisons read through `read_volatile`, so LLVM cannot recognise the loop
// and turn the body back into a call to the function itself.

/// Copies `n` bytes from `src` to `dest`; the ranges must not overlap.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges; DF is clear (SysV ABI), so the copy runs forward.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// Copies `n` bytes from `src` to `dest`; the ranges may overlap.
///
/// # Safety
/// `src` readable and `dest` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // `dest` is below `src` or past its end: a forward copy never reads a byte it wrote.
        // SAFETY: as for `memcpy`; the forward order makes the overlap harmless.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: `dest` overlaps the end of `src`: copy backwards from the last byte, with DF set only
    // for the duration of the copy.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack),
        );
    }
    dest
}

/// Sets `n` bytes at `dest` to `c`.
///
/// # Safety
/// `dest` writable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees the range; DF is clear.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            in("al") c as u8,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// Compares `n` bytes; returns the difference of the first differing pair, or 0.
///
/// # Safety
/// Both pointers readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and the caller guarantees `n` readable bytes behind both pointers.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Compares `n` bytes for equality; 0 when equal.
///
/// # Safety
/// Both pointers readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// The length of the NUL-terminated string at `s`.
///
/// # Safety
/// `s` points to a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a NUL terminator, so every byte up to it is readable.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
