//! The zone the daemon serves, answered by Fata's own DNS engine: an SOA and NS at the apex, the
//! name server's address, and an A record per service.

use std::net::IpAddr;

use fata_dns::wire::{self, flag, rtype};
use fata_dns::{Name, RData, Server, Transport, Zone, ZoneSet};

use crate::config::Config;

/// The zone and what each name of it is.
pub struct Directory {
    server: Server,
    /// Each service's name in wire form, lowercased, by the service's index.
    names: Vec<Name>,
}

/// The response code for a server that could not answer (RFC 1035).
const SERVFAIL: u8 = 2;

impl Directory {
    /// The zone of `config`: `ns.ZONE` at the listening address when it is IPv4, and
    /// `NAME.ZONE` at each service's address, all with the configured TTL.
    pub fn new(config: &Config) -> Result<Directory, fata_dns::Error> {
        let apex = Name::from_ascii(&config.zone)?;
        let within = |label: &str| Name::from_ascii(&format!("{label}.{}", config.zone));
        let ns = within("ns")?;
        let mut zone = Zone::new(apex.clone());
        let ttl = config.ttl;
        zone.add(
            apex.clone(),
            rtype::SOA,
            ttl,
            RData::Soa(
                ns.clone(),
                within("hostmaster")?,
                [1, 3600, 600, 86400, ttl],
            ),
        )?;
        zone.add(apex, rtype::NS, ttl, RData::Name(ns.clone()))?;
        if let IpAddr::V4(address) = config.listen.ip() {
            zone.add(ns, rtype::A, ttl, RData::Raw(address.octets().to_vec()))?;
        }
        let mut names = Vec::with_capacity(config.services.len());
        for service in &config.services {
            let name = within(&service.name)?;
            let octets = service.address.octets().to_vec();
            zone.add(name.clone(), rtype::A, ttl, RData::Raw(octets))?;
            names.push(name);
        }
        zone.validate()?;
        let mut zones = ZoneSet::new();
        zones.insert(zone)?;
        Ok(Directory {
            server: Server::new(zones, 0),
            names,
        })
    }

    /// The service a query asks about (any type of record at its name), if any.
    pub fn service_of(&self, query: &[u8]) -> Option<usize> {
        let query = wire::parse_query(query).ok()?;
        self.names.iter().position(|name| *name == query.qname)
    }

    /// Writes the answer to `query` into `out`; `false` when the message deserves none.
    pub fn answer(&mut self, query: &[u8], out: &mut Vec<u8>) -> bool {
        self.server.answer(query, Transport::Udp, out)
    }
}

/// A SERVFAIL response to `query`, echoing its question; `None` for a message that is no query.
pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let parsed = wire::parse_query(query).ok()?;
    let mut out = Vec::with_capacity(parsed.question_end);
    out.extend_from_slice(&parsed.id.to_be_bytes());
    let flags = flag::QR | (parsed.flags & (flag::RD | flag::CD | 0x7800)) | u16::from(SERVFAIL);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(query.get(12..parsed.question_end)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    fn directory() -> (tempfile::TempDir, Directory) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.hvt"), b"image").unwrap();
        let config = parse(
            "zone = \"svc.test\"\nlisten = \"127.0.0.1:53\"\nhost = \"10.80.0.1\"\nttl = 5\n\
             [[service]]\nname = \"www\"\nimage = \"a.hvt\"\naddress = \"10.80.1.2/16\"\nport = 80\n\
             [[service]]\nname = \"dns\"\nimage = \"a.hvt\"\naddress = \"10.80.1.3/16\"\nport = 53\n",
            dir.path(),
        )
        .unwrap();
        (dir, Directory::new(&config).unwrap())
    }

    #[test]
    fn services_are_found_by_name_and_answered_with_their_address() {
        let (_dir, mut directory) = directory();
        assert_eq!(
            directory.service_of(&query("WWW.svc.test", rtype::A)),
            Some(0)
        );
        assert_eq!(
            directory.service_of(&query("dns.svc.test", rtype::AAAA)),
            Some(1)
        );
        assert_eq!(directory.service_of(&query("ns.svc.test", rtype::A)), None);
        assert_eq!(directory.service_of(&[1, 2, 3]), None);
        let mut out = Vec::new();
        assert!(directory.answer(&query("www.svc.test", rtype::A), &mut out));
        assert_eq!(out[3] & 0xf, 0, "NOERROR");
        assert_eq!(&out[6..8], &[0, 1], "one answer");
        assert!(out.windows(4).any(|w| w == [10, 80, 1, 2]));
        out.clear();
        assert!(directory.answer(&query("nope.svc.test", rtype::A), &mut out));
        assert_eq!(out[3] & 0xf, 3, "NXDOMAIN");
    }

    #[test]
    fn servfail_echoes_the_question() {
        let q = query("www.svc.test", rtype::A);
        let answer = servfail(&q).unwrap();
        assert_eq!(&answer[..2], &q[..2]);
        assert_eq!(answer[2] & 0x80, 0x80, "a response");
        assert_eq!(answer[3] & 0xf, SERVFAIL);
        assert_eq!(&answer[12..], &q[12..]);
        assert_eq!(servfail(&[0; 5]), None);
    }
}
