//! The parts of the DNS wire format an authoritative server reads: the header, the question and
//! the EDNS(0) OPT record of a query.

use crate::Error;
use crate::name::Name;

/// Resource record types Fata answers for by name.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Pointer.
    pub const PTR: u16 = 12;
    /// Mail exchange.
    pub const MX: u16 = 15;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Service location.
    pub const SRV: u16 = 33;
    /// EDNS(0) options (a pseudo-record).
    pub const OPT: u16 = 41;
    /// Incremental zone transfer.
    pub const IXFR: u16 = 251;
    /// Zone transfer.
    pub const AXFR: u16 = 252;
    /// Any type.
    pub const ANY: u16 = 255;
    /// Certification authority authorization.
    pub const CAA: u16 = 257;
}

/// The Internet class.
pub const CLASS_IN: u16 = 1;

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query was malformed.
    pub const FORMERR: u8 = 1;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// The opcode is not implemented.
    pub const NOTIMP: u8 = 4;
    /// The server will not answer (not authoritative for the name).
    pub const REFUSED: u8 = 5;
}

/// Header flag bits (in the 16-bit flags word).
pub mod flag {
    /// This is a response.
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired (copied from the query).
    pub const RD: u16 = 0x0100;
    /// Checking disabled (copied from the query).
    pub const CD: u16 = 0x0010;
}

/// The largest UDP response Fata sends (the DNS Flag Day 2020 value).
pub const UDP_PAYLOAD_MAX: u16 = 1232;

/// The EDNS(0) information of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (at least 512).
    pub payload: u16,
    /// The EDNS version it speaks.
    pub version: u8,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// A query, parsed far enough to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The message ID.
    pub id: u16,
    /// The header flags word.
    pub flags: u16,
    /// The opcode (bits 11-14 of the flags).
    pub opcode: u8,
    /// The question's name, lowercased.
    pub qname: Name,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// Where the question ends in the query: bytes `12..question_end` are the question exactly as
    /// sent (the name in the sender's case), which the response echoes.
    pub question_end: usize,
    /// EDNS(0), if the query had an OPT record.
    pub edns: Option<Edns>,
}

/// What to do with a message that is not a well-formed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not worth an answer: too short for a header, or a response rather than a query.
    Drop,
    /// Answer with this response code and no question (FORMERR, NOTIMP).
    Rcode(u8),
}

pub(crate) fn u16_at(message: &[u8], at: usize) -> Result<u16, Error> {
    message
        .get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(Error::Truncated)
}

fn u32_at(message: &[u8], at: usize) -> Result<u32, Error> {
    message
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(Error::Truncated)
}

/// Parses a query. Never panics: every malformed input is a [`Reject`].
pub fn parse_query(message: &[u8]) -> Result<Query, Reject> {
    if message.len() < 12 {
        return Err(Reject::Drop);
    }
    let id = u16::from_be_bytes([message[0], message[1]]);
    let flags = u16::from_be_bytes([message[2], message[3]]);
    if flags & flag::QR != 0 {
        return Err(Reject::Drop);
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    let count = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let (qdcount, ancount, nscount, arcount) = (count(4), count(6), count(8), count(10));
    if opcode != 0 {
        return Err(Reject::Rcode(rcode::NOTIMP));
    }
    if qdcount != 1 {
        return Err(Reject::Rcode(rcode::FORMERR));
    }
    let formerr = |_| Reject::Rcode(rcode::FORMERR);
    let (qname, after_name) = Name::parse(message, 12).map_err(formerr)?;
    let qtype = u16_at(message, after_name).map_err(formerr)?;
    let qclass = u16_at(message, after_name + 2).map_err(formerr)?;
    let question_end = after_name + 4;

    // Walk the other sections to find the OPT record in the additional section.
    let mut at = question_end;
    let mut edns = None;
    let records = usize::from(ancount) + usize::from(nscount) + usize::from(arcount);
    let first_additional = usize::from(ancount) + usize::from(nscount);
    for index in 0..records {
        let (owner, after) = Name::parse(message, at).map_err(formerr)?;
        let rtype = u16_at(message, after).map_err(formerr)?;
        let class = u16_at(message, after + 2).map_err(formerr)?;
        let ttl = u32_at(message, after + 4).map_err(formerr)?;
        let rdlength = usize::from(u16_at(message, after + 8).map_err(formerr)?);
        let rdata_at = after + 10;
        if message.len() < rdata_at + rdlength {
            return Err(Reject::Rcode(rcode::FORMERR));
        }
        if rtype == rtype::OPT {
            // One OPT, owned by the root, in the additional section (RFC 6891 section 6.1.1).
            if index < first_additional || edns.is_some() || owner != Name::root() {
                return Err(Reject::Rcode(rcode::FORMERR));
            }
            check_options(&message[rdata_at..rdata_at + rdlength])?;
            edns = Some(Edns {
                payload: class.max(512),
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        at = rdata_at + rdlength;
    }
    Ok(Query {
        id,
        flags,
        opcode,
        qname,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// Checks that the OPT record's options are well formed (code, length, data).
fn check_options(mut options: &[u8]) -> Result<(), Reject> {
    while !options.is_empty() {
        if options.len() < 4 {
            return Err(Reject::Rcode(rcode::FORMERR));
        }
        let len = usize::from(u16::from_be_bytes([options[2], options[3]]));
        options = options
            .get(4 + len..)
            .ok_or(Reject::Rcode(rcode::FORMERR))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A query for `name`/`qtype` with optional EDNS payload size.
    pub(crate) fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut q = alloc::vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some())
        ];
        q.extend_from_slice(Name::from_ascii(name).unwrap().wire());
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some(payload) = edns {
            q.extend_from_slice(&[0, 0, 41]);
            q.extend_from_slice(&payload.to_be_bytes());
            q.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn a_query_with_edns_parses() {
        let q = parse_query(&query("Example.COM", rtype::MX, Some(4096))).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.flags & flag::RD, flag::RD);
        assert_eq!(q.qname, Name::from_ascii("example.com").unwrap());
        assert_eq!(q.qtype, rtype::MX);
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
    }

    #[test]
    fn malformed_queries_are_rejected_not_panicked_on() {
        assert_eq!(parse_query(&[0; 11]), Err(Reject::Drop));
        let mut response = query("a.b", 1, None);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(Reject::Drop));
        let mut status = query("a.b", 1, None);
        status[2] |= 2 << 3;
        assert_eq!(parse_query(&status), Err(Reject::Rcode(rcode::NOTIMP)));
        let mut two = query("a.b", 1, None);
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(Reject::Rcode(rcode::FORMERR)));
        let full = query("a.b", 1, Some(1232));
        for cut in 12..full.len() {
            assert!(parse_query(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_count = query("a.b", 1, None);
        wrong_count[11] = 3;
        assert_eq!(
            parse_query(&wrong_count),
            Err(Reject::Rcode(rcode::FORMERR))
        );
    }
}
