//! What the command line said, read once at entry.

use fata_virtio_abi::Cmdline;
use spin::Once;

static CMDLINE: Once<Cmdline> = Once::new();

/// Reads and keeps the command line (called once, by the entry code); a token Fata owns that
/// does not parse ends the guest with a message naming it.
#[cfg_attr(not(fata_target = "virtio"), allow(dead_code))]
pub fn set(line: &[u8]) {
    let cmdline = fata_virtio_abi::parse(line).unwrap_or_else(|bad| {
        crate::fail(format_args!(
            "cannot read the command line's {:?}: boot the image with `fata run --target virtio`",
            bad.0
        ))
    });
    if let Some(seed) = cmdline.seed {
        crate::random::set_fallback_seed(seed);
    }
    CMDLINE.call_once(|| cmdline);
}

/// The command line, once the entry code has read it.
pub fn cmdline() -> Option<&'static Cmdline> {
    CMDLINE.get()
}
