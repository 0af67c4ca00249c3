//! x86 port I/O, for the serial port, the PIT, the CMOS clock and QEMU's exit device.

/// Reads a byte from `port`.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the guest runs at CPL0 and owns every port; reading the legacy devices this crate
    // uses has no effect on memory.
    unsafe {
        core::arch::asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Writes a byte to `port`.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as for `inb`; the devices written (serial, PIT, CMOS index, PIC masks, the exit
    // port) never write guest memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
    }
}
