//! The HTTP core must answer any bytes without panicking: each call either asks for more input
//! or consumes part of it and appends one well-formed response head; pipelined input is worked
//! through to the end.
#![no_main]

use fata_http::{File, Limits, Outcome, Server, Site};
use libfuzzer_sys::fuzz_target;

static FILES: &[File<'static>] = &[
    File { path: "/index.html", body: b"<h1>home</h1>", content_type: "text/html", etag: "\"a1\"" },
    File { path: "/style.css", body: b"body{}", content_type: "text/css", etag: "W/\"b2\"" },
    File { path: "/docs/a b.html", body: b"x", content_type: "text/html", etag: "\"c3\"" },
];

fuzz_target!(|data: &[u8]| {
    let server = Server::new(Site::new(FILES), Limits::default());
    let limits = *server.limits();
    // The first eight bytes pick the time; the rest is what a client sent.
    let (now, input) = match data.split_first_chunk::<8>() {
        Some((now, rest)) => (u64::from_le_bytes(*now), rest),
        None => (0, data),
    };
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        out.clear();
        match server.respond(&input[at..], now, &mut out) {
            Outcome::Incomplete => {
                assert!(input.len() - at < limits.buffer_len(), "a full buffer gets an answer");
                assert!(out.is_empty());
                break;
            }
            Outcome::Respond { consumed, body, status, close } => {
                assert!(consumed <= input.len() - at);
                assert!(out.starts_with(b"HTTP/1.1 ") && out.ends_with(b"\r\n\r\n"));
                assert!((200..600).contains(&status));
                assert!(out.windows(6).any(|w| w == b"Date: "));
                if status == 200 {
                    assert!(FILES.iter().any(|f| f.body == body) || body.is_empty());
                }
                if close || consumed == 0 {
                    break;
                }
                at += consumed;
            }
        }
    }
});
