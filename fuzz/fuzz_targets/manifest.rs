//! The manifest reader must never panic, whatever the bytes, and a manifest it accepts must be
//! exactly what its encoder writes: one encoding per manifest, names usable and unique. The same
//! bytes, read as a whole ELF file, go through the monitor's note reader.
#![no_main]

use fata_device_spec::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse(data) {
        assert_eq!(manifest.to_descriptor(), data);
        assert!(manifest.devices().len() <= fata_hvt_abi::MANIFEST_DEVICES_MAX);
        let note = manifest.to_note();
        assert_eq!(note.len() % 4, 0);
        assert_eq!(Manifest::parse(&note[20..]), Ok(manifest));
    }
    let _ = fata_monitor::read_manifest(data);
});
