//! The freestanding runtime of a virtio image: the Rust side of the PVH entry, the allocator and
//! the panic handler. Compiled only with `--cfg fata_target="virtio"`.

extern crate fata_freestanding;

use crate::{boot, clock, interrupts, serial};
use core::fmt::Write;
use fata_pvh::{PhysMemory, StartInfo, StartInfoError};
use talc::TalcLock;
use talc::source::Manual;

#[global_allocator]
static ALLOCATOR: TalcLock<spin::mutex::SpinMutex<()>, Manual> = TalcLock::new(Manual);

unsafe extern "C" {
    /// The app's entry point; `#[fata::main]` generates it.
    fn main() -> i32;
    /// The first byte past the image, `.bss` included (defined by link.ld).
    static __fata_image_end: u8;
}

/// The identity map the PVH entry set up: physical address = virtual address below 4 GiB.
struct IdentityMap;

const MAPPED: u64 = 4 << 30;

impl PhysMemory for IdentityMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), StartInfoError> {
        let end = paddr.checked_add(buf.len() as u64);
        if paddr == 0 || end.is_none_or(|end| end > MAPPED) {
            return Err(StartInfoError::Unreadable(paddr));
        }
        // SAFETY: the range is inside the identity map (checked above) and reading memory the VMM
        // wrote has no side effects; the VMM's structures are plain bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

/// Called by the PVH entry in long mode, interrupts off, on the entry's stack.
#[unsafe(no_mangle)]
extern "C" fn fata_pvh_main(start_info_paddr: u64) -> ! {
    let boot_tsc = clock::rdtsc();
    serial::init();
    let info = StartInfo::read(&IdentityMap, start_info_paddr)
        .unwrap_or_else(|e| crate::fail(format_args!("{e}")));
    let mut cmdline = [0; fata_pvh::start_info::CMDLINE_MAX];
    let cmdline = info
        .cmdline(&IdentityMap, &mut cmdline)
        .unwrap_or_else(|e| crate::fail(format_args!("{e}")));
    let image_end = &raw const __fata_image_end as u64;
    let heap_start = image_end.next_multiple_of(4096);
    let heap_end = info
        .ram_holding(heap_start)
        .map_or(heap_start, |ram| ram.end().min(MAPPED));
    if heap_end <= heap_start + (1 << 20) {
        crate::fail(format_args!(
            "less than 1 MiB of RAM follows the image at {heap_start:#x}: give the guest more memory (-m)"
        ));
    }
    // SAFETY: `heap_start..heap_end` is RAM by the VMM's memory map, past the image, its `.bss`
    // and the entry's stack, and below the identity map's end; nothing else uses it. The start
    // info and command line are below 1 MiB, and the command line was copied out above.
    unsafe {
        ALLOCATOR
            .lock()
            .claim(heap_start as *mut u8, (heap_end - heap_start) as usize)
    };
    interrupts::init();
    let tsc_khz = interrupts::calibrate();
    clock::start(boot_tsc, tsc_khz);
    boot::set(cmdline);
    // SAFETY: `main` is the app's entry point, a plain C function with no preconditions.
    let status = unsafe { main() };
    crate::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = serial::Writer;
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
    crate::exit(101)
}
