//! The console: the first 16550 UART (COM1), which every PC-like VMM emulates.

use crate::port::{inb, outb};

const COM1: u16 = 0x3f8;
/// Line status register, and its "transmit holding register empty" bit.
const LSR: u16 = COM1 + 5;
const THR_EMPTY: u8 = 1 << 5;

/// Sets 115200 baud, 8N1, FIFOs on, interrupts off.
pub fn init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0xc7);
    outb(COM1 + 4, 0x03);
}

/// Writes `bytes` as they are (the host's terminal or log adds no translation).
pub fn write(bytes: &[u8]) {
    for &byte in bytes {
        while inb(LSR) & THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        outb(COM1, byte);
    }
}

/// `core::fmt` output straight to the serial port.
pub struct Writer;

impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write(s.as_bytes());
        Ok(())
    }
}
