//! A host file, or a block device node such as `/dev/loop0`, served as a Fata block device.
//!
//! One job, shared by the hvt monitor (which serves a guest's block ring with it) and the unix
//! target (whose `Block` device it is): take requests by tag, run them on the host through
//! io_uring, many at once, and hand back each one's [`Status`]. It sits below both and depends on
//! neither.
//!
//! - **Requests.** [`BlockFile::submit`] queues a [`Request`]; [`BlockFile::start`] hands
//!   everything queued to the kernel in one `io_uring_enter`; [`BlockFile::complete`] takes the
//!   finished ones without a system call. The [`completion_fd`](BlockFile::completion_fd), an
//!   eventfd registered with the ring, is readable while completions wait, so the caller sleeps in
//!   its own `epoll` with its other descriptors. A request that can never succeed (no or partial
//!   sectors, over [`REQUEST_MAX`], past the end, a write on a read-only device) completes at once
//!   with its status: `submit` never fails.
//! - **Direct I/O.** Reads and writes whose offset, length and buffer meet the file's direct-I/O
//!   alignment (`statx(STATX_DIOALIGN)`, 4096 when the kernel does not say) go through a second
//!   descriptor opened `O_DIRECT`, bypassing the page cache as `fio --direct=1` does; the others,
//!   and every request on a file system without direct I/O (tmpfs), use the buffered one.
//! - **Modes.** [`Mode::ReadOnly`] answers writes and discards with [`Status::ReadOnly`].
//!   [`Mode::CopyOnWrite`] opens the file read-only and keeps every write in memory, where reads
//!   see it: the file never changes (a "gold image" shared by many guests).
//! - **Flush** waits for every request started before it, then makes every write before it
//!   durable (`fdatasync`). **Discard** punches a hole (`fallocate(PUNCH_HOLE | KEEP_SIZE)`): the
//!   sectors read back as zeros ([`Status::Unsupported`] where the host cannot).
//! - **Grouped writes** (`Op::Write { grouped: true }`) stay in memory, where reads see them,
//!   until the next flush writes all of them through a journal beside the file
//!   (`FILE.fata-journal`, see the `journal` module): after a crash the file holds all of a
//!   flush's grouped writes or none. [`BlockFile::open`] finishes a journal that a crash
//!   interrupted after it committed (or, without write access, applies it in memory), and ignores
//!   one that never committed; [`BlockFile::recovered`] says how many sectors it gave back. At most
//!   [`GROUPED_MAX`] bytes of grouped writes may wait for a flush; past that a grouped write gets
//!   [`Status::NoSpace`]. A flush that fails (`NoSpace` when the journal finds no room) keeps
//!   them, still seen by reads, for the next flush. The journal of a block device node sits beside
//!   the node (`/dev/loop0.fata-journal`, on devtmpfs): it outlives the process, not a reboot.
//! - **Host errors** become statuses: `EIO` (and every errno not named here) is
//!   [`Status::IoError`], `ENOSPC` and `EDQUOT` are [`Status::NoSpace`], `EOPNOTSUPP` is
//!   [`Status::Unsupported`]. The device goes on serving other requests.
//!
//! # System calls after `open`
//!
//! The monitor confines itself with a seccomp filter once its devices are open. After
//! [`BlockFile::open`] returns, a `BlockFile` makes only these system calls (the kernel runs the
//! requests themselves, reads, writes and hole punching included, inside io_uring, where seccomp
//! does not look):
//!
//! | call | when |
//! |---|---|
//! | `io_uring_enter` | [`start`](BlockFile::start); a flush waiting for earlier requests; drop |
//! | `read` | [`start`](BlockFile::start) clearing the eventfd before the caller waits |
//! | `write` | signalling the eventfd for a request that completes without the kernel |
//! | `pwrite64` | a flush writing the journal and then the grouped sectors in place |
//! | `fdatasync` | every flush (the journal and the file) |
//! | `ftruncate` | a flush emptying the journal after applying it |
//! | `close`, `munmap` | drop: the descriptors and the ring's memory |
//!
//! and the allocator's `brk`/`mmap`/`munmap`/`mremap` for memory that copy-on-write sectors,
//! grouped writes and a flush's journal need. Nothing opens, unlinks or `fstat`s a file after
//! `open`.
//!
//! # Calling pattern
//!
//! ```no_run
//! # use fata_blockfile::{BlockFile, Mode, Op, Request};
//! # fn demo(buffer: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
//! let mut file = BlockFile::open("disk.img".as_ref(), Mode::ReadWrite)?;
//! let request = Request { tag: 1, op: Op::Read, sector: 0, len: 4096, buf: buffer.as_mut_ptr() };
//! // SAFETY: `buffer` is 4096 bytes and is not touched until tag 1 completes.
//! unsafe { file.submit(request) };
//! file.start()?; // before every wait: starts what is queued, clears a stale signal
//! // ... poll(file.completion_fd()) with the caller's other descriptors ...
//! file.complete(&mut |tag, status| println!("{tag}: {status:?}"));
//! # Ok(()) }
//! ```

mod check;
mod host;
mod journal;
mod overlay;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use io_uring::{IoUring, opcode, types};
use thiserror::Error;

use host::DirectAlign;
use overlay::Overlay;

/// Bytes per sector.
pub const SECTOR_SIZE: u64 = 512;

/// The most bytes one read, write or discard may cover (4 MiB).
pub const REQUEST_MAX: u64 = 4 << 20;

/// The most bytes of grouped writes that may wait for a flush (64 MiB).
pub const GROUPED_MAX: u64 = 64 << 20;

/// What a journal beside `FILE` is called: `FILE` followed by this.
pub const JOURNAL_SUFFIX: &str = ".fata-journal";

/// Entries in the io_uring submission queue, and so the most requests the kernel holds at once;
/// more wait in the device's own queue until some finish.
const RING_ENTRIES: u32 = 256;

/// CQEs copied out of the completion queue at a time.
const REAP_BATCH: usize = 64;

/// A flush's scratch memory above this is given back once the flush is done.
const SCRATCH_KEEP: usize = 4 << 20;

/// How a file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads and writes reach the file.
    ReadWrite,
    /// Writes and discards are refused with [`Status::ReadOnly`]; the file is opened read-only.
    ReadOnly,
    /// The file is opened read-only and never changes; writes and discards stay in this process's
    /// memory, where reads see them, until the device is dropped.
    CopyOnWrite,
}

/// What a [`Request`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Fill `len` bytes at `buf` from the sectors at `sector`.
    Read,
    /// Write `len` bytes at `buf` to the sectors at `sector`; a `grouped` write waits in memory
    /// for the next flush, which applies it together with every other grouped write since the
    /// previous flush (all or none of them survive a crash). Reads see it at once.
    Write {
        /// Whether the write waits for the next flush.
        grouped: bool,
    },
    /// Complete after every request submitted before it, with every write before it durable.
    Flush,
    /// The `len` bytes of sectors from `sector` on are no longer needed: they read back as zeros.
    Discard,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Done.
    Ok,
    /// The host reported an I/O error (`EIO`, or any errno not named below).
    IoError,
    /// A write or discard on a [`Mode::ReadOnly`] device.
    ReadOnly,
    /// The sectors reach past the end of the device (or their end overflows).
    OutOfRange,
    /// Malformed: a length that is zero, not whole sectors or over [`REQUEST_MAX`], or a read or
    /// write without a buffer.
    BadRequest,
    /// The host has no room (`ENOSPC`, `EDQUOT`), or [`GROUPED_MAX`] bytes of grouped writes
    /// already wait for a flush.
    NoSpace,
    /// The host cannot do this (`EOPNOTSUPP`: a discard where holes cannot be punched).
    Unsupported,
}

/// One request. `tag` is any value; its completion carries it back.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// Names the request in its completion.
    pub tag: u64,
    /// What to do.
    pub op: Op,
    /// The first sector (ignored by a flush).
    pub sector: u64,
    /// Bytes to read, write or discard, whole sectors (ignored by a flush).
    pub len: u64,
    /// The buffer of a read or write (ignored by a flush or discard).
    pub buf: *mut u8,
}

/// What a [`BlockFile`] has done since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockFileStats {
    /// Requests submitted.
    pub requests: u64,
    /// Reads that succeeded.
    pub reads: u64,
    /// Writes that succeeded, grouped ones included.
    pub writes: u64,
    /// Grouped writes that succeeded (held for the next flush).
    pub grouped_writes: u64,
    /// Flushes that succeeded.
    pub flushes: u64,
    /// Discards that succeeded.
    pub discards: u64,
    /// Bytes the successful reads moved.
    pub bytes_read: u64,
    /// Bytes the successful writes moved.
    pub bytes_written: u64,
    /// Reads and writes served with direct I/O.
    pub direct: u64,
    /// Requests that ended with a status other than [`Status::Ok`].
    pub failed: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Times a request went back into the ring: after a short read or write, or direct I/O the
    /// file system refused.
    pub resubmitted: u64,
    /// Flushes that applied grouped writes through the journal.
    pub journal_commits: u64,
    /// Sectors a journal that a crash left behind gave back when the file was opened.
    pub recovered_sectors: u64,
}

/// Why a file cannot be served.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The file cannot be opened or inspected.
    #[error(
        "cannot open {} for {}: {source} (does it exist, and may this user {} it?)",
        path.display(),
        if *writable { "reading and writing" } else { "reading" },
        if *writable { "write" } else { "read" }
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Whether it was opened for writing.
        writable: bool,
        /// What the host said.
        #[source]
        source: io::Error,
    },
    /// Neither a regular file nor a block device.
    #[error("{} is neither a regular file nor a block device: give a disk image file", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
    },
    /// Smaller than one sector.
    #[error(
        "{} holds no whole 512-byte sector ({size} bytes): give it a size first, as in `truncate -s 64M {}`",
        path.display(),
        path.display()
    )]
    Empty {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Another open file description holds a conflicting lock.
    #[error(
        "{} is in use by another program that serves it as a disk: stop that one first, or give \
         both `:ro` or `:cow`, which may share a file",
        path.display()
    )]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// The journal beside the file cannot be opened, read or emptied.
    #[error(
        "cannot use the journal {}: {source} (a writable device keeps it beside its file: make \
         the directory writable, or give the device `:ro` or `:cow`)",
        path.display()
    )]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What the host said.
        #[source]
        source: io::Error,
    },
    /// A complete journal names sectors the file does not have.
    #[error(
        "the journal {} is for a larger disk (it writes sector {sector}, the file has {sectors}): \
         if the file was replaced on purpose, delete the journal",
        path.display()
    )]
    JournalMismatch {
        /// The journal.
        path: PathBuf,
        /// The first sector past the end.
        sector: u64,
        /// The file's sectors.
        sectors: u64,
    },
    /// Writing a complete journal's sectors in place failed.
    #[error(
        "cannot finish the flush recorded in {}: {source} (the journal is kept; free space or \
         fix the disk, then open the file again)",
        path.display()
    )]
    Recover {
        /// The journal.
        path: PathBuf,
        /// What the host said.
        #[source]
        source: io::Error,
    },
    /// io_uring or its eventfd cannot be set up.
    #[error(
        "cannot set up io_uring: {source} (Fata's block devices need Linux 5.11 or later with \
         io_uring allowed: check /proc/sys/kernel/io_uring_disabled and any seccomp policy)"
    )]
    Ring {
        /// What the host said.
        #[source]
        source: io::Error,
    },
}

/// What a request in the ring does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Discard,
}

/// A request the kernel holds, indexed by its CQE's `user_data`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tag: u64,
    kind: Kind,
    /// The first byte in the file.
    offset: u64,
    len: u64,
    buf: *mut u8,
    /// Bytes done so far (a short read or write goes on from here).
    done: u64,
    direct: bool,
}

impl Slot {
    const FREE: Slot = Slot {
        tag: 0,
        kind: Kind::Read,
        offset: 0,
        len: 0,
        buf: std::ptr::null_mut(),
        done: 0,
        direct: false,
    };
}

/// The journal of a read-write device.
struct Journal {
    file: File,
    /// The sequence number the next commit writes.
    sequence: u64,
    /// Whether the file may still hold a journal whose sectors are all in place, which must be
    /// emptied before another commit.
    dirty: bool,
}

/// A file served as a block device: see the crate documentation.
pub struct BlockFile {
    ring: IoUring,
    eventfd: OwnedFd,
    /// The buffered descriptor.
    file: File,
    /// The `O_DIRECT` descriptor and the alignment it needs.
    direct: Option<(File, DirectAlign)>,
    journal: Option<Journal>,
    mode: Mode,
    sectors: u64,
    /// Requests submitted and not yet started, in order.
    queued: VecDeque<Request>,
    /// Requests the kernel holds, by slot; `free` lists the unused slots.
    slots: Vec<Slot>,
    free: Vec<u32>,
    in_ring: usize,
    /// Completions that did not come from the kernel's completion queue, in order.
    done: VecDeque<(u64, Status)>,
    /// Copy-on-write sectors, grouped writes waiting for a flush, or a journal applied in memory.
    overlay: Overlay,
    /// Sectors of grouped writes since the last flush on a copy-on-write device.
    grouped_cow: u64,
    /// Whether this process wrote the eventfd since it last cleared it.
    signalled: bool,
    /// A flush's journal and in-place buffer.
    scratch: Vec<u8>,
    stats: BlockFileStats,
}

// SAFETY: the raw buffer pointers held in `queued` and `slots` are only handed to the kernel or
// read and written under `submit`'s contract, which says the memory stays valid and untouched
// until the request completes, whatever thread the `BlockFile` is on; everything else it holds
// (the ring, descriptors, collections) is `Send`.
unsafe impl Send for BlockFile {}

impl BlockFile {
    /// Opens `path` (a regular file or a block device) to serve it in `mode`.
    ///
    /// A read-write device creates its journal `FILE.fata-journal` if it is missing, finishes a
    /// complete journal that a crash left behind and empties a torn one; a read-only or
    /// copy-on-write device applies a complete journal in memory and leaves the file alone. The
    /// file is locked (`flock`) against another read-write device: exclusively in
    /// [`Mode::ReadWrite`], shared otherwise.
    pub fn open(path: &Path, mode: Mode) -> Result<BlockFile, OpenError> {
        let writable = mode == Mode::ReadWrite;
        let open_error = |source| OpenError::Open {
            path: path.to_path_buf(),
            writable,
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(writable);
        let mut file = options.open(path).map_err(open_error)?;
        let kind = file.metadata().map_err(open_error)?.file_type();
        if !kind.is_file() && !kind.is_block_device() {
            return Err(OpenError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        if !host::lock(&file, writable).map_err(open_error)? {
            return Err(OpenError::Busy {
                path: path.to_path_buf(),
            });
        }
        let size = file.seek(SeekFrom::End(0)).map_err(open_error)?;
        let sectors = size / SECTOR_SIZE;
        if sectors == 0 {
            return Err(OpenError::Empty {
                path: path.to_path_buf(),
                size,
            });
        }
        let direct = host::direct_align(&file).and_then(|align| {
            let mut options = options.clone();
            options.custom_flags(libc::O_DIRECT);
            options.open(path).ok().map(|direct| (direct, align))
        });
        let mut overlay = Overlay::default();
        let (journal, recovered) = open_journal(path, mode, &file, sectors, &mut overlay)?;

        let ring_error = |source| OpenError::Ring { source };
        // Cooperative task running: a completion does not interrupt the thread with an IPI while
        // it runs (a sleeping thread is still woken), so completions that arrive while the app
        // or guest works are posted together at its next system call. Measured: random 4 KiB
        // reads at queue depth 32 on unix went from about 73k to 83-88k IOPS.
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(RING_ENTRIES)
            .map_err(ring_error)?;
        let eventfd = host::eventfd().map_err(ring_error)?;
        let submitter = ring.submitter();
        submitter
            .register_eventfd(eventfd.as_raw_fd())
            .map_err(ring_error)?;

        Ok(BlockFile {
            ring,
            eventfd,
            file,
            direct,
            journal,
            mode,
            sectors,
            queued: VecDeque::with_capacity(RING_ENTRIES as usize),
            slots: vec![Slot::FREE; RING_ENTRIES as usize],
            free: (0..RING_ENTRIES).rev().collect(),
            in_ring: 0,
            done: VecDeque::with_capacity(RING_ENTRIES as usize),
            overlay,
            grouped_cow: 0,
            signalled: false,
            scratch: Vec::new(),
            stats: BlockFileStats {
                recovered_sectors: recovered,
                ..BlockFileStats::default()
            },
        })
    }

    /// The device's size in sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// How the file is served.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// An eventfd that is readable while completions wait for [`complete`](Self::complete).
    ///
    /// Call [`start`](Self::start) before every wait on it: besides starting what is queued, it
    /// clears a signal whose completions were taken already, so the descriptor does not stay
    /// readable with nothing to take.
    pub fn completion_fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    /// Sectors that a journal left by a crash gave back when the file was opened: written in
    /// place ([`Mode::ReadWrite`]) or applied in memory (the other modes); 0 when there was none.
    pub fn recovered(&self) -> u64 {
        self.stats.recovered_sectors
    }

    /// Queues `request`; it starts at the next [`start`](Self::start). A request that can never
    /// succeed completes at once with its status (and the eventfd is signalled).
    ///
    /// # Safety
    ///
    /// For a read or write, `request.buf .. request.buf + request.len` must be memory of this
    /// process that stays valid, and is neither read nor written through Rust references (or by
    /// anything else), until [`complete`](Self::complete) hands out the request's tag, or the
    /// `BlockFile` is dropped (drop waits for the kernel to finish with every buffer).
    pub unsafe fn submit(&mut self, request: Request) {
        self.stats.requests += 1;
        match check::check(&request, self.sectors, self.mode) {
            Ok(()) => self.queued.push_back(request),
            Err(status) => {
                self.stats.failed += 1;
                self.finish(request.tag, status);
            }
        }
    }

    /// Starts every queued request: those that need the host go to the kernel together, in one
    /// `io_uring_enter`; grouped and copy-on-write writes complete in memory. A flush waits here
    /// for every request before it and then syncs, so a flush blocks the caller for as long as
    /// the host takes. Call it before every wait on [`completion_fd`](Self::completion_fd).
    ///
    /// When more requests are queued than the kernel may hold, the rest wait for a later call.
    /// An error is the kernel refusing `io_uring_enter` itself; the requests stay queued.
    pub fn start(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        while let Some(&request) = self.queued.front() {
            let in_memory = match request.op {
                Op::Flush => {
                    self.queued.pop_front();
                    let status = match self.wait_idle() {
                        Ok(()) => self.commit(),
                        Err(error) => {
                            result = Err(error);
                            Status::IoError
                        }
                    };
                    self.count(status, Op::Flush, 0);
                    self.finish(request.tag, status);
                    if result.is_err() {
                        break;
                    }
                    continue;
                }
                Op::Read => false,
                Op::Write { grouped } => grouped || self.mode == Mode::CopyOnWrite,
                Op::Discard => self.mode == Mode::CopyOnWrite,
            };
            if in_memory {
                self.queued.pop_front();
                let status = self.in_memory(request);
                self.count(status, request.op, request.len);
                self.finish(request.tag, status);
            } else if self.in_ring < RING_ENTRIES as usize {
                self.queued.pop_front();
                self.begin(request);
            } else {
                break;
            }
        }
        if result.is_ok() {
            result = self.enter();
        }
        self.settle();
        result
    }

    /// Calls `on_done` with the tag and status of every finished request; returns how many. It
    /// makes no system call and does not wait. A request that needs another round (a short read
    /// or write) goes back into the ring here and reaches the kernel at the next
    /// [`start`](Self::start): call `complete`, then `start`, then wait.
    pub fn complete(&mut self, on_done: &mut dyn FnMut(u64, Status)) -> usize {
        let mut count = 0;
        while let Some((tag, status)) = self.done.pop_front() {
            on_done(tag, status);
            count += 1;
        }
        count + self.reap(on_done)
    }

    /// Requests submitted whose completion [`complete`](Self::complete) has not handed out yet.
    pub fn in_flight(&self) -> usize {
        self.queued.len() + self.in_ring + self.done.len()
    }

    /// The sectors held in memory in front of the file, in sector order: a copy-on-write
    /// device's writes, grouped writes waiting for a flush, a journal applied in memory. A
    /// snapshot of the device carries them; [`hold`](Self::hold) gives them back.
    pub fn held(&self) -> impl ExactSizeIterator<Item = (u64, &[u8; SECTOR_SIZE as usize])> {
        self.overlay.iter()
    }

    /// Holds `data` (whole sectors) in memory as the sectors from `sector` on, where reads see
    /// them: what [`held`](Self::held) listed for a device restored from a snapshot. On a
    /// read-write device they wait for the next flush, as grouped writes do. `false`, holding
    /// nothing, when `data` is not whole sectors or runs past the device's end.
    pub fn hold(&mut self, sector: u64, data: &[u8]) -> bool {
        let count = data.len() as u64 / SECTOR_SIZE;
        let fits = sector
            .checked_add(count)
            .is_some_and(|end| end <= self.sectors);
        if !data.len().is_multiple_of(SECTOR_SIZE as usize) || !fits {
            return false;
        }
        self.overlay.write(sector, data);
        true
    }

    /// What the device has done since it was opened.
    pub fn stats(&self) -> BlockFileStats {
        self.stats
    }

    /// Serves a write or discard that stays in memory: grouped writes, and everything a
    /// copy-on-write device is asked to change.
    fn in_memory(&mut self, request: Request) -> Status {
        let count = request.len / SECTOR_SIZE;
        if request.op == Op::Discard {
            self.overlay.zero(request.sector, count);
            return Status::Ok;
        }
        if request.op == (Op::Write { grouped: true }) {
            let pending = match self.mode {
                Mode::CopyOnWrite => self.grouped_cow + count,
                _ => self.overlay.len() + count - self.overlay.held(request.sector, count),
            };
            if pending * SECTOR_SIZE > GROUPED_MAX {
                return Status::NoSpace;
            }
            if self.mode == Mode::CopyOnWrite {
                self.grouped_cow = pending;
            }
        }
        // SAFETY: `check` let this write through, so `buf` is a buffer of `len` bytes, which
        // `submit`'s contract keeps valid and untouched until the request completes (below).
        let data = unsafe { std::slice::from_raw_parts(request.buf, request.len as usize) };
        self.overlay.write(request.sector, data);
        Status::Ok
    }

    /// Hands a read, write or discard to the kernel (at the next `io_uring_enter`).
    fn begin(&mut self, request: Request) {
        let count = request.len / SECTOR_SIZE;
        let kind = match request.op {
            Op::Read => Kind::Read,
            Op::Write { .. } => Kind::Write,
            _ => Kind::Discard,
        };
        if self.mode == Mode::ReadWrite && !self.overlay.is_empty() {
            // Grouped writes of the same sectors wait for a flush: keep them as this write leaves
            // the sectors, and forget those that a discard drops.
            match kind {
                Kind::Write => {
                    // SAFETY: as in `in_memory`: a checked write's buffer, valid and untouched
                    // until the request completes.
                    let data =
                        unsafe { std::slice::from_raw_parts(request.buf, request.len as usize) };
                    self.overlay.update(request.sector, data);
                }
                Kind::Discard => self.overlay.remove(request.sector, count),
                Kind::Read => {}
            }
        }
        let offset = request.sector * SECTOR_SIZE;
        let direct = kind != Kind::Discard
            && self.direct.as_ref().is_some_and(|(_, align)| {
                offset.is_multiple_of(align.offset)
                    && request.len.is_multiple_of(align.offset)
                    && (request.buf as u64).is_multiple_of(align.memory)
            });
        let index = self
            .free
            .pop()
            .expect("a free slot: fewer than RING_ENTRIES requests are in the ring");
        self.slots[index as usize] = Slot {
            tag: request.tag,
            kind,
            offset,
            len: request.len,
            buf: request.buf,
            done: 0,
            direct,
        };
        self.in_ring += 1;
        self.push(index);
    }

    /// Puts slot `index`'s request (what is left of it) into the submission queue.
    fn push(&mut self, index: u32) {
        let slot = self.slots[index as usize];
        // Plain descriptors, not registered ones: a registered file outlives its close until the
        // ring's teardown finishes in the background, and with it the file's lock.
        let fd = match (&self.direct, slot.direct) {
            (Some((direct, _)), true) => types::Fd(direct.as_raw_fd()),
            _ => types::Fd(self.file.as_raw_fd()),
        };
        let left = slot.len - slot.done;
        // SAFETY: `done < len`, so the pointer stays inside the request's buffer.
        let at = unsafe { slot.buf.add(slot.done as usize) };
        let entry = match slot.kind {
            Kind::Read => opcode::Read::new(fd, at, left as u32)
                .offset(slot.offset + slot.done)
                .build(),
            Kind::Write => opcode::Write::new(fd, at, left as u32)
                .offset(slot.offset + slot.done)
                .build(),
            Kind::Discard => opcode::Fallocate::new(fd, slot.len)
                .offset(slot.offset)
                .mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE)
                .build(),
        }
        .user_data(u64::from(index));
        // SAFETY: the entry names a descriptor this device keeps open and, for a read or write, a buffer that
        // `submit`'s contract keeps valid and untouched until its completion is handed out, which
        // happens only after the kernel posts its CQE (or after drop has waited for it).
        let pushed = unsafe { self.ring.submission().push(&entry) };
        // The submission queue holds at most the requests in the ring, which are at most
        // RING_ENTRIES, its size.
        pushed.expect("room in the submission queue");
    }

    /// Submits the queued entries, if any, in one `io_uring_enter`.
    fn enter(&mut self) -> io::Result<()> {
        loop {
            if self.ring.submission().is_empty() {
                return Ok(());
            }
            self.stats.enters += 1;
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The kernel is short of memory or completion room: the entries stay queued for
                // the next call.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the kernel holds no request, keeping the completions for `complete`.
    fn wait_idle(&mut self) -> io::Result<()> {
        while self.in_ring > 0 {
            self.stats.enters += 1;
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let mut done = std::mem::take(&mut self.done);
            self.reap(&mut |tag, status| done.push_back((tag, status)));
            self.done = done;
        }
        Ok(())
    }

    /// Takes every CQE the kernel has posted; returns how many requests finished (a short read
    /// or write goes back into the ring instead).
    fn reap(&mut self, on_done: &mut dyn FnMut(u64, Status)) -> usize {
        let mut count = 0;
        let mut batch = [(0u64, 0i32); REAP_BATCH];
        loop {
            let mut taken = 0;
            for (entry, cqe) in batch.iter_mut().zip(self.ring.completion()) {
                *entry = (cqe.user_data(), cqe.result());
                taken += 1;
            }
            if taken == 0 {
                return count;
            }
            for &(index, result) in &batch[..taken] {
                count += self.finished(index as u32, result, on_done);
            }
        }
    }

    /// Handles the CQE of slot `index`; returns 1 when its request is done, 0 when it went back
    /// into the ring.
    fn finished(&mut self, index: u32, result: i32, on_done: &mut dyn FnMut(u64, Status)) -> usize {
        self.in_ring -= 1;
        let slot = &mut self.slots[index as usize];
        let status = if result < 0 {
            let errno = -result;
            if errno == libc::EINVAL && slot.direct {
                // The file system refused this direct I/O after all: go through the page cache.
                slot.direct = false;
                self.again(index);
                return 0;
            }
            match (slot.kind, host::status_of(errno)) {
                // EOPNOTSUPP means "cannot punch holes" only for a discard.
                (Kind::Read | Kind::Write, Status::Unsupported) => Status::IoError,
                (_, status) => status,
            }
        } else if slot.kind == Kind::Discard {
            Status::Ok
        } else if result == 0 {
            // The file ended before the request did: it shrank under the device.
            Status::IoError
        } else {
            slot.done += result as u64;
            if slot.done < slot.len {
                self.again(index);
                return 0;
            }
            Status::Ok
        };
        let slot = self.slots[index as usize];
        if status == Status::Ok {
            if slot.direct {
                self.stats.direct += 1;
            }
            if slot.kind == Kind::Read && !self.overlay.is_empty() {
                // SAFETY: the kernel is done with the buffer (its CQE is here), which `submit`'s
                // contract keeps valid and unaliased until the completion below hands it back.
                let buf = unsafe { std::slice::from_raw_parts_mut(slot.buf, slot.len as usize) };
                self.overlay.patch(slot.offset / SECTOR_SIZE, buf);
            }
        }
        let op = match slot.kind {
            Kind::Read => Op::Read,
            Kind::Write => Op::Write { grouped: false },
            Kind::Discard => Op::Discard,
        };
        self.count(status, op, slot.len);
        self.free.push(index);
        on_done(slot.tag, status);
        1
    }

    /// Puts slot `index` back into the ring for what is left of its request (the kernel gets it
    /// at the next `start`).
    fn again(&mut self, index: u32) {
        self.stats.resubmitted += 1;
        self.in_ring += 1;
        self.push(index);
    }

    /// Completes a request without the kernel.
    fn finish(&mut self, tag: u64, status: Status) {
        self.done.push_back((tag, status));
        if !self.signalled {
            host::signal(self.eventfd.as_raw_fd());
            self.signalled = true;
        }
    }

    /// Counts a request that ended with `status`.
    fn count(&mut self, status: Status, op: Op, len: u64) {
        let stats = &mut self.stats;
        if status != Status::Ok {
            stats.failed += 1;
            return;
        }
        match op {
            Op::Read => {
                stats.reads += 1;
                stats.bytes_read += len;
            }
            Op::Write { grouped } => {
                stats.writes += 1;
                stats.grouped_writes += u64::from(grouped);
                stats.bytes_written += len;
            }
            Op::Flush => stats.flushes += 1,
            Op::Discard => stats.discards += 1,
        }
    }

    /// Before the caller waits: clears the eventfd unless completions wait, so that it is readable
    /// exactly when they do.
    fn settle(&mut self) {
        if !self.done.is_empty() || !self.ring.completion().is_empty() {
            return;
        }
        host::clear(self.eventfd.as_raw_fd());
        self.signalled = false;
        // A CQE posted between the check and the read had its signal cleared: give it back.
        if !self.ring.completion().is_empty() {
            host::signal(self.eventfd.as_raw_fd());
            self.signalled = true;
        }
    }

    /// Makes every write so far durable and applies the grouped writes: the work of a flush once
    /// no request is in the ring.
    fn commit(&mut self) -> Status {
        match self.mode {
            Mode::ReadOnly => Status::Ok,
            Mode::CopyOnWrite => {
                self.grouped_cow = 0;
                Status::Ok
            }
            Mode::ReadWrite => {
                let Some(journal) = self.journal.as_mut() else {
                    return Status::IoError;
                };
                let committed = journal.commit(&self.file, &self.overlay, &mut self.scratch);
                if self.scratch.capacity() > SCRATCH_KEEP {
                    self.scratch = Vec::new();
                }
                match committed {
                    Ok(applied) => {
                        if applied {
                            self.overlay.clear();
                            self.stats.journal_commits += 1;
                        }
                        Status::Ok
                    }
                    Err(error) => host::status_of_error(&error),
                }
            }
        }
    }
}

impl Journal {
    /// Applies `overlay` (the grouped writes) to `file` through the journal and makes the file
    /// durable; just syncs the file when there are none. `Ok(true)` when it applied some.
    fn commit(
        &mut self,
        file: &File,
        overlay: &Overlay,
        scratch: &mut Vec<u8>,
    ) -> io::Result<bool> {
        if self.dirty {
            self.empty()?;
        }
        if overlay.is_empty() {
            file.sync_data()?;
            return Ok(false);
        }
        scratch.clear();
        journal::encode(self.sequence, overlay.iter(), scratch);
        self.dirty = true;
        self.file.write_all_at(scratch, 0)?;
        self.file.sync_data()?;
        // Committed: from here on a crash leaves a journal that the next open finishes.
        journal::write_in_place(file, overlay.iter(), scratch)?;
        file.sync_data()?;
        self.sequence += 1;
        self.empty()?;
        Ok(true)
    }

    /// Truncates the journal to nothing, durably.
    fn empty(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.dirty = false;
        Ok(())
    }
}

impl Drop for BlockFile {
    /// Waits for the kernel to finish with every buffer it was given; grouped writes that no flush
    /// applied are dropped, as a crash would drop them.
    fn drop(&mut self) {
        while self.in_ring > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => return,
            }
            self.reap(&mut |_, _| {});
        }
    }
}

/// `FILE.fata-journal` for `FILE`.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(JOURNAL_SUFFIX);
    PathBuf::from(name)
}

/// Opens the journal beside `path` as `mode` needs it and deals with what a crash left in it;
/// returns the journal of a read-write device and how many sectors it gave back.
fn open_journal(
    path: &Path,
    mode: Mode,
    file: &File,
    sectors: u64,
    overlay: &mut Overlay,
) -> Result<(Option<Journal>, u64), OpenError> {
    let journal_path = journal_path(path);
    let journal_error = |source| OpenError::Journal {
        path: journal_path.clone(),
        source,
    };
    let opened = if mode == Mode::ReadWrite {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&journal_path)
            .map(Some)
    } else {
        match File::open(&journal_path) {
            Ok(journal) => Ok(Some(journal)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    let Some(mut journal) = opened.map_err(journal_error)? else {
        return Ok((None, 0));
    };
    let mut bytes = Vec::new();
    journal.read_to_end(&mut bytes).map_err(journal_error)?;
    let (sequence, recovered) = match journal::decode(&bytes) {
        journal::Contents::Empty => (1, 0),
        journal::Contents::Torn => (1, 0),
        journal::Contents::Complete { sequence, entries } => {
            if let Some(&(sector, _)) = entries.iter().find(|(sector, _)| *sector >= sectors) {
                return Err(OpenError::JournalMismatch {
                    path: journal_path,
                    sector,
                    sectors,
                });
            }
            if mode == Mode::ReadWrite {
                journal::write_in_place(file, entries.iter().copied(), &mut Vec::new())
                    .and_then(|()| file.sync_data())
                    .map_err(|source| OpenError::Recover {
                        path: journal_path.clone(),
                        source,
                    })?;
            } else {
                for (sector, bytes) in &entries {
                    overlay.write(*sector, &bytes[..]);
                }
            }
            (sequence.wrapping_add(1), entries.len() as u64)
        }
    };
    if mode != Mode::ReadWrite {
        return Ok((None, recovered));
    }
    let mut journal = Journal {
        file: journal,
        sequence,
        dirty: !bytes.is_empty(),
    };
    if journal.dirty {
        journal.empty().map_err(journal_error)?;
    }
    Ok((Some(journal), recovered))
}
