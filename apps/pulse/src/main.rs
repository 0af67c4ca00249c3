//! A heartbeat for the lifecycle tests (pause, snapshot, restore, migration): what they check,
//! served on one interface (`service`; `--ipv4` and `--ipv6`, see fata_net::OPTIONS).
//!
//! - DNS on UDP port 53: `pulse.test. A` and `AAAA` are the app's own addresses (those it has),
//!   `clock.pulse.test. TXT` the
//!   clock text `mono=NS wall=NS ticks=N` (the monotonic and the wall clock in nanoseconds, and
//!   the ticks so far), every record with TTL 0;
//! - HTTP/1.1 on TCP port 80, one request per connection: `GET /clock` is the same text, and
//!   `GET /bytes/N` streams N bytes where byte `i` is `(i * 7 + i / 4096) mod 251`, so a client
//!   checks a download of any size byte for byte (a lost, doubled or misplaced 4 KiB block
//!   shows) while the app holds none of it;
//! - a ticker counts ticks every 100 ms and checks that the monotonic clock never went back: if
//!   it did, the app prints `pulse: clock went backwards` and exits with status 1.
//!
//! It prints `pulse: ready on ADDRESS` once both servers listen.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use fata::{Clock, Duration, Env, Error, Instant, Result, SysClock, println};
use fata_dns::wire::rtype;
use fata_dns::{Name, RData, Server, Transport, Zone, ZoneSet};
use fata_net::{Addresses, Stack, TcpListener, TcpStream, UdpSocket};

/// How often the ticker looks at the clock.
const TICK: Duration = Duration::from_millis(100);
/// A client that has not sent its whole request head by then is disconnected.
const REQUEST_WITHIN: Duration = Duration::from_secs(10);

/// The body of a 404 or 400.
const USAGE: &str = "pulse serves GET /clock and GET /bytes/N\n";

/// Ticks so far.
static TICKS: AtomicU64 = AtomicU64::new(0);

#[fata::main(options = [fata_net::OPTIONS])]
async fn main(mut env: Env) -> Result<()> {
    let stack = Stack::from_env(&mut env)?;
    let addresses = stack.wait_configured().await;
    let dns = UdpSocket::bind(&stack, 53)?;
    let http = TcpListener::bind(&stack, 80)?;
    println!("pulse: ready on {addresses} (DNS on UDP 53, HTTP on TCP 80)");
    fata::spawn(serve_dns(dns, addresses)).detach();
    fata::spawn(serve_http(http)).detach();
    let mut last = Instant::now();
    loop {
        fata::sleep(TICK).await;
        let now = Instant::now();
        if now < last {
            println!("pulse: clock went backwards");
            return Err(Error::msg(format!(
                "the monotonic clock went from {} ns back to {} ns",
                last.as_nanos(),
                now.as_nanos()
            )));
        }
        last = now;
        TICKS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The clocks and the ticks, as DNS and HTTP report them.
fn clock_text() -> String {
    format!(
        "mono={} wall={} ticks={}",
        Instant::now().as_nanos(),
        SysClock.wall_clock_ns(),
        TICKS.load(Ordering::Relaxed)
    )
}

/// Byte `i` of every `/bytes/N` download: `(i * 7 + i / 4096) mod 251`, computed without
/// overflow.
fn pattern(i: u64) -> u8 {
    ((i % 251 * 7 + i / 4096 % 251) % 251) as u8
}

async fn serve_dns(socket: UdpSocket, addresses: Addresses) {
    let mut query = [0u8; 1500];
    let mut response = Vec::with_capacity(512);
    loop {
        let Ok((len, from)) = socket.recv_from(&mut query).await else {
            continue;
        };
        if answer(&query[..len], &addresses, &mut response) == Ok(true) {
            // A full send buffer drops the answer, as a congested network would.
            let _ = socket.send_to(&response, from).await;
        }
    }
}

/// Writes the answer to `query` from the zone `pulse.test.` as it is now; false when the
/// message deserves none. The clock record changes with every query, so the zone (four
/// records) is made afresh each time.
fn answer(
    query: &[u8],
    addresses: &Addresses,
    out: &mut Vec<u8>,
) -> core::result::Result<bool, fata_dns::Error> {
    let apex = Name::from_ascii("pulse.test.")?;
    let mut zone = Zone::new(apex.clone());
    let mailbox = Name::from_ascii("hostmaster.pulse.test.")?;
    // Serial, refresh, retry, expire, and a negative-answer TTL of 0.
    let soa = RData::Soa(apex.clone(), mailbox, [1, 3600, 600, 86400, 0]);
    zone.add(apex.clone(), rtype::SOA, 0, soa)?;
    zone.add(apex.clone(), rtype::NS, 0, RData::Name(apex.clone()))?;
    if let Some(v4) = addresses.ipv4_address() {
        zone.add(apex.clone(), rtype::A, 0, RData::Raw(v4.octets().to_vec()))?;
    }
    if let Some(v6) = addresses.ipv6_address() {
        zone.add(apex, rtype::AAAA, 0, RData::Raw(v6.octets().to_vec()))?;
    }
    // One character-string: the text is far shorter than its 255-byte limit.
    let text = clock_text();
    let mut txt = Vec::with_capacity(1 + text.len());
    txt.push(text.len() as u8);
    txt.extend_from_slice(text.as_bytes());
    let clock = Name::from_ascii("clock.pulse.test.")?;
    zone.add(clock, rtype::TXT, 0, RData::Raw(txt))?;
    let mut zones = ZoneSet::new();
    zones.insert(zone)?;
    Ok(Server::new(zones, 0).answer(query, Transport::Udp, out))
}

async fn serve_http(listener: TcpListener) {
    loop {
        // A connection reset before it was accepted is not the server's problem.
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        fata::spawn(serve_request(stream)).detach();
    }
}

/// What a client asked for.
enum Request {
    /// `GET` of this path.
    Get(String),
    /// Anything else, or a head too large for pulse.
    Bad,
    /// The connection ended or timed out before a whole head arrived.
    Gone,
}

/// Answers one request, then closes the connection.
async fn serve_request(mut stream: TcpStream) {
    let request = fata::timeout(REQUEST_WITHIN, read_request(&mut stream)).await;
    // The body: `text`, or `download` bytes of the pattern.
    let (status, content_type, text, download) = match request.unwrap_or(Request::Gone) {
        Request::Gone => return,
        Request::Get(path) if path == "/clock" => ("200 OK", "text/plain", clock_text() + "\n", 0),
        Request::Get(path) => match path.strip_prefix("/bytes/").map(str::parse::<u64>) {
            Some(Ok(len)) => ("200 OK", "application/octet-stream", String::new(), len),
            _ => ("404 Not Found", "text/plain", String::from(USAGE), 0),
        },
        Request::Bad => ("400 Bad Request", "text/plain", String::from(USAGE), 0),
    };
    let len = text.len() as u64 + download;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: close\r\n\r\n{text}"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut chunk = [0u8; 16384];
    let mut at = 0;
    while at < download {
        let n = (download - at).min(chunk.len() as u64) as usize;
        for (k, byte) in chunk[..n].iter_mut().enumerate() {
            *byte = pattern(at + k as u64);
        }
        if stream.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        at += n as u64;
    }
    stream.shutdown();
    let _ = stream.flush().await;
}

/// Reads a request head (its body, if any, is never read: the connection closes after the
/// answer).
async fn read_request(stream: &mut TcpStream) -> Request {
    let mut head = [0u8; 4096];
    let mut len = 0;
    loop {
        match stream.read(&mut head[len..]).await {
            Ok(0) | Err(_) => return Request::Gone,
            Ok(n) => len += n,
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return match (request.method, request.path) {
                    (Some("GET"), Some(path)) => Request::Get(String::from(path)),
                    _ => Request::Bad,
                };
            }
            Ok(httparse::Status::Partial) if len < head.len() => {}
            _ => return Request::Bad,
        }
    }
}
