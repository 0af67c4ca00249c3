//! The boot info, copied once at entry.

use fata_hvt_abi::BootInfo;
use spin::Once;

static BOOT: Once<BootInfo> = Once::new();

/// Keeps the boot info for the rest of the run (called once, by the entry code).
#[cfg_attr(not(fata_target = "hvt"), allow(dead_code))]
pub fn set(info: BootInfo) {
    BOOT.call_once(|| info);
}

/// The boot info, once the entry code has stored it.
pub fn info() -> Option<&'static BootInfo> {
    BOOT.get()
}

/// The app-argument bytes the monitor wrote below the image.
pub fn cmdline(info: &BootInfo) -> &'static [u8] {
    if info.cmdline_len == 0 {
        return &[];
    }
    // SAFETY: the monitor wrote `cmdline_len` bytes at `cmdline_addr` (identity-mapped, read-only
    // for the guest) before the first instruction and never changes them; `BOOT` is only set from
    // the boot info the monitor passed, so the range is valid for the guest's whole life.
    unsafe {
        core::slice::from_raw_parts(info.cmdline_addr.0 as *const u8, info.cmdline_len as usize)
    }
}
