//! From a request target to the path of a file: the form of the target, then percent-decoding.

use crate::text::starts_with_ignore_case;

/// The path of a request target in origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b?q`), without query or fragment; `None` when it is neither.
pub(crate) fn path_of(target: &[u8]) -> Option<&[u8]> {
    let path = if target.starts_with(b"/") {
        target
    } else {
        let scheme_len = if starts_with_ignore_case(target, b"http://") {
            7
        } else if starts_with_ignore_case(target, b"https://") {
            8
        } else {
            return None;
        };
        let rest = &target[scheme_len..];
        match rest.iter().position(|&b| b == b'/' || b == b'?') {
            Some(at) if rest[at] == b'/' => &rest[at..],
            _ => b"/",
        }
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    Some(&path[..end])
}

/// Percent-decodes `path` into `buf`: `Ok(None)` when it does not fit (so it names no file),
/// `Err` when an escape is malformed.
pub(crate) fn percent_decode<'b>(path: &[u8], buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, ()> {
    let mut len = 0;
    let mut at = 0;
    let mut fits = true;
    while at < path.len() {
        let byte = if path[at] == b'%' {
            let hex = path.get(at + 1..at + 3).ok_or(())?;
            let value = hex_value(hex[0]).zip(hex_value(hex[1])).ok_or(())?;
            at += 3;
            value.0 << 4 | value.1
        } else {
            at += 1;
            path[at - 1]
        };
        match buf.get_mut(len) {
            Some(slot) => *slot = byte,
            None => fits = false,
        }
        len += 1;
    }
    Ok(fits.then_some(&buf[..len]))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}
