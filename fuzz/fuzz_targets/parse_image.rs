//! The monitor's ELF validation must never panic, whatever the image bytes, and must only accept
//! images whose segments obey the hvt rules; nor may its reader of the manifest note.
#![no_main]

use fata_monitor::parse_image;
use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 31 << 20;

fuzz_target!(|data: &[u8]| {
    let _ = fata_monitor::read_manifest(data);
    if let Ok(image) = parse_image(data, LIMIT) {
        for s in &image.segments {
            assert!(!(s.writable && s.executable));
            assert!(s.addr >= 0x10_0000 && s.end() <= LIMIT);
            assert!(s.file_size <= s.mem_size);
        }
        assert!(image.segments.iter().any(|s| s.executable && (s.addr..s.end()).contains(&image.entry)));
    }
});
