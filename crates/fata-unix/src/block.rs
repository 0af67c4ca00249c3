//! A file as a block device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use fata_platform::{
    Block, BlockBuffer, BlockCompletion, BlockGeometry, BlockOp, BlockRequest, DeviceError,
    ReadySet,
};

/// Sector size of file-backed block devices.
const SECTOR: u32 = 512;

/// A regular file seen as 512-byte sectors; opened read-only when the file is not writable.
pub struct FileBlock {
    file: File,
    sectors: u64,
    read_only: bool,
    done: Vec<BlockCompletion>,
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
            done: Vec::new(),
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

impl FileBlock {
    /// Carries out one request at once.
    fn serve(&mut self, request: &mut BlockRequest) -> Result<(), DeviceError> {
        let len = request.buffer.as_ref().map_or(0, BlockBuffer::len);
        match request.op {
            BlockOp::Read => {
                let offset = self.offset(request.sector, len)?;
                let buffer = request
                    .buffer
                    .as_mut()
                    .ok_or(DeviceError::InvalidArgument)?;
                self.file
                    .read_exact_at(buffer.as_mut_slice(), offset)
                    .map_err(|_| DeviceError::Io)
            }
            BlockOp::Write { .. } => {
                if self.read_only {
                    return Err(DeviceError::ReadOnly);
                }
                let offset = self.offset(request.sector, len)?;
                let buffer = request
                    .buffer
                    .as_ref()
                    .ok_or(DeviceError::InvalidArgument)?;
                self.file
                    .write_all_at(buffer.as_slice(), offset)
                    .map_err(|_| DeviceError::Io)
            }
            BlockOp::Flush => self.file.sync_data().map_err(|_| DeviceError::Io),
            BlockOp::Discard { .. } => Err(DeviceError::Unsupported),
        }
    }
}

impl Block for FileBlock {
    fn geometry(&self) -> BlockGeometry {
        BlockGeometry {
            sector_size: SECTOR,
            sectors: self.sectors,
            read_only: self.read_only,
            request_max: 4 << 20,
            queue_depth: 64,
        }
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::EMPTY
    }

    fn submit(&mut self, mut request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)> {
        let result = self.serve(&mut request);
        self.done.push(BlockCompletion {
            tag: request.tag,
            result,
            buffer: request.buffer,
        });
        Ok(())
    }

    fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize {
        let count = self.done.len();
        self.done.drain(..).for_each(on_done);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        block: &mut FileBlock,
        op: BlockOp,
        sector: u64,
        buffer: BlockBuffer,
    ) -> BlockCompletion {
        let request = BlockRequest {
            tag: 7,
            op,
            sector,
            buffer: Some(buffer),
        };
        block.submit(request).unwrap();
        let mut done = None;
        assert_eq!(block.complete(&mut |c| done = Some(c)), 1);
        done.unwrap()
    }

    #[test]
    fn reads_back_what_it_wrote_and_checks_bounds() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4 * 512).unwrap();
        let mut block = FileBlock::open(file.path()).unwrap();
        assert_eq!(block.geometry().sectors, 4);
        assert!(!block.geometry().read_only);
        let data: Vec<u8> = (0..1024).map(|i| i as u8).collect();
        let write = BlockOp::Write { grouped: false };
        let done = run(&mut block, write, 2, BlockBuffer::from_slice(&data));
        assert_eq!((done.tag, done.result), (7, Ok(())));
        let done = run(&mut block, BlockOp::Read, 2, BlockBuffer::new(1024));
        assert_eq!(done.buffer.unwrap().as_slice(), data);
        let done = run(&mut block, BlockOp::Read, 3, BlockBuffer::new(1024));
        assert_eq!(done.result, Err(DeviceError::OutOfRange));
        let done = run(&mut block, BlockOp::Read, u64::MAX, BlockBuffer::new(1024));
        assert_eq!(done.result, Err(DeviceError::OutOfRange));
        let done = run(&mut block, BlockOp::Read, 0, BlockBuffer::new(100));
        assert_eq!(done.result, Err(DeviceError::InvalidArgument));
    }
}
