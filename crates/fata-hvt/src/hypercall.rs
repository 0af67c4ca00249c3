//! The hypercalls: fill the argument struct, store its address to the call's slot in the window.

use core::arch::asm;
use fata_hvt_abi::{
    CONSOLE_WRITE_MAX, ConsoleWriteArgs, ExitArgs, GuestAddr, Hypercall, YieldArgs,
    hypercall_address,
};

/// Makes hypercall `call` with its argument struct `args`.
fn hypercall<T>(call: Hypercall, args: &mut T) {
    // Memory is identity-mapped, so the struct's address is its guest-physical address.
    let args = core::ptr::from_mut(args) as u64;
    // SAFETY: the store goes to the hypercall window, which the monitor maps for this purpose and
    // which no Rust object occupies. The asm is not `nomem`: the compiler writes `*args` before it
    // and rereads it after, so the monitor's *out* fields are seen.
    unsafe {
        asm!(
            "mov qword ptr [{slot}], {args}",
            slot = in(reg) hypercall_address(call),
            args = in(reg) args,
            options(nostack, preserves_flags),
        );
    }
}

/// Writes `bytes` to the console, in chunks of at most the ABI's limit.
pub fn console_write(bytes: &[u8]) {
    for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
        let mut args = ConsoleWriteArgs {
            data: GuestAddr(chunk.as_ptr() as u64),
            len: chunk.len() as u64,
        };
        hypercall(Hypercall::ConsoleWrite, &mut args);
    }
}

/// Blocks for at most `timeout_ns` or until a handle in `interest` is ready; returns the ready set.
pub fn yield_for(timeout_ns: u64, interest: u64) -> u64 {
    let mut args = YieldArgs {
        timeout_ns,
        interest,
        ready: 0,
    };
    hypercall(Hypercall::Yield, &mut args);
    args.ready
}

/// Ends the guest with `status`.
pub fn exit(status: i32) -> ! {
    let mut args = ExitArgs { status, pad: 0 };
    hypercall(Hypercall::Exit, &mut args);
    // The monitor never resumes a guest after its exit hypercall.
    loop {
        core::hint::spin_loop();
    }
}

/// Stores to a device's doorbell: exits to the monitor, which sends a network device's transmit
/// ring, or takes and starts a block device's published requests.
pub fn doorbell(addr: GuestAddr) {
    // SAFETY: `addr` is a doorbell from the boot info, in the doorbell window the monitor maps for
    // this purpose and which no Rust object occupies; the store has no other effect on memory.
    unsafe {
        asm!(
            "mov qword ptr [{addr}], {one}",
            addr = in(reg) addr.0,
            one = in(reg) 1u64,
            options(nostack, preserves_flags),
        );
    }
}
