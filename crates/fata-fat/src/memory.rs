//! A block device in memory that keeps grouped writes apart until a flush, as the hosts do, and
//! can forget them as a crash would: for tests, fuzzing and RAM disks.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use fata_platform::{
    Block, BlockCompletion, BlockGeometry, BlockOp, BlockRequest, DeviceError, ReadySet,
};

const SECTOR: usize = 512;

/// A block device over bytes in memory. Clones share the device, so a test can keep one to look
/// at the bytes after handing another to [`fata::BlockDevice::new`].
///
/// Plain writes change the bytes at once. Grouped writes wait beside them (reads see them) until
/// a flush applies them all; [`MemoryBlock::crash`] forgets the waiting ones, as a host that
/// dies before the flush does.
#[derive(Clone)]
pub struct MemoryBlock {
    shared: Rc<RefCell<Memory>>,
}

struct Memory {
    bytes: Vec<u8>,
    /// Grouped writes since the last flush, by sector.
    grouped: BTreeMap<u64, [u8; SECTOR]>,
    done: Vec<BlockCompletion>,
    read_only: bool,
    /// Requests still served before every request fails with [`DeviceError::Io`].
    failing_after: Option<u64>,
    flushes: u64,
}

impl MemoryBlock {
    /// A device holding `image`, cut to whole 512-byte sectors.
    pub fn new(mut image: Vec<u8>) -> MemoryBlock {
        image.truncate(image.len() / SECTOR * SECTOR);
        MemoryBlock {
            shared: Rc::new(RefCell::new(Memory {
                bytes: image,
                grouped: BTreeMap::new(),
                done: Vec::new(),
                read_only: false,
                failing_after: None,
                flushes: 0,
            })),
        }
    }

    /// The same device, answering every write and discard with [`DeviceError::ReadOnly`].
    pub fn read_only(self) -> MemoryBlock {
        self.shared.borrow_mut().read_only = true;
        self
    }

    /// The bytes a reader sees now: what survives a crash, with the waiting grouped writes.
    pub fn image(&self) -> Vec<u8> {
        let memory = self.shared.borrow();
        let mut image = memory.bytes.clone();
        for (&sector, data) in &memory.grouped {
            let at = sector as usize * SECTOR;
            image[at..at + SECTOR].copy_from_slice(data);
        }
        image
    }

    /// The bytes that would survive a crash now: without the grouped writes waiting for a flush.
    pub fn durable(&self) -> Vec<u8> {
        self.shared.borrow().bytes.clone()
    }

    /// Forgets the grouped writes waiting for a flush, as a host that dies does.
    pub fn crash(&self) {
        self.shared.borrow_mut().grouped.clear();
    }

    /// After `requests` more requests, every request fails with [`DeviceError::Io`]; `None`
    /// heals the device.
    pub fn fail_after(&self, requests: Option<u64>) {
        self.shared.borrow_mut().failing_after = requests;
    }

    /// Flushes served so far.
    pub fn flushes(&self) -> u64 {
        self.shared.borrow().flushes
    }
}

impl Memory {
    fn sectors(&self) -> u64 {
        (self.bytes.len() / SECTOR) as u64
    }

    /// The byte range of `len` bytes of whole sectors from `sector`, if on the device.
    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, DeviceError> {
        if len == 0 || !len.is_multiple_of(SECTOR) {
            return Err(DeviceError::InvalidArgument);
        }
        match sector.checked_add((len / SECTOR) as u64) {
            Some(end) if end <= self.sectors() => {
                let start = sector as usize * SECTOR;
                Ok(start..start + len)
            }
            _ => Err(DeviceError::OutOfRange),
        }
    }

    fn serve(&mut self, request: &mut BlockRequest) -> Result<(), DeviceError> {
        if let Some(left) = self.failing_after.as_mut() {
            if *left == 0 {
                return Err(DeviceError::Io);
            }
            *left -= 1;
        }
        let len = request.buffer.as_ref().map_or(0, |b| b.len());
        match request.op {
            BlockOp::Read => {
                let range = self.range(request.sector, len)?;
                let buffer = request
                    .buffer
                    .as_mut()
                    .ok_or(DeviceError::InvalidArgument)?
                    .as_mut_slice();
                buffer.copy_from_slice(&self.bytes[range]);
                for (i, chunk) in buffer.chunks_mut(SECTOR).enumerate() {
                    if let Some(data) = self.grouped.get(&(request.sector + i as u64)) {
                        chunk.copy_from_slice(data);
                    }
                }
                Ok(())
            }
            BlockOp::Write { grouped } => {
                if self.read_only {
                    return Err(DeviceError::ReadOnly);
                }
                let range = self.range(request.sector, len)?;
                let data = request
                    .buffer
                    .as_ref()
                    .ok_or(DeviceError::InvalidArgument)?
                    .as_slice();
                for (i, chunk) in data.chunks(SECTOR).enumerate() {
                    let sector = request.sector + i as u64;
                    if grouped {
                        let mut copy = [0; SECTOR];
                        copy.copy_from_slice(chunk);
                        self.grouped.insert(sector, copy);
                    } else {
                        self.grouped.remove(&sector);
                    }
                }
                if !grouped {
                    self.bytes[range].copy_from_slice(data);
                }
                Ok(())
            }
            BlockOp::Flush => {
                for (sector, data) in core::mem::take(&mut self.grouped) {
                    let at = sector as usize * SECTOR;
                    self.bytes[at..at + SECTOR].copy_from_slice(&data);
                }
                self.flushes += 1;
                Ok(())
            }
            BlockOp::Discard { sectors } => {
                if self.read_only {
                    return Err(DeviceError::ReadOnly);
                }
                let len = usize::try_from(sectors)
                    .ok()
                    .and_then(|s| s.checked_mul(SECTOR))
                    .ok_or(DeviceError::OutOfRange)?;
                let range = self.range(request.sector, len)?;
                for sector in request.sector..request.sector + sectors {
                    self.grouped.remove(&sector);
                }
                self.bytes[range].fill(0);
                Ok(())
            }
        }
    }
}

impl Block for MemoryBlock {
    fn geometry(&self) -> BlockGeometry {
        let memory = self.shared.borrow();
        BlockGeometry {
            sector_size: SECTOR as u32,
            sectors: memory.sectors(),
            read_only: memory.read_only,
            request_max: 4 << 20,
            queue_depth: 64,
        }
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::EMPTY
    }

    fn submit(&mut self, mut request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)> {
        let mut memory = self.shared.borrow_mut();
        let result = memory.serve(&mut request);
        memory.done.push(BlockCompletion {
            tag: request.tag,
            result,
            buffer: request.buffer,
        });
        Ok(())
    }

    fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize {
        let done = core::mem::take(&mut self.shared.borrow_mut().done);
        let count = done.len();
        done.into_iter().for_each(on_done);
        count
    }
}
