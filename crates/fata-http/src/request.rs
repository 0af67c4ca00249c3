//! What a parsed request head asks for, as far as the response depends on it.

use crate::problem::Problem;
use crate::text::{parse_decimal, trim};

/// The request methods the server tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET: the file.
    Get,
    /// HEAD: the file's head only.
    Head,
    /// Anything else: answered 405.
    Other,
}

/// A request whose head has been checked: its framing is sound and it names one target.
#[derive(Debug)]
pub(crate) struct Request<'r> {
    pub(crate) method: Method,
    /// The target as sent, before decoding.
    pub(crate) target: &'r [u8],
    /// Bytes of body after the head (`Content-Length`, 0 without it).
    pub(crate) body_len: u64,
    /// Whether the client wants the connection kept after the response.
    pub(crate) keep_alive: bool,
    /// HTTP/1.0, where keep-alive must be confirmed with a `Connection` header.
    pub(crate) http_10: bool,
    if_none_match: Option<&'r [u8]>,
}

impl<'r> Request<'r> {
    /// Checks the head's framing and headers (one `Host`, required by HTTP/1.1; one
    /// `Content-Length`; no `Transfer-Encoding`) and reads what it asks for.
    pub(crate) fn read(head: &httparse::Request<'_, 'r>) -> Result<Request<'r>, Problem> {
        let version = head.version.unwrap_or(1);
        let mut body_len: Option<u64> = None;
        let mut host = false;
        let mut close = false;
        let mut keep_alive = false;
        let mut if_none_match = None;
        for header in head.headers.iter() {
            let name = header.name.as_bytes();
            if name.eq_ignore_ascii_case(b"host") {
                if host {
                    return Err(Problem::BadRequest(
                        "400 Bad Request: more than one Host header.\n",
                    ));
                }
                host = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let length = parse_decimal(header.value).ok_or(Problem::BadRequest(
                    "400 Bad Request: bad Content-Length.\n",
                ))?;
                if body_len.is_some_and(|l| l != length) {
                    return Err(Problem::BadRequest(
                        "400 Bad Request: conflicting Content-Length.\n",
                    ));
                }
                body_len = Some(length);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                return Err(Problem::BadRequest(
                    "400 Bad Request: request bodies with Transfer-Encoding are not accepted.\n",
                ));
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in header.value.split(|&b| b == b',') {
                    let token = trim(token);
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"if-none-match") {
                if_none_match = Some(header.value);
            }
        }
        if version == 1 && !host {
            return Err(Problem::BadRequest(
                "400 Bad Request: HTTP/1.1 needs a Host header.\n",
            ));
        }
        Ok(Request {
            method: method(head.method),
            target: head.path.unwrap_or("").as_bytes(),
            body_len: body_len.unwrap_or(0),
            keep_alive: if version == 1 {
                !close
            } else {
                keep_alive && !close
            },
            http_10: version == 0,
            if_none_match,
        })
    }

    /// Whether only the head of the response is wanted.
    pub(crate) fn is_head(&self) -> bool {
        self.method == Method::Head
    }

    /// Whether the client's copy is current: its `If-None-Match` names `etag` (weak
    /// comparison, RFC 9110 section 13.1.2) or is `*`.
    pub(crate) fn has_current(&self, etag: &[u8]) -> bool {
        let Some(tags) = self.if_none_match.map(trim) else {
            return false;
        };
        if tags == b"*" {
            return true;
        }
        let etag = strip_weak(etag);
        tags.split(|&b| b == b',')
            .any(|tag| strip_weak(trim(tag)) == etag)
    }
}

/// The method a request line names.
pub(crate) fn method(name: Option<&str>) -> Method {
    match name {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        _ => Method::Other,
    }
}

/// An entity tag without its weakness mark `W/`.
fn strip_weak(tag: &[u8]) -> &[u8] {
    match tag {
        [b'W', b'/', rest @ ..] => rest,
        _ => tag,
    }
}
