//! The clock-free core: bytes of requests in, response heads out, with the body to send after.

use alloc::vec::Vec;
use core::cell::Cell;

use crate::date::{HTTP_DATE_LEN, http_date};
use crate::problem::Problem;
use crate::request::{Method, Request, method};
use crate::site::{Entry, MAX_PATH, Site};
use crate::target::{path_of, percent_decode};
use crate::text::push_decimal;

/// Most header lines a request may carry (beyond: 431).
pub const MAX_HEADERS: usize = 64;

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
        let mut head = httparse::Request::new(&mut headers);
        let head_len = match self.parse_head(&mut head, input) {
            Ok(Some(len)) => len,
            Ok(None) => return Outcome::Incomplete,
            Err(problem) => return self.refuse(problem, false, input.len(), now_secs, out),
        };
        let is_head = method(head.method) == Method::Head;
        let (request, consumed) = match self.frame(&head, head_len) {
            Ok(framed) => framed,
            Err(problem) => return self.refuse(problem, is_head, input.len(), now_secs, out),
        };
        if input.len() < consumed {
            return Outcome::Incomplete;
        }
        match self.find(&request) {
            Ok(entry) => self.send_file(entry, &request, consumed, now_secs, out),
            Err(problem) => self.answer_problem(problem, &request, consumed, now_secs, out),
        }
    }

    /// Appends the `408` sent to a client whose request did not arrive in time; the connection
    /// is then closed.
    pub fn timed_out(&self, now_secs: u64, out: &mut Vec<u8>) -> Outcome<'a> {
        self.refuse(Problem::RequestTimeout, false, 0, now_secs, out)
    }

    /// Parses the head at the start of `input` into `head`: its length once it is whole and
    /// within the limits, `None` while more bytes can still make it so.
    fn parse_head<'b>(
        &self,
        head: &mut httparse::Request<'_, 'b>,
        input: &'b [u8],
    ) -> Result<Option<usize>, Problem> {
        let head_len = match head.parse(input) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return self.check_partial(input).map(|()| None),
            Err(httparse::Error::TooManyHeaders) => return Err(Problem::HeadersTooLarge),
            Err(_) => {
                return Err(Problem::BadRequest(
                    "400 Bad Request: the request is not HTTP/1.1.\n",
                ));
            }
        };
        let line_len = input.iter().position(|&b| b == b'\n').unwrap_or(head_len);
        if line_len > self.limits.max_request_line {
            return Err(Problem::UriTooLong);
        }
        if head_len > self.limits.max_head {
            return Err(Problem::HeadersTooLarge);
        }
        Ok(Some(head_len))
    }

    /// Refuses a head still arriving that is already past a limit, so no client makes the
    /// server wait for more than its buffer holds.
    fn check_partial(&self, input: &[u8]) -> Result<(), Problem> {
        match input.iter().position(|&b| b == b'\n') {
            None if input.len() > self.limits.max_request_line => Err(Problem::UriTooLong),
            Some(end) if end > self.limits.max_request_line => Err(Problem::UriTooLong),
            _ if input.len() >= self.limits.max_head => Err(Problem::HeadersTooLarge),
            _ => Ok(()),
        }
    }

    /// Reads what a whole head asks for; returns it with the bytes the request takes, body
    /// included.
    fn frame<'r>(
        &self,
        head: &httparse::Request<'_, 'r>,
        head_len: usize,
    ) -> Result<(Request<'r>, usize), Problem> {
        let request = Request::read(head)?;
        if request.body_len > self.limits.max_body as u64 {
            return Err(Problem::PayloadTooLarge);
        }
        // At most max_body, so this fits in usize and cannot overflow with head_len.
        let consumed = head_len + request.body_len as usize;
        Ok((request, consumed))
    }

    /// The file a request read whole names, or why it gets none.
    fn find(&self, request: &Request<'_>) -> Result<&Entry<'a>, Problem> {
        if request.method == Method::Other {
            return Err(Problem::MethodNotAllowed);
        }
        let path = path_of(request.target).ok_or(Problem::BadRequest(
            "400 Bad Request: the request target is malformed.\n",
        ))?;
        let mut decoded = [0u8; MAX_PATH];
        match percent_decode(path, &mut decoded) {
            Ok(Some(path)) => self.site.lookup(path).ok_or(Problem::NotFound),
            Ok(None) => Err(Problem::NotFound),
            Err(()) => Err(Problem::BadRequest(
                "400 Bad Request: bad percent-encoding.\n",
            )),
        }
    }

    /// Answers with `entry`: `304` when the client's copy is current, `200` otherwise (without
    /// the body for HEAD).
    fn send_file(
        &self,
        entry: &Entry<'a>,
        request: &Request<'_>,
        consumed: usize,
        now_secs: u64,
        out: &mut Vec<u8>,
    ) -> Outcome<'a> {
        let close = !request.keep_alive;
        let (status, body) = if request.has_current(entry.etag) {
            out.extend_from_slice(&entry.head_not_modified);
            (304, &[][..])
        } else {
            out.extend_from_slice(&entry.head_ok);
            (
                200,
                if request.is_head() {
                    &[][..]
                } else {
                    entry.body
                },
            )
        };
        self.finish_head(close, request.http_10, now_secs, out);
        Outcome::Respond {
            consumed,
            body,
            status,
            close,
        }
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
            body: if request.is_head() {
                &[]
            } else {
                problem.body().as_bytes()
            },
            status: problem.status().0,
            close: !keep_alive,
        }
    }

    /// Answers input that cannot be trusted to be one whole request; the connection is closed.
    fn refuse(
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

    /// Appends the head of a `problem` answer.
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
