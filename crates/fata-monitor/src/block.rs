//! Block devices: a host file served by `fata-blockfile`, and a request ring and a completion ring
//! in guest RAM, served on the guest's exits by the vCPU thread.
//!
//! The guest publishes requests on the request ring without exits. At its next exit, every
//! `Yield` (through [`Service`], before the wait decides to sleep) or a store to the device's
//! doorbell ([`Blocks::doorbell`]), the monitor:
//!
//! 1. takes every published request: copies the slot out through the checked accessor, checks it
//!    ([`check`]: operation, flags, length, and a buffer inside memory the guest may write) and
//!    hands it to the engine with the buffer's host address, or queues a
//!    [`BlockStatus::BadRequest`] completion for it;
//! 2. starts everything queued with one call (which also clears the engine's completion signal,
//!    so the wait that may follow sleeps until something new finishes);
//! 3. collects what the engine finished and publishes it, as many completions as the completion
//!    ring has room for (the rest wait for the next exit), in whatever order the host finished
//!    them.
//!
//! A device in the `Yield`'s interest is ready while its completion ring holds completions the
//! guest has not consumed; when none is, the wait sleeps on the engines' completion descriptors
//! with the taps. A bad request never ends the guest; ring indices that claim more entries than
//! the ring has slots do ([`AbiViolation::BlockRing`]).
//!
//! The memory a buffer may lie in (writable image segments, the heap, the stack) never holds a
//! ring, a key-value region, the boot info or the page tables, so a read cannot write over them.
//! The host writes into a read's buffer while the guest runs; the guest promised not to touch it
//! until the completion is published, and the monitor never reads it back, so a guest that does
//! touch it only harms itself. The host writes a read's buffer through a raw pointer, so when the
//! read completes the monitor marks the buffer in the RAM's record of its own writes (dirty pages
//! for snapshots and migration).
//!
//! Before a snapshot [`Blocks::quiesce`] waits for every request the engine has; nothing in
//! flight on the host survives one. [`Blocks::save`] then keeps the ring indices, the completions
//! not yet published and the sectors the engine holds in memory (a copy-on-write device's writes,
//! grouped writes waiting for a flush); [`Blocks::restore`] opens files of the same size and takes
//! them up. Requests the guest published that the monitor had not taken stay in the ring, in guest
//! memory, and are taken after the restore.

use crate::config::BlockConfig;
use crate::memory::GuestRam;
use crate::poll::{Service, wait_readable};
use crate::violation::{AbiViolation, RingDefect, Stop};
use fata_blockfile::{BlockFile, Mode, Op, OpenError, Request, Status};
use fata_hvt_abi::{
    BLOCK_COPY_ON_WRITE, BLOCK_FLAG_GROUPED, BLOCK_HEADER, BLOCK_READ_ONLY, BLOCK_REQUEST_MAX,
    BLOCK_SECTOR_SIZE, BlockCompletion, BlockOp, BlockRequest, BlockRingHeader, BlockStatus,
    DeviceInfo, DeviceKind, GuestAddr, PAGE_SIZE, block_completion_slot, block_request_slot,
    block_ring_len, doorbell_address,
};
use fata_hvt_codec::Codec;
use fata_snapshot::BlockState;
use std::collections::VecDeque;
use std::io;
use std::mem::offset_of;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;
use thiserror::Error;
use vm_memory::bitmap::BitmapSlice;
use vm_memory::{Bytes, VolatileSlice};

/// Request slots (and completion slots) per device.
pub const SLOTS: u32 = 128;

const REQUESTS_PRODUCED: u64 = BLOCK_HEADER + offset_of!(BlockRingHeader, requests_produced) as u64;
const REQUESTS_CONSUMED: u64 = BLOCK_HEADER + offset_of!(BlockRingHeader, requests_consumed) as u64;
const COMPLETIONS_PRODUCED: u64 =
    BLOCK_HEADER + offset_of!(BlockRingHeader, completions_produced) as u64;
const COMPLETIONS_CONSUMED: u64 =
    BLOCK_HEADER + offset_of!(BlockRingHeader, completions_consumed) as u64;

/// A block device that cannot be set up: its file cannot be opened (the engine's error says what
/// to do).
#[derive(Debug, Error)]
#[error("cannot set up block device {name}: {source}")]
pub struct BlockSetupError {
    /// The device's name.
    pub name: String,
    /// The file behind it.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: OpenError,
}

/// Block devices that cannot carry on a snapshot's.
#[derive(Debug, Error)]
pub enum BlockRestoreError {
    /// A file cannot be opened.
    #[error(transparent)]
    Open(#[from] BlockSetupError),
    /// Not as many devices as the snapshot had.
    #[error(
        "the snapshot has {saved} block devices but {given} were given; give each of its \
         devices a file, in the same order"
    )]
    Count {
        /// Devices in the snapshot.
        saved: usize,
        /// Devices given.
        given: usize,
    },
    /// A file of another size than the saved device.
    #[error(
        "block device {name}: {} holds {sectors} sectors, but the device in the snapshot had \
         {saved}; give it the file the snapshot was taken with, or a copy of it",
        path.display()
    )]
    Size {
        /// The device's name.
        name: String,
        /// The file given.
        path: PathBuf,
        /// Its size in sectors.
        sectors: u64,
        /// The saved device's.
        saved: u64,
    },
    /// Another mode than the saved device's.
    #[error(
        "block device {name} was {saved} in the snapshot and cannot come back {given}; give it \
         the same mode (a read-write device may also come back copy-on-write)"
    )]
    Mode {
        /// The device's name.
        name: String,
        /// The saved mode.
        saved: String,
        /// The mode given.
        given: &'static str,
    },
    /// The saved state cannot be a device's.
    #[error("block device {name}: the snapshot is damaged: {defect}")]
    Damaged {
        /// The device's name.
        name: String,
        /// What is wrong.
        defect: &'static str,
    },
}

/// A mode's name in a snapshot: `rw`, `ro` or `cow`.
fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::ReadWrite => "rw",
        Mode::ReadOnly => "ro",
        Mode::CopyOnWrite => "cow",
    }
}

/// Counters over all devices, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    /// Requests taken from the rings.
    pub requests: u64,
    /// Reads, writes, flushes and discards among them that reached the host.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Discards.
    pub discards: u64,
    /// Bytes of reads that completed successfully.
    pub bytes_read: u64,
    /// Bytes of writes that completed successfully.
    pub bytes_written: u64,
    /// Requests the monitor refused itself ([`BlockStatus::BadRequest`]).
    pub refused: u64,
    /// Requests that reached the host and completed with an error.
    pub failed: u64,
    /// The most requests the host had at once (the deepest queue of any one device).
    pub most_in_flight: u64,
    /// Reads and writes the engine served with direct I/O.
    pub direct: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Flushes that applied grouped writes through the journal.
    pub journal_commits: u64,
    /// Sectors a journal left by a crash gave back when the files were opened.
    pub recovered_sectors: u64,
}

/// A request the engine has, by its index in the device's table.
#[derive(Debug, Clone, Copy)]
struct Taken {
    /// The guest's tag.
    tag: u64,
    op: BlockOp,
    len: u64,
    /// A read's or write's buffer.
    buffer: Option<GuestAddr>,
}

/// One configured device and the monitor's own ring indices (never read back from guest memory).
struct Device {
    name: String,
    path: PathBuf,
    handle: u32,
    file: BlockFile,
    ring_addr: u64,
    requests_consumed: u32,
    completions_produced: u32,
    /// The guest's `completions_consumed` as the last pass saw it: it only moves forward, and
    /// never past `completions_produced`.
    completions_seen: u32,
    /// The requests the engine has; its tag for one is the index here.
    table: Vec<Option<Taken>>,
    /// Free indices of `table`.
    free: Vec<u32>,
    /// Completions not yet published: the guest's tag and the status.
    done: VecDeque<(u64, BlockStatus)>,
    stats: BlockStats,
}

/// All block devices of a guest. Only the vCPU thread uses them.
pub struct Blocks {
    devices: Vec<Device>,
    /// The guest memory a read or write buffer may lie in: sorted, disjoint `(start, end)` ranges.
    writable: Vec<(u64, u64)>,
}

impl Blocks {
    /// Opens the files for `configs`, whose names and number the configuration check passed
    /// (before the VM exists and before any confinement); the devices get the handles from
    /// `first_handle` on.
    pub fn open(configs: &[BlockConfig], first_handle: u32) -> Result<Blocks, BlockSetupError> {
        let mut devices = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let file =
                BlockFile::open(&config.path, config.mode).map_err(|source| BlockSetupError {
                    name: config.name.clone(),
                    path: config.path.clone(),
                    source,
                })?;
            devices.push(Device {
                name: config.name.clone(),
                path: config.path.clone(),
                handle: first_handle + i as u32,
                file,
                ring_addr: 0,
                requests_consumed: 0,
                completions_produced: 0,
                completions_seen: 0,
                table: vec![None; SLOTS as usize],
                free: (0..SLOTS).rev().collect(),
                done: VecDeque::with_capacity(SLOTS as usize),
                stats: BlockStats::default(),
            });
        }
        Ok(Blocks {
            devices,
            writable: Vec::new(),
        })
    }

    /// How many devices there are.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether there are no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Places the devices' ring memory just below `top`; returns the lowest ring address.
    pub fn place(&mut self, top: u64) -> u64 {
        let len = block_ring_len(SLOTS).next_multiple_of(PAGE_SIZE);
        let mut next = top;
        for device in &mut self.devices {
            next = next.saturating_sub(len);
            device.ring_addr = next;
        }
        next
    }

    /// The guest memory request buffers may lie in, as [`Blocks::set_writable`] merged it.
    pub(crate) fn writable(&self) -> &[(u64, u64)] {
        &self.writable
    }

    /// Sets the guest memory request buffers may lie in: `(start, end)` ranges, in any order,
    /// that may touch or overlap.
    pub fn set_writable(&mut self, mut ranges: Vec<(u64, u64)>) {
        ranges.retain(|&(start, end)| start < end);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.writable = merged;
    }

    /// Writes each device's ring header (geometry, indices at zero) into guest RAM.
    pub fn write_headers(&self, ram: &GuestRam) -> Result<(), crate::memory::OutOfRam> {
        for device in &self.devices {
            let flags = match device.file.mode() {
                Mode::ReadWrite => 0,
                Mode::ReadOnly => BLOCK_READ_ONLY,
                Mode::CopyOnWrite => BLOCK_COPY_ON_WRITE,
            };
            let header = BlockRingHeader {
                requests_produced: 0,
                pad0: [0; 15],
                requests_consumed: 0,
                pad1: [0; 15],
                completions_produced: 0,
                pad2: [0; 15],
                completions_consumed: 0,
                pad3: [0; 15],
                sector_size: BLOCK_SECTOR_SIZE as u32,
                flags,
                sectors: device.file.sectors(),
                request_max: BLOCK_REQUEST_MAX,
                reserved: [0; 5],
            };
            ram.write_struct(GuestAddr(device.ring_addr + BLOCK_HEADER), &header)?;
        }
        Ok(())
    }

    /// Fills the boot info's entries of the devices (indexed by handle).
    pub fn device_infos(&self, infos: &mut [DeviceInfo]) {
        for device in &self.devices {
            let Some(info) = infos.get_mut(device.handle as usize) else {
                continue;
            };
            let mut name = [0u8; 16];
            name[..device.name.len()].copy_from_slice(device.name.as_bytes());
            *info = DeviceInfo {
                name,
                kind: DeviceKind::Block as u32,
                handle: device.handle,
                ring_addr: GuestAddr(device.ring_addr),
                ring_len: block_ring_len(SLOTS),
                rx_slots: SLOTS,
                doorbell: doorbell_address(device.handle),
                ..DeviceInfo::EMPTY
            };
        }
    }

    /// The counters so far, summed over the devices.
    pub fn stats(&self) -> BlockStats {
        let mut s = BlockStats::default();
        for d in &self.devices {
            let c = &d.stats;
            s.requests += c.requests;
            s.reads += c.reads;
            s.writes += c.writes;
            s.flushes += c.flushes;
            s.discards += c.discards;
            s.bytes_read += c.bytes_read;
            s.bytes_written += c.bytes_written;
            s.refused += c.refused;
            s.failed += c.failed;
            s.most_in_flight = s.most_in_flight.max(c.most_in_flight);
            let e = d.file.stats();
            s.direct += e.direct;
            s.enters += e.enters;
            s.journal_commits += e.journal_commits;
            s.recovered_sectors += e.recovered_sectors;
        }
        s
    }

    /// Opens the files for `configs` to carry on the devices of a snapshot, `states` in the same
    /// order: each file must have the saved device's size; the devices take up the saved ring
    /// indices, unpublished completions and held sectors. The rings themselves are in the
    /// restored guest RAM. A device saved read-write may come back copy-on-write (a clone that
    /// leaves the file alone); otherwise the mode must be the saved one.
    pub(crate) fn restore(
        configs: &[BlockConfig],
        first_handle: u32,
        states: &[BlockState],
    ) -> Result<Blocks, BlockRestoreError> {
        if configs.len() != states.len() {
            return Err(BlockRestoreError::Count {
                saved: states.len(),
                given: configs.len(),
            });
        }
        let mut blocks = Blocks::open(configs, first_handle)?;
        for (device, state) in blocks.devices.iter_mut().zip(states) {
            let mode = mode_name(device.file.mode());
            if mode != state.mode && !(state.mode == "rw" && mode == "cow") {
                return Err(BlockRestoreError::Mode {
                    name: state.name.clone(),
                    saved: state.mode.clone(),
                    given: mode,
                });
            }
            if device.file.sectors() != state.sectors {
                return Err(BlockRestoreError::Size {
                    name: state.name.clone(),
                    path: device.path.clone(),
                    sectors: device.file.sectors(),
                    saved: state.sectors,
                });
            }
            device.restore(state)?;
        }
        Ok(blocks)
    }

    /// Before a snapshot: waits until the engine has finished every request the monitor took
    /// from the rings (requests the guest published and the monitor has not taken stay in the
    /// ring, for whoever carries the guest on) and publishes the completions that fit; the rest
    /// wait in the devices' state. An error if some request is still unfinished at `deadline`.
    pub(crate) fn quiesce(&mut self, ram: &GuestRam, deadline: Instant) -> Result<(), Stop> {
        for device in &mut self.devices {
            device.quiesce(ram, deadline)?;
        }
        Ok(())
    }

    /// The devices' state for a snapshot, in handle order; call it after
    /// [`quiesce`](Self::quiesce), with the guest stopped.
    pub(crate) fn save(&self) -> Vec<BlockState> {
        self.devices.iter().map(Device::save).collect()
    }

    /// A doorbell store reached the monitor: serves device `handle`'s rings. `Ok(false)` when
    /// there is no such device.
    pub fn doorbell(&mut self, ram: &GuestRam, handle: u64) -> Result<bool, Stop> {
        let writable = &self.writable;
        match self
            .devices
            .iter_mut()
            .find(|d| u64::from(d.handle) == handle)
        {
            Some(device) => device.serve(ram, writable).map(|()| true),
            None => Ok(false),
        }
    }
}

impl Service for Blocks {
    fn handles(&self) -> u64 {
        self.devices.iter().fold(0, |set, d| set | (1 << d.handle))
    }

    fn serve(&mut self, ram: &GuestRam) -> Result<(), Stop> {
        for device in &mut self.devices {
            device.serve(ram, &self.writable)?;
        }
        Ok(())
    }

    fn ready(&self, ram: &GuestRam, interest: u64) -> u64 {
        let mut ready = 0;
        for d in &self.devices {
            let bit = 1u64 << d.handle;
            if interest & bit == 0 {
                continue;
            }
            let consumed = ram
                .slice(GuestAddr(d.ring_addr + COMPLETIONS_CONSUMED), 4)
                .ok()
                .and_then(|s| s.load::<u32>(0, Ordering::Acquire).ok());
            if consumed.is_some_and(|consumed| consumed != d.completions_produced) {
                ready |= bit;
            }
        }
        ready
    }

    fn wait_fds(&self, interest: u64, fds: &mut [RawFd]) -> usize {
        let busy = self
            .devices
            .iter()
            .filter(|d| interest & (1 << d.handle) != 0 && d.free.len() < SLOTS as usize);
        let mut added = 0;
        for (fd, device) in fds.iter_mut().zip(busy) {
            *fd = device.file.completion_fd();
            added += 1;
        }
        added
    }
}

/// What a checked request asks the engine for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    op: BlockOp,
    flags: u32,
    sector: u64,
    len: u64,
    /// A read's or write's buffer.
    buffer: Option<GuestAddr>,
}

/// Checks a request the guest wrote: a known operation, only the flags it allows, reserved
/// fields zero, a length of whole sectors up to [`BLOCK_REQUEST_MAX`] (zero for a flush), and a
/// read's or write's buffer inside one of the `writable` ranges. The sector range is the
/// engine's to check (it knows the device's size).
fn check(request: &BlockRequest, writable: &[(u64, u64)]) -> Result<Checked, BlockStatus> {
    let bad = BlockStatus::BadRequest;
    let op = BlockOp::from_u32(request.op).ok_or(bad)?;
    let allowed = match op {
        BlockOp::Write => BLOCK_FLAG_GROUPED,
        _ => 0,
    };
    if request.flags & !allowed != 0 || request.reserved != [0; 3] {
        return Err(bad);
    }
    let len = request.len;
    let sectors_ok = len != 0 && len.is_multiple_of(BLOCK_SECTOR_SIZE) && len <= BLOCK_REQUEST_MAX;
    let buffer = match op {
        BlockOp::Flush if len == 0 => None,
        BlockOp::Flush => return Err(bad),
        BlockOp::Discard if sectors_ok => None,
        BlockOp::Read | BlockOp::Write if sectors_ok => {
            let start = request.buffer.0;
            let end = start.checked_add(len).ok_or(bad)?;
            if !writable.iter().any(|&(s, e)| s <= start && end <= e) {
                return Err(bad);
            }
            Some(request.buffer)
        }
        _ => return Err(bad),
    };
    Ok(Checked {
        op,
        flags: request.flags,
        sector: request.sector,
        len,
        buffer,
    })
}

/// The ring's status for the engine's.
fn ring_status(status: Status) -> BlockStatus {
    match status {
        Status::Ok => BlockStatus::Ok,
        Status::IoError => BlockStatus::IoError,
        Status::ReadOnly => BlockStatus::ReadOnly,
        Status::OutOfRange => BlockStatus::OutOfRange,
        Status::BadRequest => BlockStatus::BadRequest,
        Status::NoSpace => BlockStatus::NoSpace,
        Status::Unsupported => BlockStatus::Unsupported,
    }
}

fn load<B: BitmapSlice>(ring: &VolatileSlice<'_, B>, offset: u64, order: Ordering) -> u32 {
    // Offsets are ABI constants inside the ring, which was checked to be `ring_len` bytes.
    ring.load::<u32>(offset as usize, order).unwrap_or(0)
}

fn store<B: BitmapSlice>(ring: &VolatileSlice<'_, B>, offset: u64, value: u32, order: Ordering) {
    let _ = ring.store(value, offset as usize, order);
}

impl Device {
    fn violation(&self, defect: RingDefect) -> Stop {
        Stop::Abi(AbiViolation::BlockRing {
            handle: self.handle,
            defect,
        })
    }

    /// Moves what the engine finished into `done`, freeing its table entries; marks the
    /// buffers that reads wrote (the host wrote them through a raw pointer) in the RAM's record
    /// of the monitor's writes.
    fn reap(&mut self, ram: &GuestRam) {
        let Device {
            file,
            table,
            free,
            done,
            stats,
            ..
        } = self;
        file.complete(&mut |index, status| {
            let Some(taken) = table.get_mut(index as usize).and_then(Option::take) else {
                return;
            };
            free.push(index as u32);
            if let (BlockOp::Read, Some(buffer)) = (taken.op, taken.buffer) {
                ram.mark_dirty(buffer, taken.len);
            }
            let status = ring_status(status);
            match (status, taken.op) {
                (BlockStatus::Ok, BlockOp::Read) => stats.bytes_read += taken.len,
                (BlockStatus::Ok, BlockOp::Write) => stats.bytes_written += taken.len,
                (BlockStatus::Ok, _) => {}
                _ => stats.failed += 1,
            }
            done.push_back((taken.tag, status));
        });
    }

    /// One pass over the device: takes every published request, starts what is queued, and
    /// publishes what the engine finished, as much as the completion ring has room for.
    fn serve(&mut self, ram: &GuestRam, writable: &[(u64, u64)]) -> Result<(), Stop> {
        let ring = ram
            .slice(GuestAddr(self.ring_addr), block_ring_len(SLOTS))
            .map_err(|e| Stop::Host("mapping a block ring", io::Error::other(e)))?;
        let consumed = self.completions_consumed(&ring)?;
        let produced = load(&ring, REQUESTS_PRODUCED, Ordering::Acquire);
        let pending = produced.wrapping_sub(self.requests_consumed);
        if pending > SLOTS {
            return Err(self.violation(RingDefect::RequestIndex {
                produced,
                consumed: self.requests_consumed,
            }));
        }
        let outstanding = produced.wrapping_sub(consumed);
        if outstanding > SLOTS {
            return Err(self.violation(RingDefect::Outstanding {
                outstanding,
                slots: SLOTS,
            }));
        }
        let mut started = 0;
        for _ in 0..pending {
            let mut raw = [0u8; BlockRequest::SIZE];
            let offset = block_request_slot(SLOTS, self.requests_consumed);
            ring.subslice(offset as usize, raw.len())
                .map_err(|e| Stop::Host("reading a block request", io::Error::other(e)))?
                .copy_to(&mut raw[..]);
            let request = BlockRequest::decode(&raw);
            self.requests_consumed = self.requests_consumed.wrapping_add(1);
            self.stats.requests += 1;
            match check(&request, writable).and_then(|c| self.submit(ram, request.tag, c)) {
                Ok(()) => started += 1,
                Err(status) => {
                    self.stats.refused += 1;
                    self.done.push_back((request.tag, status));
                }
            }
        }
        if pending > 0 {
            store(
                &ring,
                REQUESTS_CONSUMED,
                self.requests_consumed,
                Ordering::Release,
            );
        }
        if started > 0 {
            let in_flight = (SLOTS as usize - self.free.len()) as u64;
            self.stats.most_in_flight = self.stats.most_in_flight.max(in_flight);
        }
        // Before every wait, as the engine asks: a completion that arrives after this call
        // signals its descriptor again. Collecting after it misses none.
        self.file
            .start()
            .map_err(|e| Stop::Host("starting block requests", e))?;
        self.reap(ram);
        self.publish(&ring, consumed);
        Ok(())
    }

    /// The guest's `completions_consumed`, checked: it only moves forward, and never past what
    /// the monitor produced.
    fn completions_consumed<B: BitmapSlice>(
        &mut self,
        ring: &VolatileSlice<'_, B>,
    ) -> Result<u32, Stop> {
        let consumed = load(ring, COMPLETIONS_CONSUMED, Ordering::Acquire);
        let seen = self.completions_seen;
        if consumed.wrapping_sub(seen) > self.completions_produced.wrapping_sub(seen) {
            return Err(self.violation(RingDefect::CompletionIndex {
                produced: self.completions_produced,
                consumed,
            }));
        }
        self.completions_seen = consumed;
        Ok(consumed)
    }

    /// Waits until the engine has finished every request the monitor took, or `deadline`
    /// passes (then it is an error), and publishes the completions the ring has room for.
    fn quiesce(&mut self, ram: &GuestRam, deadline: Instant) -> Result<(), Stop> {
        let ring = ram
            .slice(GuestAddr(self.ring_addr), block_ring_len(SLOTS))
            .map_err(|e| Stop::Host("mapping a block ring", io::Error::other(e)))?;
        loop {
            self.file
                .start()
                .map_err(|e| Stop::Host("starting block requests", e))?;
            self.reap(ram);
            if self.free.len() == SLOTS as usize {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Stop::Host(
                    "finishing block requests before a snapshot",
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{} requests to {} did not finish in time; the host's storage is \
                             stuck, try again when it answers",
                            SLOTS as usize - self.free.len(),
                            self.path.display()
                        ),
                    ),
                ));
            }
            wait_readable(&[self.file.completion_fd()], Some(left))
                .map_err(|e| Stop::Host("waiting for block requests", e))?;
        }
        let consumed = self.completions_consumed(&ring)?;
        self.publish(&ring, consumed);
        Ok(())
    }

    /// The device's state for a snapshot; it has nothing in flight (after `quiesce`).
    fn save(&self) -> BlockState {
        let mut overlay: Vec<(u64, Vec<u8>)> = Vec::new();
        for (sector, bytes) in self.file.held() {
            match overlay.last_mut() {
                Some((first, run)) if *first + (run.len() as u64 / BLOCK_SECTOR_SIZE) == sector => {
                    run.extend_from_slice(bytes)
                }
                _ => overlay.push((sector, bytes.to_vec())),
            }
        }
        BlockState {
            name: self.name.clone(),
            path: self.path.to_string_lossy().into_owned(),
            mode: mode_name(self.file.mode()).into(),
            sectors: self.file.sectors(),
            ring_addr: self.ring_addr,
            requests_consumed: self.requests_consumed,
            completions_produced: self.completions_produced,
            completions_seen: self.completions_seen,
            pending: (self.done.iter())
                .map(|&(tag, status)| (tag, status as u32))
                .collect(),
            overlay,
        }
    }

    /// Takes the indices, unpublished completions and held sectors of `state`, the snapshot of
    /// a device over a file of the same size.
    fn restore(&mut self, state: &BlockState) -> Result<(), BlockRestoreError> {
        let fail = |defect| BlockRestoreError::Damaged {
            name: state.name.clone(),
            defect,
        };
        if state.pending.len() > SLOTS as usize {
            return Err(fail("more unpublished completions than the ring has slots"));
        }
        for &(tag, status) in &state.pending {
            let status = BlockStatus::from_u32(status).ok_or(fail("an unknown status"))?;
            self.done.push_back((tag, status));
        }
        for (sector, bytes) in &state.overlay {
            if !self.file.hold(*sector, bytes) {
                return Err(fail("sectors past the device's end, or not whole sectors"));
            }
        }
        self.ring_addr = state.ring_addr;
        self.requests_consumed = state.requests_consumed;
        self.completions_produced = state.completions_produced;
        self.completions_seen = state.completions_seen;
        Ok(())
    }

    /// Hands a checked request to the engine.
    fn submit(&mut self, ram: &GuestRam, tag: u64, checked: Checked) -> Result<(), BlockStatus> {
        let buf = match checked.buffer {
            Some(addr) => ram
                .slice(addr, checked.len)
                .map_err(|_| BlockStatus::BadRequest)?
                .ptr_guard_mut()
                .as_ptr(),
            None => std::ptr::null_mut(),
        };
        let op = match checked.op {
            BlockOp::Read => Op::Read,
            BlockOp::Write => Op::Write {
                grouped: checked.flags & BLOCK_FLAG_GROUPED != 0,
            },
            BlockOp::Flush => Op::Flush,
            BlockOp::Discard => Op::Discard,
        };
        // Outstanding requests never exceed the slots (checked in `serve`), so there is a free
        // entry; a guest that found a way round that gets its request refused.
        let index = self.free.pop().ok_or(BlockStatus::BadRequest)?;
        self.table[index as usize] = Some(Taken {
            tag,
            op: checked.op,
            len: checked.len,
            buffer: checked.buffer,
        });
        let counter = match checked.op {
            BlockOp::Read => &mut self.stats.reads,
            BlockOp::Write => &mut self.stats.writes,
            BlockOp::Flush => &mut self.stats.flushes,
            BlockOp::Discard => &mut self.stats.discards,
        };
        *counter += 1;
        let request = Request {
            tag: u64::from(index),
            op,
            sector: checked.sector,
            len: checked.len,
            buf,
        };
        // SAFETY: a read's or write's `buf..buf + len` is guest RAM (the checked accessor gave
        // it), which stays mapped until the devices are dropped: `Blocks` waits for every request
        // in flight before it goes, and the guest's RAM is dropped after it. The monitor makes no
        // Rust reference to guest RAM; the guest promised not to touch the buffer until the
        // completion is published, and if it does, only its own bytes change.
        unsafe { self.file.submit(request) };
        Ok(())
    }

    /// Publishes queued completions, as many as the ring has room for (the rest wait for the
    /// next pass); `consumed` is the guest's `completions_consumed`, which `serve` checked. While
    /// the guest keeps to the outstanding limit the room always suffices: the requests the
    /// monitor holds and the completions in the ring are at most `SLOTS` together.
    fn publish<B: BitmapSlice>(&mut self, ring: &VolatileSlice<'_, B>, consumed: u32) {
        let room = SLOTS - self.completions_produced.wrapping_sub(consumed);
        let count = self.done.len().min(room as usize);
        for (tag, status) in self.done.drain(..count) {
            let completion = BlockCompletion {
                tag,
                status: status as u32,
                reserved: 0,
            };
            let mut raw = [0u8; BlockCompletion::SIZE];
            completion.encode(&mut raw);
            let offset = block_completion_slot(SLOTS, self.completions_produced);
            if let Ok(slot) = ring.subslice(offset as usize, raw.len()) {
                slot.copy_from(&raw[..]);
            }
            self.completions_produced = self.completions_produced.wrapping_add(1);
        }
        if count > 0 {
            store(
                ring,
                COMPLETIONS_PRODUCED,
                self.completions_produced,
                Ordering::Release,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::BOOT_INFO_ADDR;
    use std::io::Write;
    use std::time::Duration;

    const MEM: u64 = 4 << 20;
    /// Where the test's image ends and its heap begins, and the heap's end.
    const HEAP: (u64, u64) = (0x20_0000, 0x2c_0000);
    /// The writable data segment of the test's image.
    const DATA: (u64, u64) = (0x10_8000, 0x10_a000);
    const SECTORS: u64 = 64;

    /// Guest RAM with one block device over a fresh file of `SECTORS` sectors whose every byte
    /// is its sector's number, laid out as `Guest::load` does.
    struct Bench {
        ram: GuestRam,
        blocks: Blocks,
        file: tempfile::NamedTempFile,
    }

    fn bench(mode: Mode) -> Bench {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for sector in 0..SECTORS {
            file.write_all(&[sector as u8; 512]).unwrap();
        }
        file.flush().unwrap();
        let config = BlockConfig {
            name: "storage".into(),
            path: file.path().into(),
            mode,
        };
        let mut blocks = Blocks::open(&[config], 2).unwrap();
        let stack_bottom = MEM - 0x10_0000;
        let bottom = blocks.place(stack_bottom);
        assert_eq!(bottom, stack_bottom - block_ring_len(SLOTS));
        assert!(bottom >= HEAP.1);
        blocks.set_writable(vec![
            (stack_bottom, MEM),
            HEAP,
            DATA,
            (DATA.1, DATA.1 + 0x1000),
        ]);
        let ram = GuestRam::new(MEM).unwrap();
        blocks.write_headers(&ram).unwrap();
        Bench { ram, blocks, file }
    }

    impl Bench {
        fn ring(&self) -> u64 {
            self.blocks.devices[0].ring_addr
        }
        fn put(&self, offset: u64, value: u32) {
            self.ram
                .write(GuestAddr(self.ring() + offset), &value.to_le_bytes())
                .unwrap();
        }
        fn get(&self, offset: u64) -> u32 {
            let mut raw = [0u8; 4];
            self.ram
                .read(GuestAddr(self.ring() + offset), &mut raw)
                .unwrap();
            u32::from_le_bytes(raw)
        }
        /// Publishes `requests` as the guest would, after the ones published before.
        fn publish(&self, requests: &[BlockRequest]) {
            let mut produced = self.get(REQUESTS_PRODUCED);
            for request in requests {
                let at = self.ring() + block_request_slot(SLOTS, produced);
                self.ram.write_struct(GuestAddr(at), request).unwrap();
                produced = produced.wrapping_add(1);
            }
            self.put(REQUESTS_PRODUCED, produced);
        }
        /// Serves until `count` completions wait in the ring (the engine may take a while);
        /// consumes and returns them.
        fn completions(&mut self, count: usize) -> Vec<(u64, BlockStatus)> {
            let mut seen = Vec::new();
            for _ in 0..1000 {
                self.serve().unwrap();
                let produced = self.get(COMPLETIONS_PRODUCED);
                let mut consumed = self.get(COMPLETIONS_CONSUMED);
                while consumed != produced {
                    let at = self.ring() + block_completion_slot(SLOTS, consumed);
                    let c: BlockCompletion = self.ram.read_struct(GuestAddr(at)).unwrap();
                    seen.push((c.tag, BlockStatus::from_u32(c.status).unwrap()));
                    consumed = consumed.wrapping_add(1);
                }
                self.put(COMPLETIONS_CONSUMED, consumed);
                if seen.len() >= count {
                    break;
                }
                let fd = self.blocks.devices[0].file.completion_fd();
                wait_readable(&[fd], Some(Duration::from_millis(10))).unwrap();
            }
            assert_eq!(seen.len(), count, "completions: {seen:?}");
            seen.sort_by_key(|&(tag, _)| tag);
            seen
        }
        fn serve(&mut self) -> Result<(), Stop> {
            self.blocks.serve(&self.ram)
        }
        fn defect(&mut self) -> RingDefect {
            match self.serve() {
                Err(Stop::Abi(AbiViolation::BlockRing { handle: 2, defect })) => defect,
                other => panic!("expected a ring defect, got {other:?}"),
            }
        }
    }

    fn request(tag: u64, op: BlockOp, sector: u64, len: u64, buffer: u64) -> BlockRequest {
        BlockRequest {
            tag,
            op: op as u32,
            flags: 0,
            sector,
            len,
            buffer: GuestAddr(buffer),
            reserved: [0; 3],
        }
    }

    #[test]
    fn malformed_requests_are_refused_before_the_host_sees_them() {
        let b = bench(Mode::ReadWrite);
        let writable = &b.blocks.writable;
        assert_eq!(
            writable,
            &[(DATA.0, DATA.1 + 0x1000), HEAP, (MEM - 0x10_0000, MEM)],
            "ranges are sorted and touching ones merged"
        );
        let heap = HEAP.0;
        let good = [
            request(1, BlockOp::Read, 0, 512, heap),
            request(2, BlockOp::Write, 0, 0x10_0000, MEM - 0x10_0000),
            request(3, BlockOp::Flush, 0, 0, 0),
            request(4, BlockOp::Discard, 9, 4096, u64::MAX),
            // A buffer that spans two touching writable ranges, and one at the very end of RAM.
            request(5, BlockOp::Read, 0, 0x2000, DATA.1 - 0x1000),
            request(6, BlockOp::Read, 0, 4096, MEM - 4096),
        ];
        for r in &good {
            assert!(check(r, writable).is_ok(), "{r:?}");
        }
        let grouped = BlockRequest {
            flags: BLOCK_FLAG_GROUPED,
            ..good[0]
        };
        assert!(check(&BlockRequest { op: 2, ..grouped }, writable).is_ok());
        let bad = [
            // Unknown operations and flags, reserved fields set.
            BlockRequest { op: 0, ..good[0] },
            BlockRequest { op: 5, ..good[0] },
            BlockRequest {
                op: u32::MAX,
                ..good[0]
            },
            grouped,
            BlockRequest {
                flags: 2,
                ..good[0]
            },
            BlockRequest {
                flags: 2 | BLOCK_FLAG_GROUPED,
                op: 2,
                ..good[0]
            },
            BlockRequest {
                flags: BLOCK_FLAG_GROUPED,
                ..good[2]
            },
            BlockRequest {
                reserved: [0, 0, 1],
                ..good[0]
            },
            // Lengths: zero, not whole sectors, over the maximum, huge; a flush with a length.
            BlockRequest { len: 0, ..good[0] },
            BlockRequest { len: 0, ..good[3] },
            BlockRequest {
                len: 100,
                ..good[0]
            },
            BlockRequest {
                len: 513,
                ..good[3]
            },
            BlockRequest {
                len: BLOCK_REQUEST_MAX + 512,
                ..good[0]
            },
            BlockRequest {
                len: u64::MAX - 511,
                ..good[3]
            },
            BlockRequest {
                len: 512,
                ..good[2]
            },
            // Buffers outside RAM, straddling its end, wrapping round, over the boot info, the
            // page tables, the image's code, a ring, past the heap, straddling a range's end.
            request(7, BlockOp::Read, 0, 512, MEM),
            request(7, BlockOp::Read, 0, 4096, MEM - 512),
            request(7, BlockOp::Write, 0, 4096, u64::MAX - 511),
            request(7, BlockOp::Read, 0, 512, BOOT_INFO_ADDR),
            request(7, BlockOp::Read, 0, 4096, 0x3000),
            request(7, BlockOp::Read, 0, 4096, 0x10_0000),
            request(7, BlockOp::Read, 0, 512, b.ring()),
            request(7, BlockOp::Read, 0, 512, b.ring() - 256),
            request(7, BlockOp::Read, 0, 512, HEAP.1),
            request(7, BlockOp::Read, 0, 1024, HEAP.1 - 512),
            request(7, BlockOp::Read, 0, 512, 0),
        ];
        for r in bad {
            assert_eq!(check(&r, writable), Err(BlockStatus::BadRequest), "{r:?}");
        }
    }

    #[test]
    fn requests_reach_the_file_and_every_one_completes_with_its_status() {
        let mut b = bench(Mode::ReadWrite);
        let heap = HEAP.0;
        b.ram
            .write(GuestAddr(heap + 0x1000), &[0xab; 1024])
            .unwrap();
        b.publish(&[
            request(1, BlockOp::Read, 3, 1024, heap),
            request(2, BlockOp::Write, 10, 1024, heap + 0x1000),
            // Out of range: the last sector and one past; a count that overflows the sector.
            request(3, BlockOp::Read, SECTORS - 1, 1024, heap + 0x2000),
            request(4, BlockOp::Read, SECTORS, 512, heap + 0x2000),
            request(5, BlockOp::Write, u64::MAX - 1, 4096, heap + 0x2000),
            request(6, BlockOp::Discard, u64::MAX, 512, 0),
            // Malformed: refused by the monitor itself.
            request(7, BlockOp::Read, 0, 512, b.ring()),
            BlockRequest {
                op: 9,
                ..request(8, BlockOp::Read, 0, 512, heap)
            },
        ]);
        let done = b.completions(8);
        use BlockStatus::*;
        let statuses: Vec<BlockStatus> = done.iter().map(|&(_, s)| s).collect();
        assert_eq!(
            statuses,
            [
                Ok, Ok, OutOfRange, OutOfRange, OutOfRange, OutOfRange, BadRequest, BadRequest
            ]
        );
        let mut read = [0u8; 1024];
        b.ram.read(GuestAddr(heap), &mut read).unwrap();
        assert_eq!(&read[..512], &[3; 512]);
        assert_eq!(&read[512..], &[4; 512]);
        b.publish(&[request(9, BlockOp::Flush, 0, 0, 0)]);
        assert_eq!(b.completions(1), [(9, Ok)]);
        let bytes = std::fs::read(b.file.path()).unwrap();
        assert_eq!(&bytes[10 * 512..12 * 512], &[0xab; 1024]);
        assert_eq!(&bytes[12 * 512..13 * 512], &[12; 512]);
        let stats = b.blocks.stats();
        assert_eq!((stats.requests, stats.refused), (9, 2));
        assert_eq!((stats.bytes_read, stats.bytes_written), (1024, 1024));
        assert_eq!(stats.failed, 4);
        assert_eq!(
            stats.most_in_flight, 6,
            "every good request went out together"
        );
        // The ring's own indices moved; nothing is ready once the guest consumed everything.
        assert_eq!(b.get(REQUESTS_CONSUMED), 9);
        assert_eq!(b.blocks.ready(&b.ram, u64::MAX), 0);
    }

    #[test]
    fn a_read_only_device_refuses_writes_and_says_so_in_its_header() {
        let mut b = bench(Mode::ReadOnly);
        let header: BlockRingHeader = b.ram.read_struct(GuestAddr(b.ring())).unwrap();
        assert_eq!(header.flags, BLOCK_READ_ONLY);
        assert_eq!(header.sectors, SECTORS);
        assert_eq!(header.sector_size, 512);
        assert_eq!(header.request_max, BLOCK_REQUEST_MAX);
        b.publish(&[
            request(1, BlockOp::Write, 0, 512, HEAP.0),
            request(2, BlockOp::Discard, 0, 512, 0),
            request(3, BlockOp::Read, 0, 512, HEAP.0),
        ]);
        use BlockStatus::*;
        assert_eq!(b.completions(3), [(1, ReadOnly), (2, ReadOnly), (3, Ok)]);
    }

    #[test]
    fn completions_wait_for_the_guest_and_make_its_device_ready() {
        let mut b = bench(Mode::ReadWrite);
        b.publish(&[request(1, BlockOp::Flush, 0, 0, 0)]);
        for _ in 0..1000 {
            b.serve().unwrap();
            if b.get(COMPLETIONS_PRODUCED) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(b.blocks.ready(&b.ram, 1 << 2), 1 << 2);
        assert_eq!(b.blocks.ready(&b.ram, 1 << 3), 0, "not in the interest");
        assert_eq!(b.blocks.handles(), 1 << 2);
        b.put(COMPLETIONS_CONSUMED, 1);
        assert_eq!(b.blocks.ready(&b.ram, u64::MAX), 0);
        // A doorbell serves its own device only.
        assert!(!b.blocks.doorbell(&b.ram, 3).unwrap());
        b.publish(&[request(2, BlockOp::Flush, 0, 0, 0)]);
        assert!(b.blocks.doorbell(&b.ram, 2).unwrap());
        assert_eq!(b.get(REQUESTS_CONSUMED), 2);
    }

    #[test]
    fn hostile_ring_indices_are_defects_not_panics() {
        // Requests published far ahead of what the monitor took.
        for produced in [SLOTS + 1, 0x8000_0000, u32::MAX] {
            let mut b = bench(Mode::ReadWrite);
            b.put(REQUESTS_PRODUCED, produced);
            assert_eq!(
                b.defect(),
                RingDefect::RequestIndex {
                    produced,
                    consumed: 0
                }
            );
        }
        // Completions consumed that were never produced.
        for consumed in [1, SLOTS, u32::MAX] {
            let mut b = bench(Mode::ReadWrite);
            b.put(COMPLETIONS_CONSUMED, consumed);
            assert_eq!(
                b.defect(),
                RingDefect::CompletionIndex {
                    produced: 0,
                    consumed
                }
            );
        }
        // The consumed index moving back once a completion was consumed.
        let mut b = bench(Mode::ReadWrite);
        b.publish(&[request(1, BlockOp::Flush, 0, 0, 0)]);
        b.completions(1);
        b.serve().unwrap();
        b.put(COMPLETIONS_CONSUMED, 0);
        assert_eq!(
            b.defect(),
            RingDefect::CompletionIndex {
                produced: 1,
                consumed: 0
            }
        );
        // A full ring of flushes whose completions the guest never consumes, then one more.
        let mut b = bench(Mode::ReadWrite);
        let flushes: Vec<BlockRequest> = (0..u64::from(SLOTS))
            .map(|tag| request(tag, BlockOp::Flush, 0, 0, 0))
            .collect();
        b.publish(&flushes);
        b.serve().unwrap();
        b.publish(&[request(999, BlockOp::Flush, 0, 0, 0)]);
        assert_eq!(
            b.defect(),
            RingDefect::Outstanding {
                outstanding: SLOTS + 1,
                slots: SLOTS
            }
        );
        // The monitor took none of the excess, and published nothing past the ring.
        assert_eq!(b.get(REQUESTS_CONSUMED), SLOTS);
        assert!(b.get(COMPLETIONS_PRODUCED) <= SLOTS);
    }

    #[test]
    fn rings_stack_below_the_top_page_aligned_with_their_boot_info_entries() {
        let b = bench(Mode::CopyOnWrite);
        let header: BlockRingHeader = b.ram.read_struct(GuestAddr(b.ring())).unwrap();
        assert_eq!(header.flags, BLOCK_COPY_ON_WRITE);
        let mut infos = [DeviceInfo::EMPTY; 8];
        b.blocks.device_infos(&mut infos);
        let info = infos[2];
        assert_eq!(&info.name[..8], b"storage\0");
        assert_eq!(info.kind, DeviceKind::Block as u32);
        assert_eq!((info.handle, info.rx_slots, info.tx_slots), (2, SLOTS, 0));
        assert_eq!(info.ring_addr, GuestAddr(b.ring()));
        assert_eq!(info.ring_len, block_ring_len(SLOTS));
        assert_eq!(info.doorbell, doorbell_address(2));
        assert!(
            infos
                .iter()
                .enumerate()
                .all(|(i, d)| i == 2 || *d == DeviceInfo::EMPTY)
        );
        assert!(b.ring().is_multiple_of(PAGE_SIZE));
    }

    #[test]
    fn quiesce_finishes_what_was_taken_and_leaves_the_rest_in_the_ring() {
        let mut b = bench(Mode::ReadWrite);
        let heap = HEAP.0;
        b.ram.take_dirty();
        let reads: Vec<BlockRequest> = (0..8)
            .map(|i| request(i, BlockOp::Read, i * 8, 4096, heap + i * 0x1000))
            .collect();
        b.publish(&reads);
        b.publish(&[request(8, BlockOp::Write, 0, 4096, heap + 0x10_000)]);
        b.serve().unwrap();
        // Published after the last pass: the monitor has not taken these.
        b.publish(&[
            request(9, BlockOp::Flush, 0, 0, 0),
            request(10, BlockOp::Read, 0, 512, heap + 0x20_000),
        ]);
        b.blocks
            .quiesce(&b.ram, Instant::now() + Duration::from_secs(10))
            .unwrap();
        let device = &b.blocks.devices[0];
        assert_eq!(device.free.len(), SLOTS as usize, "nothing in flight");
        assert_eq!(b.get(REQUESTS_CONSUMED), 9);
        assert_eq!(
            b.get(COMPLETIONS_PRODUCED),
            9,
            "every completion fits the ring"
        );
        assert_eq!(b.get(REQUESTS_PRODUCED), 11);
        // The reads' buffers (and the ring) are marked as written by the monitor.
        let dirty = b.ram.take_dirty();
        let page = |addr: u64| dirty[(addr >> 18) as usize] & (1 << ((addr >> 12) % 64)) != 0;
        assert!((0..8).all(|i| page(heap + i * 0x1000)));
        assert!(!page(heap + 0x10_000), "a write's buffer is only read");
        assert!(page(b.ring()));
        let state = b.blocks.save();
        assert_eq!(state.len(), 1);
        let s = &state[0];
        assert_eq!(
            (s.name.as_str(), s.mode.as_str(), s.sectors, s.ring_addr),
            ("storage", "rw", SECTORS, b.ring())
        );
        assert_eq!((s.requests_consumed, s.completions_produced), (9, 9));
        assert!(s.pending.is_empty() && s.overlay.is_empty());
    }

    #[test]
    fn a_saved_device_carries_on_over_the_same_ring_and_a_file_of_its_size() {
        let mut b = bench(Mode::CopyOnWrite);
        let heap = HEAP.0;
        b.ram.write(GuestAddr(heap), &[0xcd; 1024]).unwrap();
        b.ram.write(GuestAddr(heap + 0x1000), &[0xef; 512]).unwrap();
        b.publish(&[
            request(1, BlockOp::Write, 4, 1024, heap),
            request(2, BlockOp::Write, 9, 512, heap + 0x1000),
        ]);
        assert_eq!(
            b.completions(2),
            [(1, BlockStatus::Ok), (2, BlockStatus::Ok)]
        );
        // One request the monitor never took, and one completion it never published.
        b.publish(&[request(3, BlockOp::Read, 3, 4096, heap + 0x2000)]);
        b.blocks
            .quiesce(&b.ram, Instant::now() + Duration::from_secs(10))
            .unwrap();
        let mut state = b.blocks.save();
        assert_eq!(state[0].mode, "cow");
        let overlay: Vec<(u64, usize)> = (state[0].overlay.iter())
            .map(|(sector, bytes)| (*sector, bytes.len()))
            .collect();
        assert_eq!(overlay, [(4, 1024), (9, 512)], "held sectors, in runs");
        state[0].pending.push((77, BlockStatus::IoError as u32));
        let config = BlockConfig {
            name: "storage".into(),
            path: b.file.path().into(),
            mode: Mode::CopyOnWrite,
        };
        let writable = b.blocks.writable.clone();
        b.blocks = Blocks::restore(std::slice::from_ref(&config), 2, &state).unwrap();
        b.blocks.set_writable(writable);
        // The untaken read is taken now and sees the saved writes; the saved completion is
        // published first.
        let done = b.completions(2);
        assert_eq!(done, [(3, BlockStatus::Ok), (77, BlockStatus::IoError)]);
        let mut read = [0u8; 4096];
        b.ram.read(GuestAddr(heap + 0x2000), &mut read).unwrap();
        // Sectors 3 to 10: the file's bytes (each its sector's number) but for the writes.
        let sector = |n: u8| vec![n; 512];
        let expected = [sector(3), sector(0xcd), sector(0xcd), sector(6), sector(7)]
            .into_iter()
            .chain([sector(8), sector(0xef), sector(10)])
            .flatten()
            .collect::<Vec<u8>>();
        assert_eq!(read.to_vec(), expected);
        let s = &b.blocks.save()[0];
        assert_eq!((s.requests_consumed, s.completions_produced), (3, 4));

        // A file of another size, another mode, another number of devices: refused.
        let short = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(short.path(), vec![0u8; 512 * (SECTORS as usize - 1)]).unwrap();
        let other = BlockConfig {
            path: short.path().into(),
            ..config.clone()
        };
        let Err(e) = Blocks::restore(&[other], 2, &state) else {
            panic!("a file of another size was taken");
        };
        assert!(
            e.to_string().contains(&format!("{} sectors", SECTORS - 1)),
            "{e}"
        );
        let read_only = BlockConfig {
            mode: Mode::ReadOnly,
            ..config.clone()
        };
        let Err(e) = Blocks::restore(&[read_only], 2, &state) else {
            panic!("another mode was taken");
        };
        assert!(e.to_string().contains("was cow in the snapshot"), "{e}");
        assert!(matches!(
            Blocks::restore(&[], 2, &state),
            Err(BlockRestoreError::Count { saved: 1, given: 0 })
        ));
        state[0].pending[0].1 = 999;
        assert!(matches!(
            Blocks::restore(&[config], 2, &state),
            Err(BlockRestoreError::Damaged { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_a_setup_error_that_names_it() {
        let config = BlockConfig {
            name: "storage".into(),
            path: "/nonexistent/disk.img".into(),
            mode: Mode::ReadWrite,
        };
        let Err(error) = Blocks::open(&[config], 0) else {
            panic!("a missing file opened");
        };
        let error = crate::Error::from(error);
        assert_eq!(error.exit_code(), 115);
        let text = error.to_string();
        assert!(text.contains("block device storage"), "{text}");
        assert!(text.contains("/nonexistent/disk.img"), "{text}");
    }
}
