//! The host calls fata-blockfile makes outside io_uring: the eventfd, `statx` for direct-I/O
//! alignment, `flock`, and what an errno means for a request.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Status;

/// The status a request gets when the host fails it with `errno`.
pub(crate) fn status_of(errno: i32) -> Status {
    match errno {
        libc::ENOSPC | libc::EDQUOT => Status::NoSpace,
        libc::EOPNOTSUPP => Status::Unsupported,
        _ => Status::IoError,
    }
}

/// The status for a failed host call.
pub(crate) fn status_of_error(error: &io::Error) -> Status {
    error.raw_os_error().map_or(Status::IoError, status_of)
}

/// A new non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor nothing else
    // owns, so OwnedFd may take it.
    unsafe {
        let fd = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Adds one to the eventfd's counter, making it readable.
pub(crate) fn signal(fd: RawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `one` is 8 readable bytes, the size an eventfd write takes. The counter cannot
    // overflow from our writes (it is read back to zero before every wait), so the write cannot
    // fail but for a closed descriptor, which `fd` is not while its owner lives.
    unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
}

/// Reads the eventfd's counter back to zero (nothing happens when it is zero already).
pub(crate) fn clear(fd: RawFd) {
    let mut count = [0u8; 8];
    // SAFETY: `count` is 8 writable bytes, the size an eventfd read takes; the descriptor is
    // non-blocking, so a zero counter gives EAGAIN rather than waiting.
    unsafe { libc::read(fd, count.as_mut_ptr().cast(), count.len()) };
}

/// Direct-I/O alignment: the buffer address and the file offset (and length) must be multiples
/// of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirectAlign {
    /// Alignment of the buffer's address in memory.
    pub memory: u64,
    /// Alignment of the offset and length in the file.
    pub offset: u64,
}

/// What `statx(STATX_DIOALIGN)` says about direct I/O on `file`: `Some` alignment, `None` when the
/// file system says it cannot do direct I/O, and 4096 for both when the kernel does not say.
pub(crate) fn direct_align(file: &File) -> Option<DirectAlign> {
    const FALLBACK: DirectAlign = DirectAlign {
        memory: 4096,
        offset: 4096,
    };
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `stx` is a writable, zeroed statx buffer that outlives the call; the empty path
    // with AT_EMPTY_PATH names the open descriptor itself.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Some(FALLBACK);
    }
    // SAFETY: statx succeeded, so it filled the buffer (and every field was zeroed before).
    let stx = unsafe { stx.assume_init() };
    if stx.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Some(FALLBACK);
    }
    if stx.stx_dio_mem_align == 0 || stx.stx_dio_offset_align == 0 {
        return None;
    }
    Some(DirectAlign {
        memory: u64::from(stx.stx_dio_mem_align),
        offset: u64::from(stx.stx_dio_offset_align),
    })
}

/// Takes an advisory lock on `file` without waiting: exclusive for a device that writes the
/// file, shared for one that only reads it. `Ok(false)` when another open file holds a lock that
/// conflicts.
pub(crate) fn lock(file: &File, exclusive: bool) -> io::Result<bool> {
    let kind = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock takes no pointers and `file` is open.
    let rc = unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_map_to_statuses() {
        assert_eq!(status_of(libc::EIO), Status::IoError);
        assert_eq!(status_of(libc::ENOSPC), Status::NoSpace);
        assert_eq!(status_of(libc::EDQUOT), Status::NoSpace);
        assert_eq!(status_of(libc::EOPNOTSUPP), Status::Unsupported);
        assert_eq!(status_of(libc::EBADF), Status::IoError);
        assert_eq!(status_of_error(&io::Error::other("x")), Status::IoError);
    }

    #[test]
    fn the_eventfd_signals_and_clears() {
        let fd = eventfd().unwrap();
        let readable = |fd: RawFd| {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no waiting.
            unsafe { libc::poll(&mut poll, 1, 0) == 1 }
        };
        assert!(!readable(fd.as_raw_fd()));
        signal(fd.as_raw_fd());
        signal(fd.as_raw_fd());
        assert!(readable(fd.as_raw_fd()));
        clear(fd.as_raw_fd());
        assert!(!readable(fd.as_raw_fd()));
        clear(fd.as_raw_fd());
    }
}
