//! Arbitrary bytes read as a migration stream must give messages or an error, never a panic, and
//! every page run handed out must lie inside the guest memory the hello announced.
#![no_main]

use fata_snapshot::{Message, Receiver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut receiver) = Receiver::start(data) else {
        return;
    };
    let mem = receiver.hello().mem_bytes;
    while let Ok(message) = receiver.read_message() {
        match message {
            Message::Pages { offset, bytes } => {
                assert!(offset + bytes.len() as u64 <= mem);
            }
            Message::State(_) => break,
        }
    }
});
