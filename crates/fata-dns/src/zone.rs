//! Zones: the records Fata is authoritative for, how a name is looked up in them, and the compiled
//! form in which they reach the unikernel.
//!
//! Master files are parsed on the host (`fata-zone`); what crosses into the server is a compiled
//! zone set: names and record data in uncompressed wire form. [`ZoneSet::from_compiled`] checks
//! every byte of it and answers malformed input with an error, never a panic.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::Error;
use crate::name::Name;
use crate::wire::{CLASS_IN, rtype};

/// The magic bytes that start a compiled zone set.
const MAGIC: &[u8; 8] = b"FATAZONE";
/// The version of the compiled format.
const FORMAT_VERSION: u32 = 1;

/// Record data, decoded for the types whose data holds names (so answers can compress them and
/// find additional records) and kept as bytes for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// A name: NS, CNAME, PTR.
    Name(Name),
    /// MX: preference and exchange.
    Mx(u16, Name),
    /// SRV: priority, weight, port, target (never compressed: RFC 2782).
    Srv(u16, u16, u16, Name),
    /// SOA: primary server, mailbox, then serial, refresh, retry, expire, minimum.
    Soa(Name, Name, [u32; 5]),
    /// Any other type: the data exactly as on the wire.
    Raw(Vec<u8>),
}

impl RData {
    /// Decodes `bytes` (uncompressed wire form) as the data of a `rtype` record.
    pub fn decode(rtype: u16, bytes: &[u8]) -> Result<RData, Error> {
        let name_at = |at: usize| -> Result<(Name, usize), Error> {
            let (name, end) = Name::parse(bytes, at)?;
            // Stored names are uncompressed: the decoded length is the encoded length.
            if end - at != name.wire().len() {
                return Err(Error::BadRecord);
            }
            Ok((name, end))
        };
        let u16_at = |at: usize| crate::wire::u16_at(bytes, at);
        let whole = |(value, end): (RData, usize)| {
            if end == bytes.len() {
                Ok(value)
            } else {
                Err(Error::BadRecord)
            }
        };
        match rtype {
            rtype::NS | rtype::CNAME | rtype::PTR => {
                let (name, end) = name_at(0)?;
                whole((RData::Name(name), end))
            }
            rtype::MX => {
                let (name, end) = name_at(2)?;
                whole((RData::Mx(u16_at(0)?, name), end))
            }
            rtype::SRV => {
                let (name, end) = name_at(6)?;
                whole((RData::Srv(u16_at(0)?, u16_at(2)?, u16_at(4)?, name), end))
            }
            rtype::SOA => {
                let (mname, at) = name_at(0)?;
                let (rname, at) = name_at(at)?;
                let numbers = bytes.get(at..at + 20).ok_or(Error::BadRecord)?;
                let mut values = [0u32; 5];
                for (value, chunk) in values.iter_mut().zip(numbers.chunks_exact(4)) {
                    *value = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                whole((RData::Soa(mname, rname, values), at + 20))
            }
            rtype::A if bytes.len() != 4 => Err(Error::BadRecord),
            rtype::AAAA if bytes.len() != 16 => Err(Error::BadRecord),
            rtype::OPT | rtype::ANY | rtype::AXFR | rtype::IXFR => Err(Error::BadRecord),
            _ => Ok(RData::Raw(bytes.to_vec())),
        }
    }

    /// The uncompressed wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RData::Name(name) => out.extend_from_slice(name.wire()),
            RData::Mx(preference, name) => {
                out.extend_from_slice(&preference.to_be_bytes());
                out.extend_from_slice(name.wire());
            }
            RData::Srv(priority, weight, port, name) => {
                for n in [priority, weight, port] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                out.extend_from_slice(name.wire());
            }
            RData::Soa(mname, rname, values) => {
                out.extend_from_slice(mname.wire());
                out.extend_from_slice(rname.wire());
                for value in values {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            RData::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }

    /// The name whose addresses belong in the additional section (MX, SRV, NS targets).
    pub fn additional_name(&self, rtype: u16) -> Option<&Name> {
        match (rtype, self) {
            (rtype::NS, RData::Name(name))
            | (_, RData::Mx(_, name))
            | (_, RData::Srv(_, _, _, name)) => Some(name),
            _ => None,
        }
    }
}

/// All records of one type at one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RRset {
    /// The type.
    pub rtype: u16,
    /// The time to live of the set (RFC 2181: one TTL per set; the lowest given wins).
    pub ttl: u32,
    /// The records' data, in the order the zone gave them, without duplicates.
    pub rdatas: Vec<RData>,
}

/// One name in a zone: its record sets (none for an empty non-terminal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The record sets, sorted by type.
    pub rrsets: Vec<RRset>,
}

impl Node {
    /// The set of type `rtype`.
    pub fn get(&self, rtype: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|set| set.rtype == rtype)
    }
}

/// One zone: the names at and below its apex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    apex: Name,
    nodes: BTreeMap<Name, Node>,
}

/// Where a name leads within a zone.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'z> {
    /// The name exists (perhaps as an empty non-terminal).
    Exact(&'z Node),
    /// The name does not exist but a wildcard covers it (RFC 4592).
    Wildcard(&'z Node),
    /// The name is at or below a delegation: the NS set of the cut and the cut's name.
    Delegation(&'z Name, &'z RRset),
    /// The name does not exist.
    NxDomain,
}

impl Zone {
    /// An empty zone at `apex`.
    pub fn new(apex: Name) -> Zone {
        let mut nodes = BTreeMap::new();
        nodes.insert(apex.clone(), Node::default());
        Zone { apex, nodes }
    }

    /// The zone's apex.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// Adds a record of class IN. Records outside the zone are refused; a record equal to one
    /// already present is ignored.
    pub fn add(&mut self, owner: Name, rtype: u16, ttl: u32, rdata: RData) -> Result<(), Error> {
        if !owner.is_within(&self.apex) {
            return Err(Error::OutOfZone);
        }
        // Every name between the apex and the owner exists, as an empty non-terminal if nothing
        // else (RFC 4592 section 2.2.2), so that lookups tell NODATA from NXDOMAIN.
        let depth = owner.label_count() - self.apex.label_count();
        for strip in 1..depth {
            self.nodes.entry(owner.strip_labels(strip)).or_default();
        }
        let node = self.nodes.entry(owner).or_default();
        match node.rrsets.iter_mut().find(|set| set.rtype == rtype) {
            Some(set) => {
                set.ttl = set.ttl.min(ttl);
                if !set.rdatas.contains(&rdata) {
                    set.rdatas.push(rdata);
                }
            }
            None => {
                node.rrsets.push(RRset {
                    rtype,
                    ttl,
                    rdatas: alloc::vec![rdata],
                });
                node.rrsets.sort_by_key(|set| set.rtype);
            }
        }
        Ok(())
    }

    /// Checks what a zone must have: one SOA at the apex, and NS at the apex.
    pub fn validate(&self) -> Result<(), Error> {
        let apex = self.apex_node();
        match apex.get(rtype::SOA) {
            Some(soa) if soa.rdatas.len() == 1 => {}
            _ => return Err(Error::NoSoa),
        }
        if apex.get(rtype::NS).is_none() {
            return Err(Error::NoApexNs);
        }
        Ok(())
    }

    /// The apex node.
    pub fn apex_node(&self) -> &Node {
        self.nodes
            .get(&self.apex)
            .expect("the apex node is created with the zone")
    }

    /// The SOA set.
    pub fn soa(&self) -> Option<&RRset> {
        self.apex_node().get(rtype::SOA)
    }

    /// The node at exactly `name`, if any.
    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Looks `qname` (within the zone) up: descends from the apex, stopping at a delegation, and
    /// falls back to the wildcard below the closest encloser.
    pub fn lookup(&self, qname: &Name) -> Lookup<'_> {
        let apex_labels = self.apex.label_count();
        let depth = qname.label_count().saturating_sub(apex_labels);
        let mut encloser = &self.apex;
        for strip in (0..depth).rev() {
            let Some((name, node)) = self.nodes.get_key_value(&qname.strip_labels(strip)) else {
                // `encloser` is the closest encloser: try its wildcard.
                return match self.nodes.get(&encloser.wildcard_child()) {
                    Some(node) => Lookup::Wildcard(node),
                    None => Lookup::NxDomain,
                };
            };
            if let Some(ns) = node.get(rtype::NS) {
                return Lookup::Delegation(name, ns);
            }
            encloser = name;
        }
        Lookup::Exact(self.nodes.get(qname).unwrap_or_else(|| self.apex_node()))
    }
}

/// The zones a server is authoritative for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneSet {
    zones: Vec<Zone>,
}

impl ZoneSet {
    /// No zones.
    pub fn new() -> ZoneSet {
        ZoneSet::default()
    }

    /// Adds a zone after validating it; a second zone with the same apex is refused.
    pub fn insert(&mut self, zone: Zone) -> Result<(), Error> {
        zone.validate()?;
        if self.zones.iter().any(|z| z.apex == zone.apex) {
            return Err(Error::DuplicateZone);
        }
        self.zones.push(zone);
        // Deepest apex first, so the first match is the closest zone.
        self.zones
            .sort_by_key(|z| core::cmp::Reverse(z.apex.label_count()));
        Ok(())
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone closest to `name`, if any holds it.
    pub fn find(&self, name: &Name) -> Option<&Zone> {
        self.zones.iter().find(|zone| name.is_within(&zone.apex))
    }

    /// The compiled form: magic, version, zone count; per zone its apex and records (owner, type,
    /// class, TTL, data length, data), all big-endian and uncompressed.
    pub fn to_compiled(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(self.zones.len() as u32).to_be_bytes());
        for zone in &self.zones {
            out.extend_from_slice(zone.apex.wire());
            let records: usize = zone
                .nodes
                .values()
                .flat_map(|n| &n.rrsets)
                .map(|s| s.rdatas.len())
                .sum();
            out.extend_from_slice(&(records as u32).to_be_bytes());
            for (owner, node) in &zone.nodes {
                for set in &node.rrsets {
                    for rdata in &set.rdatas {
                        out.extend_from_slice(owner.wire());
                        out.extend_from_slice(&set.rtype.to_be_bytes());
                        out.extend_from_slice(&CLASS_IN.to_be_bytes());
                        out.extend_from_slice(&set.ttl.to_be_bytes());
                        let mut data = Vec::new();
                        rdata.encode(&mut data);
                        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
                        out.extend_from_slice(&data);
                    }
                }
            }
        }
        out
    }

    /// Reads a compiled zone set, checking every name, length and record.
    pub fn from_compiled(bytes: &[u8]) -> Result<ZoneSet, Error> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(8)? != MAGIC {
            return Err(Error::NotCompiledZone);
        }
        if reader.u32()? != FORMAT_VERSION {
            return Err(Error::CompiledVersion);
        }
        let mut set = ZoneSet::new();
        for _ in 0..reader.u32()? {
            let apex = reader.name()?;
            let mut zone = Zone::new(apex);
            for _ in 0..reader.u32()? {
                let owner = reader.name()?;
                let rtype = reader.u16()?;
                if reader.u16()? != CLASS_IN {
                    return Err(Error::BadRecord);
                }
                let ttl = reader.u32()?;
                let len = usize::from(reader.u16()?);
                let rdata = RData::decode(rtype, reader.take(len)?)?;
                zone.add(owner, rtype, ttl, rdata)?;
            }
            set.insert(zone)?;
        }
        if reader.at != bytes.len() {
            return Err(Error::TrailingBytes);
        }
        Ok(set)
    }
}

/// A cursor over compiled bytes that never reads past the end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).ok_or(Error::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(Error::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<Name, Error> {
        let rest = &self.bytes[self.at..];
        let (name, end) = Name::parse(rest, 0)?;
        let wire = self.take(end)?;
        // Compiled names carry no pointers.
        if wire.len() != name.wire().len() {
            return Err(Error::BadName);
        }
        Ok(name)
    }
}
