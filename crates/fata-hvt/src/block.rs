//! Block devices over the request and completion rings the monitor shares in guest RAM (layout
//! in `fata-hvt-abi`).
//!
//! `submit` writes a request slot and publishes it, without an exit: the monitor takes every
//! published request at the guest's next exit (the executor's next `Yield`, or the doorbell store
//! of `start`) and starts them on the host together. Each request's buffer stays in a slot table
//! here until its completion is read, so the host never writes into memory the guest has freed or
//! reused; the buffer's address is its pointer, since guest memory is identity-mapped. `complete`
//! reads what the monitor published and hands each request back with its result.

use crate::{boot, hypercall};
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, Ordering};
use fata_hvt_abi::{
    BLOCK_FLAG_GROUPED, BLOCK_HEADER, BLOCK_READ_ONLY, BLOCK_REQUEST_MAX, BLOCK_SECTOR_SIZE,
    BLOCK_SLOTS_MAX, BlockCompletion as RingCompletion, BlockOp as RingOp,
    BlockRequest as RingRequest, BlockRingHeader, BlockStatus, BootInfo, DeviceKind, GuestAddr,
    MAX_DEVICES, PAGE_SIZE, block_completion_slot, block_request_slot, block_ring_len,
};
use fata_platform::{
    Block, BlockBuffer, BlockCompletion, BlockGeometry, BlockOp, BlockRequest, DeviceError,
    ReadySet,
};
use spin::Once;

/// One block device as the boot info describes it, checked.
#[derive(Debug, Clone)]
pub struct Rings {
    /// The device's name.
    pub name: String,
    handle: u32,
    base: usize,
    slots: u32,
    doorbell: GuestAddr,
    geometry: BlockGeometry,
}

static RINGS: Once<Vec<Rings>> = Once::new();

/// The block devices in the boot info (entries that do not describe a usable ring are skipped).
pub fn devices() -> &'static [Rings] {
    RINGS.call_once(|| boot::info().map_or_else(Vec::new, parse))
}

fn parse(info: &BootInfo) -> Vec<Rings> {
    let count = (info.device_count as usize).min(MAX_DEVICES);
    info.devices[..count]
        .iter()
        .filter(|d| d.kind == DeviceKind::Block as u32)
        .filter(|d| {
            d.rx_slots.is_power_of_two()
                && d.rx_slots <= BLOCK_SLOTS_MAX
                && d.handle < 64
                && d.ring_len == block_ring_len(d.rx_slots)
                && d.ring_addr.0.is_multiple_of(PAGE_SIZE)
                && d.ring_addr.0 >= info.heap_end
                && d.ring_addr
                    .0
                    .checked_add(d.ring_len)
                    .is_some_and(|end| end <= info.stack_bottom && end <= info.mem_size)
        })
        .filter_map(|d| {
            let base = d.ring_addr.0 as usize;
            // SAFETY: `base..base + ring_len` is RAM the monitor reserved for this device below
            // the stack (checked above), with the header at its start; the monitor wrote the
            // geometry before the first instruction and never changes it.
            let header = unsafe {
                core::ptr::read_volatile((base + BLOCK_HEADER as usize) as *const BlockRingHeader)
            };
            let geometry = BlockGeometry {
                sector_size: header.sector_size,
                sectors: header.sectors,
                read_only: header.flags & BLOCK_READ_ONLY != 0,
                request_max: header.request_max,
                queue_depth: d.rx_slots,
            };
            let usable = u64::from(header.sector_size) == BLOCK_SECTOR_SIZE
                && (BLOCK_SECTOR_SIZE..=BLOCK_REQUEST_MAX).contains(&header.request_max);
            let len = d.name.iter().position(|&b| b == 0).unwrap_or(d.name.len());
            usable.then(|| Rings {
                name: String::from_utf8_lossy(&d.name[..len]).into_owned(),
                handle: d.handle,
                base,
                slots: d.rx_slots,
                doorbell: d.doorbell,
                geometry,
            })
        })
        .collect()
}

const REQUESTS_PRODUCED: usize = offset_of!(BlockRingHeader, requests_produced);
const REQUESTS_CONSUMED: usize = offset_of!(BlockRingHeader, requests_consumed);
const COMPLETIONS_PRODUCED: usize = offset_of!(BlockRingHeader, completions_produced);
const COMPLETIONS_CONSUMED: usize = offset_of!(BlockRingHeader, completions_consumed);

impl Rings {
    /// An index of the ring header.
    fn index(&self, field: usize) -> &AtomicU32 {
        let at = self.base + BLOCK_HEADER as usize + field;
        // SAFETY: the header lies at the start of the device's ring memory, RAM the monitor
        // reserved for it for the guest's whole life (checked in `parse`); the indices are 4-byte
        // aligned at these ABI offsets, and both sides only access them atomically.
        unsafe { &*(at as *const AtomicU32) }
    }

    /// Whether the completion ring holds completions the guest has not consumed.
    fn has_completions(&self) -> bool {
        self.index(COMPLETIONS_PRODUCED).load(Ordering::Acquire)
            != self.index(COMPLETIONS_CONSUMED).load(Ordering::Relaxed)
    }

    /// Whether requests are published that the monitor has not taken yet.
    fn has_untaken(&self) -> bool {
        self.index(REQUESTS_PRODUCED).load(Ordering::Relaxed)
            != self.index(REQUESTS_CONSUMED).load(Ordering::Acquire)
    }
}

/// The devices in `interest` whose completion ring holds completions not yet consumed.
pub fn ready(interest: u64) -> u64 {
    devices()
        .iter()
        .filter(|r| interest & (1 << r.handle) != 0 && r.has_completions())
        .fold(0, |set, r| set | (1 << r.handle))
}

/// Whether any device has published requests the monitor has not taken: only an exit starts
/// them.
pub fn untaken() -> bool {
    devices().iter().any(Rings::has_untaken)
}

/// A request between its submission and its completion, with what it owns.
struct InFlight {
    tag: u64,
    buffer: Option<BlockBuffer>,
}

/// A block device of the hvt target.
pub struct HvtBlock {
    rings: Rings,
    /// One entry per slot; a request's ring tag is its index here.
    table: Vec<Option<InFlight>>,
    /// Free indices of `table`.
    free: Vec<u32>,
    requests_produced: u32,
    completions_consumed: u32,
}

impl HvtBlock {
    /// The device over `rings`; call once per device (it takes over the guest's ring indices).
    pub fn new(rings: Rings) -> HvtBlock {
        let slots = rings.slots;
        HvtBlock {
            requests_produced: rings.index(REQUESTS_PRODUCED).load(Ordering::Relaxed),
            completions_consumed: rings.index(COMPLETIONS_CONSUMED).load(Ordering::Relaxed),
            table: (0..slots).map(|_| None).collect(),
            free: (0..slots).rev().collect(),
            rings,
        }
    }
}

/// What goes into a request slot for `op` with a buffer of `buffer_len` bytes: operation, flags
/// and length.
fn encode_op(op: BlockOp, buffer_len: usize) -> (RingOp, u32, u64) {
    match op {
        BlockOp::Read => (RingOp::Read, 0, buffer_len as u64),
        BlockOp::Write { grouped } => (
            RingOp::Write,
            if grouped { BLOCK_FLAG_GROUPED } else { 0 },
            buffer_len as u64,
        ),
        BlockOp::Flush => (RingOp::Flush, 0, 0),
        // A count whose bytes overflow is over the request limit anyway: the monitor refuses it.
        BlockOp::Discard { sectors } => (
            RingOp::Discard,
            0,
            sectors.saturating_mul(BLOCK_SECTOR_SIZE),
        ),
    }
}

/// The platform's error for a completion status (an unknown one is the host's failure).
fn decode_status(status: u32) -> Result<(), DeviceError> {
    Err(match BlockStatus::from_u32(status) {
        Some(BlockStatus::Ok) => return Ok(()),
        Some(BlockStatus::ReadOnly) => DeviceError::ReadOnly,
        Some(BlockStatus::OutOfRange) => DeviceError::OutOfRange,
        Some(BlockStatus::BadRequest) => DeviceError::InvalidArgument,
        Some(BlockStatus::NoSpace) => DeviceError::NoSpace,
        Some(BlockStatus::Unsupported) => DeviceError::Unsupported,
        Some(BlockStatus::IoError) | None => DeviceError::Io,
    })
}

impl Block for HvtBlock {
    fn geometry(&self) -> BlockGeometry {
        self.rings.geometry
    }

    fn readiness(&self) -> ReadySet {
        ReadySet::single(self.rings.handle)
    }

    fn submit(&mut self, mut request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)> {
        let Some(index) = self.free.pop() else {
            return Err((DeviceError::WouldBlock, request));
        };
        let buffer_len = request.buffer.as_ref().map_or(0, BlockBuffer::len);
        let (op, flags, len) = encode_op(request.op, buffer_len);
        // The monitor refuses a read or write without a buffer (length 0), so its completion
        // carries the error; flushes and discards ignore the buffer.
        let buffer = request
            .buffer
            .as_mut()
            .map_or(0, |b| b.as_mut_slice().as_mut_ptr() as u64);
        let slot = RingRequest {
            tag: u64::from(index),
            op: op as u32,
            flags,
            sector: request.sector,
            len,
            buffer: GuestAddr(buffer),
            reserved: [0; 3],
        };
        let at =
            self.rings.base + block_request_slot(self.rings.slots, self.requests_produced) as usize;
        // SAFETY: the slot lies inside the ring (index taken modulo the slot count) and is free:
        // at most `slots` requests are outstanding (one per table entry), so the monitor has
        // copied out every earlier request in this slot. It reads the slot only after the release
        // store below publishes it.
        unsafe { core::ptr::write_volatile(at as *mut RingRequest, slot) };
        self.table[index as usize] = Some(InFlight {
            tag: request.tag,
            buffer: request.buffer,
        });
        self.requests_produced = self.requests_produced.wrapping_add(1);
        self.rings
            .index(REQUESTS_PRODUCED)
            .store(self.requests_produced, Ordering::Release);
        Ok(())
    }

    fn start(&mut self) {
        if self.rings.has_untaken() {
            hypercall::doorbell(self.rings.doorbell);
        }
    }

    fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize {
        let produced = self
            .rings
            .index(COMPLETIONS_PRODUCED)
            .load(Ordering::Acquire);
        let mut count = 0;
        while self.completions_consumed != produced {
            let at = self.rings.base
                + block_completion_slot(self.rings.slots, self.completions_consumed) as usize;
            // SAFETY: the slot lies inside the ring and was published by the acquire load above;
            // the monitor does not write it again until `completions_consumed` passes it.
            let done = unsafe { core::ptr::read_volatile(at as *const RingCompletion) };
            self.completions_consumed = self.completions_consumed.wrapping_add(1);
            // A tag that names no request in flight is not one this device sent: skip it.
            let Some(request) = usize::try_from(done.tag)
                .ok()
                .and_then(|i| self.table.get_mut(i))
                .and_then(Option::take)
            else {
                continue;
            };
            self.free.push(done.tag as u32);
            on_done(BlockCompletion {
                tag: request.tag,
                result: decode_status(done.status),
                buffer: request.buffer,
            });
            count += 1;
        }
        self.rings
            .index(COMPLETIONS_CONSUMED)
            .store(self.completions_consumed, Ordering::Release);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_statuses_map_to_the_ring_and_back() {
        assert_eq!(encode_op(BlockOp::Read, 4096), (RingOp::Read, 0, 4096));
        assert_eq!(
            encode_op(BlockOp::Write { grouped: true }, 512),
            (RingOp::Write, BLOCK_FLAG_GROUPED, 512)
        );
        assert_eq!(
            encode_op(BlockOp::Write { grouped: false }, 512),
            (RingOp::Write, 0, 512)
        );
        assert_eq!(encode_op(BlockOp::Flush, 512), (RingOp::Flush, 0, 0));
        assert_eq!(
            encode_op(BlockOp::Discard { sectors: 3 }, 0),
            (RingOp::Discard, 0, 1536)
        );
        assert_eq!(
            encode_op(BlockOp::Discard { sectors: u64::MAX }, 0).2,
            u64::MAX
        );
        assert_eq!(decode_status(0), Ok(()));
        let errors = [
            (1, DeviceError::Io),
            (2, DeviceError::ReadOnly),
            (3, DeviceError::OutOfRange),
            (4, DeviceError::InvalidArgument),
            (5, DeviceError::NoSpace),
            (6, DeviceError::Unsupported),
            (7, DeviceError::Io),
            (u32::MAX, DeviceError::Io),
        ];
        for (status, error) in errors {
            assert_eq!(decode_status(status), Err(error), "status {status}");
        }
    }

    /// Ring memory in a page-aligned host buffer, and the device over it.
    fn device(slots: u32) -> (Vec<[u8; 4096]>, HvtBlock) {
        let mut memory = alloc::vec![[0u8; 4096]; (block_ring_len(slots) / PAGE_SIZE) as usize];
        let rings = Rings {
            name: "storage".into(),
            handle: 3,
            base: memory.as_mut_ptr() as usize,
            slots,
            doorbell: GuestAddr(0),
            geometry: BlockGeometry {
                sector_size: 512,
                sectors: 8,
                read_only: false,
                request_max: BLOCK_REQUEST_MAX,
                queue_depth: slots,
            },
        };
        (memory, HvtBlock::new(rings))
    }

    fn request(tag: u64, op: BlockOp, buffer: Option<BlockBuffer>) -> BlockRequest {
        BlockRequest {
            tag,
            op,
            sector: 5,
            buffer,
        }
    }

    /// Plays the monitor: takes every published request, completes each with `status`.
    fn serve(device: &HvtBlock, status: BlockStatus) -> Vec<RingRequest> {
        let rings = &device.rings;
        let produced = rings.index(REQUESTS_PRODUCED).load(Ordering::Acquire);
        let mut taken = Vec::new();
        let mut consumed = rings.index(REQUESTS_CONSUMED).load(Ordering::Relaxed);
        let mut done = rings.index(COMPLETIONS_PRODUCED).load(Ordering::Relaxed);
        while consumed != produced {
            let at = rings.base + block_request_slot(rings.slots, consumed) as usize;
            // SAFETY: a published slot inside the test's ring memory.
            let request = unsafe { core::ptr::read_volatile(at as *const RingRequest) };
            let at = rings.base + block_completion_slot(rings.slots, done) as usize;
            let completion = RingCompletion {
                tag: request.tag,
                status: status as u32,
                reserved: 0,
            };
            // SAFETY: a completion slot inside the test's ring memory.
            unsafe { core::ptr::write_volatile(at as *mut RingCompletion, completion) };
            taken.push(request);
            consumed = consumed.wrapping_add(1);
            done = done.wrapping_add(1);
        }
        rings
            .index(REQUESTS_CONSUMED)
            .store(consumed, Ordering::Release);
        rings
            .index(COMPLETIONS_PRODUCED)
            .store(done, Ordering::Release);
        taken
    }

    #[test]
    fn requests_go_out_through_the_ring_and_come_back_with_their_buffers() {
        let (_memory, mut device) = device(2);
        assert_eq!(device.readiness(), ReadySet::single(3));
        assert_eq!(device.geometry().queue_depth, 2);
        let buffer = BlockBuffer::new(1024);
        let address = buffer.as_slice().as_ptr() as u64;
        device
            .submit(request(10, BlockOp::Read, Some(buffer)))
            .unwrap();
        device
            .submit(request(11, BlockOp::Discard { sectors: 2 }, None))
            .unwrap();
        assert!(device.rings.has_untaken());
        // The ring is full: the third request comes back.
        let (error, back) = device
            .submit(request(12, BlockOp::Flush, None))
            .unwrap_err();
        assert_eq!((error, back.tag), (DeviceError::WouldBlock, 12));
        assert_eq!(device.complete(&mut |_| panic!("nothing is done yet")), 0);

        let taken = serve(&device, BlockStatus::OutOfRange);
        assert!(!device.rings.has_untaken());
        assert!(device.rings.has_completions());
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].op, RingOp::Read as u32);
        assert_eq!((taken[0].sector, taken[0].len), (5, 1024));
        assert_eq!(taken[0].buffer, GuestAddr(address));
        assert_eq!(taken[1].op, RingOp::Discard as u32);
        assert_eq!(taken[1].len, 1024);
        let mut seen = Vec::new();
        let count = device.complete(&mut |done| {
            seen.push((done.tag, done.result, done.buffer.map(|b| b.len())));
        });
        assert_eq!(count, 2);
        assert_eq!(
            seen,
            [
                (10, Err(DeviceError::OutOfRange), Some(1024)),
                (11, Err(DeviceError::OutOfRange), None)
            ]
        );
        assert!(!device.rings.has_completions());

        // Slots are free again, and the indices keep counting past the ring's size.
        for round in 0..5 {
            device
                .submit(request(round, BlockOp::Write { grouped: true }, None))
                .unwrap();
            let taken = serve(&device, BlockStatus::Ok);
            assert_eq!(taken[0].flags, BLOCK_FLAG_GROUPED);
            let mut results = Vec::new();
            device.complete(&mut |done| results.push((done.tag, done.result)));
            assert_eq!(results, [(round, Ok(()))]);
        }
    }

    #[test]
    fn completions_with_tags_it_never_sent_are_skipped() {
        let (_memory, mut device) = device(4);
        device.submit(request(1, BlockOp::Flush, None)).unwrap();
        let rings = device.rings.clone();
        serve(&device, BlockStatus::Ok);
        // A second completion for the same slot, and one for a slot past the table.
        for (i, tag) in [(1u32, 0u64), (2, 99)] {
            let at = rings.base + block_completion_slot(rings.slots, i) as usize;
            let completion = RingCompletion {
                tag,
                status: 0,
                reserved: 0,
            };
            // SAFETY: a completion slot inside the test's ring memory.
            unsafe { core::ptr::write_volatile(at as *mut RingCompletion, completion) };
        }
        rings
            .index(COMPLETIONS_PRODUCED)
            .store(3, Ordering::Release);
        let mut tags = Vec::new();
        assert_eq!(device.complete(&mut |done| tags.push(done.tag)), 1);
        assert_eq!(tags, [1]);
        assert_eq!(rings.index(COMPLETIONS_CONSUMED).load(Ordering::Relaxed), 3);
    }
}
