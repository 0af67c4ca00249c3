//! Loading a compiled zone set must never panic, and whatever loads must write back to bytes that
//! load to the same zones.
#![no_main]

use fata_dns::ZoneSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(zones) = ZoneSet::from_compiled(data) {
        let again = ZoneSet::from_compiled(&zones.to_compiled()).expect("a written zone set loads");
        assert_eq!(again, zones);
    }
});
