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
/// How many responses the cache holds before it starts over.
const CACHE_ENTRIES_MAX: usize = 1 << 16;

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
    stats: Stats,
    key: Vec<u8>,
}

impl Server {
    /// A server for `zones`; with `memoize`, repeated questions are answered from a cache of
    /// encoded responses with only the ID rewritten, as MirageOS's DNS server did.
    pub fn new(zones: ZoneSet, memoize: bool) -> Server {
        Server {
            zones,
            cache: memoize.then(HashMap::new),
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
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.clear();
            }
            cache.insert(self.key.clone(), out.clone());
        }
        true
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
