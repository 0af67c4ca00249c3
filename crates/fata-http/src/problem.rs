//! The answers the server gives on its own, when a request cannot be served.

/// A status the server answers with on its own, with its reason phrase and plain-text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// 400, with the body saying what was wrong.
    BadRequest(&'static str),
    /// 404: no file at the path.
    NotFound,
    /// 405: a method other than GET and HEAD.
    MethodNotAllowed,
    /// 408: the request did not arrive whole in time.
    RequestTimeout,
    /// 413: a request body over the limit.
    PayloadTooLarge,
    /// 414: a request line over the limit.
    UriTooLong,
    /// 431: a head over the limit, or too many header lines.
    HeadersTooLarge,
}

impl Problem {
    /// The status code and its reason phrase.
    pub(crate) fn status(self) -> (u16, &'static str) {
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

    /// The plain-text body, one line saying what happened.
    pub(crate) fn body(self) -> &'static str {
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
    pub(crate) fn keeps_connection(self) -> bool {
        matches!(self, Problem::NotFound | Problem::MethodNotAllowed)
    }
}
