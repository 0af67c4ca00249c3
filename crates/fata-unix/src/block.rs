//! Block devices: a host file (or block device node) served by fata-blockfile's io_uring engine.
//!
//! Each device's requests are queued by `submit` and handed to the kernel together when the
//! platform next waits ([`start_all`], called by `yield_until` before it sleeps), in one
//! `io_uring_enter` per device; the engine's eventfd is watched by the poller under the device's
//! readiness bit, so the wait ends when requests finish. A request's [`BlockRequest`], buffer
//! included, is kept here until its completion is handed back: the kernel reads and writes the
//! buffer in place, and nothing else can touch or free it meanwhile.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::path::Path;
use std::rc::{Rc, Weak};

use fata_blockfile::{BlockFile, Mode, Op, OpenError, REQUEST_MAX, Request, SECTOR_SIZE, Status};
use fata_device_spec::BlockMode;
use fata_platform::{
    Block, BlockBuffer, BlockCompletion, BlockGeometry, BlockOp, BlockRequest, DeviceError,
    ReadySet,
};

/// The most requests in flight per device: `submit` answers `WouldBlock` past it.
const QUEUE_DEPTH: u32 = 128;

thread_local! {
    /// Every open device, for [`start_all`]. The app's executor runs on the thread that opened
    /// them.
    static DEVICES: RefCell<Vec<Weak<RefCell<Engine>>>> = const { RefCell::new(Vec::new()) };
}

/// Takes the finished requests of every open block device and starts their queued ones; the
/// platform calls it before it waits. Returns the readiness bits of the devices that hold finished
/// requests, which the wait must report (their eventfd has been read back to zero).
///
/// Taking the completions here, rather than leaving them in the engine until the app asks, keeps
/// the eventfd from staying readable when nobody will ask (a request whose future was dropped),
/// which would make every later wait return at once.
pub(crate) fn start_all() -> ReadySet {
    DEVICES.with(|devices| {
        let mut ready = ReadySet::EMPTY;
        devices
            .borrow_mut()
            .retain(|device| match device.upgrade() {
                Some(engine) => {
                    if let Ok(mut engine) = engine.try_borrow_mut() {
                        // Reap first: a short transfer goes back into the ring when it is reaped,
                        // and only `start` hands it to the kernel again.
                        engine.reap();
                        engine.start();
                        if !engine.done.is_empty() {
                            ready = ready.union(engine.bit);
                        }
                    }
                    true
                }
                None => false,
            });
        ready
    })
}

/// A file served as a block device.
pub struct FileBlock {
    engine: Rc<RefCell<Engine>>,
}

/// A device's state, shared with [`start_all`].
struct Engine {
    // Declared first so that it drops first: dropping the engine waits for the kernel to finish
    // with every buffer, and only then are the requests in `pending` (buffers and all) freed.
    file: BlockFile,
    /// Requests in flight by the engine's own tag, with the app's tag.
    pending: HashMap<u64, (u64, BlockRequest)>,
    /// Finished requests the app has not taken yet.
    done: VecDeque<BlockCompletion>,
    /// The engine's tag for the next request (the app's tags need not be unique).
    next_tag: u64,
    bit: ReadySet,
    geometry: BlockGeometry,
    /// Whether a failed `io_uring_enter` has been reported already.
    reported: bool,
}

impl FileBlock {
    /// Opens `path` to serve it in `mode`, its completions reported as readiness `bit`.
    pub fn open(path: &Path, mode: BlockMode, bit: ReadySet) -> Result<FileBlock, OpenError> {
        let mode = match mode {
            BlockMode::ReadWrite => Mode::ReadWrite,
            BlockMode::ReadOnly => Mode::ReadOnly,
            BlockMode::CopyOnWrite => Mode::CopyOnWrite,
        };
        let file = BlockFile::open(path, mode)?;
        let geometry = BlockGeometry {
            sector_size: SECTOR_SIZE as u32,
            sectors: file.sectors(),
            read_only: mode == Mode::ReadOnly,
            request_max: REQUEST_MAX,
            queue_depth: QUEUE_DEPTH,
        };
        let engine = Rc::new(RefCell::new(Engine {
            file,
            pending: HashMap::with_capacity(QUEUE_DEPTH as usize),
            done: VecDeque::with_capacity(QUEUE_DEPTH as usize),
            next_tag: 0,
            bit,
            geometry,
            reported: false,
        }));
        DEVICES.with(|devices| devices.borrow_mut().push(Rc::downgrade(&engine)));
        Ok(FileBlock { engine })
    }

    /// The descriptor that is readable while completions wait, for the poller.
    pub fn fd(&self) -> RawFd {
        self.engine.borrow().file.completion_fd()
    }

    /// Sectors that a journal left by a crash gave back when the file was opened.
    pub fn recovered(&self) -> u64 {
        self.engine.borrow().file.recovered()
    }
}

impl Engine {
    fn start(&mut self) {
        if let Err(error) = self.file.start()
            && !std::mem::replace(&mut self.reported, true)
        {
            eprintln!("fata: a block device cannot start its requests: {error}");
        }
    }

    /// Moves the engine's finished requests into `done`, buffers and all.
    fn reap(&mut self) {
        let Engine {
            file,
            pending,
            done,
            ..
        } = self;
        file.complete(&mut |tag, status| {
            if let Some((tag, request)) = pending.remove(&tag) {
                done.push_back(BlockCompletion {
                    tag,
                    result: result_of(status),
                    buffer: request.buffer,
                });
            }
        });
    }
}

/// What a platform request asks of the engine: its operation and length in bytes.
fn op_and_len(op: BlockOp, buffer: Option<&BlockBuffer>) -> (Op, u64) {
    let buffer_len = buffer.map_or(0, |b| b.len() as u64);
    match op {
        BlockOp::Read => (Op::Read, buffer_len),
        BlockOp::Write { grouped } => (Op::Write { grouped }, buffer_len),
        BlockOp::Flush => (Op::Flush, 0),
        // A count whose bytes overflow saturates to no whole number of sectors, which the engine
        // refuses.
        BlockOp::Discard { sectors } => (Op::Discard, sectors.saturating_mul(SECTOR_SIZE)),
    }
}

/// The platform's error for an engine status.
fn result_of(status: Status) -> Result<(), DeviceError> {
    match status {
        Status::Ok => Ok(()),
        Status::IoError => Err(DeviceError::Io),
        Status::ReadOnly => Err(DeviceError::ReadOnly),
        Status::OutOfRange => Err(DeviceError::OutOfRange),
        Status::BadRequest => Err(DeviceError::InvalidArgument),
        Status::NoSpace => Err(DeviceError::NoSpace),
        Status::Unsupported => Err(DeviceError::Unsupported),
    }
}

impl Block for FileBlock {
    fn geometry(&self) -> BlockGeometry {
        self.engine.borrow().geometry
    }

    fn readiness(&self) -> ReadySet {
        self.engine.borrow().bit
    }

    fn submit(&mut self, request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)> {
        let mut engine = self.engine.borrow_mut();
        let engine = &mut *engine;
        if engine.pending.len() + engine.done.len() >= QUEUE_DEPTH as usize {
            return Err((DeviceError::WouldBlock, request));
        }
        let tag = engine.next_tag;
        engine.next_tag += 1;
        let (op, len) = op_and_len(request.op, request.buffer.as_ref());
        let sector = request.sector;
        let (_, held) = engine.pending.entry(tag).or_insert((request.tag, request));
        let buf = match (op, held.buffer.as_mut()) {
            (Op::Read | Op::Write { .. }, Some(buffer)) => buffer.as_mut_slice().as_mut_ptr(),
            _ => std::ptr::null_mut(),
        };
        let request = Request {
            tag,
            op,
            sector,
            len,
            buf,
        };
        // SAFETY: the buffer (`len` bytes from `buf`) belongs to the request held in `pending`
        // under `tag`, which only `complete` takes out, after the engine has handed out `tag`;
        // nothing reads or writes it meanwhile, and moving the request within the map does not
        // move the buffer's heap memory. If the device is dropped first, the engine (dropped
        // before `pending`) waits for the kernel to finish with the buffer.
        unsafe { engine.file.submit(request) };
        Ok(())
    }

    fn start(&mut self) {
        self.engine.borrow_mut().start();
    }

    fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize {
        let mut engine = self.engine.borrow_mut();
        engine.reap();
        let count = engine.done.len();
        engine.done.drain(..).for_each(on_done);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Runs `requests` together through `block` as the executor would (submit, start, wait on
    /// the descriptor, complete) and returns the completions in the order they came.
    fn run(block: &mut FileBlock, requests: Vec<BlockRequest>) -> Vec<BlockCompletion> {
        let count = requests.len();
        for request in requests {
            block.submit(request).unwrap();
        }
        wait(block, count)
    }

    /// Waits for `count` completions.
    fn wait(block: &mut FileBlock, count: usize) -> Vec<BlockCompletion> {
        let mut done = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while done.len() < count {
            assert!(Instant::now() < deadline, "requests did not complete");
            if start_all().is_empty() {
                let mut poll = libc::pollfd {
                    fd: block.fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the call.
                unsafe { libc::poll(&mut poll, 1, 1000) };
            }
            block.complete(&mut |c| done.push(c));
        }
        done
    }

    fn request(tag: u64, op: BlockOp, sector: u64, buffer: Option<BlockBuffer>) -> BlockRequest {
        BlockRequest {
            tag,
            op,
            sector,
            buffer,
        }
    }

    fn image(sectors: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(sectors * 512)
            .unwrap();
        (dir, path)
    }

    #[test]
    fn reads_back_what_it_wrote_with_many_in_flight_and_checks_bounds() {
        let (_dir, path) = image(4096);
        let bit = ReadySet::single(5);
        let mut block = FileBlock::open(&path, BlockMode::ReadWrite, bit).unwrap();
        assert_eq!(block.readiness(), bit);
        let geometry = block.geometry();
        assert_eq!((geometry.sectors, geometry.read_only), (4096, false));
        assert_eq!((geometry.request_max, geometry.queue_depth), (4 << 20, 128));
        let write = BlockOp::Write { grouped: false };
        let data = |i: u64| -> Vec<u8> { (0..4096).map(|b| (b as u64 * 7 + i) as u8).collect() };
        // The app's tags need not be unique: every request here has tag 7.
        let writes = (0..32)
            .map(|i| request(7, write, i * 8, Some(BlockBuffer::from_slice(&data(i)))))
            .collect();
        let done = run(&mut block, writes);
        assert_eq!(done.len(), 32);
        let stats = block.engine.borrow().file.stats();
        assert_eq!(
            stats.enters, 1,
            "32 requests, one io_uring_enter: {stats:?}"
        );
        assert!(done.iter().all(|c| c.tag == 7 && c.result == Ok(())));
        let reads = (0..32)
            .map(|i| request(i, BlockOp::Read, i * 8, Some(BlockBuffer::new(4096))))
            .collect();
        for c in run(&mut block, reads) {
            assert_eq!(c.result, Ok(()));
            assert_eq!(c.buffer.unwrap().as_slice(), data(c.tag), "read {}", c.tag);
        }
        let bad = vec![
            request(1, BlockOp::Read, 4095, Some(BlockBuffer::new(1024))),
            request(2, BlockOp::Read, u64::MAX, Some(BlockBuffer::new(512))),
            request(3, BlockOp::Read, 0, Some(BlockBuffer::new(100))),
            request(4, BlockOp::Read, 0, None),
            request(5, BlockOp::Discard { sectors: u64::MAX }, 0, None),
            request(6, BlockOp::Discard { sectors: 8 }, 0, None),
            request(7, BlockOp::Flush, 0, None),
        ];
        let results: Vec<_> = run(&mut block, bad)
            .into_iter()
            .map(|c| (c.tag, c.result))
            .collect();
        assert_eq!(
            results,
            [
                (1, Err(DeviceError::OutOfRange)),
                (2, Err(DeviceError::OutOfRange)),
                (3, Err(DeviceError::InvalidArgument)),
                (4, Err(DeviceError::InvalidArgument)),
                (5, Err(DeviceError::InvalidArgument)),
                (6, Ok(())),
                (7, Ok(())),
            ]
        );
        let done = run(
            &mut block,
            vec![request(8, BlockOp::Read, 0, Some(BlockBuffer::new(4096)))],
        );
        assert!(
            done[0]
                .buffer
                .as_ref()
                .unwrap()
                .as_slice()
                .iter()
                .all(|&b| b == 0)
        );
    }

    #[test]
    fn the_queue_depth_is_enforced_and_the_request_handed_back() {
        let (_dir, path) = image(8);
        let mut block = FileBlock::open(&path, BlockMode::ReadOnly, ReadySet::single(1)).unwrap();
        assert!(block.geometry().read_only);
        for tag in 0..128 {
            let r = request(tag, BlockOp::Read, 0, Some(BlockBuffer::new(512)));
            block.submit(r).unwrap();
        }
        let extra = request(500, BlockOp::Read, 0, Some(BlockBuffer::new(512)));
        let (error, back) = block.submit(extra).unwrap_err();
        assert_eq!((error, back.tag), (DeviceError::WouldBlock, 500));
        let done = wait(&mut block, 128);
        assert!(done.iter().all(|c| c.result == Ok(())));
        let mut tags: Vec<u64> = done.iter().map(|c| c.tag).collect();
        tags.sort();
        assert_eq!(tags, (0..128).collect::<Vec<_>>());
        let write = request(
            9,
            BlockOp::Write { grouped: false },
            0,
            Some(BlockBuffer::new(512)),
        );
        let done = run(&mut block, vec![write]);
        assert_eq!(done[0].result, Err(DeviceError::ReadOnly));
        assert!(done[0].buffer.is_some(), "the buffer comes back");
    }

    #[test]
    fn a_request_that_goes_back_into_the_ring_is_started_again() {
        // The file shrinks under the device: a read across the new end comes back short, goes
        // back into the ring for the rest, and then fails. It must not wait forever in between.
        let (_dir, path) = image(64);
        let mut block = FileBlock::open(&path, BlockMode::ReadWrite, ReadySet::single(2)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(32 * 512 + 1024)
            .unwrap();
        let read = request(1, BlockOp::Read, 30, Some(BlockBuffer::new(8192)));
        block.submit(read).unwrap();
        // Only the platform's own calls, as when the app's future waits for the device.
        let deadline = Instant::now() + Duration::from_secs(5);
        while start_all().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the rest of the read never started"
            );
            let mut poll = libc::pollfd {
                fd: block.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            let woke = unsafe { libc::poll(&mut poll, 1, 2000) };
            assert_eq!(
                woke, 1,
                "waited for a completion of a request never started"
            );
        }
        let mut done = Vec::new();
        block.complete(&mut |c| done.push(c));
        assert_eq!(done[0].result, Err(DeviceError::Io));
        assert_eq!(block.engine.borrow().file.stats().resubmitted, 1);
    }

    #[test]
    fn completions_nobody_takes_do_not_keep_the_descriptor_readable() {
        let (_dir, path) = image(8);
        let bit = ReadySet::single(3);
        let mut block = FileBlock::open(&path, BlockMode::ReadWrite, bit).unwrap();
        let readable = |fd| {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the call.
            unsafe { libc::poll(&mut poll, 1, 1000) == 1 }
        };
        let r = request(1, BlockOp::Read, 0, Some(BlockBuffer::new(512)));
        block.submit(r).unwrap();
        // The platform takes the completion and reports the device ready, wait after wait, while
        // the descriptor itself goes quiet: a wait does not spin on it.
        while start_all().is_empty() {
            assert!(readable(block.fd()), "the read finishes");
        }
        assert_eq!(start_all(), bit);
        let mut poll = libc::pollfd {
            fd: block.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, 0) }, 0);
        let mut done = Vec::new();
        assert_eq!(block.complete(&mut |c| done.push(c.tag)), 1);
        assert_eq!((done, start_all()), (vec![1], ReadySet::EMPTY));
    }

    #[test]
    fn dropping_the_device_with_requests_in_flight_is_safe() {
        let (_dir, path) = image(8192);
        let mut block =
            FileBlock::open(&path, BlockMode::CopyOnWrite, ReadySet::single(1)).unwrap();
        for tag in 0..64 {
            let r = request(tag, BlockOp::Read, tag * 64, Some(BlockBuffer::new(32768)));
            block.submit(r).unwrap();
        }
        start_all();
        drop(block);
        // The engine is gone from the list too.
        start_all();
        DEVICES.with(|devices| assert!(devices.borrow().iter().all(|d| d.upgrade().is_none())));
    }
}
