//! Guest RAM and the one checked accessor that turns guest addresses into host bytes.
//!
//! Every access the monitor makes to guest memory on the guest's behalf (hypercall arguments, console
//! bytes) and on its own (loading the image, page tables, boot info) goes through
//! [`GuestRam::slice`], which checks `addr + len` for overflow and against the RAM size before any
//! host memory is touched.
//!
//! RAM is either fresh anonymous memory ([`GuestRam::new`]) or a snapshot's memory file mapped
//! privately ([`GuestRam::map_private`]): pages load lazily from the file, stay shared with every
//! other restore of the same snapshot until written, and a write stays in this process.
//!
//! Fresh RAM starts on a 2 MiB boundary and asks for transparent huge pages above its first
//! 2 MiB, as QEMU does for its guests' RAM: where KVM shadows the guest's page tables (no EPT or
//! NPT), one fault then maps a whole 2 MiB guest page instead of 512 faults mapping it 4 KiB at
//! a time, which took a cold apps/www from 25 to 9 ms to its first answer. The price is host
//! memory in 2 MiB steps for the regions the guest touches; `transparent_hugepage/enabled =
//! never` on the host turns it off.
//!
//! Two records say which pages changed, for snapshots and migration:
//! - every write the monitor makes through [`GuestRam::slice`] (and the views cut from it) marks
//!   its pages in a page bitmap; writes the host makes through a raw pointer (io_uring reads
//!   into a block request's buffer) are marked with [`GuestRam::mark_dirty`] when they complete;
//!   [`GuestRam::take_dirty`] takes and clears the bitmap. The guest's own writes are KVM's to
//!   record (`vm::DirtyLog`);
//! - [`GuestRam::touched`] lists the pages that may hold anything but zeros, for a full snapshot.

use fata_hvt_abi::{GuestAddr, PAGE_SIZE};
use fata_hvt_codec::Codec;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::os::fd::AsRawFd;
use thiserror::Error;
use vm_memory::bitmap::{AtomicBitmap, Bitmap, BitmapSlice};
use vm_memory::mmap::MmapRegion;
use vm_memory::{FileOffset, VolatileMemory, VolatileSlice};

/// `/proc/self/pagemap`: the page is in memory.
const PAGEMAP_PRESENT: u64 = 1 << 63;
/// `/proc/self/pagemap`: the page is swapped out.
const PAGEMAP_SWAPPED: u64 = 1 << 62;

/// An access outside guest RAM: `len` bytes at `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} bytes at guest address {addr} are not inside the guest's RAM")]
pub struct OutOfRam {
    /// The first address asked for.
    pub addr: GuestAddr,
    /// The number of bytes asked for.
    pub len: u64,
}

/// The guest's RAM: guest-physical `0..size`, one host mapping, with a bitmap of the pages the
/// monitor wrote.
pub struct GuestRam {
    region: MmapRegion<AtomicBitmap>,
    /// Fresh RAM's own mapping, which `region` does not own: unmapped after `region` is dropped.
    _aligned: Option<AlignedMapping>,
}

/// The host's huge page, and the alignment of fresh guest RAM.
const HUGE_PAGE: usize = 2 << 20;

/// Anonymous memory mapped at a [`HUGE_PAGE`] boundary, unmapped when dropped.
///
/// vm-memory's own anonymous regions start wherever the kernel puts them, and a guest's 2 MiB
/// page can sit on one host huge page only if host and guest addresses agree modulo 2 MiB.
struct AlignedMapping {
    addr: *mut u8,
    len: usize,
}

impl AlignedMapping {
    /// Maps `len` bytes of zeroed, lazily allocated memory at a 2 MiB boundary and advises
    /// huge pages for all of it but the first 2 MiB.
    fn new(len: usize) -> io::Result<AlignedMapping> {
        let reserve = len
            .checked_add(HUGE_PAGE)
            .ok_or(io::ErrorKind::InvalidInput)?;
        // SAFETY: a new anonymous mapping at an address the kernel picks touches no existing
        // memory.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let head = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
        // SAFETY: `head` is less than `HUGE_PAGE`, so the aligned start is inside the mapping.
        let addr = unsafe { base.cast::<u8>().add(head) };
        // SAFETY: the head before `addr` and the tail after `addr + len` are parts of the
        // reservation just made, which nothing else uses; unmapping them leaves exactly
        // `addr..addr + len`.
        unsafe {
            if head > 0 {
                libc::munmap(base, head);
            }
            if HUGE_PAGE > head {
                libc::munmap(addr.add(len).cast(), HUGE_PAGE - head);
            }
            // Not for the first 2 MiB: the guest maps its image and page tables there with
            // 4 KiB pages, so a huge page would save no fault and cost zeroing 2 MiB. Advice
            // only: a kernel without THP refuses it, and the RAM works as before.
            if len > HUGE_PAGE {
                libc::madvise(
                    addr.add(HUGE_PAGE).cast(),
                    len - HUGE_PAGE,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        Ok(AlignedMapping { addr, len })
    }
}

impl Drop for AlignedMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's own, and the region borrowing it was dropped
        // first (it is declared before this field in `GuestRam`).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

// SAFETY: the mapping is plain memory owned by one value; moving that value to another thread
// moves nothing but the address.
unsafe impl Send for AlignedMapping {}
// SAFETY: `AlignedMapping` offers no access to the memory, so sharing it shares nothing.
unsafe impl Sync for AlignedMapping {}

impl GuestRam {
    /// Maps `size` bytes of zeroed, lazily allocated host memory, 2 MiB-aligned, advised for
    /// transparent huge pages.
    pub fn new(size: u64) -> io::Result<GuestRam> {
        let size = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let aligned = AlignedMapping::new(size)?;
        // SAFETY: `aligned` maps `size` readable and writable bytes at `addr`, and lives in the
        // same `GuestRam` as the region, dropped after it.
        let region = unsafe {
            MmapRegion::build_raw(
                aligned.addr,
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        }
        .map_err(io::Error::other)?;
        Ok(GuestRam {
            region,
            _aligned: Some(aligned),
        })
    }

    /// Maps the first `size` bytes of `file` (a snapshot's memory file) privately as guest RAM.
    ///
    /// Nothing is read now: each page loads from the file when the guest or the monitor first
    /// touches it, clean pages stay shared (in the page cache) with every other mapping of the
    /// file, and writes go to private copies the file never sees. `file` may be open read-only.
    /// It must not shrink while the RAM is mapped (a page past its end would be gone); a file
    /// shorter than `size` is refused.
    pub(crate) fn map_private(file: &File, size: u64) -> io::Result<GuestRam> {
        let len = file.metadata()?.len();
        if len < size || size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the memory file holds {len} bytes but the guest has {size} bytes of RAM; \
                     it is not this snapshot's memory file, or it was truncated"
                ),
            ));
        }
        let size = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidInput)?;
        let region = MmapRegion::build(
            Some(FileOffset::new(file.try_clone()?, 0)),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(io::Error::other)?;
        Ok(GuestRam {
            region,
            _aligned: None,
        })
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

    /// Marks `len` bytes at `addr` as written by the monitor: for writes that do not go through
    /// [`GuestRam::slice`] (a block read the host runs into guest memory). Bytes outside RAM are
    /// ignored.
    pub(crate) fn mark_dirty(&self, addr: GuestAddr, len: u64) {
        let end = addr.0.saturating_add(len).min(self.size());
        if addr.0 < end {
            // Both fit in usize: they are at most `size`.
            (self.region.bitmap()).mark_dirty(addr.0 as usize, (end - addr.0) as usize);
        }
    }

    /// Takes the pages the monitor wrote since the last call (or since the RAM was mapped) and
    /// clears the record: bit `n % 64` of word `n / 64` stands for the 4 KiB page `n`, the layout
    /// of KVM's dirty log.
    pub(crate) fn take_dirty(&self) -> Vec<u64> {
        self.region.bitmap().get_and_reset()
    }

    /// The pages that may hold anything but zeros, as sorted, disjoint, page-aligned ranges of
    /// guest-physical addresses: what a full snapshot writes.
    ///
    /// A page is a candidate if the host has it in memory or in swap for this mapping
    /// (`/proc/self/pagemap`, 8 bytes read per page of RAM: 1 MiB for 512 MiB), or if it is in a
    /// data extent of the file the RAM was mapped from (`SEEK_DATA`); pages never touched are
    /// neither and are not read. Each candidate is then read and dropped if it is all zeros,
    /// so the cost is one pass over the pages the guest touched (about 35 ms for 256 MiB of
    /// them in 512 MiB of RAM here, optimised), and the snapshot holds no page the guest merely read.
    /// `mincore(2)` is not enough: it misses anonymous pages that were swapped out.
    pub(crate) fn touched(&self) -> io::Result<Vec<Range<u64>>> {
        let pages = (self.size() / PAGE_SIZE) as usize;
        let mut candidate = self.resident(pages)?;
        if let Some(file) = self.region.file_offset() {
            for range in data_extents(file.file(), self.size())? {
                for page in range.start / PAGE_SIZE..range.end.div_ceil(PAGE_SIZE) {
                    candidate[page as usize] = true;
                }
            }
        }
        let mut runs: Vec<Range<u64>> = Vec::new();
        let mut page = [0u8; PAGE_SIZE as usize];
        for (n, _) in candidate.iter().enumerate().filter(|&(_, &c)| c) {
            let addr = n as u64 * PAGE_SIZE;
            self.read(GuestAddr(addr), &mut page)
                .map_err(io::Error::other)?;
            if page.iter().all(|&b| b == 0) {
                continue;
            }
            match runs.last_mut() {
                Some(last) if last.end == addr => last.end += PAGE_SIZE,
                _ => runs.push(addr..addr + PAGE_SIZE),
            }
        }
        Ok(runs)
    }

    /// Which of the mapping's `pages` the host holds, in memory or in swap.
    fn resident(&self, pages: usize) -> io::Result<Vec<bool>> {
        let mut pagemap = File::open("/proc/self/pagemap")?;
        let first = self.host_base() as u64 / PAGE_SIZE;
        pagemap.seek(SeekFrom::Start(first * 8))?;
        let mut resident = Vec::with_capacity(pages);
        let mut chunk = vec![0u8; 8 * 4096];
        while resident.len() < pages {
            let want = ((pages - resident.len()) * 8).min(chunk.len());
            pagemap.read_exact(&mut chunk[..want])?;
            resident.extend(chunk[..want].chunks_exact(8).map(|entry| {
                let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
                entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) != 0
            }));
        }
        Ok(resident)
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

/// The data extents of the first `size` bytes of `file` (`SEEK_DATA`/`SEEK_HOLE`; the whole
/// range where the file system cannot tell).
fn data_extents(file: &File, size: u64) -> io::Result<Vec<Range<u64>>> {
    let fd = file.as_raw_fd();
    let seek = |offset: u64, whence| {
        // SAFETY: lseek on a descriptor `file` owns moves only its file offset, which nothing
        // in the monitor uses (mappings and positioned reads ignore it).
        let at = unsafe { libc::lseek(fd, offset as libc::off_t, whence) };
        if at < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(at as u64)
        }
    };
    let mut extents = Vec::new();
    let mut at = 0;
    while at < size {
        let start = match seek(at, libc::SEEK_DATA) {
            Ok(start) => start,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let whole = 0..size;
                return Ok(vec![whole]);
            }
            Err(e) => return Err(e),
        };
        if start >= size {
            break;
        }
        let end = seek(start, libc::SEEK_HOLE)?.min(size);
        extents.push(start..end);
        at = end;
    }
    Ok(extents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

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

    #[test]
    fn writes_through_the_accessor_and_marked_ranges_are_dirty_until_taken() {
        let ram = GuestRam::new(1 << 20).unwrap();
        assert!(ram.take_dirty().iter().all(|&w| w == 0));
        ram.write(GuestAddr(0x1ffe), &[1, 2, 3, 4]).unwrap();
        let slice = ram.slice(GuestAddr(0x5000), 8).unwrap();
        slice
            .store(7u32, 4, std::sync::atomic::Ordering::Release)
            .unwrap();
        ram.mark_dirty(GuestAddr(0x8000), 0x2001);
        ram.mark_dirty(GuestAddr((1 << 20) - 1), 100);
        ram.mark_dirty(GuestAddr(u64::MAX), 100);
        let dirty = ram.take_dirty();
        assert_eq!(dirty.len(), 4);
        assert_eq!(dirty[0], 0b111_0010_0110, "pages 1, 2, 5, 8, 9, 10");
        assert_eq!(dirty[3], 1 << 63, "the last page; nothing past RAM");
        assert!(ram.take_dirty().iter().all(|&w| w == 0), "taking clears");
    }

    #[test]
    fn fresh_ram_starts_on_a_huge_page_boundary_and_is_zeroed() {
        for size in [4 << 20, 6 << 20, 32 << 20] {
            let ram = GuestRam::new(size).unwrap();
            assert_eq!(ram.host_base() as usize % HUGE_PAGE, 0, "{size} bytes");
            let mut last = [1u8; 4096];
            ram.read(GuestAddr(size - 4096), &mut last).unwrap();
            assert_eq!(last, [0u8; 4096]);
            ram.write(GuestAddr(size - 1), &[7]).unwrap();
        }
    }

    #[test]
    fn touched_pages_are_the_nonzero_ones_and_a_private_mapping_keeps_the_file() {
        let ram = GuestRam::new(4 << 20).unwrap();
        assert_eq!(ram.touched().unwrap(), vec![]);
        ram.write(GuestAddr(0x3000), &[1]).unwrap();
        ram.write(GuestAddr(0x4fff), &[1]).unwrap();
        ram.write(GuestAddr(0x20_0000), &[0]).unwrap();
        let mut page = [0u8; 4096];
        ram.read(GuestAddr(0x30_0000), &mut page).unwrap();
        ram.write(GuestAddr(0x3f_f000), &[9; 4096]).unwrap();
        let touched = ram.touched().unwrap();
        assert_eq!(touched, vec![0x3000..0x5000, 0x3f_f000..0x40_0000]);

        // A memory file with those pages at their offsets, as a snapshot writes it.
        let file = tempfile::tempfile().unwrap();
        file.set_len(4 << 20).unwrap();
        for range in &touched {
            let mut bytes = vec![0u8; (range.end - range.start) as usize];
            ram.read(GuestAddr(range.start), &mut bytes).unwrap();
            use std::os::unix::fs::FileExt;
            file.write_all_at(&bytes, range.start).unwrap();
        }
        let first = GuestRam::map_private(&file, 4 << 20).unwrap();
        let second = GuestRam::map_private(&file, 4 << 20).unwrap();
        assert_eq!(
            first.touched().unwrap(),
            touched,
            "untouched file pages count too"
        );
        first.write(GuestAddr(0x3000), &[5]).unwrap();
        first.write(GuestAddr(0x10_0000), &[6]).unwrap();
        let mut byte = [0u8];
        second.read(GuestAddr(0x3000), &mut byte).unwrap();
        assert_eq!(byte, [1], "a write stays in its own mapping");
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut byte, 0x3000).unwrap();
        assert_eq!(byte, [1], "and never reaches the file");
        assert_eq!(
            first.touched().unwrap(),
            vec![0x3000..0x5000, 0x10_0000..0x10_1000, 0x3f_f000..0x40_0000]
        );
        let short = GuestRam::map_private(&file, 8 << 20).err().unwrap();
        assert!(short.to_string().contains("truncated"), "{short}");
    }
}
