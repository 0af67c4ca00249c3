//! The core, driven with byte fixtures.

use alloc::string::String;
use alloc::vec::Vec;

use crate::{File, Limits, Outcome, Server, Site};

const NOW: u64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT

static FILES: &[File<'static>] = &[
    File {
        path: "/index.html",
        body: b"<h1>home</h1>",
        content_type: "text/html; charset=utf-8",
        etag: "\"aa11\"",
    },
    File {
        path: "/style.css",
        body: b"body{}",
        content_type: "text/css; charset=utf-8",
        etag: "\"bb22\"",
    },
    File {
        path: "/docs/a b.html",
        body: b"spaced",
        content_type: "text/html; charset=utf-8",
        etag: "\"cc33\"",
    },
];

fn server() -> Server<'static> {
    Server::new(Site::new(FILES), Limits::default())
}

/// One exchange: the response (head and body) as text, the bytes consumed and whether to close.
fn exchange(server: &Server<'_>, input: &[u8]) -> (String, usize, bool) {
    let mut out = Vec::new();
    match server.respond(input, NOW, &mut out) {
        Outcome::Incomplete => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
        Outcome::Respond {
            consumed,
            body,
            close,
            ..
        } => {
            out.extend_from_slice(body);
            (String::from_utf8(out).unwrap(), consumed, close)
        }
    }
}

fn status(response: &str) -> &str {
    &response[9..12]
}

#[test]
fn get_serves_the_file_with_its_headers() {
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (response, consumed, close) = exchange(&server(), request);
    assert_eq!(consumed, request.len());
    assert!(!close);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    for header in [
        "Content-Type: text/html; charset=utf-8\r\n",
        "Content-Length: 13\r\n",
        "ETag: \"aa11\"\r\n",
        "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
    ] {
        assert!(response.contains(header), "{header} in {response}");
    }
    assert!(response.ends_with("\r\n\r\n<h1>home</h1>"), "{response}");
    assert!(!response.contains("Connection"), "{response}");
}

#[test]
fn head_sends_the_headers_only() {
    let (response, _, _) = exchange(&server(), b"HEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), "200");
    assert!(response.contains("Content-Length: 6\r\n"));
    assert!(response.ends_with("\r\n\r\n"), "{response}");
}

#[test]
fn matching_etags_get_304() {
    let s = server();
    for tags in ["\"aa11\"", "W/\"aa11\"", "\"x\", \"aa11\"", "*"] {
        let request =
            alloc::format!("GET /index.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: {tags}\r\n\r\n");
        let (response, _, close) = exchange(&s, request.as_bytes());
        assert!(
            response.starts_with("HTTP/1.1 304 Not Modified\r\n"),
            "{tags}: {response}"
        );
        assert!(response.contains("ETag: \"aa11\"\r\n"));
        assert!(!response.contains("Content-Length"));
        assert!(response.ends_with("\r\n\r\n"));
        assert!(!close);
    }
    let (response, _, _) = exchange(
        &s,
        b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\"\r\n\r\n",
    );
    assert_eq!(status(&response), "200");
}

#[test]
fn pipelined_requests_are_answered_one_by_one() {
    let s = server();
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nHEAD /style.css HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET";
    let mut at = 0;
    let mut statuses = Vec::new();
    loop {
        let mut out = Vec::new();
        match s.respond(&input[at..], NOW, &mut out) {
            Outcome::Incomplete => break,
            Outcome::Respond {
                consumed,
                status,
                close,
                ..
            } => {
                at += consumed;
                statuses.push(status);
                if close {
                    break;
                }
            }
        }
    }
    assert_eq!(statuses, [200, 200, 404]);
    assert_eq!(&input[at..], b"GET");
}

#[test]
fn partial_requests_ask_for_more() {
    let s = server();
    let full = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
    for len in 0..full.len() {
        assert_eq!(
            s.respond(&full[..len], NOW, &mut Vec::new()),
            Outcome::Incomplete,
            "{len}"
        );
    }
}

#[test]
fn connection_management_follows_the_version() {
    let s = server();
    let (r, _, close) = exchange(&s, b"GET / HTTP/1.0\r\n\r\n");
    assert!(close && r.contains("Connection: close\r\n"), "{r}");
    let (r, _, close) = exchange(&s, b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert!(!close && r.contains("Connection: keep-alive\r\n"), "{r}");
    let (r, _, close) = exchange(
        &s,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(close && r.contains("Connection: close\r\n"), "{r}");
}

#[test]
fn paths_are_decoded_and_stripped() {
    let s = server();
    for target in [
        "/docs/a%20b.html",
        "/docs/a%20b.html?x=1",
        "http://example.com/docs/a%20b.html",
        "HTTP://EXAMPLE.COM/docs/a%20b.html#frag",
    ] {
        let request = alloc::format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let (response, _, _) = exchange(&s, request.as_bytes());
        assert!(response.ends_with("spaced"), "{target}: {response}");
    }
    let (response, _, _) = exchange(&s, b"GET http://example.com HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.ends_with("<h1>home</h1>"), "{response}");
    let (response, _, close) = exchange(&s, b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), "400");
    assert!(close);
    let (response, _, _) = exchange(&s, b"GET index.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&response), "400");
}

#[test]
fn errors_have_small_clear_bodies() {
    let s = server();
    let cases: &[(&[u8], &str, bool)] = &[
        (b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n", "404", false),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            "405",
            false,
        ),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", "405", false),
        (b"GET / HTTP/1.1\r\n\r\n", "400", true),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400", true),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "400", true),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n",
            "413",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
            "400",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400",
            true,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400", true),
    ];
    for &(request, code, close) in cases {
        let (response, consumed, closed) = exchange(&s, request);
        assert_eq!(status(&response), code, "{response}");
        assert_eq!(closed, close, "{response}");
        assert!(consumed <= request.len());
        let body = response.split("\r\n\r\n").nth(1).unwrap();
        assert!(body.starts_with(code) && body.ends_with(".\n"), "{body:?}");
        let length = alloc::format!("Content-Length: {}\r\n", body.len());
        assert!(response.contains(&length), "{response}");
    }
    let (response, _, _) = exchange(&s, b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(response.contains("Allow: GET, HEAD\r\n"));
}

#[test]
fn oversized_requests_are_refused() {
    let s = server();
    let limits = Limits::default();
    let mut long_line = Vec::from(&b"GET /"[..]);
    long_line.resize(limits.max_request_line + 10, b'a');
    let (response, _, close) = exchange(&s, &long_line);
    assert_eq!(status(&response), "414");
    assert!(close);
    long_line.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status(&exchange(&s, &long_line).0), "414");

    let mut big_head = Vec::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
    while big_head.len() < limits.max_head {
        big_head.extend_from_slice(b"X-Filler: 0123456789abcdef0123456789abcdef\r\n");
    }
    assert_eq!(status(&exchange(&s, &big_head).0), "431");
    let mut many = Vec::from(&b"GET / HTTP/1.1\r\nHost: x\r\n"[..]);
    for _ in 0..crate::MAX_HEADERS {
        many.extend_from_slice(b"A: b\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(status(&exchange(&s, &many).0), "431");
}

#[test]
fn timeouts_answer_408() {
    let mut out = Vec::new();
    let Outcome::Respond { status, close, .. } = server().timed_out(NOW, &mut out) else {
        panic!()
    };
    assert_eq!((status, close), (408, true));
}

#[test]
fn any_bytes_get_an_answer_or_a_request_for_more() {
    let s = server();
    let limits = *s.limits();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"GET HEAD / HTTP/1.1\r\n:Host %20?#*xW/\"\t\x00\xff";
    for _ in 0..20_000 {
        let len = (next() % 200) as usize;
        let input: Vec<u8> = (0..len)
            .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
            .collect();
        let mut out = Vec::new();
        match s.respond(&input, next() % 300_000_000_000, &mut out) {
            Outcome::Incomplete => assert!(input.len() < limits.buffer_len()),
            Outcome::Respond { consumed, .. } => {
                assert!(consumed <= input.len());
                assert!(out.starts_with(b"HTTP/1.1 ") && out.ends_with(b"\r\n\r\n"));
            }
        }
    }
}

#[test]
fn sites_report_their_files() {
    let site = Site::new(FILES);
    assert_eq!(site.len(), 3);
    assert_eq!(site.total_bytes(), 13 + 6 + 6);
    assert!(site.paths().any(|p| p == b"/style.css"));
}
