//! apps/pulse from the outside: its download pattern, its clock text, an HTTP GET, and every
//! check of a running pulse (its DNS answers, a 4 MiB download byte for byte, a clock that moves
//! on), for the pulse and lifecycle tests.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dns::{ask, query, summarize, u16_at};
use super::{Netns, text};
use fata_dns::Name;

const TIMEOUT: Duration = Duration::from_secs(10);
/// The size of the download checked.
pub const DOWNLOAD: usize = 4 << 20;

/// Byte `i` of pulse's `/bytes/N` (see apps/pulse).
pub fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 4096) % 251) as u8
}

/// What pulse says its clocks read.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub mono: u64,
    pub wall: u64,
    pub ticks: u64,
}

impl Clock {
    /// Parses `mono=NS wall=NS ticks=N`.
    pub fn parse(clock: &str) -> Clock {
        let field = |name: &str| -> u64 {
            clock
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in the clock text {clock:?}"))
        };
        Clock {
            mono: field("mono"),
            wall: field("wall"),
            ticks: field("ticks"),
        }
    }

    /// Checks the wall clock against the host's: both come from the same machine's clock.
    pub fn check_wall(&self) {
        let host = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let off = (host.as_nanos() as i128 - i128::from(self.wall)).abs();
        assert!(
            off < 5_000_000_000,
            "pulse's wall clock is {off} ns off the host's: {self:?}"
        );
    }
}

/// The TXT string of a response with one TXT answer.
pub fn txt_answer(response: &[u8]) -> String {
    assert_eq!(u16_at(response, 6), 1, "one answer: {response:?}");
    let (_, question_end) = Name::parse(response, 12).unwrap();
    let (_, owner_end) = Name::parse(response, question_end + 4).unwrap();
    assert_eq!(u16_at(response, owner_end), 16, "a TXT answer");
    let data = owner_end + 10;
    let len = usize::from(response[data]);
    text(&response[data + 1..data + 1 + len])
}

/// `GET path` on a connection of its own: the status and the body, read until pulse closes.
pub fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: pulse.test\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole response head")
        + 4;
    let head = text(&response[..head_end]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .unwrap();
    let body = response.split_off(head_end);
    assert_eq!(body.len(), length, "the body has the length the head gave");
    (status, body)
}

/// Every check, from inside the namespace.
pub fn check_pulse(ns: &Netns) {
    let dns = SocketAddr::from((ns.guest(), 53));
    let http = SocketAddr::from((ns.guest(), 80));
    ns.run(|| {
        let a = ask(dns, &query(1, "PULSE.test.", 1, Some(1232)), false).expect("an A answer");
        let summary = summarize(&a);
        assert_eq!(summary.rcode, 0, "{summary:?}");
        let octets = ns.guest().octets();
        let expected = format!("pulse.test. 0 1 {octets:?}");
        assert_eq!(summary.sections[0], BTreeSet::from([expected]));
        let nowhere = ask(dns, &query(2, "nowhere.pulse.test.", 1, None), false).unwrap();
        assert_eq!(summarize(&nowhere).rcode, 3, "NXDOMAIN below the zone");

        let txt = ask(dns, &query(3, "clock.pulse.test.", 16, None), false).expect("a TXT answer");
        let first = Clock::parse(&txt_answer(&txt));
        first.check_wall();

        let (status, body) = get(http, &format!("/bytes/{DOWNLOAD}"));
        assert_eq!(status, 200);
        if let Some(at) = (0..DOWNLOAD).find(|&i| body[i] != pattern(i as u64)) {
            panic!("byte {at} of the download differs");
        }

        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = get(http, "/clock");
        assert_eq!(status, 200);
        let later = Clock::parse(text(&body).trim_end());
        later.check_wall();
        assert!(
            later.mono > first.mono && later.ticks > first.ticks,
            "the clock moved on: {first:?} then {later:?}"
        );
        assert_eq!(get(http, "/nothing").0, 404);
    });
}
