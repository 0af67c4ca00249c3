//! Arbitrary bytes as guest memory holding a PVH start info must give a start info whose command
//! line and memory map stay within that memory, or an error, never a panic.
#![no_main]

use fata_pvh::{PhysMemory, StartInfo, StartInfoError, start_info::CMDLINE_MAX};
use libfuzzer_sys::fuzz_target;

/// The fuzzer's bytes as memory from address 0x1000.
struct Bytes<'a>(&'a [u8]);

impl PhysMemory for Bytes<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), StartInfoError> {
        let part = (paddr.checked_sub(0x1000))
            .and_then(|start| usize::try_from(start).ok())
            .and_then(|start| self.0.get(start..start.checked_add(buf.len())?))
            .ok_or(StartInfoError::Unreadable(paddr))?;
        buf.copy_from_slice(part);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let memory = Bytes(data);
    if let Ok(info) = StartInfo::read(&memory, 0x1000) {
        assert!(info.regions().len() <= fata_pvh::start_info::MAX_REGIONS);
        let mut buf = [0; CMDLINE_MAX];
        if let Ok(cmdline) = info.cmdline(&memory, &mut buf) {
            assert!(cmdline.len() < data.len() && !cmdline.contains(&0));
        }
    }
});
