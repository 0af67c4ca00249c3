//! Coalescing (`fata run --coalesce-us N`) batches wake-ups under load but must not hold up a
//! client that waits for each answer, and must lose nothing. Each test runs apps/dns with an
//! absurd interval (300 ms), so a wrongly coalesced answer would be late by that much. On hvt no
//! answer may be late (the monitor sees what arrived before the guest's answers left); on unix the
//! app drains its sockets itself, so a fast client's next question can look like load once, after
//! which the useless nap turns napping off (`fata-unix`'s coalesce module): at most one late
//! answer.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::dns::{ask, query, summarize};
use common::{Netns, Running, build};

/// The coalescing interval the tests run with.
const INTERVAL: &str = "300000";
/// Far below the interval, far above an answer's time on any machine the tests run on.
const PROMPT: Duration = Duration::from_millis(100);

fn zone() -> String {
    let mut zone = String::from(
        "$ORIGIN co.fata.\n$TTL 300\n\
         @ IN SOA ns1 host 1 7200 3600 1209600 300\n\
         @ IN NS ns1\n\
         ns1 IN A 192.0.2.53\n",
    );
    for i in 0..200 {
        zone.push_str(&format!("h{i} IN A 198.51.100.{}\n", i % 250));
    }
    zone
}

/// Sequential questions (each sent after the previous answer) are answered at once, but for at
/// most `late_allowed` of them; then a burst of 200 sent without waiting is answered in full.
fn check(server: SocketAddr, late_allowed: usize) {
    // The first question may also wait out ARP.
    (0..20)
        .find_map(|_| ask(server, &query(1, "ns1.co.fata", 1, None), false))
        .expect("the server answers");
    let mut late = Vec::new();
    for i in 0..30u16 {
        let asked = Instant::now();
        let answer =
            ask(server, &query(i, &format!("h{i}.co.fata"), 1, None), false).expect("an answer");
        let took = asked.elapsed();
        assert_eq!(summarize(&answer).rcode, 0);
        if took >= PROMPT {
            late.push((i, took));
        }
    }
    assert!(
        late.len() <= late_allowed,
        "late answers {late:?}: a client waiting for each answer must not be coalesced"
    );
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for i in 0..200u16 {
        let message = query(1000 + i, &format!("h{i}.co.fata"), 1, None);
        socket.send(&message).unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut buf = [0u8; 1500];
    while seen.len() < 200 {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{} of 200 answers, then {e}", seen.len()));
        assert!(n >= 12);
        seen.insert(u16::from_be_bytes([buf[0], buf[1]]));
    }
    assert_eq!(seen.len(), 200, "every query of the burst is answered once");
}

/// Serves [`zone`] with apps/dns on `target` inside `ns`, coalescing at [`INTERVAL`], and runs
/// [`check`] against it from inside the namespace.
fn serve_and_check(ns: &Netns, target: &str) {
    build("apps/dns", target);
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("co.zone");
    std::fs::write(&zone_file, zone()).unwrap();
    let mut command = ns.fata();
    command.args([
        "run",
        "--release",
        "--target",
        target,
        "--coalesce-us",
        INTERVAL,
        "apps/dns",
    ]);
    let server = if target == "hvt" {
        command.args([
            "--net",
            "tap0",
            "--",
            "--ipv4",
            &format!("{}/24", ns.guest()),
        ]);
        SocketAddr::from((ns.guest(), 53))
    } else {
        command.args(["--", "--port", "5354"]);
        SocketAddr::from(([127, 0, 0, 1], 5354))
    };
    command.arg("--zone").arg(&zone_file);
    let _app = Running::start(command, "dns: serving co.fata");
    let late_allowed = if target == "hvt" { 0 } else { 1 };
    ns.run(|| check(server, late_allowed));
}

#[test]
fn coalescing_never_delays_a_waiting_client_nor_loses_a_burst_on_hvt() {
    if !fata_testkit::kvm() {
        return;
    }
    if let Some(ns) = Netns::create("coalhvt", 69) {
        serve_and_check(&ns.without_ipv6(), "hvt");
    }
}

#[test]
fn coalescing_never_delays_a_waiting_client_nor_loses_a_burst_on_unix() {
    if let Some(ns) = Netns::create("coalunix", 70) {
        serve_and_check(&ns, "unix");
    }
}
