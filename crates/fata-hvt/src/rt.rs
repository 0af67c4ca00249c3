//! The freestanding runtime of an hvt image: entry point, allocator, panic handler and the ABI
//! note (the C-library symbols come from `fata-freestanding`). Compiled only with
//! `--cfg fata_target="hvt"`: on any other build these symbols would clash with the host's.

extern crate fata_freestanding;

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
