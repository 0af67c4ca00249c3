//! Fata's HTTP/1.1 server: the service layer that serves a read-only site over fata-net.
//!
//! Two parts, kept apart like smoltcp keeps wire formats apart from state machines:
//! - a **clock-free core**, [`Server::respond`]: bytes received and the time in, a response head
//!   appended to a buffer and the body to send out. It parses with httparse and handles GET and
//!   HEAD, keep-alive and pipelining, `ETag` / `If-None-Match` (304), `Content-Type`,
//!   `Content-Length`, `Date`, and answers 400, 404, 405, 408, 413, 414 and 431 with short plain
//!   text bodies. Tests and the fuzz target drive it directly.
//! - a thin **connection loop**, [`serve_connection`] (feature `net`, on by default): the core over
//!   a fata-net [`TcpStream`](fata_net::TcpStream), with idle, request and write timeouts.
//!
//! Files come from a [`Site`], usually a table a build step generated with `include_bytes!`:
//! bodies are sent from where they lie, and each file's headers and ETag are formatted once, when
//! the site is built, so answering a request allocates nothing.
//!
//! ```no_run
//! # async fn serve(stack: fata_net::Stack) -> fata::Result<()> {
//! use fata_http::{File, Limits, Server, Site, Timeouts};
//! static FILES: &[File<'static>] = &[File {
//!     path: "/index.html",
//!     body: b"<h1>hello</h1>",
//!     content_type: "text/html; charset=utf-8",
//!     etag: "\"1\"",
//! }];
//! let server: &'static Server<'static> =
//!     alloc::boxed::Box::leak(alloc::boxed::Box::new(Server::new(Site::new(FILES), Limits::default())));
//! let listener = fata_net::TcpListener::bind(&stack, 80)?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     fata::spawn(fata_http::serve_connection(server, stream, Timeouts::default())).detach();
//! }
//! # }
//! # extern crate alloc;
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod date;
#[cfg(feature = "net")]
mod net;
mod problem;
mod request;
mod server;
mod site;
mod target;
#[cfg(test)]
mod tests;
mod text;

pub use date::{HTTP_DATE_LEN, http_date};
#[cfg(feature = "net")]
pub use net::{Timeouts, serve_connection};
pub use server::{Limits, MAX_HEADERS, Outcome, Server};
pub use site::{File, Site, content_type, etag};
