//! Guest RAM and the one checked accessor that turns guest addresses into host bytes.
//!
//! Every access the monitor makes to guest memory on the guest's behalf (hypercall arguments, console
//! bytes) and on its own (loading the image, page tables, boot info) goes through
//! [`GuestRam::slice`], which checks `addr + len` for overflow and against the RAM size before any
//! host memory is touched.

use fata_hvt_abi::GuestAddr;
use fata_hvt_codec::Codec;
use thiserror::Error;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::mmap::MmapRegion;
use vm_memory::{VolatileMemory, VolatileSlice};

/// An access outside guest RAM: `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} bytes at guest address {addr} are not inside the guest's RAM")]
pub struct OutOfRam {
    /// The first address asked for.
    pub addr: GuestAddr,
    /// The number of bytes asked for.
    pub len: u64,
}

/// The guest's RAM: guest-physical `0..size`, one anonymous host mapping.
pub struct GuestRam {
    region: MmapRegion<()>,
}

impl GuestRam {
    /// Maps `size` bytes of zeroed, lazily allocated host memory.
    pub fn new(size: u64) -> std::io::Result<GuestRam> {
        let size = usize::try_from(size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let region = MmapRegion::new(size).map_err(std::io::Error::other)?;
        Ok(GuestRam { region })
    }

    /// Bytes of RAM.
    pub fn size(&self) -> u64 {
        self.region.size() as u64
    }

    /// The host address of guest-physical 0, for the KVM memory slot.
    pub(crate) fn host_base(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// The one checked accessor: the host view of `len` guest bytes at `addr`, or an error if any of
    /// them is outside RAM (including when `addr + len` overflows).
    pub fn slice(
        &self,
        addr: GuestAddr,
        len: u64,
    ) -> Result<VolatileSlice<'_, impl BitmapSlice>, OutOfRam> {
        let err = OutOfRam { addr, len };
        let end = addr.0.checked_add(len).ok_or(err)?;
        if end > self.size() {
            return Err(err);
        }
        // Both fit in usize: they are at most `size`, which came from a usize.
        let (offset, count) = (addr.0 as usize, len as usize);
        self.region.get_slice(offset, count).map_err(|_| err)
    }

    /// Copies guest bytes at `addr` into `buf`.
    pub fn read(&self, addr: GuestAddr, buf: &mut [u8]) -> Result<(), OutOfRam> {
        self.slice(addr, buf.len() as u64)?.copy_to(buf);
        Ok(())
    }

    /// Copies `bytes` into guest memory at `addr`.
    pub fn write(&self, addr: GuestAddr, bytes: &[u8]) -> Result<(), OutOfRam> {
        self.slice(addr, bytes.len() as u64)?.copy_from(bytes);
        Ok(())
    }

    /// Reads an ABI struct at `addr`.
    pub fn read_struct<T: Codec>(&self, addr: GuestAddr) -> Result<T, OutOfRam> {
        let mut raw = [0u8; 1024];
        let raw = raw.get_mut(..T::SIZE).ok_or(OutOfRam {
            addr,
            len: T::SIZE as u64,
        })?;
        self.read(addr, raw)?;
        Ok(T::decode(raw))
    }

    /// Writes an ABI struct at `addr`.
    pub fn write_struct<T: Codec>(&self, addr: GuestAddr, value: &T) -> Result<(), OutOfRam> {
        let mut raw = [0u8; 1024];
        let raw = raw.get_mut(..T::SIZE).ok_or(OutOfRam {
            addr,
            len: T::SIZE as u64,
        })?;
        value.encode(raw);
        self.write(addr, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessor_checks_bounds_and_overflow() {
        let ram = GuestRam::new(1 << 20).unwrap();
        assert!(ram.slice(GuestAddr(0), 1 << 20).is_ok());
        assert!(ram.slice(GuestAddr((1 << 20) - 1), 1).is_ok());
        assert!(ram.slice(GuestAddr(1 << 20), 0).is_ok());
        assert!(ram.slice(GuestAddr(1 << 20), 1).is_err());
        assert!(ram.slice(GuestAddr((1 << 20) - 1), 2).is_err());
        assert!(ram.slice(GuestAddr(u64::MAX), 2).is_err());
        assert!(ram.slice(GuestAddr(8), u64::MAX).is_err());
        assert!(ram.slice(GuestAddr(u64::MAX), 0).is_err());
        ram.write(GuestAddr(100), b"fata").unwrap();
        let mut back = [0u8; 4];
        ram.read(GuestAddr(100), &mut back).unwrap();
        assert_eq!(&back, b"fata");
    }
}
