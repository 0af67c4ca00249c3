//! A small DNS client for end-to-end tests: build a query, ask a server over UDP or TCP, and reduce
//! the response to what two servers' answers must share.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use fata_dns::Name;

/// A query message.
pub fn query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut q = vec![
        (id >> 8) as u8,
        id as u8,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ];
    // Keep the letter case of the question as given.
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if let Some(size) = edns {
        q.extend_from_slice(&[0, 0, 41]);
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

/// Sends `message` to `server` over TCP (length-prefixed) or UDP and returns the response, or
/// `None` after about 2 s without one.
pub fn ask(server: SocketAddr, message: &[u8], tcp: bool) -> Option<Vec<u8>> {
    if tcp {
        let mut stream = TcpStream::connect_timeout(&server, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut framed = (message.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(message);
        stream.write_all(&framed).ok()?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).ok()?;
        let mut response = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut response).ok()?;
        Some(response)
    } else {
        let local = match (server.ip().is_loopback(), server.is_ipv6()) {
            (true, false) => "127.0.0.1:0",
            (false, false) => "0.0.0.0:0",
            (true, true) => "[::1]:0",
            (false, true) => "[::]:0",
        };
        let socket = UdpSocket::bind(local).ok()?;
        socket
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .ok()?;
        socket.send_to(message, server).ok()?;
        let mut buf = [0u8; 65535];
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    }
}

/// A response reduced to what must match: rcode, flags, the sections as sets of records (names
/// lowercased), and whether an OPT record came back.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    pub rcode: u16,
    pub flags: u16,
    pub sections: [BTreeSet<String>; 3],
    pub opt: bool,
}

/// The big-endian `u16` at `at`.
pub fn u16_at(m: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([m[at], m[at + 1]])
}

/// Reduces a response to its [`Summary`].
pub fn summarize(m: &[u8]) -> Summary {
    let flags = u16_at(m, 2);
    let name = |at: usize| Name::parse(m, at).unwrap();
    let (_, mut at) = name(12);
    at += 4;
    let mut sections: [BTreeSet<String>; 3] = Default::default();
    let mut opt = false;
    for (section, count_at) in [(0, 6), (1, 8), (2, 10)] {
        for _ in 0..u16_at(m, count_at) {
            let (owner, after) = name(at);
            let (rtype, ttl, len) = (
                u16_at(m, after),
                u32::from_be_bytes(m[after + 4..after + 8].try_into().unwrap()),
                usize::from(u16_at(m, after + 8)),
            );
            let data = after + 10;
            let rdata = match rtype {
                2 | 5 | 12 => name(data).0.to_string(),
                15 => format!("{} {}", u16_at(m, data), name(data + 2).0),
                33 => format!(
                    "{} {} {} {}",
                    u16_at(m, data),
                    u16_at(m, data + 2),
                    u16_at(m, data + 4),
                    name(data + 6).0
                ),
                6 => {
                    let (mname, a) = name(data);
                    let (rname, b) = name(a);
                    format!("{mname} {rname} {:?}", &m[b..b + 20])
                }
                _ => format!("{:?}", &m[data..data + len]),
            };
            if rtype == 41 {
                opt = true;
            } else {
                sections[section].insert(format!("{owner} {ttl} {rtype} {rdata}"));
            }
            at = data + len;
        }
    }
    Summary {
        rcode: flags & 0xf,
        flags: flags & 0x8780,
        sections,
        opt,
    }
}
