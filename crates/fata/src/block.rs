//! Block devices for apps: reads, writes, flushes and discards as futures, many in flight at once.
//!
//! [`BlockDevice`] wraps the platform's [`Block`] device. Each call queues one request and waits
//! for its completion; requests from many tasks (or many futures joined in one task) go to the
//! host together the next time the executor waits, so an app that keeps 32 reads outstanding pays
//! one exit (hvt) or one `io_uring_enter` (unix) per batch, not per read.
//!
//! Buffers are [`BlockBuffer`]s, which a request owns until it completes: a read or write hands
//! its buffer in and gets it back with the result, as with io_uring. Dropping a future whose
//! request is in flight is safe: the device keeps the buffer until the host is done with it.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use fata_platform::{Block, BlockCompletion, BlockOp, BlockRequest, DeviceError};
pub use fata_platform::{BlockBuffer, BlockGeometry};

use crate::executor::{WaitReady, wait_ready};

/// A block device an app took from its [`Env`](crate::Env) (`env.take_block("storage")`), shared by
/// every clone of the handle.
#[derive(Clone)]
pub struct BlockDevice {
    shared: Rc<RefCell<Shared>>,
}

struct Shared {
    device: Box<dyn Block>,
    geometry: BlockGeometry,
    next_tag: u64,
    /// Completions no future has picked up yet.
    done: BTreeMap<u64, BlockCompletion>,
    /// Requests whose future was dropped while they were in flight.
    abandoned: BTreeSet<u64>,
    /// The wakers of requests in flight, by tag: a request's completion may be taken from the
    /// device by another request's future, which then wakes this one (the device's readiness bit
    /// will not come up for it again).
    wakers: BTreeMap<u64, Waker>,
    /// Futures waiting for the device to have room for their request, woken whenever
    /// completions are taken.
    room: Vec<Waker>,
}

impl Shared {
    /// Moves every finished request into `done` (or drops it, buffer and all, if its future is
    /// gone), waking the future each belongs to and those waiting for room.
    fn reap(&mut self) {
        let Shared {
            device,
            done,
            abandoned,
            wakers,
            ..
        } = self;
        let taken = device.complete(&mut |completion| {
            if let Some(waker) = wakers.remove(&completion.tag) {
                waker.wake();
            }
            if !abandoned.remove(&completion.tag) {
                done.insert(completion.tag, completion);
            }
        });
        if taken > 0 {
            self.room.drain(..).for_each(Waker::wake);
        }
    }
}

impl BlockDevice {
    /// Wraps a platform block device.
    pub fn new(device: Box<dyn Block>) -> BlockDevice {
        let geometry = device.geometry();
        BlockDevice {
            shared: Rc::new(RefCell::new(Shared {
                device,
                geometry,
                next_tag: 0,
                done: BTreeMap::new(),
                abandoned: BTreeSet::new(),
                wakers: BTreeMap::new(),
                room: Vec::new(),
            })),
        }
    }

    /// The device's sectors and limits.
    pub fn geometry(&self) -> BlockGeometry {
        self.shared.borrow().geometry
    }

    /// Bytes per sector.
    pub fn sector_size(&self) -> u32 {
        self.geometry().sector_size
    }

    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.geometry().sectors
    }

    /// Starts the requests queued so far now (a doorbell exit on hvt) rather than when the
    /// executor next waits, where they would go together with whatever else was queued by then.
    pub fn start(&self) {
        self.shared.borrow_mut().device.start();
    }

    /// Fills `buffer` (a whole number of sectors) from the sectors at `sector`; hands the buffer
    /// back with the result.
    pub async fn read(
        &self,
        sector: u64,
        buffer: BlockBuffer,
    ) -> (BlockBuffer, Result<(), DeviceError>) {
        self.with_buffer(BlockOp::Read, sector, buffer).await
    }

    /// Writes `buffer` (a whole number of sectors) to the sectors at `sector`; hands the buffer
    /// back with the result. The data is durable once a later [`flush`](Self::flush) returns.
    pub async fn write(
        &self,
        sector: u64,
        buffer: BlockBuffer,
    ) -> (BlockBuffer, Result<(), DeviceError>) {
        self.with_buffer(BlockOp::Write { grouped: false }, sector, buffer)
            .await
    }

    /// As [`write`](Self::write), but the write reaches the device only at the next flush,
    /// together with every other grouped write since the previous flush: after a crash the device
    /// holds all of them or none. Reads see it at once. A file system that flushes only between
    /// whole operations stays consistent however the host dies.
    pub async fn write_grouped(
        &self,
        sector: u64,
        buffer: BlockBuffer,
    ) -> (BlockBuffer, Result<(), DeviceError>) {
        self.with_buffer(BlockOp::Write { grouped: true }, sector, buffer)
            .await
    }

    /// Returns once every request submitted before it has completed and every write submitted
    /// before it is durable on the host (`fdatasync`).
    pub async fn flush(&self) -> Result<(), DeviceError> {
        self.submit(BlockOp::Flush, 0, None).await.result
    }

    /// Discards `sectors` sectors from `sector` on: they read back as zeros and the host may free
    /// their space.
    pub async fn discard(&self, sector: u64, sectors: u64) -> Result<(), DeviceError> {
        self.submit(BlockOp::Discard { sectors }, sector, None)
            .await
            .result
    }

    async fn with_buffer(
        &self,
        op: BlockOp,
        sector: u64,
        buffer: BlockBuffer,
    ) -> (BlockBuffer, Result<(), DeviceError>) {
        let done = self.submit(op, sector, Some(buffer)).await;
        let buffer = done
            .buffer
            .expect("a block device hands back the buffer of every read and write");
        (buffer, done.result)
    }

    fn submit(&self, op: BlockOp, sector: u64, buffer: Option<BlockBuffer>) -> Submission<'_> {
        Submission {
            device: self,
            request: Some((op, sector, buffer)),
            tag: None,
            wait: None,
        }
    }
}

/// One request on its way: queued when first polled (or as soon as the device has room), then
/// waiting for its completion.
struct Submission<'a> {
    device: &'a BlockDevice,
    request: Option<(BlockOp, u64, Option<BlockBuffer>)>,
    tag: Option<u64>,
    wait: Option<WaitReady>,
}

impl Future for Submission<'_> {
    type Output = BlockCompletion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BlockCompletion> {
        loop {
            let readiness = {
                let mut shared = self.device.shared.borrow_mut();
                shared.reap();
                match self.tag {
                    Some(tag) => {
                        if let Some(done) = shared.done.remove(&tag) {
                            shared.wakers.remove(&tag);
                            self.tag = None;
                            return Poll::Ready(done);
                        }
                        shared.wakers.insert(tag, cx.waker().clone());
                    }
                    None => {
                        let (op, sector, buffer) = self
                            .request
                            .take()
                            .expect("a finished block request polled again");
                        let tag = shared.next_tag;
                        let request = BlockRequest {
                            tag,
                            op,
                            sector,
                            buffer,
                        };
                        match shared.device.submit(request) {
                            Ok(()) => {
                                shared.next_tag += 1;
                                self.tag = Some(tag);
                                // A device that finishes requests as they come (one in memory)
                                // has the completion ready already.
                                continue;
                            }
                            // The queue is full: wait for completions to make room.
                            Err((_, request)) => {
                                self.request = Some((request.op, request.sector, request.buffer));
                                shared.room.push(cx.waker().clone());
                            }
                        }
                    }
                }
                shared.device.readiness()
            };
            let wait = self.wait.get_or_insert_with(|| wait_ready(readiness));
            match Pin::new(wait).poll(cx) {
                Poll::Ready(()) => self.wait = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Submission<'_> {
    fn drop(&mut self) {
        if let Some(tag) = self.tag {
            let mut shared = self.device.shared.borrow_mut();
            shared.wakers.remove(&tag);
            if shared.done.remove(&tag).is_none() {
                shared.abandoned.insert(tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Duration, Either, ReadySet};
    use fata_platform::BlockGeometry;

    /// A device whose requests all finish together once two are in flight.
    #[derive(Default)]
    struct Pairs {
        submitted: Vec<BlockRequest>,
        finished: Vec<BlockCompletion>,
    }

    impl Block for Pairs {
        fn geometry(&self) -> BlockGeometry {
            BlockGeometry {
                sector_size: 512,
                sectors: 8,
                read_only: false,
                request_max: 4096,
                queue_depth: 2,
            }
        }

        fn readiness(&self) -> ReadySet {
            ReadySet::single(40)
        }

        fn submit(&mut self, request: BlockRequest) -> Result<(), (DeviceError, BlockRequest)> {
            self.submitted.push(request);
            if self.submitted.len() == 2 {
                for request in self.submitted.drain(..) {
                    self.finished.push(BlockCompletion {
                        tag: request.tag,
                        result: Ok(()),
                        buffer: request.buffer,
                    });
                }
            }
            Ok(())
        }

        fn complete(&mut self, on_done: &mut dyn FnMut(BlockCompletion)) -> usize {
            let count = self.finished.len();
            self.finished.drain(..).for_each(on_done);
            count
        }
    }

    #[test]
    fn a_completion_taken_by_another_request_wakes_its_own() {
        crate::block_on(async {
            let disk = BlockDevice::new(Box::new(Pairs::default()));
            let first = {
                let disk = disk.clone();
                crate::spawn(async move { disk.read(0, BlockBuffer::new(512)).await.1 })
            };
            // The first read is queued and waits; the second finishes both and takes both
            // completions. The device never becomes ready again: only the first read's waker can
            // end its wait.
            crate::yield_now().await;
            assert_eq!(disk.read(1, BlockBuffer::new(512)).await.1, Ok(()));
            match crate::select(first, crate::sleep(Duration::from_secs(5))).await {
                Either::Left(result) => assert_eq!(result, Ok(())),
                Either::Right(()) => panic!("the first read was never woken"),
            }
        });
    }
}
