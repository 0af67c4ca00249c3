//! The clock-free core: bytes of requests in, response heads out, with the body to send after.

use alloc::vec::Vec;
use core::cell::Cell;

use crate::date::{HTTP_DATE_LEN, http_date};
use crate::site::Site;

/// Most header lines a request may carry (beyond: 431).
pub const MAX_HEADERS: usize = 64;
/// Longest decoded path looked up; longer ones cannot name a file (404).
pub(crate) const MAX_PATH: usize = 1024;

/// Bounds on what a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (`GET /path HTTP/1.1`), in bytes; beyond it: 414.
    pub max_request_line: usize,
    /// Longest request head (request line and headers), in bytes; beyond it: 431.
    pub max_head: usize,
    /// Largest request body the server reads past (and ignores); beyond it: 413.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 4096,
            max_head: 8192,
            max_body: 1024,
        }
    }
}

impl Limits {
    /// How many bytes a connection must be able to hold to see any acceptable request whole.
    pub fn buffer_len(&self) -> usize {
        self.max_head + self.max_body
    }
}

/// What to do after looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// No complete request yet: read more (within the limits, which `respond` enforces).
    Incomplete,
    /// The first `consumed` bytes were one request; its response head was appended to the output.
    Respond {
        /// Bytes of input the request took (head and body).
        consumed: usize,
        /// The response body to send right after the head (empty for HEAD, 304 and the like).
        body: &'a [u8],
        /// The status code sent.
        status: u16,
        /// Whether to close the connection once the response is sent.
        close: bool,
    },
}

/// An HTTP/1.1 server for a [`Site`]: GET and HEAD, ETag validation, keep-alive, pipelining.
///
/// It owns no clock and does no I/O: [`Server::respond`] takes the bytes received and the wall
/// clock's seconds (for `Date`), appends the response head to a buffer and names the body to send.
#[derive(Debug)]
pub struct Server<'a> {
    site: Site<'a>,
    limits: Limits,
    /// The last second formatted for `Date`, and its text.
    date: Cell<(u64, [u8; HTTP_DATE_LEN])>,
}

/// Status codes the server answers with on its own, with their reason phrase and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
}

impl Problem {
    fn status(self) -> (u16, &'static str) {
        match self {
            Problem::BadRequest(_) => (400, "Bad Request"),
            Problem::NotFound => (404, "Not Found"),
            Problem::MethodNotAllowed => (405, "Method Not Allowed"),
            Problem::RequestTimeout => (408, "Request Timeout"),
            Problem::PayloadTooLarge => (413, "Content Too Large"),
            Problem::UriTooLong => (414, "URI Too Long"),
            Problem::HeadersTooLarge => (431, "Request Header Fields Too Large"),
        }
    }

    fn body(self) -> &'static str {
        match self {
            Problem::BadRequest(why) => why,
            Problem::NotFound => "404 Not Found: there is no page at this address.\n",
            Problem::MethodNotAllowed => {
                "405 Method Not Allowed: this server answers GET and HEAD only.\n"
            }
            Problem::RequestTimeout => {
                "408 Request Timeout: the request took too long to arrive.\n"
            }
            Problem::PayloadTooLarge => "413 Content Too Large: request bodies are not accepted.\n",
            Problem::UriTooLong => "414 URI Too Long: the request line is too long.\n",
            Problem::HeadersTooLarge => {
                "431 Request Header Fields Too Large: the request's headers are too large.\n"
            }
        }
    }

    /// Whether the connection can go on after this answer (the request was read whole).
    fn keeps_connection(self) -> bool {
        matches!(self, Problem::NotFound | Problem::MethodNotAllowed)
    }
}

/// What a parsed request asks for, as far as the response depends on it.
struct Request<'r> {
    head: bool,
    target: &'r [u8],
    keep_alive: bool,
    /// HTTP/1.0, where keep-alive must be confirmed with a `Connection` header.
    http_10: bool,
    if_none_match: Option<&'r [u8]>,
}

impl<'a> Server<'a> {
    /// A server for `site` enforcing `limits`.
    pub fn new(site: Site<'a>, limits: Limits) -> Server<'a> {
        Server {
            site,
            limits,
            date: Cell::new((0, http_date(0))),
        }
    }

    /// The site it serves.
    pub fn site(&self) -> &Site<'a> {
        &self.site
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Looks at `input`, the bytes received and not yet consumed, and either asks for more or
    /// answers its first request: the response head is appended to `out` and the body returned.
    /// `now_secs` is the wall clock in seconds since 1970, for `Date`. Never panics; any input
    /// gets a response or a request for more bytes within [`Limits`].
    pub fn respond(&self, input: &[u8], now_secs: u64, out: &mut Vec<u8>) -> Outcome<'a> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let head_len = match request.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                let line_end = input.iter().position(|&b| b == b'\n');
                let problem = match line_end {
                    None if input.len() > self.limits.max_request_line => Problem::UriTooLong,
                    Some(end) if end > self.limits.max_request_line => Problem::UriTooLong,
                    _ if input.len() >= self.limits.max_head => Problem::HeadersTooLarge,
                    _ => return Outcome::Incomplete,
                };
                return self.problem(problem, false, input.len(), now_secs, out);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return self.problem(Problem::HeadersTooLarge, false, input.len(), now_secs, out);
            }
            Err(_) => {
                let problem =
                    Problem::BadRequest("400 Bad Request: the request is not HTTP/1.1.\n");
                return self.problem(problem, false, input.len(), now_secs, out);
            }
        };
        let line_len = input.iter().position(|&b| b == b'\n').unwrap_or(head_len);
        if line_len > self.limits.max_request_line {
            return self.problem(Problem::UriTooLong, false, input.len(), now_secs, out);
        }
        if head_len > self.limits.max_head {
            return self.problem(Problem::HeadersTooLarge, false, input.len(), now_secs, out);
        }
        let method = request.method.unwrap_or("");
        let is_head = method == "HEAD";
        let parsed = match check(&request) {
            Ok(parsed) => parsed,
            Err(problem) => return self.problem(problem, is_head, input.len(), now_secs, out),
        };
        let (content_length, request) = parsed;
        if content_length > self.limits.max_body as u64 {
            return self.problem(
                Problem::PayloadTooLarge,
                is_head,
                input.len(),
                now_secs,
                out,
            );
        }
        // At most max_body, so this fits in usize and cannot overflow with head_len.
        let consumed = head_len + content_length as usize;
        if input.len() < consumed {
            return Outcome::Incomplete;
        }
        if method != "GET" && !is_head {
            return self.answer_problem(
                Problem::MethodNotAllowed,
                &request,
                consumed,
                now_secs,
                out,
            );
        }
        let Some(path) = decode_target(request.target) else {
            let problem =
                Problem::BadRequest("400 Bad Request: the request target is malformed.\n");
            return self.problem(problem, is_head, consumed, now_secs, out);
        };
        let mut decoded = [0u8; MAX_PATH];
        let entry = match percent_decode(path, &mut decoded) {
            Ok(Some(path)) => self.site.lookup(path),
            Ok(None) => None,
            Err(()) => {
                let problem = Problem::BadRequest("400 Bad Request: bad percent-encoding.\n");
                return self.problem(problem, is_head, consumed, now_secs, out);
            }
        };
        let Some(entry) = entry else {
            return self.answer_problem(Problem::NotFound, &request, consumed, now_secs, out);
        };
        let close = !request.keep_alive;
        let (status, body) = if request
            .if_none_match
            .is_some_and(|tags| etag_matches(tags, entry.etag))
        {
            out.extend_from_slice(&entry.head_not_modified);
            (304, &[][..])
        } else {
            out.extend_from_slice(&entry.head_ok);
            (200, if request.head { &[][..] } else { entry.body })
        };
        self.finish_head(close, request.http_10, now_secs, out);
        Outcome::Respond {
            consumed,
            body,
            status,
            close,
        }
    }

    /// Appends the `408` sent to a client whose request did not arrive in time; the connection
    /// is then closed.
    pub fn timed_out(&self, now_secs: u64, out: &mut Vec<u8>) -> Outcome<'a> {
        self.problem(Problem::RequestTimeout, false, 0, now_secs, out)
    }

    /// Answers a request that was read whole, keeping the connection when the client asked to.
    fn answer_problem(
        &self,
        problem: Problem,
        request: &Request<'_>,
        consumed: usize,
        now_secs: u64,
        out: &mut Vec<u8>,
    ) -> Outcome<'a> {
        let keep_alive = request.keep_alive && problem.keeps_connection();
        self.error_response(problem, keep_alive, request.http_10, now_secs, out);
        Outcome::Respond {
            consumed,
            body: if request.head {
                &[]
            } else {
                problem.body().as_bytes()
            },
            status: problem.status().0,
            close: !keep_alive,
        }
    }

    /// Answers input that cannot be trusted to be one whole request; the connection is closed.
    fn problem(
        &self,
        problem: Problem,
        head: bool,
        consumed: usize,
        now_secs: u64,
        out: &mut Vec<u8>,
    ) -> Outcome<'a> {
        self.error_response(problem, false, false, now_secs, out);
        Outcome::Respond {
            consumed,
            body: if head { &[] } else { problem.body().as_bytes() },
            status: problem.status().0,
            close: true,
        }
    }

    fn error_response(
        &self,
        problem: Problem,
        keep_alive: bool,
        http_10: bool,
        now_secs: u64,
        out: &mut Vec<u8>,
    ) {
        let (code, reason) = problem.status();
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, usize::from(code));
        out.push(b' ');
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(
            b"\r\nServer: fata\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ",
        );
        push_decimal(out, problem.body().len());
        out.extend_from_slice(b"\r\n");
        if problem == Problem::MethodNotAllowed {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        self.finish_head(!keep_alive, http_10, now_secs, out);
    }

    /// Appends `Date`, `Connection` when needed (HTTP/1.0 clients kept alive get it spelled out;
    /// HTTP/1.1 assumes it), and the blank line ending the head.
    fn finish_head(&self, close: bool, http_10: bool, now_secs: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&self.date(now_secs));
        if close {
            out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        } else if http_10 {
            out.extend_from_slice(b"\r\nConnection: keep-alive\r\n\r\n");
        } else {
            out.extend_from_slice(b"\r\n\r\n");
        }
    }

    /// `Date` for `now_secs`, formatted once per second.
    fn date(&self, now_secs: u64) -> [u8; HTTP_DATE_LEN] {
        let (secs, text) = self.date.get();
        if secs == now_secs && secs != 0 {
            return text;
        }
        let text = http_date(now_secs);
        self.date.set((now_secs, text));
        text
    }
}

/// Checks the request's framing and headers; returns its body length and what it asks for.
fn check<'r>(request: &httparse::Request<'_, 'r>) -> Result<(u64, Request<'r>), Problem> {
    let version = request.version.unwrap_or(1);
    let mut content_length: Option<u64> = None;
    let mut host = false;
    let mut close = false;
    let mut keep_alive = false;
    let mut if_none_match = None;
    for header in request.headers.iter() {
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
            if content_length.is_some_and(|l| l != length) {
                return Err(Problem::BadRequest(
                    "400 Bad Request: conflicting Content-Length.\n",
                ));
            }
            content_length = Some(length);
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
    let request = Request {
        head: request.method == Some("HEAD"),
        target: request.path.unwrap_or("").as_bytes(),
        keep_alive: if version == 1 {
            !close
        } else {
            keep_alive && !close
        },
        http_10: version == 0,
        if_none_match,
    };
    Ok((content_length.unwrap_or(0), request))
}

/// The path of a request target in origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b?q`), without query or fragment; `None` when it is neither.
fn decode_target(target: &[u8]) -> Option<&[u8]> {
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
fn percent_decode<'b>(path: &[u8], buf: &'b mut [u8]) -> Result<Option<&'b [u8]>, ()> {
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

/// Whether an `If-None-Match` value names `etag` (weak comparison, RFC 9110 section 13.1.2).
fn etag_matches(tags: &[u8], etag: &[u8]) -> bool {
    let tags = trim(tags);
    if tags == b"*" {
        return true;
    }
    let etag = strip_weak(etag);
    tags.split(|&b| b == b',')
        .any(|tag| strip_weak(trim(tag)) == etag)
}

/// An entity tag without its weakness mark `W/`.
fn strip_weak(tag: &[u8]) -> &[u8] {
    match tag {
        [b'W', b'/', rest @ ..] => rest,
        _ => tag,
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |at| at + 1);
    &bytes[start..end]
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// A Content-Length value: ASCII digits only, at most 18 of them.
fn parse_decimal(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Appends `value` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, value: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}
