//! The DNS server must answer any bytes without panicking, with a well-formed response or none,
//! over UDP and TCP, with and without memoization.
#![no_main]

use std::sync::OnceLock;

use fata_dns::{Name, RData, Server, Transport, Zone, ZoneSet};
use libfuzzer_sys::fuzz_target;

fn zones() -> ZoneSet {
    let name = |text| Name::from_ascii(text).unwrap();
    let mut zone = Zone::new(name("example.com"));
    let soa = RData::Soa(name("ns.example.com"), name("h.example.com"), [1, 2, 3, 4, 300]);
    zone.add(name("example.com"), 6, 3600, soa).unwrap();
    zone.add(name("example.com"), 2, 3600, RData::Name(name("ns.example.com"))).unwrap();
    zone.add(name("ns.example.com"), 1, 3600, RData::Raw(vec![192, 0, 2, 1])).unwrap();
    zone.add(name("www.example.com"), 5, 3600, RData::Name(name("ns.example.com"))).unwrap();
    zone.add(name("*.w.example.com"), 16, 60, RData::Raw(vec![3, b'a', b'b', b'c'])).unwrap();
    zone.add(name("sub.example.com"), 2, 3600, RData::Name(name("ns.sub.example.com"))).unwrap();
    zone.add(name("m.example.com"), 15, 3600, RData::Mx(10, name("ns.example.com"))).unwrap();
    let mut set = ZoneSet::new();
    set.insert(zone).unwrap();
    set
}

fuzz_target!(|data: &[u8]| {
    static ZONES: OnceLock<ZoneSet> = OnceLock::new();
    let zones = ZONES.get_or_init(zones);
    let mut out = Vec::new();
    // No cache, the default cache, and one so small that every answer makes it start over.
    for cache_bytes in [0, fata_dns::DEFAULT_CACHE_BYTES, 200] {
        let mut server = Server::new(zones.clone(), cache_bytes);
        for transport in [Transport::Udp, Transport::Tcp, Transport::Udp] {
            if server.answer(data, transport, &mut out) {
                assert!(out.len() >= 12, "a response has a header");
                assert!(out[2] & 0x80 != 0, "a response has QR set");
                assert_eq!(out[..2], data[..2], "the ID is echoed");
                if transport == Transport::Udp {
                    assert!(out.len() <= 1232 + 11);
                }
            }
        }
    }
});
