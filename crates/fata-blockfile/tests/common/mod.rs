//! Helpers for the tests: page-aligned buffers and running requests to completion.

#![allow(dead_code)] // each test file uses its own subset

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use fata_blockfile::{BlockFile, Op, Request, Status};

/// One page of a [`Buffer`].
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Page-aligned memory for requests, as the guest and `fata::BlockBuffer` give it.
pub struct Buffer {
    pages: Vec<Page>,
    len: usize,
}

impl Buffer {
    /// `len` bytes of `fill`.
    pub fn new(len: usize, fill: u8) -> Buffer {
        Buffer {
            pages: vec![Page([fill; 4096]); len.div_ceil(4096)],
            len,
        }
    }

    /// `len` bytes that differ from sector to sector and from one `seed` to another.
    pub fn pattern(len: usize, seed: u64) -> Buffer {
        let mut buffer = Buffer::new(len, 0);
        fill_pattern(buffer.as_mut_slice(), seed);
        buffer
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the pages are plain bytes, contiguous, and hold at least `len` of them.
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// The address a request gets.
    pub fn ptr(&mut self) -> *mut u8 {
        self.pages.as_mut_ptr().cast()
    }
}

/// Fills `bytes` with a pattern of `seed` (each 8-byte word names the seed and its position).
pub fn fill_pattern(bytes: &mut [u8], seed: u64) {
    for (index, word) in bytes.chunks_mut(8).enumerate() {
        let value = (seed << 32) ^ index as u64 ^ 0x9e37_79b9_7f4a_7c15;
        word.copy_from_slice(&value.to_le_bytes()[..word.len()]);
    }
}

/// A request over `buffer`.
pub fn request(tag: u64, op: Op, sector: u64, buffer: &mut Buffer) -> Request {
    Request {
        tag,
        op,
        sector,
        len: buffer.len as u64,
        buf: buffer.ptr(),
    }
}

/// A flush.
pub fn flush(tag: u64) -> Request {
    Request {
        tag,
        op: Op::Flush,
        sector: 0,
        len: 0,
        buf: std::ptr::null_mut(),
    }
}

/// A discard of `sectors` sectors from `sector`.
pub fn discard(tag: u64, sector: u64, sectors: u64) -> Request {
    Request {
        tag,
        op: Op::Discard,
        sector,
        len: sectors * 512,
        buf: std::ptr::null_mut(),
    }
}

/// Whether `fd` polls readable within `timeout`.
pub fn readable(fd: RawFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call.
    unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as i32) == 1 }
}

/// Submits `requests` together and waits, as a caller does, until every one has completed:
/// `start`, sleep on the completion fd, `complete`. Returns the completions in the order they
/// came.
///
/// # Safety
///
/// The requests' buffers must stay valid and untouched until this returns.
pub unsafe fn run(file: &mut BlockFile, requests: &[Request]) -> Vec<(u64, Status)> {
    for &request in requests {
        // SAFETY: the caller keeps the buffers alive and untouched until every request is done.
        unsafe { file.submit(request) };
    }
    wait(file, requests.len())
}

/// Waits until `count` requests have completed.
pub fn wait(file: &mut BlockFile, count: usize) -> Vec<(u64, Status)> {
    let mut done = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.len() < count {
        file.start().unwrap();
        assert!(
            readable(file.completion_fd(), Duration::from_secs(20)),
            "no completion came"
        );
        file.complete(&mut |tag, status| done.push((tag, status)));
        assert!(
            Instant::now() < deadline,
            "requests did not complete in time"
        );
    }
    assert_eq!(done.len(), count, "more completions than requests");
    done
}

/// Runs one request and returns its status.
///
/// # Safety
///
/// As [`run`].
pub unsafe fn one(file: &mut BlockFile, request: Request) -> Status {
    // SAFETY: passed on from the caller.
    let done = unsafe { run(file, &[request]) };
    assert_eq!(done[0].0, request.tag);
    done[0].1
}

/// Reads `len` bytes at `sector` through the device, which must succeed.
pub fn read(file: &mut BlockFile, sector: u64, len: usize) -> Buffer {
    let mut buffer = Buffer::new(len, 0xaa);
    // SAFETY: `buffer` outlives the request, which completes inside `one`.
    let status = unsafe { one(file, request(99, Op::Read, sector, &mut buffer)) };
    assert_eq!(status, Status::Ok, "reading {len} bytes at sector {sector}");
    buffer
}

/// Writes `buffer` at `sector` through the device.
pub fn write(file: &mut BlockFile, sector: u64, buffer: &mut Buffer, grouped: bool) -> Status {
    // SAFETY: `buffer` outlives the request, which completes inside `one`.
    unsafe { one(file, request(98, Op::Write { grouped }, sector, buffer)) }
}

/// A disk image of `len` zero bytes (sparse) in a directory of its own, where its journal goes
/// too; both are removed on drop.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

impl Image {
    pub fn new(len: u64) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        std::fs::File::create(&path).unwrap().set_len(len).unwrap();
        Image { dir, path }
    }

    /// Where the image's journal is.
    pub fn journal(&self) -> std::path::PathBuf {
        fata_blockfile::journal_path(&self.path)
    }
}

/// The file's bytes, read by the host (not through the device).
pub fn contents(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
