//! Signals: SIGINT and SIGTERM, which the monitor notes to end the guest at its next exit (so
//! that `--stats` are printed and the process exits with 128 + N rather than being killed), and
//! the kick the control thread sends the vCPU thread to bring it out of `KVM_RUN` or a `Yield`'s
//! sleep when a control request waits.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

/// The signal that asked the monitor to stop, 0 while none has.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether a control request waits for the vCPU thread.
static CONTROL_PENDING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(num, Ordering::SeqCst);
}

/// The kick only interrupts a system call; the flag it stands for is set before it is sent.
extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Catches SIGINT and SIGTERM for the rest of the process's life.
pub fn catch_stop_signals() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(signal, on_stop_signal).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Blocks SIGINT and SIGTERM in the calling helper thread, so that the kernel hands them to the
/// vCPU thread, whose sleep they interrupt: taken by a helper, a stop signal would wait for an
/// idle guest's next deadline to be noticed.
pub fn leave_stop_signals_to_the_vcpu_thread() {
    // SAFETY: the set is initialised by sigemptyset before use, and pthread_sigmask only changes
    // the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Catches the kick for the rest of the process's life (without a handler it would kill it).
pub fn catch_kick() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), on_kick).map_err(std::io::Error::from)
}

/// The signal the control thread kicks the vCPU thread with: the second real-time signal (the
/// first is often taken by the C library).
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN() + 1
}

/// The signal that asked the monitor to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Notes whether a control request waits for the vCPU thread.
pub fn set_control_pending(pending: bool) {
    CONTROL_PENDING.store(pending, Ordering::SeqCst);
}

/// Whether a control request waits for the vCPU thread.
pub fn control_pending() -> bool {
    CONTROL_PENDING.load(Ordering::SeqCst)
}

/// Whether the vCPU thread should stop what it waits for and look: a stop signal came, or a
/// control request waits.
pub fn interrupted() -> bool {
    stop_signal().is_some() || control_pending()
}
