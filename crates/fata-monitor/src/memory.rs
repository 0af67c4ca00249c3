//! Guest RAM and the one checked accessor that turns guest addresses into host bytes.
//!
//! Every access the monitor makes to guest memory on the guest's behalf (hypercall arguments, console
//! bytes) and on its own (loading the image, page tables, boot info) goes through
//! [`GuestRam::slice`], which checks `addr + len` for overflow and against the RAM size before any
//! host memory is touched.

use fata_hvt_abi::Codec;
use std::fmt;
use thiserror::Error;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::mmap::MmapRegion;
use vm_memory::{VolatileMemory, VolatileSlice, WriteVolatile};

/// A guest-physical address. Guest memory is identity-mapped, so it is also the guest's virtual
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

impl fmt::Display for Gpa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// An access outside guest RAM: `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} bytes at guest address {addr} are not inside the guest's RAM")]
pub struct OutOfRam {
    /// The first address asked for.
    pub addr: Gpa,
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
        addr: Gpa,
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
    pub fn read(&self, addr: Gpa, buf: &mut [u8]) -> Result<(), OutOfRam> {
        self.slice(addr, buf.len() as u64)?.copy_to(buf);
        Ok(())
    }

    /// Copies `bytes` into guest memory at `addr`.
    pub fn write(&self, addr: Gpa, bytes: &[u8]) -> Result<(), OutOfRam> {
        self.slice(addr, bytes.len() as u64)?.copy_from(bytes);
        Ok(())
    }

    /// Reads an ABI struct at `addr`.
    pub fn read_struct<T: Codec>(&self, addr: Gpa) -> Result<T, OutOfRam> {
        let mut raw = [0u8; 1024];
        let raw = raw.get_mut(..T::SIZE).ok_or(OutOfRam {
            addr,
            len: T::SIZE as u64,
        })?;
        self.read(addr, raw)?;
        Ok(T::decode(raw))
    }

    /// Writes an ABI struct at `addr`.
    pub fn write_struct<T: Codec>(&self, addr: Gpa, value: &T) -> Result<(), OutOfRam> {
        let mut raw = [0u8; 1024];
        let raw = raw.get_mut(..T::SIZE).ok_or(OutOfRam {
            addr,
            len: T::SIZE as u64,
        })?;
        value.encode(raw);
        self.write(addr, raw)
    }

    /// Writes `len` guest bytes at `addr` to `out`.
    pub fn write_to(
        &self,
        addr: Gpa,
        len: u64,
        out: &mut impl WriteVolatile,
    ) -> Result<std::io::Result<()>, OutOfRam> {
        let slice = self.slice(addr, len)?;
        Ok(out.write_all_volatile(&slice).map_err(|e| match e {
            vm_memory::VolatileMemoryError::IOError(io) => io,
            other => std::io::Error::other(other),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessor_checks_bounds_and_overflow() {
        let ram = GuestRam::new(1 << 20).unwrap();
        assert!(ram.slice(Gpa(0), 1 << 20).is_ok());
        assert!(ram.slice(Gpa((1 << 20) - 1), 1).is_ok());
        assert!(ram.slice(Gpa(1 << 20), 0).is_ok());
        assert!(ram.slice(Gpa(1 << 20), 1).is_err());
        assert!(ram.slice(Gpa((1 << 20) - 1), 2).is_err());
        assert!(ram.slice(Gpa(u64::MAX), 2).is_err());
        assert!(ram.slice(Gpa(8), u64::MAX).is_err());
        assert!(ram.slice(Gpa(u64::MAX), 0).is_err());
        ram.write(Gpa(100), b"fata").unwrap();
        let mut back = [0u8; 4];
        ram.read(Gpa(100), &mut back).unwrap();
        assert_eq!(&back, b"fata");
        let mut out = Vec::new();
        ram.write_to(Gpa(100), 4, &mut out).unwrap().unwrap();
        assert_eq!(out, b"fata");
    }
}
