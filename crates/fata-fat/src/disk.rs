//! The device's bytes as the seekable stream hadris-fat reads and writes, through a page cache
//! that makes whole file system operations the unit of change.
//!
//! The cache holds 4 KiB pages. A read of missing pages asks the device for the whole run at once
//! (and a few pages beyond it, since FAT files are mostly contiguous); a write that covers part
//! of a page reads the page first. Writes stay in the cache: nothing reaches the device until the
//! cache writes pages back, and then only as *grouped* writes, which the device applies at its
//! next flush all together or not at all.
//!
//! Pages changed by the operation in progress (between [`Store::begin`] and [`Store::commit`])
//! never leave the cache: if the operation fails, [`Store::rollback`] puts back what each page
//! held before it, so the device, and every later flush, only ever sees whole operations. The
//! cache keeps to its budget by dropping clean pages and writing back pages of finished
//! operations; pages of the operation in progress may take it past the budget until it ends.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use fata::{BlockBuffer, BlockDevice, DeviceError};
use hadris_io::ErrorKind;
use hadris_io::SeekFrom;
use hadris_io::r#async::{Read, Seek, Write};

use crate::sync::join_all;

/// Bytes in a cache page (and the device alignment of every request the cache makes).
pub(crate) const PAGE: usize = 4096;
/// Pages read beyond a missing page that is read, while they are missing too.
const READAHEAD: u64 = 16;
/// The most pages one device request carries (1 MiB).
const RUN_MAX: u64 = 256;

/// Why the last device access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The device refused or failed a request.
    Device(DeviceError),
    /// The file system pointed past the end of the device.
    PastEnd,
}

struct Page {
    data: Vec<u8>,
    dirty: bool,
    /// When the page was last used; its key in [`Cache::lru`].
    used: u64,
}

struct Cache {
    device: BlockDevice,
    /// Bytes on the device.
    size: u64,
    sector_size: u64,
    pages: BTreeMap<u64, Page>,
    /// Pages by last use, oldest first.
    lru: BTreeMap<u64, u64>,
    clock: u64,
    /// Pages the cache keeps at most, apart from those of the operation in progress.
    budget: usize,
    /// Whether an operation is in progress.
    in_op: bool,
    /// The pages the operation in progress changed, each with its content before the change
    /// (`None`: the device holds that content, so the page can simply be dropped).
    undo: BTreeMap<u64, Option<Vec<u8>>>,
    /// Why the last access failed, until [`Store::take_fault`].
    fault: Option<Fault>,
    /// Bytes sent as grouped writes since the last flush.
    grouped: u64,
}

impl Cache {
    fn page_len(&self, page: u64) -> usize {
        // At most PAGE, so the cast cannot truncate.
        (self.size - page * PAGE as u64).min(PAGE as u64) as usize
    }

    fn touch(&mut self, index: u64) {
        self.clock += 1;
        let now = self.clock;
        if let Some(page) = self.pages.get_mut(&index) {
            self.lru.remove(&page.used);
            page.used = now;
            self.lru.insert(now, index);
        }
    }

    fn insert(&mut self, index: u64, data: Vec<u8>) {
        self.clock += 1;
        let used = self.clock;
        if let Some(old) = self.pages.insert(
            index,
            Page {
                data,
                dirty: false,
                used,
            },
        ) {
            self.lru.remove(&old.used);
        }
        self.lru.insert(used, index);
    }

    fn remove(&mut self, index: u64) {
        if let Some(page) = self.pages.remove(&index) {
            self.lru.remove(&page.used);
        }
    }

    /// Checks that `len` bytes from `pos` lie on the device; returns the first and last page.
    fn span(&mut self, pos: u64, len: usize) -> Result<(u64, u64), Fault> {
        match pos.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok((pos / PAGE as u64, (end - 1) / PAGE as u64)),
            _ => Err(self.fail(Fault::PastEnd)),
        }
    }

    fn fail(&mut self, fault: Fault) -> Fault {
        self.fault = Some(fault);
        fault
    }
}

/// The cache, shared by the stream handles hadris-fat reads through and by the file system.
#[derive(Clone)]
pub(crate) struct Store {
    cache: Rc<RefCell<Cache>>,
}

impl Store {
    /// A cache of at most `budget_pages` pages over `device`, whose sector size divides [`PAGE`].
    pub(crate) fn new(device: BlockDevice, budget_pages: usize) -> Store {
        let geometry = device.geometry();
        Store {
            cache: Rc::new(RefCell::new(Cache {
                size: geometry.sectors * u64::from(geometry.sector_size),
                sector_size: u64::from(geometry.sector_size),
                device,
                pages: BTreeMap::new(),
                lru: BTreeMap::new(),
                clock: 0,
                budget: budget_pages,
                in_op: false,
                undo: BTreeMap::new(),
                fault: None,
                grouped: 0,
            })),
        }
    }

    /// Bytes on the device.
    pub(crate) fn size(&self) -> u64 {
        self.cache.borrow().size
    }

    /// Why the last access failed, if one did since the last call.
    pub(crate) fn take_fault(&self) -> Option<Fault> {
        self.cache.borrow_mut().fault.take()
    }

    /// Starts an operation: from now on changed pages stay in memory until [`Store::commit`].
    pub(crate) fn begin(&self) {
        let mut cache = self.cache.borrow_mut();
        cache.in_op = true;
        cache.undo.clear();
    }

    /// Whether an operation was begun and neither committed nor rolled back (its future was
    /// dropped half way).
    pub(crate) fn in_op(&self) -> bool {
        self.cache.borrow().in_op
    }

    /// Ends the operation in progress, keeping its changes: they may now reach the device.
    pub(crate) fn commit(&self) {
        let mut cache = self.cache.borrow_mut();
        cache.in_op = false;
        cache.undo.clear();
    }

    /// Ends the operation in progress, undoing its changes; returns whether it had changed
    /// anything.
    pub(crate) fn rollback(&self) -> bool {
        let mut cache = self.cache.borrow_mut();
        cache.in_op = false;
        let undo = core::mem::take(&mut cache.undo);
        let changed = !undo.is_empty();
        for (index, before) in undo {
            match before {
                Some(data) => {
                    if let Some(page) = cache.pages.get_mut(&index) {
                        page.data = data;
                        page.dirty = true;
                    }
                }
                None => cache.remove(index),
            }
        }
        changed
    }

    /// Bytes that the next flush would apply: grouped writes already sent, and changed pages.
    pub(crate) fn pending(&self) -> u64 {
        let cache = self.cache.borrow();
        let dirty = cache.pages.values().filter(|page| page.dirty).count() as u64;
        cache.grouped + dirty * PAGE as u64
    }

    /// Reads `buf.len()` bytes from byte `pos`.
    pub(crate) async fn read(&self, pos: u64, buf: &mut [u8]) -> Result<(), Fault> {
        if buf.is_empty() {
            return Ok(());
        }
        let (first, last) = self.cache.borrow_mut().span(pos, buf.len())?;
        self.load(first, last, true).await?;
        {
            let mut cache = self.cache.borrow_mut();
            let mut done = 0;
            for index in first..=last {
                cache.touch(index);
                // `load` made every page of the span present, and nothing dropped one since.
                let page = &cache.pages[&index];
                let start = (pos + done as u64 - index * PAGE as u64) as usize;
                let take = (page.data.len() - start).min(buf.len() - done);
                buf[done..done + take].copy_from_slice(&page.data[start..start + take]);
                done += take;
            }
        }
        self.trim().await
    }

    /// Writes `buf` at byte `pos` (into the cache).
    pub(crate) async fn write(&self, pos: u64, buf: &[u8]) -> Result<(), Fault> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = pos + buf.len() as u64;
        let (first, last) = self.cache.borrow_mut().span(pos, buf.len())?;
        // Pages the write covers only in part are read first.
        let partial = |cache: &Cache, index: u64| {
            let start = index * PAGE as u64;
            pos > start || end < start + cache.page_len(index) as u64
        };
        let edges = if first == last {
            vec![first]
        } else {
            vec![first, last]
        };
        for index in edges {
            if partial(&self.cache.borrow(), index) {
                self.load(index, index, false).await?;
            }
        }
        {
            let mut cache = self.cache.borrow_mut();
            let mut done = 0;
            for index in first..=last {
                // A page missing here is covered whole by the write: it starts as zeros.
                let len = cache.page_len(index);
                cache.clock += 1;
                let used = cache.clock;
                let Cache {
                    pages,
                    lru,
                    undo,
                    in_op,
                    ..
                } = &mut *cache;
                let page = pages.entry(index).or_insert_with(|| Page {
                    data: vec![0; len],
                    dirty: false,
                    used,
                });
                lru.remove(&page.used);
                page.used = used;
                lru.insert(used, index);
                if *in_op && !undo.contains_key(&index) {
                    undo.insert(index, page.dirty.then(|| page.data.clone()));
                }
                let start = (pos + done as u64 - index * PAGE as u64) as usize;
                let take = (page.data.len() - start).min(buf.len() - done);
                page.data[start..start + take].copy_from_slice(&buf[done..done + take]);
                page.dirty = true;
                done += take;
            }
        }
        self.trim().await
    }

    /// Makes pages `first..=last` present, reading the missing ones (and, with `ahead`, up to
    /// [`READAHEAD`] missing pages after them).
    async fn load(&self, first: u64, last: u64, ahead: bool) -> Result<(), Fault> {
        let (device, sector_size, runs) = {
            let cache = self.cache.borrow();
            let pages = cache.size.div_ceil(PAGE as u64);
            let mut runs: Vec<(u64, u64)> = Vec::new();
            let mut index = first;
            let mut end = last;
            while index <= end && index < pages {
                if cache.pages.contains_key(&index) {
                    index += 1;
                    continue;
                }
                if ahead && index == last {
                    end = (last + READAHEAD).min(pages - 1);
                }
                match runs.last_mut() {
                    Some((start, count)) if *start + *count == index && *count < RUN_MAX => {
                        *count += 1;
                    }
                    _ => runs.push((index, 1)),
                }
                index += 1;
            }
            if runs.is_empty() {
                return Ok(());
            }
            (cache.device.clone(), cache.sector_size, runs)
        };
        let reads = runs
            .iter()
            .map(|&(start, count)| {
                let device = device.clone();
                let len = {
                    let cache = self.cache.borrow();
                    (start..start + count)
                        .map(|index| cache.page_len(index))
                        .sum()
                };
                async move {
                    let sector = start * PAGE as u64 / sector_size;
                    device.read(sector, BlockBuffer::new(len)).await
                }
            })
            .collect();
        let results = join_all(reads).await;
        let mut cache = self.cache.borrow_mut();
        let mut fault = None;
        for (&(start, count), (buffer, result)) in runs.iter().zip(results) {
            if let Err(error) = result {
                fault = Some(Fault::Device(error));
                continue;
            }
            let bytes = buffer.as_slice();
            for index in start..start + count {
                let from = ((index - start) * PAGE as u64) as usize;
                let len = cache.page_len(index);
                if !cache.pages.contains_key(&index) {
                    cache.insert(index, bytes[from..from + len].to_vec());
                }
            }
        }
        match fault {
            Some(fault) => Err(cache.fail(fault)),
            None => Ok(()),
        }
    }

    /// Drops pages, oldest first, until the cache is within its budget; writes changed pages of
    /// finished operations back first when the oldest is one of them.
    async fn trim(&self) -> Result<(), Fault> {
        loop {
            let dirty = {
                let mut cache = self.cache.borrow_mut();
                if cache.pages.len() <= cache.budget {
                    return Ok(());
                }
                let Some(index) = cache
                    .lru
                    .values()
                    .copied()
                    .find(|index| !cache.undo.contains_key(index))
                else {
                    // Every page belongs to the operation in progress.
                    return Ok(());
                };
                if cache.pages[&index].dirty {
                    true
                } else {
                    cache.remove(index);
                    false
                }
            };
            if dirty {
                self.write_back().await?;
            }
        }
    }

    /// Sends every changed page of finished operations to the device as grouped writes, in runs
    /// of adjacent pages, all at once.
    pub(crate) async fn write_back(&self) -> Result<(), Fault> {
        let (device, sector_size, runs) = {
            let cache = self.cache.borrow();
            let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut last: Option<u64> = None;
            for (&index, page) in &cache.pages {
                if !page.dirty || cache.undo.contains_key(&index) {
                    continue;
                }
                match runs.last_mut() {
                    Some((_, bytes))
                        if last == Some(index - 1)
                            && (bytes.len() as u64) < RUN_MAX * PAGE as u64 =>
                    {
                        bytes.extend_from_slice(&page.data);
                    }
                    _ => runs.push((index, page.data.clone())),
                }
                last = Some(index);
            }
            if runs.is_empty() {
                return Ok(());
            }
            (cache.device.clone(), cache.sector_size, runs)
        };
        let writes = runs
            .iter()
            .map(|(start, bytes)| {
                let device = device.clone();
                let sector = start * PAGE as u64 / sector_size;
                let buffer = BlockBuffer::from_slice(bytes);
                async move { device.write_grouped(sector, buffer).await.1 }
            })
            .collect();
        let results = join_all(writes).await;
        let mut cache = self.cache.borrow_mut();
        let mut fault = None;
        for ((start, bytes), result) in runs.iter().zip(results) {
            match result {
                Ok(()) => {
                    cache.grouped += bytes.len() as u64;
                    let pages = bytes.len().div_ceil(PAGE) as u64;
                    for index in *start..start + pages {
                        if let Some(page) = cache.pages.get_mut(&index) {
                            page.dirty = false;
                        }
                    }
                }
                Err(error) => fault = Some(Fault::Device(error)),
            }
        }
        match fault {
            Some(fault) => Err(cache.fail(fault)),
            None => Ok(()),
        }
    }

    /// Writes back every finished change and flushes the device: when this returns, the
    /// device holds every operation committed so far, durably.
    pub(crate) async fn flush(&self) -> Result<(), Fault> {
        self.write_back().await?;
        let device = self.cache.borrow().device.clone();
        match device.flush().await {
            Ok(()) => {
                self.cache.borrow_mut().grouped = 0;
                Ok(())
            }
            Err(error) => Err(self.cache.borrow_mut().fail(Fault::Device(error))),
        }
    }
}

/// A position in the [`Store`]: the stream hadris-fat reads and writes.
pub(crate) struct Disk {
    store: Store,
    pos: u64,
}

impl Disk {
    pub(crate) fn new(store: Store) -> Disk {
        Disk { store, pos: 0 }
    }
}

type IoResult<T> = hadris_io::Result<T, ErrorKind>;

/// A stream error for a failed access; the [`Fault`] itself waits in the store.
fn stream_error(fault: Fault) -> hadris_io::Error<ErrorKind> {
    hadris_io::Error::from_source(match fault {
        Fault::PastEnd => ErrorKind::UnexpectedEof,
        Fault::Device(_) => ErrorKind::Other,
    })
}

impl Read for Disk {
    type Error = ErrorKind;

    async fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let size = self.store.size();
        if self.pos >= size && !buf.is_empty() {
            let fault = self.store.cache.borrow_mut().fail(Fault::PastEnd);
            return Err(stream_error(fault));
        }
        let len = buf
            .len()
            .min(usize::try_from(size - self.pos).unwrap_or(usize::MAX));
        self.store
            .read(self.pos, &mut buf[..len])
            .await
            .map_err(stream_error)?;
        self.pos += len as u64;
        Ok(len)
    }
}

impl Write for Disk {
    type Error = ErrorKind;

    async fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.store
            .write(self.pos, buf)
            .await
            .map_err(stream_error)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    /// Nothing: hadris-fat flushes inside its operations, and changes reach the device only
    /// between whole operations ([`Store::flush`]).
    async fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Seek for Disk {
    type Error = ErrorKind;

    async fn seek(&mut self, pos: SeekFrom) -> IoResult<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => self.store.size().checked_add_signed(delta),
        };
        match target {
            Some(target) => {
                self.pos = target;
                Ok(target)
            }
            None => Err(hadris_io::Error::from_source(ErrorKind::InvalidInput)),
        }
    }
}
