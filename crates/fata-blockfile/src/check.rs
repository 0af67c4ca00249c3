//! Which requests can be served: the length, range and mode rules, as one pure function.

use crate::{Mode, Op, REQUEST_MAX, Request, SECTOR_SIZE, Status};

/// Checks `request` against a device of `sectors` sectors opened in `mode`.
///
/// A flush is always valid (its sector, length and buffer are ignored). A read, write or discard
/// must cover 1 sector to [`REQUEST_MAX`] bytes in whole sectors, and a read or write needs a
/// buffer ([`Status::BadRequest`]); a write or discard on a read-only device is
/// [`Status::ReadOnly`]; sectors past the end, or a range whose end overflows, are
/// [`Status::OutOfRange`]. The checks run in that order, so a malformed request is reported as
/// malformed whatever else is wrong with it.
pub(crate) fn check(request: &Request, sectors: u64, mode: Mode) -> Result<(), Status> {
    let writes = match request.op {
        Op::Flush => return Ok(()),
        Op::Read => false,
        Op::Write { .. } | Op::Discard => true,
    };
    let needs_buffer = !matches!(request.op, Op::Discard);
    if request.len == 0
        || !request.len.is_multiple_of(SECTOR_SIZE)
        || request.len > REQUEST_MAX
        || (needs_buffer && request.buf.is_null())
    {
        return Err(Status::BadRequest);
    }
    if writes && mode == Mode::ReadOnly {
        return Err(Status::ReadOnly);
    }
    match request.sector.checked_add(request.len / SECTOR_SIZE) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(Status::OutOfRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: Op, sector: u64, len: u64) -> Request {
        let mut byte = 0u8;
        Request {
            tag: 1,
            op,
            sector,
            len,
            buf: &mut byte,
        }
    }

    #[test]
    fn lengths_ranges_and_modes() {
        let rw = Mode::ReadWrite;
        let write = Op::Write { grouped: false };
        assert_eq!(check(&request(Op::Read, 0, 512), 8, rw), Ok(()));
        assert_eq!(check(&request(Op::Read, 7, 512), 8, rw), Ok(()));
        assert_eq!(check(&request(Op::Read, 0, 4096), 8, rw), Ok(()));
        assert_eq!(
            check(&request(Op::Read, 1, 4096), 8, rw),
            Err(Status::OutOfRange)
        );
        assert_eq!(
            check(&request(Op::Read, u64::MAX, 512), 8, rw),
            Err(Status::OutOfRange)
        );
        assert_eq!(
            check(&request(Op::Read, u64::MAX - 1, 1024), u64::MAX, rw),
            Err(Status::OutOfRange)
        );
        for len in [0, 100, 513, REQUEST_MAX + 512] {
            assert_eq!(
                check(&request(Op::Read, 0, len), u64::MAX, rw),
                Err(Status::BadRequest),
                "{len}"
            );
        }
        assert_eq!(
            check(&request(Op::Read, 0, REQUEST_MAX), u64::MAX, rw),
            Ok(())
        );
        let mut no_buffer = request(write, 0, 512);
        no_buffer.buf = std::ptr::null_mut();
        assert_eq!(check(&no_buffer, 8, rw), Err(Status::BadRequest));
        let mut discard = request(Op::Discard, 0, 1024);
        discard.buf = std::ptr::null_mut();
        assert_eq!(check(&discard, 8, rw), Ok(()));
        assert_eq!(check(&discard, 8, Mode::ReadOnly), Err(Status::ReadOnly));
        assert_eq!(
            check(&request(write, 0, 512), 8, Mode::ReadOnly),
            Err(Status::ReadOnly)
        );
        assert_eq!(check(&request(write, 0, 512), 8, Mode::CopyOnWrite), Ok(()));
        // Malformed beats read-only, which beats out of range.
        assert_eq!(
            check(&request(write, 100, 3), 8, Mode::ReadOnly),
            Err(Status::BadRequest)
        );
        assert_eq!(
            check(&request(write, 100, 512), 8, Mode::ReadOnly),
            Err(Status::ReadOnly)
        );
        let mut flush = request(Op::Flush, u64::MAX, 3);
        flush.buf = std::ptr::null_mut();
        assert_eq!(check(&flush, 8, Mode::ReadOnly), Ok(()));
    }
}
