//! `serve_connection` over real TCP: two of Fata's stacks joined by a loopback pair, a client on
//! one and the server on the other, in one process on plain `cargo test`.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use fata::Instant;
use fata_http::{File, Limits, Server, Site, Timeouts, serve_connection};
use fata_net::{Config, Ipv4Addr, Ipv4Cidr, Loopback, SocketAddr, Stack, TcpListener, TcpStream};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 80;
/// The longest any test may take; the slowest waits out a 300 ms timeout.
const LIMIT: Duration = Duration::from_secs(20);
/// Short enough for tests, long enough that no exchange here comes near it.
const TIMEOUTS: Timeouts = Timeouts {
    idle: Duration::from_millis(300),
    request: Duration::from_millis(300),
    write: Duration::from_secs(5),
};

/// A body larger than the 16 KiB the connection loop gathers, so it is written on its own.
fn big_body() -> &'static [u8] {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    Box::leak(body.into_boxed_slice())
}

fn files() -> Vec<File<'static>> {
    vec![
        File {
            path: "/index.html",
            body: b"<h1>home</h1>",
            content_type: "text/html; charset=utf-8",
            etag: "\"aa11\"",
        },
        File {
            path: "/big.bin",
            body: big_body(),
            content_type: "application/octet-stream",
            etag: "\"bb22\"",
        },
    ]
}

/// Runs `test` with a client stack, after starting the server on the other stack; fails it if
/// it takes longer than the limit.
fn run<F: Future<Output = ()> + 'static>(test: impl FnOnce(Stack) -> F + 'static) {
    fata::block_on(async move {
        let (server_end, client_end) = Loopback::pair();
        let config = |address| Config::ipv4(Ipv4Cidr::new(address, 24), None);
        let server_stack = Stack::new(Box::new(server_end), config(SERVER), 1);
        let client_stack = Stack::new(Box::new(client_end), config(Ipv4Addr::new(10, 0, 0, 2)), 2);
        let listener = TcpListener::bind(&server_stack, PORT).unwrap();
        let server = Rc::new(Server::new(Site::new(&files()), Limits::default()));
        fata::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let server = server.clone();
                fata::spawn(async move { serve_connection(&server, stream, TIMEOUTS).await })
                    .detach();
            }
        })
        .detach();
        fata::timeout(LIMIT, test(client_stack))
            .await
            .expect("the test did not finish in time");
    });
}

/// One response as the client saw it.
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    /// The value of header `name`.
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A client connection that keeps what it read past one response for the next.
struct Client {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl Client {
    async fn connect(stack: &Stack) -> Client {
        let stream = TcpStream::connect(stack, SocketAddr::from((SERVER, PORT)))
            .await
            .unwrap();
        Client {
            stream,
            buffered: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more; false once the server has closed.
    async fn fill(&mut self) -> bool {
        let mut buf = [0; 8192];
        let n = self.stream.read(&mut buf).await.unwrap();
        self.buffered.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Reads one response; `head_only` for the answer to HEAD, whose `Content-Length` comes
    /// without a body.
    async fn response(&mut self, head_only: bool) -> Response {
        let head_len = loop {
            if let Some(at) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.fill().await, "closed before a whole head");
        };
        let head = String::from_utf8(self.buffered.drain(..head_len).collect()).unwrap();
        let status = head[9..12].parse().unwrap();
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        let body_len: usize = match (head_only, response.header("Content-Length")) {
            (false, Some(len)) => len.parse().unwrap(),
            _ => 0,
        };
        while self.buffered.len() < body_len {
            assert!(self.fill().await, "closed before the whole body");
        }
        response.body = self.buffered.drain(..body_len).collect();
        response
    }

    /// Whether the server closes the connection with nothing more sent.
    async fn closes(&mut self) -> bool {
        while self.fill().await {}
        self.buffered.is_empty()
    }
}

/// The `Date` header is an IMF-fixdate, such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn assert_date(response: &Response) {
    let date = response.header("Date").expect("a Date header");
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
}

#[test]
fn get_head_and_404_share_one_keep_alive_connection() {
    run(|stack| async move {
        let mut client = Client::connect(&stack).await;
        client.send(b"GET / HTTP/1.1\r\nHost: fata\r\n\r\n").await;
        let page = client.response(false).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body, b"<h1>home</h1>");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(page.header("ETag"), Some("\"aa11\""));
        assert_eq!(page.header("Connection"), None, "kept alive");
        assert_date(&page);

        client
            .send(b"HEAD /index.html HTTP/1.1\r\nHost: fata\r\n\r\n")
            .await;
        let head = client.response(true).await;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("Content-Length"), Some("13"));

        client
            .send(b"GET /nowhere HTTP/1.1\r\nHost: fata\r\n\r\n")
            .await;
        let missing = client.response(false).await;
        assert_eq!(missing.status, 404);
        assert_eq!(
            missing.body,
            b"404 Not Found: there is no page at this address.\n"
        );

        client
            .send(b"GET / HTTP/1.1\r\nHost: fata\r\nIf-None-Match: \"aa11\"\r\n\r\n")
            .await;
        let unchanged = client.response(true).await;
        assert_eq!(unchanged.status, 304);
        assert!(client.buffered.is_empty(), "a 304 has no body");

        client
            .send(b"GET / HTTP/1.1\r\nHost: fata\r\nConnection: close\r\n\r\n")
            .await;
        let last = client.response(false).await;
        assert_eq!(last.status, 200);
        assert_eq!(last.header("Connection"), Some("close"));
        assert!(client.closes().await);
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    run(|stack| async move {
        let mut client = Client::connect(&stack).await;
        client
            .send(
                b"GET /index.html HTTP/1.1\r\nHost: fata\r\n\r\n\
                  GET /big.bin HTTP/1.1\r\nHost: fata\r\n\r\n\
                  HEAD /missing HTTP/1.1\r\nHost: fata\r\n\r\n\
                  GET / HTTP/1.1\r\nHost: fata\r\n\r\n",
            )
            .await;
        let first = client.response(false).await;
        assert_eq!(
            (first.status, &first.body[..]),
            (200, &b"<h1>home</h1>"[..])
        );
        let big = client.response(false).await;
        assert_eq!(big.status, 200);
        assert!(big.body == big_body(), "the large body arrives byte-exact");
        let missing = client.response(true).await;
        assert_eq!(missing.status, 404);
        let last = client.response(false).await;
        assert_eq!((last.status, &last.body[..]), (200, &b"<h1>home</h1>"[..]));
    });
}

#[test]
fn a_bad_request_gets_400_and_the_connection_closes() {
    run(|stack| async move {
        let mut client = Client::connect(&stack).await;
        client.send(b"GET / HTTP/1.1\r\n\r\n").await;
        let refused = client.response(false).await;
        assert_eq!(refused.status, 400);
        assert_eq!(
            refused.body,
            b"400 Bad Request: HTTP/1.1 needs a Host header.\n"
        );
        assert_eq!(refused.header("Connection"), Some("close"));
        assert!(client.closes().await);

        let mut client = Client::connect(&stack).await;
        client.send(b"\x16\x03\x01 not http at all\r\n\r\n").await;
        assert_eq!(client.response(false).await.status, 400);
        assert!(client.closes().await);
    });
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    run(|stack| async move {
        let mut client = Client::connect(&stack).await;
        client.send(b"GET / HTTP/1.1\r\nHost: fata\r\n\r\n").await;
        assert_eq!(client.response(false).await.status, 200);
        let idle_from = Instant::now();
        assert!(client.closes().await, "closed without a word");
        let waited = idle_from.elapsed();
        assert!(
            waited >= TIMEOUTS.idle && waited < TIMEOUTS.idle + Duration::from_secs(5),
            "closed after {waited:?}"
        );
    });
}

#[test]
fn a_request_that_stops_halfway_gets_408() {
    run(|stack| async move {
        let mut client = Client::connect(&stack).await;
        let started = Instant::now();
        client.send(b"GET / HTTP/1.1\r\nHost: fa").await;
        let late = client.response(false).await;
        let waited = started.elapsed();
        assert_eq!(late.status, 408);
        assert_eq!(
            late.body,
            b"408 Request Timeout: the request took too long to arrive.\n"
        );
        assert!(
            waited >= TIMEOUTS.request && waited < TIMEOUTS.request + Duration::from_secs(5),
            "answered after {waited:?}"
        );
        assert!(client.closes().await);
    });
}
