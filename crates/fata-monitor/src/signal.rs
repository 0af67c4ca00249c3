//! SIGINT and SIGTERM: the monitor notes the signal and ends the guest at its next exit, so that
//! `--stats` are printed and the process exits with 128 + N rather than being killed.

use std::sync::atomic::{AtomicI32, Ordering};
use vmm_sys_util::signal::register_signal_handler;

/// The signal that asked the monitor to stop, 0 while none has.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_SIGNAL.store(num, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM for the rest of the process's life.
pub fn catch_stop_signals() -> std::io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(signal, on_stop_signal).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// The signal that asked the monitor to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}
