//! A file as a block device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fata_platform::{Block, DeviceError};

/// Sector size of file-backed block devices.
const SECTOR: u32 = 512;

/// A regular file seen as 512-byte sectors; opened read-only when the file is not writable.
pub struct FileBlock {
    file: File,
    sectors: u64,
    read_only: bool,
}

impl FileBlock {
    /// Opens `path` read-write, or read-only when that is all the file allows.
    pub fn open(path: &Path) -> io::Result<FileBlock> {
        let (file, read_only) = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => (File::open(path)?, true),
            Err(e) => return Err(e),
        };
        let sectors = file.metadata()?.len() / u64::from(SECTOR);
        Ok(FileBlock {
            file,
            sectors,
            read_only,
        })
    }

    /// The byte offset of `sector` if `len` bytes from it are whole sectors inside the device.
    fn offset(&self, sector: u64, len: usize) -> Result<u64, DeviceError> {
        if !len.is_multiple_of(SECTOR as usize) {
            return Err(DeviceError::InvalidArgument);
        }
        let count = (len / SECTOR as usize) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(sector * u64::from(SECTOR)),
            _ => Err(DeviceError::OutOfRange),
        }
    }
}

impl Block for FileBlock {
    fn sector_size(&self) -> u32 {
        SECTOR
    }

    fn capacity(&self) -> u64 {
        self.sectors
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let offset = self.offset(sector, buf.len())?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|_| DeviceError::Io)
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let offset = self.offset(sector, buf.len())?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|_| DeviceError::Io)
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        self.file.sync_data().map_err(|_| DeviceError::Io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_wrote_and_checks_bounds() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4 * 512).unwrap();
        let mut block = FileBlock::open(file.path()).unwrap();
        assert_eq!(block.capacity(), 4);
        assert!(!block.read_only());
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        block.write(2, &data).unwrap();
        let mut back = vec![0; 1024];
        block.read(2, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(block.read(3, &mut back), Err(DeviceError::OutOfRange));
        assert_eq!(
            block.read(u64::MAX, &mut back),
            Err(DeviceError::OutOfRange)
        );
        assert_eq!(
            block.read(0, &mut back[..100]),
            Err(DeviceError::InvalidArgument)
        );
        block.flush().unwrap();
    }
}
