//! Answering queries: RFC 1034 section 4.3.2's algorithm over the zone set, shaped like NSD's
//! answers (authority NS and glue on positive answers, SOA on negative ones), with an optional
//! cache of encoded responses.

use alloc::vec::Vec;

use hashbrown::HashMap;

use crate::message::{Section, Writer};
use crate::name::Name;
use crate::wire::{self, CLASS_IN, Query, Reject, UDP_PAYLOAD_MAX, flag, rcode, rtype};
use crate::zone::{Lookup, RData, RRset, Zone, ZoneSet};

/// How a query arrived, which bounds the response's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the EDNS payload size up to 1232.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

/// The most CNAMEs followed for one answer.
const CNAME_CHAIN_MAX: usize = 8;
/// The response cache's default size: every distinct question of a 10,000-name zone fits.
pub const DEFAULT_CACHE_BYTES: usize = 8 << 20;
/// What one cached response costs beyond its key and bytes: the allocator's rounding, roughly.
const CACHE_ENTRY_OVERHEAD: usize = 32;
/// Bytes of one slot of the cache's hash table: the two vector headers and a control byte, with
/// hashbrown's load factor of 7/8.
const CACHE_SLOT_BYTES: usize = (size_of::<(Vec<u8>, Vec<u8>)>() + 1) * 8 / 7 + 1;

/// Counters of what the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Queries answered (from the cache or not).
    pub answered: u64,
    /// Answers copied from the cache.
    pub cache_hits: u64,
    /// Messages dropped without an answer.
    pub dropped: u64,
}

/// An authoritative server for a zone set.
pub struct Server {
    zones: ZoneSet,
    /// Encoded responses keyed by transport and the query without its ID.
    cache: Option<HashMap<Vec<u8>, Vec<u8>>>,
    /// The most bytes the cache may take (its table, keys and responses), and what its keys and
    /// responses take.
    cache_limit: usize,
    cache_bytes: usize,
    stats: Stats,
    key: Vec<u8>,
}

impl Server {
    /// A server for `zones`. With `cache_bytes` above zero, repeated questions are answered from
    /// a cache of encoded responses with only the ID rewritten, as MirageOS's DNS server did;
    /// the cache starts over when it would pass `cache_bytes`, so it never takes more memory than
    /// that (a unikernel's RAM is small and fixed).
    pub fn new(zones: ZoneSet, cache_bytes: usize) -> Server {
        Server {
            zones,
            cache: (cache_bytes > 0).then(HashMap::new),
            cache_limit: cache_bytes,
            cache_bytes: 0,
            stats: Stats::default(),
            key: Vec::new(),
        }
    }

    /// What the server has done so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Writes the response to `query` into `out` (cleared first); returns false when the message
    /// deserves no answer (too short, or itself a response). Never panics on any input.
    pub fn answer(&mut self, query: &[u8], transport: Transport, out: &mut Vec<u8>) -> bool {
        out.clear();
        if let Some(cache) = &self.cache
            && query.len() >= 12
        {
            self.key.clear();
            self.key.push(transport as u8);
            self.key.extend_from_slice(&query[2..]);
            if let Some(response) = cache.get(&self.key) {
                out.extend_from_slice(response);
                out[..2].copy_from_slice(&query[..2]);
                self.stats.answered += 1;
                self.stats.cache_hits += 1;
                return true;
            }
        }
        let cacheable = match wire::parse_query(query) {
            Ok(q) => {
                respond(&self.zones, query, &q, transport, out);
                true
            }
            Err(Reject::Drop) => {
                self.stats.dropped += 1;
                return false;
            }
            Err(Reject::Rcode(code)) => {
                header_only(query, code, out);
                false
            }
        };
        self.stats.answered += 1;
        if let Some(cache) = &mut self.cache
            && cacheable
        {
            let cost = self.key.len() + out.len() + CACHE_ENTRY_OVERHEAD;
            if self.cache_bytes + cost + table_bytes(cache) > self.cache_limit {
                // Starting over is cheaper than tracking recency, and the hot questions come
                // back at once. The table keeps its size, so it never grows past the limit.
                cache.clear();
                self.cache_bytes = 0;
            }
            if self.cache_bytes + cost + table_bytes(cache) <= self.cache_limit {
                cache.insert(self.key.clone(), out.clone());
                self.cache_bytes += cost;
            }
        }
        true
    }
}

/// What `cache`'s table takes, and, when the next insertion would grow it, the larger table too
/// (both exist while it grows).
fn table_bytes(cache: &HashMap<Vec<u8>, Vec<u8>>) -> usize {
    let now = cache.capacity() * CACHE_SLOT_BYTES;
    if cache.len() < cache.capacity() {
        now
    } else {
        now + (cache.capacity() * 2).max(4) * CACHE_SLOT_BYTES
    }
}

/// A response of just a header: ID and opcode from the query, the response code, no records.
fn header_only(query: &[u8], code: u8, out: &mut Vec<u8>) {
    let flags = u16::from_be_bytes([query[2], query[3]]);
    let flags = flag::QR | (flags & (0x7800 | flag::RD)) | u16::from(code);
    out.extend_from_slice(&query[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// What the lookup decided, before it is written.
struct Plan<'z> {
    rcode: u8,
    authoritative: bool,
    answer: Vec<(Name, &'z RRset)>,
    authority: Vec<(Name, &'z RRset, u32)>,
    /// Names whose A and AAAA sets go in the additional section.
    additional: Vec<&'z Name>,
    zone: Option<&'z Zone>,
}

/// Answers a parsed query.
fn respond(zones: &ZoneSet, query: &[u8], q: &Query, transport: Transport, out: &mut Vec<u8>) {
    let limit = match (transport, q.edns) {
        (Transport::Tcp, _) => usize::from(u16::MAX),
        (Transport::Udp, Some(edns)) => usize::from(edns.payload.min(UDP_PAYLOAD_MAX)),
        (Transport::Udp, None) => 512,
    };
    let opt_room = if q.edns.is_some() { 11 } else { 0 };
    out.extend_from_slice(&query[..4]);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..q.question_end]);

    let badvers = q.edns.is_some_and(|e| e.version > 0);
    let plan = if badvers { None } else { Some(plan(zones, q)) };
    let (code, aa) = plan
        .as_ref()
        .map_or((rcode::NOERROR, false), |p| (p.rcode, p.authoritative));
    let mut flags = flag::QR | (q.flags & (flag::RD | flag::CD)) | u16::from(code);
    let mut writer = Writer::new(out, limit.saturating_sub(opt_room), &q.qname);
    let mut truncated = false;
    if let Some(plan) = &plan {
        for (owner, set) in &plan.answer {
            if !truncated && !writer.rrset(Section::Answer, owner, set, set.ttl) {
                truncated = true;
            }
        }
        for (owner, set, ttl) in &plan.authority {
            if !truncated && !writer.rrset(Section::Authority, owner, set, *ttl) {
                truncated = true;
            }
        }
        if !truncated && let Some(zone) = plan.zone {
            // Additional data that does not fit is left out without truncating (RFC 2181 9).
            let mut done: Vec<&Name> = Vec::new();
            for name in &plan.additional {
                if done.contains(name) {
                    continue;
                }
                done.push(name);
                if let Some(node) = zone.node(name) {
                    let in_answer = |set: &&RRset| {
                        plan.answer
                            .iter()
                            .any(|(owner, s)| owner == *name && s.rtype == set.rtype)
                    };
                    // A set already in the answer is not repeated, as NSD does not.
                    for set in [node.get(rtype::A), node.get(rtype::AAAA)]
                        .into_iter()
                        .flatten()
                        .filter(|set| !in_answer(set))
                    {
                        writer.rrset(Section::Additional, name, set, set.ttl);
                    }
                }
            }
        }
    }
    if let Some(_edns) = q.edns {
        writer.opt(UDP_PAYLOAD_MAX, u8::from(badvers));
    }
    writer.finish();
    if aa {
        flags |= flag::AA;
    }
    if truncated {
        flags |= flag::TC;
    }
    out[2..4].copy_from_slice(&flags.to_be_bytes());
}

/// Decides the answer to `q` from the zone set.
fn plan<'z>(zones: &'z ZoneSet, q: &Query) -> Plan<'z> {
    let mut plan = Plan {
        rcode: rcode::NOERROR,
        authoritative: false,
        answer: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        zone: None,
    };
    let zone = match zones.find(&q.qname) {
        Some(zone) if q.qclass == CLASS_IN && !matches!(q.qtype, rtype::AXFR | rtype::IXFR) => zone,
        _ => {
            plan.rcode = rcode::REFUSED;
            return plan;
        }
    };
    plan.zone = Some(zone);
    plan.authoritative = true;
    let mut name = q.qname.clone();
    for _ in 0..=CNAME_CHAIN_MAX {
        let node = match zone.lookup(&name) {
            Lookup::Exact(node) | Lookup::Wildcard(node) => node,
            Lookup::Delegation(cut, ns) => {
                // A referral: the child's servers and their glue, not authoritative.
                plan.authoritative = !plan.answer.is_empty();
                plan.authority.push((cut.clone(), ns, ns.ttl));
                plan.additional.extend(
                    ns.rdatas
                        .iter()
                        .filter_map(|r| r.additional_name(rtype::NS)),
                );
                return plan;
            }
            Lookup::NxDomain => {
                plan.rcode = rcode::NXDOMAIN;
                negative(zone, &mut plan);
                return plan;
            }
        };
        let wanted = match q.qtype {
            // One set for ANY (RFC 8482): the SOA at the apex, else the first.
            rtype::ANY => node.get(rtype::SOA).or(node.rrsets.first()),
            qtype => node.get(qtype),
        };
        if let Some(set) = wanted {
            for rdata in &set.rdatas {
                plan.additional.extend(rdata.additional_name(set.rtype));
            }
            plan.answer.push((name, set));
            positive(zone, q, &mut plan);
            return plan;
        }
        let Some(cname) = node.get(rtype::CNAME) else {
            negative(zone, &mut plan);
            return plan;
        };
        plan.answer.push((name, cname));
        let Some(RData::Name(target)) = cname.rdatas.first() else {
            return plan;
        };
        if !target.is_within(zone.apex()) || plan.answer.iter().any(|(seen, _)| seen == target) {
            // The chain leaves the zone (the resolver follows it) or loops: answer what we have.
            return plan;
        }
        name = target.clone();
    }
    plan
}

/// Adds the zone's NS set (and its glue) to a positive answer, as NSD does; an answer to ANY
/// stays minimal (RFC 8482).
fn positive<'z>(zone: &'z Zone, q: &Query, plan: &mut Plan<'z>) {
    let Some(ns) = zone.apex_node().get(rtype::NS) else {
        return;
    };
    if q.qtype == rtype::ANY {
        plan.additional.clear();
        return;
    }
    let answered_apex_ns = plan
        .answer
        .iter()
        .any(|(owner, set)| owner == zone.apex() && set.rtype == rtype::NS);
    if !answered_apex_ns {
        plan.authority.push((zone.apex().clone(), ns, ns.ttl));
    }
    plan.additional.extend(
        ns.rdatas
            .iter()
            .filter_map(|r| r.additional_name(rtype::NS)),
    );
}

/// Adds the SOA to a negative answer, with the negative-caching TTL (RFC 2308 section 3).
fn negative<'z>(zone: &'z Zone, plan: &mut Plan<'z>) {
    if let Some(soa) = zone.soa() {
        let minimum = match soa.rdatas.first() {
            Some(RData::Soa(_, _, values)) => values[4],
            _ => soa.ttl,
        };
        plan.authority
            .push((zone.apex().clone(), soa, soa.ttl.min(minimum)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Name, RData};

    fn zones() -> ZoneSet {
        let name = |text| Name::from_ascii(text).unwrap();
        let mut zone = Zone::new(name("example.com"));
        let soa = RData::Soa(
            name("ns.example.com"),
            name("h.example.com"),
            [1, 2, 3, 4, 300],
        );
        zone.add(name("example.com"), rtype::SOA, 3600, soa)
            .unwrap();
        let ns = RData::Name(name("ns.example.com"));
        zone.add(name("example.com"), rtype::NS, 3600, ns).unwrap();
        zone.add(
            name("*.example.com"),
            rtype::A,
            60,
            RData::Raw(alloc::vec![192, 0, 2, 1]),
        )
        .unwrap();
        let mut set = ZoneSet::new();
        set.insert(zone).unwrap();
        set
    }

    /// A query for `hN.example.com A`.
    fn query(n: u32) -> Vec<u8> {
        let label = alloc::format!("h{n}");
        let mut q = alloc::vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
        q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
        q
    }

    #[test]
    fn the_cache_stays_within_its_bytes_and_answers_as_the_zone_does() {
        let limit = 4096;
        let mut cached = Server::new(zones(), limit);
        let mut plain = Server::new(zones(), 0);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..2 {
            for n in 0..500 {
                assert!(cached.answer(&query(n), Transport::Udp, &mut a));
                assert!(plain.answer(&query(n), Transport::Udp, &mut b));
                assert_eq!(a, b, "query {n}, round {round}");
                let cache = cached.cache.as_ref().unwrap();
                assert!(cached.cache_bytes + cache.capacity() * CACHE_SLOT_BYTES <= limit);
            }
        }
        assert!(
            cached.stats().cache_hits == 0,
            "500 distinct questions never fit 4 KiB"
        );
        for _ in 0..3 {
            assert!(cached.answer(&query(7), Transport::Udp, &mut a));
        }
        assert_eq!(
            cached.stats().cache_hits,
            2,
            "a repeated question is served from the cache"
        );
        assert_eq!(plain.stats().cache_hits, 0);
    }
}
