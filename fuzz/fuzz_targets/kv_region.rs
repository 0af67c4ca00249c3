//! The guest's check of a key-value region must never panic, whatever the bytes, and a region it
//! accepts must read back consistently: every key found by its own lookup, keys sorted and unique.
#![no_main]

use fata_hvt_kv::KvRegion;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kv) = KvRegion::new_checked(data) {
        let mut previous: Option<&str> = None;
        for (key, value) in kv.iter() {
            assert!(previous.is_none_or(|p| p < key));
            assert_eq!(kv.get(key), Some(value));
            previous = Some(key);
        }
        assert_eq!(kv.iter().count(), kv.len() as usize);
    }
});
