//! Read-only key-value stores over the regions the monitor fills and maps read-only (layout in
//! `fata-hvt-kv`, [`KvRegion`]).
//!
//! The guest reads a store in place: no hypercall, no copy until the app asks for bytes. Each
//! region is checked once, when the devices are taken: it must lie in RAM between the heap and the
//! stack, and its index must pass [`KvRegion::new_checked`] (keys and values inside the region,
//! UTF-8 keys, sorted and unique). A region that fails is skipped with a line on the console
//! naming the defect; nothing here panics on a bad table.

use crate::{boot, hypercall};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use fata_hvt_abi::{BootInfo, DeviceInfo, DeviceKind, MAX_DEVICES, PAGE_SIZE};
use fata_hvt_kv::KvRegion;
use fata_platform::{DeviceError, Kv};

/// A key-value store of the hvt target: a checked view of its read-only region.
pub struct HvtKv {
    region: KvRegion<'static>,
}

/// The stores the boot info describes, with their names; unusable entries are reported on the
/// console and skipped.
pub fn devices() -> Vec<(String, HvtKv)> {
    let Some(info) = boot::info() else {
        return Vec::new();
    };
    let count = (info.device_count as usize).min(MAX_DEVICES);
    let mut stores = Vec::new();
    for device in info.devices[..count]
        .iter()
        .filter(|d| d.kind == DeviceKind::Kv as u32)
    {
        let name = device_name(device);
        match check(info, device) {
            Ok(region) => stores.push((name, HvtKv { region })),
            Err(why) => hypercall::console_write(
                format!("fata-hvt: key-value store {name} skipped: {why}\n").as_bytes(),
            ),
        }
    }
    stores
}

fn device_name(device: &DeviceInfo) -> String {
    let len = device
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(device.name.len());
    String::from_utf8_lossy(&device.name[..len]).into_owned()
}

/// Where a region may lie: page-aligned, between the end of the heap and the stack.
fn placement_ok(info: &BootInfo, addr: u64, len: u64) -> bool {
    addr.is_multiple_of(PAGE_SIZE)
        && addr >= info.heap_end
        && info.heap_end >= info.kernel_end
        && addr
            .checked_add(len)
            .is_some_and(|end| end <= info.stack_bottom && end <= info.mem_size)
}

fn check(info: &BootInfo, device: &DeviceInfo) -> Result<KvRegion<'static>, String> {
    let (addr, len) = (device.ring_addr.0, device.ring_len);
    if !placement_ok(info, addr, len) {
        return Err(format!(
            "its region ({len} bytes at {addr:#x}) is not page-aligned between the heap and the \
             stack"
        ));
    }
    let len = usize::try_from(len).map_err(|_| "its region is too large".to_string())?;
    // SAFETY: `addr..addr + len` is guest RAM (checked against the RAM size above) outside the
    // heap, the image and the stack, which the monitor filled before the first instruction, maps
    // read-only and never changes: nothing in the guest can write it, so a shared `'static`
    // slice over it stays valid and unaliased by any `&mut` for the guest's whole life.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    KvRegion::new_checked(bytes).map_err(|defect| defect.to_string())
}

impl HvtKv {
    /// The store over an already checked region (host tests build one over ordinary memory).
    pub fn new(region: KvRegion<'static>) -> HvtKv {
        HvtKv { region }
    }

    /// The whole value under `key`, in place: no copy.
    pub fn value(&self, key: &str) -> Option<&'static [u8]> {
        self.region.get(key)
    }
}

impl Kv for HvtKv {
    fn list(&self) -> Result<Vec<String>, DeviceError> {
        Ok(self.region.iter().map(|(key, _)| key.to_string()).collect())
    }

    fn size(&self, key: &str) -> Result<u64, DeviceError> {
        self.value(key)
            .map(|v| v.len() as u64)
            .ok_or(DeviceError::NotFound)
    }

    fn read(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<usize, DeviceError> {
        let value = self.value(key).ok_or(DeviceError::NotFound)?;
        let start = usize::try_from(offset).map_or(value.len(), |o| o.min(value.len()));
        let n = buf.len().min(value.len() - start);
        buf[..n].copy_from_slice(&value[start..start + n]);
        Ok(n)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, DeviceError> {
        self.value(key)
            .map(<[u8]>::to_vec)
            .ok_or(DeviceError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fata_hvt_abi::{GuestAddr, KvEntry, KvHeader, kv_index_len};
    use fata_hvt_codec::Codec;

    /// A region with `entries` in this order, leaked for `'static`.
    fn region(entries: &[(&str, &[u8])]) -> &'static [u8] {
        let mut out = alloc::vec![0u8; kv_index_len(entries.len() as u32) as usize];
        KvHeader {
            count: entries.len() as u32,
            reserved: 0,
        }
        .encode(&mut out);
        for (i, (key, value)) in entries.iter().enumerate() {
            let key_offset = out.len() as u64;
            out.extend_from_slice(key.as_bytes());
            let value_offset = out.len() as u64;
            out.extend_from_slice(value);
            let at = kv_index_len(i as u32) as usize;
            KvEntry {
                key_offset,
                key_len: key.len() as u64,
                value_offset,
                value_len: value.len() as u64,
            }
            .encode(&mut out[at..at + KvEntry::SIZE]);
        }
        out.leak()
    }

    #[test]
    fn reads_like_the_unix_store() {
        let bytes = region(&[("css/site.css", b"body{}"), ("index.html", b"<h1>hi</h1>")]);
        let kv = HvtKv::new(KvRegion::new_checked(bytes).unwrap());
        assert_eq!(kv.list().unwrap(), ["css/site.css", "index.html"]);
        assert_eq!(kv.size("index.html"), Ok(11));
        assert_eq!(kv.get("css/site.css").unwrap(), b"body{}");
        let mut tail = [0; 4];
        assert_eq!(kv.read("index.html", 7, &mut tail), Ok(4));
        assert_eq!(&tail, b"/h1>");
        assert_eq!(kv.read("index.html", 11, &mut tail), Ok(0));
        assert_eq!(kv.read("index.html", u64::MAX, &mut tail), Ok(0));
        let mut big = [0; 64];
        assert_eq!(kv.read("index.html", 3, &mut big), Ok(8));
        assert_eq!(kv.size("missing"), Err(DeviceError::NotFound));
        assert_eq!(kv.size("css"), Err(DeviceError::NotFound));
        assert_eq!(
            kv.read("../etc/passwd", 0, &mut big),
            Err(DeviceError::NotFound)
        );
    }

    #[test]
    fn regions_outside_the_free_ram_are_refused() {
        let info = BootInfo {
            mem_size: 32 << 20,
            kernel_end: 2 << 20,
            heap_end: 20 << 20,
            stack_bottom: 31 << 20,
            ..BootInfo::default()
        };
        assert!(placement_ok(&info, 20 << 20, 4096));
        assert!(placement_ok(&info, 30 << 20, 1 << 20));
        assert!(
            !placement_ok(&info, 30 << 20, (1 << 20) + 1),
            "into the stack"
        );
        assert!(!placement_ok(&info, (20 << 20) - 4096, 4096), "in the heap");
        assert!(!placement_ok(&info, (20 << 20) + 1, 4096), "unaligned");
        assert!(
            !placement_ok(&info, 0xFFFF_FFFF_FFFF_F000, 8192),
            "overflow"
        );
        let device = DeviceInfo {
            kind: DeviceKind::Kv as u32,
            ring_addr: GuestAddr(4096),
            ring_len: 64,
            ..DeviceInfo::EMPTY
        };
        assert!(
            check(&info, &device)
                .unwrap_err()
                .contains("between the heap")
        );
    }
}
